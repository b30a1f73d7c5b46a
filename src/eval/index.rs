//! An approximate nearest-neighbour index of an embedded collection
//! (`eqae index`), for collections too large to compare every row with
//! every query: an HNSW graph (the `hnsw_rs` crate) over the rows'
//! leading principal coordinates, whose candidates are then ranked by the
//! exact cosine distance that `eqae search` uses everywhere.
//!
//! Saved beside the features as the folder `F_index/` (the graph, its
//! points, the projection and `index.json`, which records the SHA-256 of
//! the features' manifest): built once, reused by every search, and
//! ignored with a warning when the features have changed since. The folder
//! is written whole under another name, then renamed into place.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hnsw_rs::prelude::{AnnT, DistL2, Hnsw, HnswIo};
use ndarray::{s, Array2, ArrayView1, Axis};
use ndarray_npy::{read_npy, write_npy};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::embed::side_path;

/// Neighbours kept per point in the graph's layers (HNSW's `M`).
const LINKS: usize = 24;

/// Candidates explored per insertion.
const EF_CONSTRUCTION: usize = 200;

/// Rows the principal axes are fitted on.
const PCA_ROWS: usize = 20_000;

/// The graph's file names inside the index folder.
const BASENAME: &str = "graph";

/// How to build an index.
pub struct IndexOptions {
    /// Principal coordinates the graph is built on.
    pub dims: usize,
    /// No progress bar.
    pub quiet: bool,
}

/// What `index.json` records.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct IndexMeta {
    /// Rows indexed.
    pub rows: usize,
    /// Principal coordinates per point.
    pub dims: usize,
    /// HNSW's `M` and `ef_construction`.
    pub links: usize,
    /// Candidates explored per insertion.
    pub ef_construction: usize,
    /// SHA-256 of the features' `_manifest.json` when the index was built.
    pub manifest_sha256: String,
    /// Seconds the build took.
    pub build_seconds: f64,
}

/// A loaded index.
pub struct Index {
    graph: Hnsw<'static, f32, DistL2>,
    /// `[F, D]`: standardised unit rows to principal coordinates.
    projection: Array2<f32>,
    /// What it was built with.
    pub meta: IndexMeta,
}

/// The index folder of a features file: `F_index/`.
pub fn folder(features: &Path) -> PathBuf {
    side_path(features, "_index")
}

/// Build the index of `unit` (the collection's standardised unit rows)
/// and save it beside `features`.
///
/// # Shapes
/// `unit [N, F]`
pub fn build(features: &Path, unit: &Array2<f32>, opts: &IndexOptions) -> Result<IndexMeta> {
    let started = std::time::Instant::now();
    let manifest = crate::atomic::sha256_file(&side_path(features, "_manifest.json"))?;
    let mut index = Index::build(unit, opts, manifest)?;
    index.meta.build_seconds = started.elapsed().as_secs_f64();
    save(features, &index.graph, &index.projection, &index.meta)?;
    Ok(index.meta)
}

/// Write the folder under a temporary name, then put it in place of the old one.
fn save(
    features: &Path,
    graph: &Hnsw<f32, DistL2>,
    projection: &Array2<f32>,
    meta: &IndexMeta,
) -> Result<()> {
    let dest = folder(features);
    let tmp = crate::atomic::temp_path(&dest, ".partial");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    graph
        .file_dump(&tmp, BASENAME)
        .map_err(|e| anyhow::anyhow!("cannot write the index into {}: {e}", tmp.display()))?;
    write_npy(tmp.join("projection.npy"), projection)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::write(tmp.join("index.json"), serde_json::to_vec_pretty(meta)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    match std::fs::remove_dir_all(&dest) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot replace {}", dest.display()))
        }
        _ => {}
    }
    std::fs::rename(&tmp, &dest)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), dest.display()))
}

impl Index {
    /// Build an index of `unit` in memory (`manifest_sha256`: what it
    /// records of the features it was built from).
    ///
    /// # Shapes
    /// `unit [N, F]`
    pub fn build(
        unit: &Array2<f32>,
        opts: &IndexOptions,
        manifest_sha256: String,
    ) -> Result<Index> {
        let started = std::time::Instant::now();
        let (n, f) = unit.dim();
        let dims = opts.dims.clamp(1, f);
        let projection = principal_axes(unit, dims)?;
        // # Shapes: [N, F] x [F, D] -> [N, D]
        let points = project(unit, &projection);
        let graph: Hnsw<'static, f32, DistL2> = Hnsw::new(LINKS, n, 16, EF_CONSTRUCTION, DistL2 {});
        let bar = crate::progress::bar(n as u64, opts.quiet, "indexing");
        for start in (0..n).step_by(10_000) {
            let end = (start + 10_000).min(n);
            let rows: Vec<Vec<f32>> = (start..end).map(|i| points.row(i).to_vec()).collect();
            let batch: Vec<(&Vec<f32>, usize)> = rows.iter().zip(start..).collect();
            graph.parallel_insert(&batch);
            bar.inc((end - start) as u64);
        }
        bar.finish_and_clear();
        let meta = IndexMeta {
            rows: n,
            dims,
            links: LINKS,
            ef_construction: EF_CONSTRUCTION,
            manifest_sha256,
            build_seconds: started.elapsed().as_secs_f64(),
        };
        Ok(Index {
            graph,
            projection,
            meta,
        })
    }

