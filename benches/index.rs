//! The approximate index of `eqae index` at scale: build time, size on
//! disk, peak memory, queries per second and recall@10 against exact
//! search, on a collection made from real features.
//!
//!     eqae embed --run models/mnist_d12_gram --split train --head gram --out tr.npy
//!     eqae embed --run models/mnist_d12_gram --split test --head gram --out te.npy
//!     EQAE_INDEX_FEATURES=tr.npy,te.npy EQAE_INDEX_ROWS=1000000 cargo bench --bench index
//!
//! The collection's rows are the given features standardised and scaled
//! to unit length (as `eqae search` compares them), repeated up to
//! `EQAE_INDEX_ROWS` with Gaussian noise of norm about 0.3 added to each
//! copy and the row scaled to unit length again, so that no two rows are
//! the same. 1,000 queries are rows drawn at random with fresh noise of
//! the same size (not in the collection). Without the variable it runs on
//! 20,000 random unit rows of 64 features, so that it works anywhere.

use std::time::Instant;

use eqae::eval::index::{Index, IndexOptions};
use ndarray::{s, Array2, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

const QUERIES: usize = 1_000;
const K: usize = 10;

fn main() {
    let rows: usize = std::env::var("EQAE_INDEX_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let base = match std::env::var("EQAE_INDEX_FEATURES") {
        Ok(list) => standardised_units(&list),
        Err(_) => Array2::from_shape_fn((rows, 64), |_| rng.gen_range(-1.0f32..1.0)),
    };
    let width = base.ncols();
    let noise = 0.3 / (width as f32).sqrt();
    let started = Instant::now();
    let unit = noisy_copies(&base, rows, noise, &mut rng);
    eprintln!(
        "{rows} rows of {width} features made in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    drop(base);
    let started = Instant::now();
    let index = Index::build(
        &unit,
        &IndexOptions {
            dims: 128,
            quiet: false,
        },
        "bench".into(),
    )
    .expect("index");
    let build = started.elapsed().as_secs_f64();
    let dir = tempfile::tempdir().unwrap();
    index.dump(dir.path()).unwrap();
    let bytes: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let picks: Vec<usize> = (0..QUERIES).map(|_| rng.gen_range(0..rows)).collect();
    let queries = noisy_copies(&unit.select(Axis(0), &picks), QUERIES, noise, &mut rng);
    let started = Instant::now();
    let approx: Vec<Vec<usize>> = (0..QUERIES)
        .into_par_iter()
        .map(|q| {
            let row = queries.row(q);
            let mut c: Vec<(f32, usize)> = index
                .candidates(row, 100)
                .into_iter()
                .map(|i| (-row.dot(&unit.row(i)), i))
                .collect();
            c.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            c.into_iter().take(K).map(|p| p.1).collect()
        })
        .collect();
    let approx_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let exact = exact_top(&unit, &queries);
    let exact_s = started.elapsed().as_secs_f64();
    let found: usize = approx
        .iter()
        .zip(&exact)
        .map(|(a, e)| a.iter().filter(|i| e.contains(i)).count())
        .sum();
    let recall = found as f64 / (QUERIES * K) as f64;
    let peak = eqae::progress::peak_rss_mib().unwrap_or(f64::NAN);
    println!(
        "rows,features,index_dims,build_s,index_mib,peak_rss_mib,approx_qps,exact_qps,recall_at_10"
    );
    println!(
        "{rows},{width},{},{build:.1},{:.0},{peak:.0},{:.0},{:.1},{recall:.4}",
        index.meta.dims,
        bytes as f64 / (1 << 20) as f64,
        QUERIES as f64 / approx_s,
        QUERIES as f64 / exact_s,
    );
}

/// The rows of the listed `.npy` files, standardised by their column
/// means and deviations and scaled to unit length.
fn standardised_units(list: &str) -> Array2<f32> {
    let parts: Vec<Array2<f32>> = list
        .split(',')
        .map(|p| ndarray_npy::read_npy(p).unwrap_or_else(|e| panic!("{p}: {e}")))
        .collect();
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    let mut x = ndarray::concatenate(Axis(0), &views).unwrap();
    let mean = x.mean_axis(Axis(0)).unwrap();
    let std = x
        .std_axis(Axis(0), 0.0)
        .mapv(|v| if v > 1e-12 { v } else { 1.0 });
    x -= &mean;
    x /= &std;
    for mut r in x.outer_iter_mut() {
        let n = r.dot(&r).sqrt().max(1e-12);
        r /= n;
    }
    x
}

/// `rows` rows: row `i` is base row `i % base.rows` plus Gaussian noise of
/// deviation `noise` per feature, scaled to unit length.
fn noisy_copies(base: &Array2<f32>, rows: usize, noise: f32, rng: &mut ChaCha8Rng) -> Array2<f32> {
    let width = base.ncols();
    let seeds: Vec<u64> = (0..rows.div_ceil(4096)).map(|_| rng.gen()).collect();
    let mut out = Array2::<f32>::zeros((rows, width));
    out.axis_chunks_iter_mut(Axis(0), 4096)
        .into_par_iter()
        .zip(seeds)
        .enumerate()
        .for_each(|(b, (mut block, seed))| {
            let mut r = ChaCha8Rng::seed_from_u64(seed);
            for (j, mut row) in block.outer_iter_mut().enumerate() {
                let i = b * 4096 + j;
                row.assign(&base.row(i % base.nrows()));
                for v in row.iter_mut() {
                    // Box-Muller
                    let (u, w): (f32, f32) = (r.gen_range(1e-7..1.0), r.gen());
                    *v += noise * (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * w).cos();
                }
                let n = row.dot(&row).sqrt().max(1e-12);
                row /= n;
            }
        });
    out
}

/// The exact `K` nearest rows of each query (largest dot product).
fn exact_top(unit: &Array2<f32>, queries: &Array2<f32>) -> Vec<Vec<usize>> {
    let mut out = Vec::with_capacity(queries.nrows());
    for start in (0..queries.nrows()).step_by(100) {
        let end = (start + 100).min(queries.nrows());
        // # Shapes: [100, F] x [F, N] -> [100, N]
        let dots = queries.slice(s![start..end, ..]).dot(&unit.t());
        for row in dots.outer_iter() {
            let mut order: Vec<(f32, usize)> = row.iter().map(|&d| -d).zip(0..).collect();
            order.select_nth_unstable_by(K - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            out.push(order[..K].iter().map(|p| p.1).collect());
        }
    }
    out
}
