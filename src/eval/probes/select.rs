//! Settings chosen for the rows a probe is given: stratified k-fold
//! cross-validation on those training rows alone (never the test rows).
//!
//! Few labels want other settings than many: whitening a 1,072-wide
//! covariance from 100 rows is mostly noise, and the penalty that is right
//! for 54,000 rows overfits 100. So the logistic probe's L2 penalty and
//! whitening, kNN's k, and (up to [`MLP_CV_MAX_ROWS`] rows) the MLP's
//! batch and weight decay are chosen per fit on a small grid. Above
//! [`CV_MAX_ROWS`] rows the settings validated once at full scale
//! (`docs/probes.md`) are kept: there a grid would cost many full fits
//! (about 80 s each on 54,000 x 1,072 features on 2 cores), and those
//! settings were chosen for that size.

use anyhow::Result;
use ndarray::{Array2, Axis};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::accuracy;
use super::knn::{knn_predict, KnnProbe};
use super::logistic::{LogisticProbe, LogisticSettings, LogisticSpace};
use super::mlp::{MlpProbe, MlpSettings};
use super::space::PrincipalAxes;

/// Most training rows that get cross-validated settings.
pub const CV_MAX_ROWS: usize = 12_000;

/// Every candidate of the logistic probe ([`logistic_grid_for`] few rows).
pub fn logistic_grid() -> Vec<LogisticSettings> {
    logistic_grid_for(0)
}

/// Folds of the cross-validation.
pub const FOLDS: usize = 3;

/// The L2 penalties per training row tried (strongest first: on a tie the
/// stronger penalty wins).
pub const L2_GRID: [f64; 5] = [3e-1, 1e-1, 1e-2, 2e-3, 3e-4];

/// The spaces tried. (Full whitening, the choice for all 54,000 rows, lost
/// by 10 points to the others at 1,000 rows in every fold tried.)
pub const SPACES: [LogisticSpace; 2] = [LogisticSpace::ShrunkWhitened, LogisticSpace::Standardised];

/// The k tried for kNN (on a tie the smaller k wins).
pub const K_GRID: [usize; 6] = [1, 3, 5, 10, 20, 50];

/// Rows above which only the shrunk-whitened space is tried (on the D12
/// Gram features with 10,000 labels the standardised space lost by 1.8
/// points in cross-validation, at twice the cost).
pub const ONE_SPACE_ROWS: usize = 5_000;

/// The logistic probe's candidates for `rows` training rows: every penalty
/// of [`L2_GRID`] in every space of [`SPACES`] (above [`ONE_SPACE_ROWS`],
/// in the first space only).
pub fn logistic_grid_for(rows: usize) -> Vec<LogisticSettings> {
    let spaces = if rows > ONE_SPACE_ROWS {
        1
    } else {
        SPACES.len()
    };
    SPACES[..spaces]
        .iter()
        .copied()
        .flat_map(|space| {
            L2_GRID.into_iter().map(move |l2| LogisticSettings {
                l2,
                space,
                ..LogisticSettings::default()
            })
        })
        .collect()
}

/// Stratified folds of `labels`' indices: each class's rows shuffled
/// (seeded) and dealt round-robin, so every fold holds every class that
/// has at least `folds` rows.
pub fn stratified_folds(labels: &[usize], folds: usize, seed: u64) -> Vec<Vec<usize>> {
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l].push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = vec![Vec::new(); folds];
    let mut next = 0;
    for rows in &mut by_class {
        rows.shuffle(&mut rng);
        for &r in rows.iter() {
            out[next % folds].push(r);
            next += 1;
        }
    }
    for f in &mut out {
        f.sort_unstable();
    }
    out
}

/// The rows of `x` and labels at `rows`.
fn take(x: &Array2<f64>, y: &[usize], rows: &[usize]) -> (Array2<f64>, Vec<usize>) {
    (
        x.select(Axis(0), rows),
        rows.iter().map(|&i| y[i]).collect(),
    )
}

/// Each fold as (fit rows, held-out rows).
fn splits(n: usize, folds: &[Vec<usize>]) -> Vec<(Vec<usize>, Vec<usize>)> {
    folds
        .iter()
        .map(|held| {
            let mut inside = vec![true; n];
            for &r in held {
                inside[r] = false;
            }
            let fit: Vec<usize> = (0..n).filter(|&r| inside[r]).collect();
            (fit, held.clone())
        })
        .filter(|(fit, held)| !fit.is_empty() && !held.is_empty())
        .collect()
}

/// A choice and what it was chosen from.
#[derive(Clone, Debug)]
pub struct Chosen<T> {
    /// The setting with the best mean held-out accuracy.
    pub best: T,
    /// Every candidate with its mean held-out accuracy (empty when the
    /// default was kept without cross-validation).
    pub scores: Vec<(T, f64)>,
}

/// Whether `rows` training rows of `labels` get cross-validated settings:
/// not too many rows, and at least [`FOLDS`] rows in every class.
pub fn cross_validates(labels: &[usize]) -> bool {
    if labels.len() > CV_MAX_ROWS || labels.is_empty() {
        return false;
    }
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    let mut counts = vec![0usize; classes];
    for &l in labels {
        counts[l] += 1;
    }
    counts.iter().all(|&c| c == 0 || c >= FOLDS)
}

