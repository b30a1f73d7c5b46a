//! The probes' time and the logistic probe's settings, on real features.
//!
//!     eqae embed --run runs/table1-full/d4_gram-s0 --split train --out f_train.npy
//!     eqae embed --run runs/table1-full/d4_gram-s0 --split test --out f_test.npy
//!     EQAE_PROBE_FEATURES=f cargo bench --bench probes
//!
//! (`f` is the common prefix: `f_train.npy`, `f_train_labels.npy`,
//! `f_test.npy`, `f_test_labels.npy`.) Without the variable it runs on a
//! synthetic mixture of 20,000 x 256 so that it works anywhere.
//!
//! Part 1 chooses the logistic probe's settings on a validation split: 10%
//! of the training rows (stratified) held out, the test set untouched. It
//! prints the validation accuracy and seconds of each L2 penalty and
//! iteration cap, with and without whitening; a setting has converged
//! when doubling its iterations no longer changes the accuracy.
//!
//! Part 2 times every probe with the default settings on all training rows
//! and scores the test rows, against linfa-logistic's settings before
//! (L2 1e-3, 150 iterations, not whitened).
//!
//! Part 3 chooses kNN's settings on the same validation split: k, and the
//! space the distances are measured in (standardised features, raw
//! features, either scaled to unit length, i.e. cosine similarity, the
//! standardised features projected on their top principal axes, or
//! whitened along all of them, with and without the Ledoit-Wolf shrinkage
//! of the probe, then scaled to unit length).
//!
//! Part 5 checks kNN's space on label subsets of the validation split's fit
//! rows (100, 1,000 and 10,000, stratified, 3 draws each): the whitening is
//! fitted on the labelled rows alone, as in the label-efficiency study.
//!
//! Part 4 chooses the MLP probe's settings on the same validation split:
//! hidden width, dropout, batch, weight decay and patience, with seconds.
//!
//! `EQAE_PROBE_PART=1` to `5` runs one part only.

use std::time::Instant;

use eqae::eval::probes::knn::unit_rows;
use eqae::eval::probes::{
    accuracy, kmeans, knn_predict, FittedProbes, KnnProbe, LogisticProbe, LogisticSettings,
    LogisticSpace, MlpProbe, MlpSettings, PrincipalAxes, Standardizer,
};
use eqae::experiment::invariance::stratified_subset;
use ndarray::{Array1, Array2, Axis};
use ndarray_npy::read_npy;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Split {
    x: Array2<f32>,
    y: Vec<usize>,
}