    /// Write the index into `dir` (for measuring its size).
    pub fn dump(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        self.graph
            .file_dump(dir, BASENAME)
            .map_err(|e| anyhow::anyhow!("cannot write the index into {}: {e}", dir.display()))?;
        write_npy(dir.join("projection.npy"), &self.projection)?;
        Ok(())
    }

    /// The index beside `features`, if there is one that was built from
    /// these features (`Err` with the reason where one is there but stale
    /// or unreadable).
    pub fn open(features: &Path) -> Result<Option<Index>> {
        let dir = folder(features);
        if !dir.exists() {
            return Ok(None);
        }
        let meta: IndexMeta = serde_json::from_slice(
            &std::fs::read(dir.join("index.json"))
                .with_context(|| format!("{} has no index.json", dir.display()))?,
        )
        .with_context(|| format!("corrupt {}/index.json", dir.display()))?;
        let manifest = crate::atomic::sha256_file(&side_path(features, "_manifest.json"))?;
        if manifest != meta.manifest_sha256 {
            bail!(
                "{} was built for another version of {}; build it again with `eqae index`",
                dir.display(),
                features.display()
            );
        }
        let projection: Array2<f32> = read_npy(dir.join("projection.npy"))
            .with_context(|| format!("cannot read {}/projection.npy", dir.display()))?;
        // the graph borrows its reader for as long as it lives: the reader
        // is kept for the rest of the process
        let reader: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(&dir, BASENAME)));
        let graph = reader
            .load_hnsw::<f32, DistL2>()
            .map_err(|e| anyhow::anyhow!("cannot read the index in {}: {e}", dir.display()))?;
        if graph.get_nb_point() != meta.rows {
            bail!(
                "{} is incomplete: build it again with `eqae index`",
                dir.display()
            );
        }
        Ok(Some(Index {
            graph,
            projection,
            meta,
        }))
    }

    /// The rows the graph finds nearest to `query` (a standardised unit
    /// row), `candidates` of them, in no particular order.
    pub fn candidates(&self, query: ArrayView1<f32>, candidates: usize) -> Vec<usize> {
        let point = query.dot(&self.projection).to_vec();
        self.graph
            .search(&point, candidates, candidates.max(64))
            .into_iter()
            .map(|nb| nb.d_id)
            .collect()
    }
}

/// The `dims` leading principal axes of the rows (fitted on a sample of
/// at most [`PCA_ROWS`], evenly spaced), as the columns of a `[F, dims]`
/// matrix.
fn principal_axes(unit: &Array2<f32>, dims: usize) -> Result<Array2<f32>> {
    let step = unit.nrows().div_ceil(PCA_ROWS).max(1);
    let sample = unit.slice(s![..;step, ..]).mapv(f64::from);
    let (_, axes) = crate::eval::cluster::reduce::principal_axes(&sample)?;
    Ok(axes.slice(s![.., ..dims]).mapv(|v| v as f32))
}

/// # Shapes
/// `x [N, F]` x `p [F, D]` -> `[N, D]`, in blocks on every core
fn project(x: &Array2<f32>, p: &Array2<f32>) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros((x.nrows(), p.ncols()));
    out.axis_chunks_iter_mut(Axis(0), 4096)
        .into_par_iter()
        .enumerate()
        .for_each(|(b, mut block)| {
            let start = b * 4096;
            block.assign(&x.slice(s![start..start + block.nrows(), ..]).dot(p));
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn reranked_candidates_find_the_exact_nearest_rows() {
        // 3,000 rows in 40 groups of 32 features, noisy, unit length
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let centres = Array2::from_shape_fn((40, 32), |_| rng.gen_range(-1.0f32..1.0));
        let mut unit = Array2::from_shape_fn((3000, 32), |(i, c)| {
            centres[[i % 40, c]] + 0.4 * rng.gen_range(-1.0f32..1.0)
        });
        for mut r in unit.outer_iter_mut() {
            let n = r.dot(&r).sqrt();
            r /= n;
        }
        let opts = IndexOptions {
            dims: 16,
            quiet: true,
        };
        let index = Index::build(&unit, &opts, String::new()).unwrap();
        let mut found = 0;
        for q in (0..3000).step_by(30) {
            let row = unit.row(q);
            let mut exact: Vec<(f32, usize)> =
                (0..3000).map(|i| (-row.dot(&unit.row(i)), i)).collect();
            exact.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut approx: Vec<(f32, usize)> = index
                .candidates(row, 100)
                .into_iter()
                .map(|i| (-row.dot(&unit.row(i)), i))
                .collect();
            approx.sort_by(|a, b| a.0.total_cmp(&b.0));
            let top: Vec<usize> = exact[..10].iter().map(|p| p.1).collect();
            found += approx[..10].iter().filter(|p| top.contains(&p.1)).count();
        }
        let recall = found as f64 / 1000.0;
        assert!(recall >= 0.95, "recall@10 {recall}");
    }
}
