//! UMAP (McInnes, Healy and Melville, 2018) from a nearest-neighbour
//! graph: the fuzzy neighbour graph, then a seeded layout in a few
//! dimensions where clusters are compact enough for k-means.
//!
//! The steps follow umap-learn's defaults (local connectivity 1, fuzzy
//! union, 5 negative samples per edge sample, learning rate 1 falling to
//! 0, gradients clipped at 4). Written here rather than taken from the
//! `umap-rs` crate because that crate's layout draws its negative samples
//! from an unseeded thread-local generator on several threads at once, so
//! no two runs give the same clusters; this layout runs on one thread
//! from one seeded generator and repeats bit for bit.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Parameters of the curve `1 / (1 + a d^(2b))` for `min_dist = 0`,
/// `spread = 1` (umap-learn's `find_ab_params(1.0, 0.0)`): the layout
/// packs the members of a cluster together, as clustering wants.
const CURVE_A: f32 = 1.932_808_4;
const CURVE_B: f32 = 0.790_495;

/// Negative samples per positive edge sample.
const NEGATIVE_RATE: usize = 5;

/// The symmetric fuzzy neighbour graph, as edge lists (each undirected
/// edge listed once per direction).
pub struct FuzzyGraph {
    /// Rows.
    pub n: usize,
    /// `(from, to, weight)`, sorted by `from` then `to`.
    pub edges: Vec<(u32, u32, f32)>,
}

/// The fuzzy graph of a k-nearest-neighbour list.
///
/// # Shapes
/// `neighbours [N, k]` (indices, nearest first, self excluded) and
/// `distances [N, k]` -> a graph of `N` vertices
pub fn fuzzy_graph(neighbours: &[Vec<usize>], distances: &[Vec<f32>]) -> FuzzyGraph {
    let n = neighbours.len();
    // directed memberships: exp(-(d - rho) / sigma), 1 for the nearest
    let mut directed: Vec<(u32, u32, f32)> = Vec::with_capacity(n * 16);
    for (i, (nb, d)) in neighbours.iter().zip(distances).enumerate() {
        let (rho, sigma) = smooth_distance(d);
        for (&j, &dj) in nb.iter().zip(d) {
            if j == i {
                continue;
            }
            let w = if dj <= rho || sigma <= 0.0 {
                1.0
            } else {
                (-(dj - rho) / sigma).exp()
            };
            directed.push((i as u32, j as u32, w));
        }
    }
    // fuzzy union: w + w' - w w', over both directions of each pair
    let mut both: Vec<(u32, u32, f32, f32)> = Vec::with_capacity(directed.len() * 2);
    for &(i, j, w) in &directed {
        both.push((i, j, w, 0.0));
        both.push((j, i, 0.0, w));
    }
    both.sort_unstable_by_key(|e| (e.0, e.1));
    let mut edges: Vec<(u32, u32, f32)> = Vec::with_capacity(both.len());
    let mut k = 0;
    while k < both.len() {
        let (i, j) = (both[k].0, both[k].1);
        let (mut out, mut back) = (0f32, 0f32);
        while k < both.len() && (both[k].0, both[k].1) == (i, j) {
            out = out.max(both[k].2);
            back = back.max(both[k].3);
            k += 1;
        }
        let w = out + back - out * back;
        if w > 0.0 {
            edges.push((i, j, w));
        }
    }
    FuzzyGraph { n, edges }
}

/// `rho` (distance to the nearest neighbour) and `sigma` such that the
/// memberships of the `k` neighbours sum to `log2 k` (binary search, as
/// umap-learn's `smooth_knn_dist`).
fn smooth_distance(d: &[f32]) -> (f32, f32) {
    let k = d.len();
    if k == 0 {
        return (0.0, 1.0);
    }
    let rho = d.iter().copied().find(|&v| v > 0.0).unwrap_or(0.0);
    let target = (k as f32).log2().max(f32::MIN_POSITIVE);
    let (mut lo, mut hi, mut mid) = (0f32, f32::INFINITY, 1f32);
    for _ in 0..64 {
        let total: f32 = d
            .iter()
            .map(|&v| {
                let x = v - rho;
                if x > 0.0 {
                    (-x / mid).exp()
                } else {
                    1.0
                }
            })
            .sum();
        if (total - target).abs() < 1e-5 {
            break;
        }
        if total > target {
            hi = mid;
            mid = (lo + hi) / 2.0;
        } else {
            lo = mid;
            mid = if hi.is_infinite() {
                mid * 2.0
            } else {
                (lo + hi) / 2.0
            };
        }
    }
    // never below a thousandth of the mean distance (umap-learn's floor)
    let mean = d.iter().sum::<f32>() / k as f32;
    (rho, mid.max(1e-3 * mean))
}