/// The logistic probe's settings for standardised training rows `x`:
/// the best of [`logistic_grid`] by stratified [`FOLDS`]-fold
/// cross-validation on `x` alone, or the default above [`CV_MAX_ROWS`].
pub fn choose_logistic(
    x: &Array2<f64>,
    y: &[usize],
    seed: u64,
) -> Result<Chosen<LogisticSettings>> {
    if !cross_validates(y) {
        return Ok(Chosen {
            best: LogisticSettings::default(),
            scores: Vec::new(),
        });
    }
    cross_validate(
        x,
        y,
        logistic_grid_for(y.len()),
        seed,
        |(xf, yf), xh, grid| {
            // one eigendecomposition per fold, shared by the candidates
            let axes = PrincipalAxes::fit(xf)?;
            grid.iter()
                .map(|settings| {
                    let w = settings.space.whitener(&axes);
                    Ok(LogisticProbe::fit_whitened(xf, yf, *settings, w)?.predict(xh))
                })
                .collect()
        },
    )
}

/// `probe` with its k chosen by cross-validation on its own training rows
/// ([`choose_k`], starting from [`KnnProbe::K`]).
pub fn with_chosen_k(probe: KnnProbe, seed: u64) -> KnnProbe {
    let (train, labels, classes) = probe.training();
    let k = choose_k(train, labels, classes, KnnProbe::K, seed).best;
    probe.with_k(k)
}

/// kNN's k for rows `x` already in the probe's space (whitened, unit
/// length): the best of [`K_GRID`] by the same cross-validation, or
/// `default` above [`CV_MAX_ROWS`].
pub fn choose_k(
    x: &Array2<f64>,
    y: &[usize],
    classes: usize,
    default: usize,
    seed: u64,
) -> Chosen<usize> {
    if !cross_validates(y) {
        return Chosen {
            best: default,
            scores: Vec::new(),
        };
    }
    let chosen = cross_validate(x, y, K_GRID.to_vec(), seed, |(xf, yf), xh, grid| {
        Ok(grid
            .iter()
            .map(|&k| knn_predict(xf, yf, xh, k.min(yf.len()), classes))
            .collect())
    });
    chosen.expect("kNN cannot fail")
}

/// Most training rows for which the MLP's settings are cross-validated
/// (each candidate trains a network per fold; above this the settings
/// validated at full scale are kept).
pub const MLP_CV_MAX_ROWS: usize = 2_000;

/// The MLP's candidates for few rows: the full-scale settings, and
/// batches of 64 (a batch of 512 is one step per epoch on 100 rows) with
/// weight decays from the full-scale one to strong.
pub fn mlp_grid() -> Vec<MlpSettings> {
    let base = MlpSettings::default();
    let mut grid = vec![base];
    grid.extend(
        [1e-4, 1e-2, 1e-1]
            .into_iter()
            .map(|weight_decay| MlpSettings {
                batch: 64,
                weight_decay,
                ..base
            }),
    );
    grid
}

/// The MLP probe's settings for standardised rows `x`: the best of
/// [`mlp_grid`] by the same cross-validation up to [`MLP_CV_MAX_ROWS`]
/// rows, the default above.
pub fn choose_mlp(x: &Array2<f64>, y: &[usize], classes: usize, seed: u64) -> Chosen<MlpSettings> {
    if y.len() > MLP_CV_MAX_ROWS || !cross_validates(y) {
        return Chosen {
            best: MlpSettings::default(),
            scores: Vec::new(),
        };
    }
    let chosen = cross_validate(x, y, mlp_grid(), seed, |(xf, yf), xh, grid| {
        Ok(grid
            .iter()
            .map(|settings| MlpProbe::fit_with(xf, yf, classes, seed, *settings).predict(xh))
            .collect())
    });
    chosen.expect("the MLP cannot fail")
}

/// Stratified [`FOLDS`]-fold cross-validation of the candidates `grid` on
/// rows `x` with labels `y`: `predict((fit rows, their labels), held-out
/// rows, grid)` gives each candidate's predicted classes of the held-out
/// rows; the candidate with the best mean accuracy wins.
fn cross_validate<T: Clone>(
    x: &Array2<f64>,
    y: &[usize],
    grid: Vec<T>,
    seed: u64,
    mut predict: impl FnMut((&Array2<f64>, &[usize]), &Array2<f64>, &[T]) -> Result<Vec<Vec<usize>>>,
) -> Result<Chosen<T>> {
    let mut totals = vec![0.0; grid.len()];
    let folds = splits(y.len(), &stratified_folds(y, FOLDS, seed));
    for (fit, held) in &folds {
        let (xf, yf) = take(x, y, fit);
        let (xh, yh) = take(x, y, held);
        for (total, predicted) in totals.iter_mut().zip(predict((&xf, &yf), &xh, &grid)?) {
            *total += accuracy(&predicted, &yh);
        }
    }
    Ok(best_of(grid, totals, folds.len()))
}

/// The first candidate with the largest total.
fn best_of<T: Clone>(grid: Vec<T>, totals: Vec<f64>, folds: usize) -> Chosen<T> {
    let folds = folds.max(1) as f64;
    let mut best = 0;
    for (i, t) in totals.iter().enumerate() {
        if *t > totals[best] + 1e-12 {
            best = i;
        }
    }
    Chosen {
        best: grid[best].clone(),
        scores: grid
            .into_iter()
            .zip(totals)
            .map(|(g, t)| (g, t / folds))
            .collect(),
    }
}
