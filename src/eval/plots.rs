//! Pictures of embeddings (plotters, bitmap backend, a font shipped in
//! `assets/` so that no system fonts are needed): PCA and t-SNE scatter
//! plots coloured by class (paper Figures 1 and 7) and the explained
//! variance ratio of the first principal components (Figure 8).

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Context, Result};
use linfa::traits::Transformer;
use linfa_linalg::eigh::Eigh;
use linfa_tsne::TSneParams;
use ndarray::{Array2, Axis};
use plotters::coord::types::RangedCoordusize;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use rand::SeedableRng;

static FONT: Once = Once::new();

fn register_font() {
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../assets/DejaVuSans.ttf");
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .unwrap_or_else(|_| panic!("the shipped font assets/DejaVuSans.ttf is valid"));
    });
}

/// PCA projection onto the first `k` components and the explained variance
/// ratio of the first `max_components` components. Both shrink to what the
/// data supports: at most `min(rows, columns)` components.
pub fn pca(
    features: &Array2<f64>,
    k: usize,
    max_components: usize,
) -> Result<(Array2<f64>, Vec<f64>)> {
    let supported = features.ncols().min(features.nrows());
    let mc = max_components.max(k).min(supported);
    if mc == 0 {
        return Err(anyhow!(
            "PCA needs at least one row and one column, got {}x{}",
            features.nrows(),
            features.ncols()
        ));
    }
    // Exact PCA from the covariance's eigendecomposition (linfa-linalg).
    // linfa-reduction's truncated SVD panicked (NaN in its sort) on
    // rank-deficient features such as 40 rows of Gram features.
    if features.iter().any(|v| !v.is_finite()) {
        return Err(anyhow!("PCA: the features hold NaN or infinite values"));
    }
    let mean = features.mean_axis(Axis(0)).expect("at least one row");
    let centred = features - &mean;
    let dof = (features.nrows() as f64 - 1.0).max(1.0);
    let covariance = centred.t().dot(&centred) / dof;
    let (variances, axes) = covariance.eigh().map_err(|e| anyhow!("PCA failed: {e}"))?;
    let mut order: Vec<usize> = (0..variances.len()).collect();
    order.sort_by(|&a, &b| variances[b].total_cmp(&variances[a]));
    // Figure 8 wants each component's share of the total variance
    let total: f64 = variances.iter().map(|v| v.max(0.0)).sum::<f64>().max(1e-30);
    let ratio = order[..mc]
        .iter()
        .map(|&i| variances[i].max(0.0) / total)
        .collect();
    let mut out = Array2::zeros((features.nrows(), k));
    for (c, &i) in order.iter().take(k.min(mc)).enumerate() {
        out.column_mut(c).assign(&centred.dot(&axes.column(i)));
    }
    Ok((out, ratio))
}

/// Fewest rows t-SNE is run on (perplexity 2 needs 7).
pub const TSNE_MIN_ROWS: usize = 7;

/// 2-D t-SNE (linfa-tsne, exact gradients), seeded. The perplexity is 30,
/// or less where there are too few rows for it.
pub fn tsne(features: &Array2<f64>, seed: u64) -> Result<Array2<f64>> {
    let n = features.nrows();
    if n < TSNE_MIN_ROWS {
        return Err(anyhow!("{n} rows, t-SNE needs at least {TSNE_MIN_ROWS}"));
    }
    // t-SNE on 50 PCA dimensions is standard and much faster
    let reduced = if features.ncols() > 50 {
        pca(features, 50.min(n), 50)?.0
    } else {
        features.clone()
    };
    // bhtsne needs n - 1 >= 3 * floor(perplexity)
    let perplexity = ((n - 1) / 3).min(30) as f64;
    // Exact gradients (threshold 0): the Barnes-Hut trees recurse without
    // bound on small or clumped inputs and overflow the stack, and exact
    // t-SNE of the at most 1,500 points drawn here takes seconds.
    TSneParams::embedding_size_with_rng(2, rand::rngs::SmallRng::seed_from_u64(seed))
        .perplexity(perplexity)
        .approx_threshold(0.0)
        .max_iter(500)
        .transform(reduced)
        .map_err(|e| anyhow!("t-SNE failed: {e}"))
}

