//! The space clustering works in: the collection's standardised unit rows,
//! whitened by PCA and scaled to unit length again (so that distances are
//! cosine distances in which every principal direction counts alike), and
//! each row's nearest neighbours there.

use anyhow::{anyhow, bail, Result};
use linfa_linalg::eigh::Eigh;
use ndarray::{s, Array2, Axis};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::nn::cpu::gemm::{column_major, matmul, row_major};

/// Rows the principal axes are fitted on (a seeded sample of larger
/// collections: the axes of 20,000 rows of a few hundred features are
/// already stable, and the covariance of every row would cost minutes).
const PCA_ROWS: usize = 20_000;

/// The principal axes of the rows of `sample`, largest variance first:
/// each axis's variance, and the axes as the columns of `[F, F]`
/// (the covariance's eigendecomposition, linfa-linalg).
pub fn principal_axes(sample: &Array2<f64>) -> Result<(Vec<f64>, Array2<f64>)> {
    let mean = sample.mean_axis(Axis(0)).expect("at least one row");
    let centred = sample - &mean;
    let covariance = centred.t().dot(&centred) / (sample.nrows() as f64 - 1.0).max(1.0);
    let (values, vectors) = covariance.eigh().map_err(|e| anyhow!("PCA failed: {e}"))?;
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    let variances = order.iter().map(|&i| values[i]).collect();
    Ok((variances, vectors.select(Axis(1), &order)))
}

/// Principal axes whitened for `rows` rows of `width` features: `dims`
/// where given, else every axis, but never more than an eighth of the
/// rows (whitening as many axes as there are rows would make every row
/// as far from every other).
pub fn whitened_axes(dims: Option<usize>, width: usize, rows: usize) -> usize {
    dims.unwrap_or(width)
        .min(width)
        .min(rows / 8)
        .max(2.min(width))
}

/// The rows projected on their `dims` leading principal axes, each axis
/// divided by its deviation, and every row scaled to unit length.
///
/// # Shapes
/// `x [N, F]` -> `[N, dims]` (fewer where axes have no variance)
pub fn whiten(x: &Array2<f32>, dims: usize, seed: u64) -> Result<Array2<f32>> {
    let (n, f) = x.dim();
    let mut rows: Vec<usize> = (0..n).collect();
    if n > PCA_ROWS {
        rows.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        rows.truncate(PCA_ROWS);
        rows.sort_unstable();
    }
    let sample = x.select(Axis(0), &rows).mapv(f64::from);
    let mean = sample.mean_axis(Axis(0)).expect("at least one row");
    let (variances, axes) = principal_axes(&sample)?;
    // axes with no variance carry no direction to whiten
    let floor = variances[0].max(0.0) * 1e-9;
    let kept: Vec<usize> = (0..variances.len())
        .take(dims)
        .filter(|&i| variances[i] > floor)
        .collect();
    if kept.is_empty() {
        bail!("every row is the same: there is nothing to cluster");
    }
    // # Shapes: projection [F, D], each axis over its deviation
    let mut projection = Array2::<f32>::zeros((f, kept.len()));
    for (c, &i) in kept.iter().enumerate() {
        let scale = 1.0 / variances[i].sqrt();
        for r in 0..f {
            projection[[r, c]] = (axes[[r, i]] * scale) as f32;
        }
    }
    let mean32 = mean.mapv(|v| v as f32);
    let mut out = Array2::<f32>::zeros((n, kept.len()));
    out.axis_chunks_iter_mut(Axis(0), 4096)
        .into_par_iter()
        .enumerate()
        .for_each(|(b, mut block)| {
            let start = b * 4096;
            let rows = x.slice(s![start..start + block.nrows(), ..]);
            // # Shapes: [B, F] x [F, D] -> [B, D]
            block.assign(&(&rows - &mean32).dot(&projection));
            for mut row in block.outer_iter_mut() {
                let norm = row.dot(&row).sqrt().max(1e-12);
                row.mapv_inplace(|v| v / norm);
            }
        });
    Ok(out)
}

/// Each row's neighbours (indices) and their distances, nearest first.
pub type Neighbours = (Vec<Vec<usize>>, Vec<Vec<f32>>);