/// How to lay out the graph.
pub struct LayoutOptions {
    /// Dimensions of the layout.
    pub dims: usize,
    /// Passes over the edges (umap-learn: 500 up to 10,000 rows, 200 above).
    pub epochs: usize,
    /// Seed of the negative samples.
    pub seed: u64,
}

/// LOBPCG's iteration limit for a graph of `n` vertices. Each iteration
/// costs time in proportion to the rows, and the layout refines the
/// start, so beyond 100,000 rows the best eigenvectors found in 100
/// iterations serve.
fn spectral_iterations(n: usize) -> usize {
    if n > 100_000 {
        100
    } else {
        500
    }
}

/// UMAP's spectral start: the rows' coordinates in the `dims` leading
/// non-trivial eigenvectors of the graph's normalised adjacency
/// `D^-1/2 W D^-1/2` (the smallest of its normalised Laplacian), each
/// scaled to 0..10, as umap-learn starts. Clusters that are apart in the
/// graph start apart; a start from principal axes can put them on top of
/// each other. None when the eigenvectors do not converge (the caller then
/// starts from principal axes).
///
/// # Shapes
/// a graph of `N` vertices -> `[N * dims]`
pub fn spectral_start(graph: &FuzzyGraph, dims: usize, seed: u64) -> Option<Vec<f32>> {
    use linfa_linalg::lobpcg::{lobpcg, Order};
    use ndarray::{Array1, Array2, Axis};
    let n = graph.n;
    if n < dims + 2 || graph.edges.is_empty() {
        return None;
    }
    let mut degree = vec![0f64; n];
    for &(i, _, w) in &graph.edges {
        degree[i as usize] += f64::from(w);
    }
    if degree.iter().any(|&d| d <= 0.0) {
        return None;
    }
    let scale: Vec<f64> = degree.iter().map(|d| 1.0 / d.sqrt()).collect();
    // each edge's entry of D^-1/2 W D^-1/2, computed once
    let entries: Vec<(usize, usize, f64)> = graph
        .edges
        .iter()
        .map(|&(i, j, w)| {
            let (i, j) = (i as usize, j as usize);
            (i, j, f64::from(w) * scale[i] * scale[j])
        })
        .collect();
    // y = D^-1/2 W D^-1/2 x, over the edges, on plain slices (LOBPCG
    // calls this hundreds of times; at 500,000 rows there are millions of
    // edges)
    let product = |x: ndarray::ArrayView2<f64>| {
        let width = x.ncols();
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let mut y = vec![0f64; xs.len()];
        for &(i, j, c) in &entries {
            let (yi, xj) = (&mut y[i * width..][..width], &xs[j * width..][..width]);
            for (a, &b) in yi.iter_mut().zip(xj) {
                *a += c * b;
            }
        }
        Array2::from_shape_vec((x.nrows(), width), y).expect("same shape as x")
    };
    // the trivial eigenvector (eigenvalue 1), kept out of the search
    let trivial = Array1::from_iter(degree.iter().map(|d| d.sqrt()));
    let trivial = (&trivial / trivial.dot(&trivial).sqrt()).insert_axis(Axis(1));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let start = Array2::from_shape_fn((n, dims), |_| rng.gen_range(-1.0..1.0));
    let constraint = Some(trivial.view());
    let found = match lobpcg(
        product,
        start,
        |_| {},
        constraint,
        1e-5,
        spectral_iterations(n),
        Order::Largest,
    ) {
        Ok(r) => r,
        Err((_, Some(r))) => r,
        Err(_) => return None,
    };
    let mut vectors = found.eigvecs;
    if vectors.ncols() != dims || vectors.iter().any(|v| !v.is_finite()) {
        return None;
    }
    for mut column in vectors.columns_mut() {
        let lo = column.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = column.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let span = (hi - lo).max(1e-12);
        column.mapv_inplace(|v| 10.0 * (v - lo) / span);
    }
    Some(vectors.iter().map(|&v| v as f32).collect())
}