/// 2-D t-SNE of many rows (`eqae map`): exact gradients up to 2,000 rows,
/// Barnes-Hut (threshold 0.5) beyond, 1,000 iterations, perplexity 30.
/// Call it on a thread with a large stack: the Barnes-Hut trees recurse
/// deeply on clumped data.
pub fn tsne_large(reduced: &Array2<f64>, seed: u64) -> Result<Array2<f64>> {
    let n = reduced.nrows();
    if n < TSNE_MIN_ROWS {
        return Err(anyhow!("{n} rows, t-SNE needs at least {TSNE_MIN_ROWS}"));
    }
    let perplexity = ((n - 1) / 3).min(30) as f64;
    TSneParams::embedding_size_with_rng(2, rand::rngs::SmallRng::seed_from_u64(seed))
        .perplexity(perplexity)
        .approx_threshold(if n > 2000 { 0.5 } else { 0.0 })
        .max_iter(1000)
        .transform(reduced.clone())
        .map_err(|e| anyhow!("t-SNE failed: {e}"))
}

/// Scatter plot of 2-D points coloured by class.
pub fn scatter(points: &Array2<f64>, labels: &[usize], title: &str, path: &Path) -> Result<()> {
    crate::atomic::with_temp(path, ".png", |tmp| draw_scatter(points, labels, title, tmp))
}