/// The `k` nearest other rows of every row, exactly (Euclidean distance,
/// which for unit rows orders as cosine distance), nearest first, ties to
/// the lower row; one matrix product per block of rows (the gemm crate,
/// into a buffer each thread reuses), `done(rows)` after each block (for a
/// progress bar).
///
/// # Shapes
/// `x [N, D]` -> indices `N x k`, distances `N x k`
pub fn nearest(x: &Array2<f32>, k: usize, done: impl Fn(usize) + Sync) -> Neighbours {
    let (n, d) = x.dim();
    let k = k.min(n.saturating_sub(1));
    let x = x.as_standard_layout();
    let values = x.as_slice().expect("standard layout");
    let norms: Vec<f32> = x.outer_iter().map(|r| r.dot(&r)).collect();
    // a block's distances at most 256 MiB (each thread holds one)
    let block = (BLOCK_VALUES / n.max(1)).clamp(64, 512);
    let blocks: Vec<Neighbours> = (0..n)
        .step_by(block)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map_init(Vec::new, |dots, start| {
            let end = (start + block).min(n);
            // # Shapes: [B, D] x [D, N] -> [B, N]
            dots.resize((end - start) * n, 0.0);
            matmul(
                (end - start, n, d),
                dots,
                false,
                row_major(&values[start * d..end * d], d),
                column_major(values, d),
                gemm::Parallelism::None,
            );
            let found = dots
                .chunks(n)
                .enumerate()
                .map(|(b, row)| k_smallest(row, start + b, &norms, k))
                .unzip();
            done(end - start);
            found
        })
        .collect();
    let mut ids = Vec::with_capacity(n);
    let mut dist = Vec::with_capacity(n);
    for (i, d) in blocks {
        ids.extend(i);
        dist.extend(d);
    }
    (ids, dist)
}

/// Values in one block of distances of [`nearest`].
const BLOCK_VALUES: usize = 64 << 20;

/// A squared distance and a row, ordered by distance, then row.
#[derive(PartialEq)]
struct Near(f32, usize);

impl Eq for Near {}

impl PartialOrd for Near {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Near {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

/// The `k` rows other than `i` nearest to row `i`, from its dot products
/// with every row, in one pass that keeps the `k` best in a heap. Most
/// rows are farther than the `k`-th best so far: a plain comparison with
/// its distance turns them away before the heap is touched (rows scanned
/// in order, so a row at the same distance as the `k`-th, being higher,
/// never enters).
fn k_smallest(dots: &[f32], i: usize, norms: &[f32], k: usize) -> (Vec<usize>, Vec<f32>) {
    let mut best: std::collections::BinaryHeap<Near> =
        std::collections::BinaryHeap::with_capacity(k + 1);
    let mut worst = f32::INFINITY;
    if k > 0 {
        let ni = norms[i];
        for (j, (&dot, &nj)) in dots.iter().zip(norms).enumerate() {
            let d = (ni + nj - 2.0 * dot).max(0.0);
            if d >= worst || j == i {
                continue;
            }
            best.push(Near(d, j));
            if best.len() > k {
                best.pop();
            }
            if best.len() == k {
                worst = best.peek().expect("k > 0").0;
            }
        }
    }
    let sorted = best.into_sorted_vec();
    (
        sorted.iter().map(|p| p.1).collect(),
        sorted.iter().map(|p| p.0.sqrt()).collect(),
    )
}

/// Where UMAP's layout starts: the first `dims` whitened coordinates
/// (the leading principal axes, as umap-learn's `init="pca"`), scaled
/// so that the largest is 10.
///
/// # Shapes
/// `x [N, D]` -> `[N * dims]`, row-major
pub fn start_layout(x: &Array2<f32>, dims: usize) -> Vec<f32> {
    let mut y = Array2::<f32>::zeros((x.nrows(), dims));
    let shared = dims.min(x.ncols());
    y.slice_mut(s![.., ..shared])
        .assign(&x.slice(s![.., ..shared]));
    let top = y.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    y.mapv_inplace(|v| v * 10.0 / top);
    y.into_raw_vec_and_offset().0
}
