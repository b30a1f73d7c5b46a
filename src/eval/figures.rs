//! The paper's pictures of a set of features: PCA and t-SNE scatter plots
//! (Figures 1 and 7) and the explained variance ratio (Figure 8).

use std::path::Path;

/// PCA and t-SNE scatter plots of the first row (the baseline) and of
/// row `highlight` (the caller's choice: a table's best row), and the
/// explained variance ratio of every row (paper Figures 1, 7 and 8). A
/// figure that the data cannot support (too few rows for t-SNE, say) is
/// left out; the returned lines say which and why.
pub fn figures(
    rows: &[(String, ndarray::Array2<f32>, Vec<usize>)],
    highlight: usize,
    out: &Path,
    stem: &str,
) -> Vec<String> {
    use super::plots::{explained_variance, pca, scatter, tsne};
    use super::probes::standardize;
    let mut warnings = Vec::new();
    let mut curves = Vec::new();
    for (k, (name, features, labels)) in rows.iter().enumerate() {
        let n = features.nrows().min(1500);
        if n < 3 {
            warnings.push(format!(
                "{name}: {n} test rows, too few for PCA or t-SNE; no figures"
            ));
            continue;
        }
        let (x, _) = standardize(features, &features.slice(ndarray::s![..0, ..]).to_owned());
        let x = x.slice(ndarray::s![..n, ..]).to_owned();
        let slug = name.to_lowercase().replace(' ', "_");
        let drawn = pca(&x, 2, 20).and_then(|(proj, ratio)| {
            curves.push((name.clone(), ratio));
            if k == 0 || k == highlight {
                scatter(
                    &proj,
                    &labels[..n],
                    &format!("PCA: {name}"),
                    &out.join(format!("{stem}_pca_{slug}.png")),
                )?;
            }
            Ok(())
        });
        if let Err(e) = drawn {
            warnings.push(format!("{name}: no PCA figure: {e:#}"));
        }
        if k == 0 || k == highlight {
            let drawn = tsne(&x, 0).and_then(|emb| {
                scatter(
                    &emb,
                    &labels[..n],
                    &format!("t-SNE: {name}"),
                    &out.join(format!("{stem}_tsne_{slug}.png")),
                )
            });
            if let Err(e) = drawn {
                warnings.push(format!("{name}: no t-SNE figure: {e:#}"));
            }
        }
    }
    if !curves.is_empty() {
        let path = out.join(format!("{stem}_explained_variance.png"));
        if let Err(e) = explained_variance(&curves, &path) {
            warnings.push(format!("no explained-variance figure: {e:#}"));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scatter plots are drawn for the first row and the highlighted
    /// one only (a table's best row need not be its last).
    #[test]
    fn scatter_plots_of_the_first_and_the_highlighted_row() {
        let dir = tempfile::tempdir().unwrap();
        // # Shapes: 40 rows x 3 features per row of the table
        let rows: Vec<_> = ["A", "B C", "D"]
            .iter()
            .enumerate()
            .map(|(r, name)| {
                let x = ndarray::Array2::from_shape_fn((40, 3), |(i, j)| {
                    ((i * 7 + j * 13 + r) % 11) as f32 + (i % 4) as f32 * j as f32
                });
                (name.to_string(), x, (0..40).map(|i| i % 4).collect())
            })
            .collect();
        let warnings = figures(&rows, 1, dir.path(), "t");
        assert!(warnings.is_empty(), "{warnings:?}");
        for (slug, drawn) in [("a", true), ("b_c", true), ("d", false)] {
            for kind in ["pca", "tsne"] {
                let path = dir.path().join(format!("t_{kind}_{slug}.png"));
                assert_eq!(path.exists(), drawn, "{}", path.display());
            }
        }
        assert!(dir.path().join("t_explained_variance.png").exists());
    }
}