/// Optimise `init` (`[N, dims]`, row-major) so that neighbours in the
/// graph are near and other rows far (UMAP's cross-entropy by stochastic
/// gradient descent with negative sampling). `tick` is called once per
/// epoch (a progress bar).
///
/// # Shapes
/// `init [N * dims]` -> `[N * dims]`
pub fn layout(
    graph: &FuzzyGraph,
    mut y: Vec<f32>,
    opts: &LayoutOptions,
    mut tick: impl FnMut(),
) -> Vec<f32> {
    let dims = opts.dims;
    let n_vertices = graph.n;
    if n_vertices < 2 || graph.edges.is_empty() {
        return y;
    }
    let max_w = graph.edges.iter().map(|e| e.2).fold(0f32, f32::max);
    // edges too weak to be sampled once in the whole layout are dropped
    let kept: Vec<(usize, usize, f32)> = graph
        .edges
        .iter()
        .filter(|e| e.2 >= max_w / opts.epochs as f32)
        .map(|&(i, j, w)| (i as usize, j as usize, max_w / w))
        .collect();
    let mut next = vec![0f32; kept.len()];
    for (e, &(_, _, every)) in kept.iter().enumerate() {
        next[e] = every;
    }
    let mut next_negative: Vec<f32> = kept
        .iter()
        .map(|&(_, _, every)| every / NEGATIVE_RATE as f32)
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let (a, b) = (CURVE_A, CURVE_B);
    let mut diff = vec![0f32; dims];
    for epoch in 0..opts.epochs {
        let alpha = 1.0 - epoch as f32 / opts.epochs as f32;
        let now = epoch as f32;
        for (e, &(i, j, every)) in kept.iter().enumerate() {
            if next[e] > now {
                continue;
            }
            // attraction along the edge
            let d2 = distance2(&y, i, j, dims, &mut diff);
            let coeff = if d2 > 0.0 {
                -2.0 * a * b * d2.powf(b - 1.0) / (a * d2.powf(b) + 1.0)
            } else {
                0.0
            };
            for (c, &dc) in diff.iter().enumerate() {
                let g = (coeff * dc).clamp(-4.0, 4.0) * alpha;
                y[i * dims + c] += g;
                y[j * dims + c] -= g;
            }
            next[e] += every;
            // repulsion from random rows
            let every_negative = every / NEGATIVE_RATE as f32;
            let draws = ((now - next_negative[e]) / every_negative).floor().max(0.0) as usize;
            for _ in 0..draws {
                let k = rng.gen_range(0..n_vertices);
                if k == i {
                    continue;
                }
                let d2 = distance2(&y, i, k, dims, &mut diff);
                let coeff = if d2 > 0.0 {
                    2.0 * b / ((0.001 + d2) * (a * d2.powf(b) + 1.0))
                } else {
                    0.0
                };
                if coeff > 0.0 {
                    for (c, &dc) in diff.iter().enumerate() {
                        y[i * dims + c] += (coeff * dc).clamp(-4.0, 4.0) * alpha;
                    }
                }
            }
            next_negative[e] += draws as f32 * every_negative;
        }
        tick();
    }
    y
}

/// Squared distance between rows `i` and `j` of `y`; `diff` gets `y_i - y_j`.
fn distance2(y: &[f32], i: usize, j: usize, dims: usize, diff: &mut [f32]) -> f32 {
    let mut s = 0.0;
    for c in 0..dims {
        let d = y[i * dims + c] - y[j * dims + c];
        diff[c] = d;
        s += d * d;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memberships_sum_to_log2_k() {
        let d = [0.5f32, 0.7, 0.9, 1.4, 2.0, 2.2, 3.0, 3.1];
        let (rho, sigma) = smooth_distance(&d);
        assert_eq!(rho, 0.5);
        let total: f32 = d.iter().map(|&v| (-(v - rho).max(0.0) / sigma).exp()).sum();
        assert!((total - 3.0).abs() < 1e-3, "{total}");
    }

    #[test]
    fn fuzzy_union_is_symmetric() {
        let nb = vec![vec![1, 2], vec![0, 2], vec![1, 0]];
        let d = vec![vec![1.0, 2.0], vec![1.0, 1.5], vec![1.5, 2.0]];
        let g = fuzzy_graph(&nb, &d);
        for &(i, j, w) in &g.edges {
            let back = g.edges.iter().find(|e| e.0 == j && e.1 == i).unwrap();
            assert!((back.2 - w).abs() < 1e-7);
            assert!(w > 0.0 && w <= 1.0);
        }
    }
}