fn draw_scatter(points: &Array2<f64>, labels: &[usize], title: &str, path: &Path) -> Result<()> {
    register_font();
    let root = BitMapBackend::new(path, (800, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let (lo, hi) = (
        points.fold_axis(Axis(0), f64::INFINITY, |a, b| a.min(*b)),
        points.fold_axis(Axis(0), f64::NEG_INFINITY, |a, b| a.max(*b)),
    );
    let pad = |a: f64, b: f64| (b - a).max(1e-9) * 0.05;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(40)
        .build_cartesian_2d(
            (lo[0] - pad(lo[0], hi[0]))..(hi[0] + pad(lo[0], hi[0])),
            (lo[1] - pad(lo[1], hi[1]))..(hi[1] + pad(lo[1], hi[1])),
        )?;
    chart.configure_mesh().disable_mesh().draw()?;
    let classes = labels.iter().max().map_or(1, |m| m + 1);
    for c in 0..classes {
        let colour = Palette99::pick(c).to_rgba();
        chart
            .draw_series(
                points
                    .rows()
                    .into_iter()
                    .zip(labels)
                    .filter(|(_, &l)| l == c)
                    .map(|(p, _)| Circle::new((p[0], p[1]), 2, colour.filled())),
            )?
            .label(format!("{c}"))
            .legend(move |(x, y)| Circle::new((x, y), 4, colour.filled()));
    }
    if classes <= 12 {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Line chart of explained variance ratios (one curve per model).
pub fn explained_variance(curves: &[(String, Vec<f64>)], path: &Path) -> Result<()> {
    crate::atomic::with_temp(path, ".png", |tmp| draw_explained_variance(curves, tmp))
}

fn draw_explained_variance(curves: &[(String, Vec<f64>)], path: &Path) -> Result<()> {
    register_font();
    let root = BitMapBackend::new(path, (800, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = curves.iter().map(|(_, c)| c.len()).max().unwrap_or(1);
    let top = curves
        .iter()
        .flat_map(|(_, c)| c.iter().copied())
        .fold(0.0f64, f64::max)
        .max(1e-6);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Explained variance ratio of the first principal components",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(1usize..n, 0.0..top * 1.05)?;
    chart
        .configure_mesh()
        .x_desc("component")
        .y_desc("explained variance ratio")
        .draw()?;
    for (i, (name, curve)) in curves.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                curve.iter().enumerate().map(|(k, &v)| (k + 1, v)),
                colour.stroke_width(2),
            ))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Line chart of named series of `(x, y)` points, optionally with a
/// logarithmic x axis (label efficiency) .
pub fn lines(
    title: &str,
    axes: (&str, &str),
    log_x: bool,
    series: &[(String, Vec<(f64, f64)>)],
    path: &Path,
) -> Result<()> {
    crate::atomic::with_temp(path, ".png", |tmp| {
        draw_lines(title, axes, log_x, series, tmp)
    })
}

fn draw_lines(
    title: &str,
    (x_label, y_label): (&str, &str),
    log_x: bool,
    series: &[(String, Vec<(f64, f64)>)],
    path: &Path,
) -> Result<()> {
    register_font();
    let points = || series.iter().flat_map(|(_, p)| p.iter().copied());
    let (x_lo, x_hi) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (x, _)| {
        (a.min(x), b.max(x))
    });
    let (y_lo, y_hi) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (_, y)| {
        (a.min(y), b.max(y))
    });
    if !(x_lo.is_finite() && y_lo.is_finite()) {
        return Err(anyhow!("no finite points to draw"));
    }
    let span = (y_hi - y_lo).max(0.05);
    let y_range = (y_lo - 0.05 * span).max(0.0)..(y_hi + 0.05 * span).min(1.0);
    // the legend gets its own panel right of the chart: inside it, with a
    // dozen or more series, it hid curves
    let font = ("sans-serif", 14).into_font();
    let widest = series
        .iter()
        .map(|(name, _)| font.box_size(name).map_or(0, |(w, _)| w))
        .max()
        .unwrap_or(0);
    let (chart_w, legend_w) = (900u32, (widest + 60).clamp(120, 600));
    let root = BitMapBackend::new(path, (chart_w + legend_w, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot_area, legend_area) = root.split_horizontally(chart_w);
    let looks = series_looks(series);
    draw_legend(&legend_area, series, &looks, &font)?;
    let mut builder = ChartBuilder::on(&plot_area);
    builder
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_labels(10)
                .x_label_formatter(&|x: &f64| format!("{x:.0}"))
                .x_desc(x_label)
                .y_desc(y_label)
                .draw()?;
            for (i, (_, p)) in series.iter().enumerate() {
                let (colour, dashed) = looks[i];
                if dashed {
                    chart.draw_series(DashedLineSeries::new(
                        p.iter().copied(),
                        8,
                        5,
                        colour.stroke_width(2),
                    ))?;
                } else {
                    chart
                        .draw_series(LineSeries::new(p.iter().copied(), colour.stroke_width(2)))?;
                }
                chart.draw_series(
                    p.iter()
                        .map(|&(x, y)| Circle::new((x, y), 3, colour.filled())),
                )?;
            }
        }};
    }
    let x_hi = if x_hi > x_lo { x_hi } else { x_lo + 1.0 };
    if log_x {
        draw!(builder.build_cartesian_2d((x_lo * 0.8..x_hi * 1.25).log_scale(), y_range)?);
    } else {
        draw!(builder.build_cartesian_2d(x_lo..x_hi, y_range)?);
    }
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The legend panel of a line chart: each series' line (dashed where its
/// curve is), marker and name, one a line.
fn draw_legend(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    series: &[(String, Vec<(f64, f64)>)],
    looks: &[(RGBAColor, bool)],
    font: &FontDesc<'_>,
) -> Result<()> {
    for (i, (name, _)) in series.iter().enumerate() {
        let (colour, dashed) = looks[i];
        let y = 60 + 20 * i as i32;
        let strokes: &[(i32, i32)] = if dashed {
            &[(4, 10), (22, 28)]
        } else {
            &[(4, 28)]
        };
        for &(from, to) in strokes {
            area.draw(&PathElement::new(
                vec![(from, y), (to, y)],
                colour.stroke_width(2),
            ))?;
        }
        area.draw(&Circle::new((16, y), 3, colour.filled()))?;
        area.draw(&Text::new(
            name.clone(),
            (36, y),
            TextStyle::from(font.clone()).pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }
    Ok(())
}

/// Ten colours that are easy to tell apart (Tableau 10).
const DISTINCT: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// Suffix of a series drawn as the mirrored variant of another.
pub const MIRRORED: &str = " (mirrored)";

/// Colour and dash of each series: one colour per row, the series named
/// `<row> (mirrored)` dashed in its row's colour.
fn series_looks(series: &[(String, Vec<(f64, f64)>)]) -> Vec<(RGBAColor, bool)> {
    let mut rows: Vec<&str> = Vec::new();
    series
        .iter()
        .map(|(name, _)| {
            let (row, dashed) = match name.strip_suffix(MIRRORED) {
                Some(row) => (row, true),
                None => (name.as_str(), false),
            };
            let k = rows.iter().position(|r| *r == row).unwrap_or_else(|| {
                rows.push(row);
                rows.len() - 1
            });
            let colour = match DISTINCT.get(k) {
                Some(&(r, g, b)) => RGBColor(r, g, b).to_rgba(),
                None => Palette99::pick(k).to_rgba(),
            };
            (colour, dashed)
        })
        .collect()
}

/// A count matrix as a heat map (confusion matrices, attention poses): cell
/// `[r][c]` shaded by its share of row `r` and labelled with its count.
pub fn heatmap(
    counts: &[Vec<usize>],
    names: (&[String], &[String]),
    title: &str,
    axes: (&str, &str),
    path: &Path,
) -> Result<()> {
    crate::atomic::with_temp(path, ".png", |tmp| {
        draw_heatmap(counts, names, title, axes, tmp)
    })
}

fn draw_heatmap(
    counts: &[Vec<usize>],
    (row_names, col_names): (&[String], &[String]),
    title: &str,
    (x_label, y_label): (&str, &str),
    path: &Path,
) -> Result<()> {
    let rows = counts.len();
    let cols = counts.first().map_or(0, Vec::len);
    if rows == 0 || cols == 0 || counts.iter().any(|r| r.len() != cols) {
        return Err(anyhow!("a heat map needs a non-empty rectangular matrix"));
    }
    register_font();
    let cell = (640 / rows.max(cols)).clamp(18, 60) as u32;
    let (w, h) = (cols as u32 * cell + 160, rows as u32 * cell + 140);
    let root = BitMapBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE)?;
    let label_font = ("sans-serif", 12).into_font();
    // names wider than their cells (D12's "R^10 M") go on two staggered lines
    let widest = col_names
        .iter()
        .map(|name| {
            root.estimate_text_size(name, &label_font.clone().into_text_style(&root))
                .map_or(0, |(w, _)| w)
        })
        .max()
        .unwrap_or(0);
    let stagger = widest + 4 > cell;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(if stagger { 60 } else { 45 })
        .y_label_area_size(75)
        .build_cartesian_2d(0..cols, 0..rows)?;
    chart
        .configure_mesh()
        .disable_mesh()
        // one blank key point each: plotters' usize axes loop forever on 0
        .x_labels(1)
        .y_labels(1)
        .x_label_formatter(&|_| String::new())
        .y_label_formatter(&|_| String::new())
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()?;
    let names = (row_names, col_names);
    draw_cell_names(&root, &chart, names, (&label_font, stagger))?;
    draw_cells(&root, &mut chart, counts, cell)?;
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// A heat map's chart: cells indexed by (column, row), row 0 on top.
type CellChart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordusize, RangedCoordusize>>;

/// The column and row names, centred on their cells (the mesh would put
/// them on the edges); with `stagger`, every other column name lower.
fn draw_cell_names(
    root: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    chart: &CellChart,
    (row_names, col_names): (&[String], &[String]),
    (label_font, stagger): (&FontDesc, bool),
) -> Result<()> {
    let (cols, rows) = (chart.x_range().end, chart.y_range().end);
    let y = |r: usize| rows - r;
    for (c, name) in col_names.iter().enumerate().take(cols) {
        let (x, bottom) = chart.backend_coord(&(c, 0));
        let x = (x + chart.backend_coord(&(c + 1, 0)).0) / 2;
        let below = if stagger && c % 2 == 1 { 18 } else { 4 };
        let style = label_font
            .clone()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new(name.clone(), (x, bottom + below), style))?;
    }
    for (r, name) in row_names.iter().enumerate().take(rows) {
        let (x, top) = chart.backend_coord(&(0, y(r)));
        let mid = (top + chart.backend_coord(&(0, y(r) - 1)).1) / 2;
        let style = label_font
            .clone()
            .color(&BLACK)
            .pos(Pos::new(HPos::Right, VPos::Center));
        root.draw(&Text::new(name.clone(), (x - 4, mid), style))?;
    }
    Ok(())
}

/// Each cell shaded by its share of the row, with its count where it fits.
fn draw_cells(
    root: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    chart: &mut CellChart,
    counts: &[Vec<usize>],
    cell: u32,
) -> Result<()> {
    let rows = counts.len();
    let y = |r: usize| rows - r;
    let font = ("sans-serif", (cell as f64 * 0.32).clamp(8.0, 14.0)).into_font();
    for (r, row) in counts.iter().enumerate() {
        let total = row.iter().sum::<usize>().max(1) as f64;
        for (c, &n) in row.iter().enumerate() {
            let share = n as f64 / total;
            // white (0) to dark blue (the whole row)
            let shade = |lo: f64| (255.0 - share * (255.0 - lo)) as u8;
            let fill = RGBColor(shade(20.0), shade(60.0), shade(140.0));
            chart.draw_series(std::iter::once(Rectangle::new(
                [(c, y(r)), (c + 1, y(r) - 1)],
                fill.filled(),
            )))?;
            if n > 0 && cell >= 24 {
                let ink = if share > 0.5 { WHITE } else { BLACK };
                let pixel = chart.backend_coord(&(c, y(r)));
                root.draw(&Text::new(
                    format!("{n}"),
                    (pixel.0 + 3, pixel.1 + 3),
                    font.clone().color(&ink),
                ))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line chart's legend sits in its own panel right of the chart, as
    /// wide as the longest name needs: every series' colour shows there, and
    /// no legend box is drawn over the plot (it hid curves).
    #[test]
    fn a_mirrored_series_is_its_rows_colour_dashed() {
        let named = |n: &str| (n.to_string(), vec![(0.0, 0.5)]);
        let series = [
            named("a"),
            named("a (mirrored)"),
            named("b"),
            named("b (mirrored)"),
        ];
        let looks = series_looks(&series);
        assert_eq!(looks[0].0, looks[1].0);
        assert_eq!(looks[2].0, looks[3].0);
        assert_ne!(looks[0].0, looks[2].0);
        assert_eq!(
            looks.iter().map(|l| l.1).collect::<Vec<_>>(),
            [false, true, false, true]
        );
    }

    #[test]
    fn line_chart_legend_is_beside_the_chart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lines.png");
        let series: Vec<(String, Vec<(f64, f64)>)> = (0..18)
            .map(|k| {
                let name = format!("d12_attention-s0 Equivariant Attention (Q) {k}");
                let points = (0..24)
                    .map(|i| (15.0 * i as f64, 0.6 + 0.02 * k as f64))
                    .collect();
                (name, points)
            })
            .collect();
        lines("t", ("x", "y"), false, &series, &path).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert!(img.width() > 1200, "legend panel: {}", img.width());
        let colour_in = |x0: u32, x1: u32, c: RGBAColor| {
            (x0..x1).any(|x| {
                (0..img.height()).any(|y| {
                    let p = img.get_pixel(x, y).0;
                    (p[0], p[1], p[2]) == (c.0, c.1, c.2)
                })
            })
        };
        let looks = series_looks(&series);
        for (k, (c, _)) in looks.iter().enumerate() {
            assert!(
                colour_in(900, 940, *c),
                "series {k} missing from the legend"
            );
        }
        // the chart's right part, where the legend box used to be, shows
        // the curves and no legend text: nothing black but the axes'
        let black = (860..890)
            .flat_map(|x| (300..500).map(move |y| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0 == [0, 0, 0])
            .count();
        assert_eq!(black, 0);
    }

    /// Points on a tilted line plus a little noise along one other axis:
    /// the first component carries almost all the variance, the ratios sum
    /// to at most 1, and rank-deficient input (more columns than rows) is
    /// fine.
    #[test]
    fn pca_finds_the_dominant_axis_of_rank_deficient_data() {
        let rows = 12;
        let x = Array2::from_shape_fn((rows, 30), |(i, j)| {
            let t = i as f64 - 5.5;
            match j {
                0 => 3.0 * t,
                1 => -4.0 * t,
                2 => 0.01 * ((i * 7) % 5) as f64,
                _ => 0.0,
            }
        });
        let (proj, ratio) = pca(&x, 2, 20).unwrap();
        assert_eq!(proj.dim(), (rows, 2));
        assert_eq!(ratio.len(), 12, "at most min(rows, columns) components");
        assert!(ratio[0] > 0.999, "{ratio:?}");
        assert!(ratio.iter().sum::<f64>() <= 1.0 + 1e-9);
        // the first coordinate is the position along the line, |(3, -4)| = 5
        for i in 0..rows {
            let t = i as f64 - 5.5;
            assert!(
                (proj[[i, 0]].abs() - 5.0 * t.abs()).abs() < 0.05,
                "{}",
                proj[[i, 0]]
            );
        }
        let mut bad = x.clone();
        bad[[0, 0]] = f64::NAN;
        assert!(pca(&bad, 2, 20).is_err());
    }
}