fn load(prefix: &str, split: &str) -> Split {
    let path = format!("{prefix}_{split}.npy");
    let x: Array2<f32> = read_npy(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let path = format!("{prefix}_{split}_labels.npy");
    let y: Array1<i64> = read_npy(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Split {
        x,
        y: y.iter().map(|&v| v as usize).collect(),
    }
}

/// Ten Gaussian classes in 256 dimensions whose means differ in a 32-dimensional
/// subspace, with correlated noise.
fn synthetic(rows: usize, seed: u64) -> Split {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (dims, classes) = (256, 10);
    let means = Array2::from_shape_fn((classes, 32), |_| rng.gen_range(-1.0..1.0f32));
    let mix = Array2::from_shape_fn((32, dims), |_| rng.gen_range(-1.0..1.0f32));
    let mut x = Array2::zeros((rows, dims));
    let mut y = Vec::with_capacity(rows);
    for (i, mut row) in x.axis_iter_mut(Axis(0)).enumerate() {
        let c = i % classes;
        let latent = means.row(c).mapv(|m| m + rng.gen_range(-1.5..1.5f32));
        row.assign(&latent.dot(&mix));
        row.mapv_inplace(|v| v + rng.gen_range(-0.5..0.5f32));
        y.push(c);
    }
    Split { x, y }
}

fn rows(s: &Split, idx: &[usize]) -> Split {
    Split {
        x: s.x.select(Axis(0), idx),
        y: idx.iter().map(|&i| s.y[i]).collect(),
    }
}

/// The training rows split into (fit, validation): 10% held out,
/// stratified, the same for every part.
fn validation_split(train: &Split) -> (Split, Split) {
    let held = stratified_subset(&train.y, train.y.len() / 10, 0);
    let mut is_held = vec![false; train.y.len()];
    held.iter().for_each(|&i| is_held[i] = true);
    let kept: Vec<usize> = (0..train.y.len()).filter(|&i| !is_held[i]).collect();
    (rows(train, &kept), rows(train, &held))
}

/// Accuracy on `eval` of the logistic probe fitted on `fit`, and the
/// seconds of fit and scoring.
fn timed_logistic(
    settings: LogisticSettings,
    (fit_x, fit_y): (&Array2<f64>, &[usize]),
    (eval_x, eval_y): (&Array2<f64>, &[usize]),
) -> (f64, f64) {
    let t = Instant::now();
    let probe = LogisticProbe::fit_with(fit_x, fit_y, settings).expect("fit");
    let acc = accuracy(&probe.predict(eval_x), eval_y);
    (acc, t.elapsed().as_secs_f64())
}

/// Predictions of the `k` nearest rows of `fit` for every row of `eval`,
/// for each k in `ks` (one distance computation for all of them).
fn knn_for_each_k(
    fit: &Array2<f64>,
    fit_y: &[usize],
    eval: &Array2<f64>,
    ks: &[usize],
    classes: usize,
) -> Vec<Vec<usize>> {
    let fit_sq: Array1<f64> = fit.map_axis(Axis(1), |r| r.dot(&r));
    let mut preds = vec![Vec::with_capacity(eval.nrows()); ks.len()];
    let kmax = ks.iter().copied().max().unwrap_or(1);
    for start in (0..eval.nrows()).step_by(256) {
        let rows = eval.slice(ndarray::s![start..(start + 256).min(eval.nrows()), ..]);
        let d = &fit_sq - &(rows.dot(&fit.t()) * 2.0);
        for row in d.rows() {
            let mut idx: Vec<usize> = (0..row.len()).collect();
            idx.select_nth_unstable_by(kmax - 1, |&a, &b| row[a].total_cmp(&row[b]));
            idx.truncate(kmax);
            idx.sort_by(|&a, &b| row[a].total_cmp(&row[b]));
            for (slot, &k) in ks.iter().enumerate() {
                let mut votes = vec![0usize; classes];
                idx[..k].iter().for_each(|&i| votes[fit_y[i]] += 1);
                // ties go to the class of the nearest row among them
                let top = *votes.iter().max().unwrap_or(&0);
                let pick = idx[..k]
                    .iter()
                    .map(|&i| fit_y[i])
                    .find(|&c| votes[c] == top)
                    .unwrap_or(0);
                preds[slot].push(pick);
            }
        }
    }
    preds
}

/// `(fit, eval)` projected on the top `d` principal axes of `fit`.
fn principal(fit: &Array2<f64>, eval: &Array2<f64>, d: usize) -> (Array2<f64>, Array2<f64>) {
    use linfa_linalg::eigh::Eigh;
    let covariance = fit.t().dot(fit) / fit.nrows() as f64;
    let (variances, axes) = covariance.eigh().expect("eigh");
    let mut order: Vec<usize> = (0..variances.len()).collect();
    order.sort_by(|&a, &b| variances[b].total_cmp(&variances[a]));
    let top = axes.select(Axis(1), &order[..d.min(order.len())]);
    (fit.dot(&top), eval.dot(&top))
}

fn main() {
    let (train, test) = match std::env::var("EQAE_PROBE_FEATURES") {
        Ok(prefix) => (load(&prefix, "train"), load(&prefix, "test")),
        Err(_) => (synthetic(20_000, 1), synthetic(5_000, 2)),
    };
    let classes = train.y.iter().max().map_or(1, |m| m + 1);
    let part = std::env::var("EQAE_PROBE_PART").unwrap_or_default();
    println!(
        "features: {} training and {} test rows of {}, {classes} classes",
        train.x.nrows(),
        test.x.nrows(),
        train.x.ncols()
    );
    if part.is_empty() || part == "1" {
        // 10% of the training rows, stratified, as the validation split
        let (fit, val) = validation_split(&train);
        let s = Standardizer::fit(&fit.x);
        let (fit_x, val_x) = (s.apply(&fit.x), s.apply(&val.x));
        println!(
            "\npart 1: logistic settings, {} fit / {} validation rows",
            fit.y.len(),
            val.y.len()
        );
        println!("| whiten | L2 per row | iterations | validation accuracy | seconds |");
        println!("|---|---|---|---|---|");
        // before: alpha 1e-3 on the summed loss, about 2e-8 per row
        let mut grid = vec![(false, 2e-8, 150), (false, 2e-8, 300)];
        for l2 in [2e-5, 2e-4, 2e-3, 2e-2] {
            for it in [150, 300] {
                grid.push((true, l2, it));
            }
        }
        for (whiten, l2, max_iterations) in grid {
            let settings = LogisticSettings {
                l2,
                max_iterations,
                space: if whiten {
                    LogisticSpace::Whitened
                } else {
                    LogisticSpace::Standardised
                },
            };
            let (acc, seconds) = timed_logistic(settings, (&fit_x, &fit.y), (&val_x, &val.y));
            println!(
                "| {whiten} | {l2} | {max_iterations} | {:.2}% | {seconds:.1} |",
                100.0 * acc
            );
        }
    }
    if part.is_empty() || part == "3" {
        let (fit, val) = validation_split(&train);
        let s = Standardizer::fit(&fit.x);
        let (fit_std, val_std) = (s.apply(&fit.x), s.apply(&val.x));
        let (fit_raw, val_raw) = (fit.x.mapv(f64::from), val.x.mapv(f64::from));
        let ks = [1, 5, 10, 20];
        println!(
            "\npart 3: kNN settings, {} fit / {} validation rows",
            fit.y.len(),
            val.y.len()
        );
        println!("| space | k = 1 | k = 5 | k = 10 | k = 20 | seconds |");
        println!("|---|---|---|---|---|---|");
        let mut spaces: Vec<(String, Array2<f64>, Array2<f64>)> = vec![
            (
                "standardised (the probe before)".into(),
                fit_std.clone(),
                val_std.clone(),
            ),
            (
                "standardised, unit length".into(),
                unit_rows(fit_std.clone()),
                unit_rows(val_std.clone()),
            ),
            ("raw".into(), fit_raw.clone(), val_raw.clone()),
            (
                "raw, unit length".into(),
                unit_rows(fit_raw.clone()),
                unit_rows(val_raw.clone()),
            ),
        ];
        for d in [32, 128] {
            let (f, v) = principal(&fit_std, &val_std, d);
            spaces.push((format!("standardised, top {d} principal axes"), f, v));
        }
        let axes = PrincipalAxes::fit(&fit_std).expect("principal axes");
        for (name, w) in [
            ("whitened, unit length", axes.whitener()),
            (
                "whitened with Ledoit-Wolf shrinkage, unit length (the probe now)",
                axes.shrunk_whitener(),
            ),
        ] {
            let (f, v) = (unit_rows(w.apply(&fit_std)), unit_rows(w.apply(&val_std)));
            spaces.push((name.into(), f, v));
        }
        println!(
            "(Ledoit-Wolf shrinkage on these rows: {:.5})",
            axes.shrinkage()
        );
        for (name, f, v) in &spaces {
            let t = Instant::now();
            let preds = knn_for_each_k(f, &fit.y, v, &ks, classes);
            let cells: Vec<String> = preds
                .iter()
                .map(|p| format!("{:.2}%", 100.0 * accuracy(p, &val.y)))
                .collect();
            println!(
                "| {name} | {} | {:.1} |",
                cells.join(" | "),
                t.elapsed().as_secs_f64()
            );
        }
    }
    if part.is_empty() || part == "4" {
        let (fit, val) = validation_split(&train);
        let s = Standardizer::fit(&fit.x);
        let (fit_x, val_x) = (s.apply(&fit.x), s.apply(&val.x));
        println!(
            "\npart 4: MLP settings, {} fit / {} validation rows",
            fit.y.len(),
            val.y.len()
        );
        println!("| hidden | dropout | batch | weight decay | patience | validation accuracy | seconds |");
        println!("|---|---|---|---|---|---|---|");
        let d = MlpSettings::default();
        let grid = [
            d,
            MlpSettings { batch: 512, ..d },
            MlpSettings { patience: 10, ..d },
            MlpSettings {
                hidden: 1024,
                dropout: 0.5,
                batch: 512,
                ..d
            },
            MlpSettings {
                hidden: 1024,
                batch: 512,
                ..d
            },
            MlpSettings {
                hidden: 512,
                dropout: 0.5,
                batch: 256,
                weight_decay: 1e-3,
                ..d
            },
        ];
        for m in grid {
            let t = Instant::now();
            let probe = MlpProbe::fit_with(&fit_x, &fit.y, classes, 0, m);
            let acc = accuracy(&probe.predict(&val_x), &val.y);
            println!(
                "| {} | {} | {} | {} | {} | {:.2}% | {:.1} |",
                m.hidden,
                m.dropout,
                m.batch,
                m.weight_decay,
                m.patience,
                100.0 * acc,
                t.elapsed().as_secs_f64()
            );
        }
    }
    if part.is_empty() || part == "2" {
        println!("\npart 2: every probe, all training rows, scored on the test rows");
        println!("| probe | test accuracy | seconds (fit and score) |");
        println!("|---|---|---|");
        let s = Standardizer::fit(&train.x);
        let (tr, te) = (s.apply(&train.x), s.apply(&test.x));
        let before = LogisticSettings {
            l2: 1e-3 / train.y.len() as f64,
            max_iterations: 150,
            space: LogisticSpace::Standardised,
        };
        let (acc, seconds) = timed_logistic(before, (&tr, &train.y), (&te, &test.y));
        println!(
            "| logistic, before (L2 1e-3, 150 iterations, not whitened) | {:.2}% | {seconds:.1} |",
            100.0 * acc
        );
        let probes = FittedProbes::fit(&train.x, &train.y, classes, 0).expect("fit");
        let (scores, seconds) = probes.score_timed(&test.x, &test.y);
        let d = LogisticSettings::default();
        println!(
            "| logistic (L2 {} per row, {} iterations, whitened) | {:.2}% | {:.1} |",
            d.l2,
            d.max_iterations,
            100.0 * scores.logistic,
            seconds.logistic
        );
        println!("| MLP | {:.2}% | {:.1} |", 100.0 * scores.mlp, seconds.mlp);
        println!("| 5-NN | {:.2}% | {:.1} |", 100.0 * scores.knn, seconds.knn);
        let t = Instant::now();
        let (acc, nmi) =
            kmeans(&probes.standardize(&test.x), &test.y, classes, 0).expect("k-means");
        println!(
            "| k-means (accuracy; NMI {nmi:.3}) | {:.2}% | {:.1} |",
            100.0 * acc,
            t.elapsed().as_secs_f64()
        );
    }

    if part.is_empty() || part == "5" {
        let (fit, val) = validation_split(&train);
        println!(
            "\npart 5: kNN spaces on label subsets of the {} fit rows, {} validation rows, k = 5",
            fit.y.len(),
            val.y.len()
        );
        println!("| labels | standardised | whitened, unit | shrunk whitening, unit (the probe) | shrinkage |");
        println!("|---|---|---|---|---|");
        for labels in [100, 1_000, 10_000] {
            let mut acc = [Vec::new(), Vec::new(), Vec::new()];
            let mut shrinkage = 0.0;
            for draw in 0..3 {
                let sub = rows(&fit, &stratified_subset(&fit.y, labels, draw));
                let s = Standardizer::fit(&sub.x);
                let (f, v) = (s.apply(&sub.x), s.apply(&val.x));
                let axes = PrincipalAxes::fit(&f).expect("principal axes");
                shrinkage += axes.shrinkage() / 3.0;
                let plain = knn_predict(&f, &sub.y, &v, 5, classes);
                acc[0].push(accuracy(&plain, &val.y));
                let w = axes.whitener();
                let (fw, vw) = (unit_rows(w.apply(&f)), unit_rows(w.apply(&v)));
                let white = knn_predict(&fw, &sub.y, &vw, 5, classes);
                acc[1].push(accuracy(&white, &val.y));
                let probe = KnnProbe::with_whitener(axes.shrunk_whitener(), &f, &sub.y, classes);
                acc[2].push(accuracy(&probe.predict(&v), &val.y));
            }
            let cell = |a: &[f64]| {
                let mean = a.iter().sum::<f64>() / a.len() as f64;
                let var = a.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / a.len() as f64;
                format!("{:.2} ± {:.2}%", 100.0 * mean, 100.0 * var.sqrt())
            };
            println!(
                "| {labels} | {} | {} | {} | {shrinkage:.4} |",
                cell(&acc[0]),
                cell(&acc[1]),
                cell(&acc[2])
            );
        }
    }
}
