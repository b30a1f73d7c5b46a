//! The probes' numerics: linfa-logistic's patched log-sum-exp
//! (vendor/linfa-logistic), the whitening in front of it, and kNN's shrunk
//! whitening.

use eqae::eval::probes::{
    accuracy, knn_predict, select, KnnProbe, LogisticProbe, LogisticSettings, LogisticSpace,
    PrincipalAxes, Standardizer, Whitener,
};
use linfa::prelude::*;
use linfa_logistic::MultiLogisticRegression;
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Four classes, one direction each in 8 dimensions, unit noise; `scale`
/// sets how far apart the classes (and so the logits) are.
fn classes(rows: usize, scale: f64, seed: u64) -> (Array2<f64>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Array2::zeros((rows, 8));
    let y: Vec<usize> = (0..rows).map(|i| i % 4).collect();
    for (i, &c) in y.iter().enumerate() {
        for j in 0..8 {
            x[[i, j]] = rng.gen_range(-1.0..1.0) + if j == c { scale } else { 0.0 };
        }
    }
    (x, y)
}

/// Published linfa-logistic 0.8.1 subtracted one global max in its
/// log-sum-exp, so every row whose logits all lie far below the largest
/// logit in the matrix got wrong log-probabilities and gradients. Rows of
/// very different norms make that happen as soon as the weights grow. The
/// patched copy fits these separable classes.
#[test]
fn linfa_logistic_fits_rows_of_different_scales_with_the_patched_log_sum_exp() {
    let (mut x, y) = classes(2000, 4.0, 1);
    for (i, mut row) in x.rows_mut().into_iter().enumerate() {
        if i % 2 == 0 {
            row *= 60.0;
        }
    }
    let x32 = x.mapv(|v| v as f32);
    let data = linfa::Dataset::new(x32.clone(), Array1::from(y.clone()));
    let model = MultiLogisticRegression::<f32>::default()
        .alpha(1e-3)
        .max_iterations(100)
        .fit(&data)
        .unwrap();
    let acc = accuracy(&model.predict(&x32).to_vec(), &y);
    assert!(acc > 0.95, "training accuracy {acc}");
}

#[test]
fn whitened_features_have_unit_covariance_and_drop_dependent_axes() {
    let (x, _) = classes(3000, 2.0, 2);
    // two more columns that are sums of others: rank 8 of 10
    let mut wide = Array2::zeros((x.nrows(), 10));
    wide.slice_mut(ndarray::s![.., ..8]).assign(&x);
    for i in 0..x.nrows() {
        wide[[i, 8]] = x[[i, 0]] + x[[i, 1]];
        wide[[i, 9]] = x[[i, 2]] - 2.0 * x[[i, 3]];
    }
    let mean = wide.mean_axis(ndarray::Axis(0)).unwrap();
    let centred = &wide - &mean;
    let w = Whitener::fit(&centred).unwrap();
    assert_eq!(w.dims(), 8, "the two dependent columns add no axis");
    let white = w.apply(&centred);
    let cov = white.t().dot(&white) / white.nrows() as f64;
    let worst = (&cov - &Array2::<f64>::eye(8))
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(worst < 1e-9, "covariance differs from I by {worst:e}");
}

#[test]
fn the_default_probe_fits_small_and_rank_deficient_training_sets() {
    // 12 rows of 8 features: fewer rows than features after whitening
    let (x, y) = classes(12, 4.0, 3);
    let (xt, yt) = classes(400, 4.0, 4);
    let probe = LogisticProbe::fit(&x, &y).unwrap();
    assert!(accuracy(&probe.predict(&xt), &yt) > 0.9);
    let plain = LogisticSettings {
        space: LogisticSpace::Standardised,
        ..LogisticSettings::default()
    };
    let probe = LogisticProbe::fit_with(&x, &y, plain).unwrap();
    assert!(accuracy(&probe.predict(&xt), &yt) > 0.9);
}

/// Two classes told apart only by the difference of two strongly
/// correlated features: `a = z + d`, `b = z`, with `z` of unit spread and
/// the class shift `d = +-0.15`, plus `extra` columns of pure noise.
fn correlated_pair(rows: usize, extra: usize, seed: u64) -> (Array2<f32>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Array2::zeros((rows, 2 + extra));
    let y: Vec<usize> = (0..rows).map(|i| i % 2).collect();
    for (i, &c) in y.iter().enumerate() {
        let z: f32 = rng.gen_range(-1.0..1.0);
        let shift = if c == 0 { -0.15 } else { 0.15 };
        x[[i, 0]] = z + shift + 0.02 * rng.gen_range(-1.0f32..1.0);
        x[[i, 1]] = z + 0.02 * rng.gen_range(-1.0f32..1.0);
        for j in 0..extra {
            x[[i, 2 + j]] = rng.gen_range(-1.0..1.0);
        }
    }
    (x, y)
}

#[test]
fn knn_in_whitened_features_finds_a_small_difference_of_correlated_features() {
    let (train, y) = correlated_pair(2000, 6, 5);
    let (test, yt) = correlated_pair(500, 6, 6);
    let s = Standardizer::fit(&train);
    let (tr, te) = (s.apply(&train), s.apply(&test));
    let probe = KnnProbe::fit(&tr, &y, 2).unwrap();
    let whitened = accuracy(&probe.predict(&te), &yt);
    let standardised = accuracy(&knn_predict(&tr, &y, &te, KnnProbe::K, 2), &yt);
    assert!(whitened > 0.98, "whitened kNN accuracy {whitened}");
    assert!(
        standardised < 0.75,
        "standardised kNN accuracy {standardised}: the test no longer tells the spaces apart"
    );
}

#[test]
fn ledoit_wolf_shrinkage_falls_as_rows_grow_and_stays_in_zero_one() {
    let shrinkage = |rows: usize| {
        let (x, _) = correlated_pair(rows, 2, 7);
        let tr = Standardizer::fit(&x).apply(&x);
        PrincipalAxes::fit(&tr).unwrap().shrinkage()
    };
    let (few, many) = (shrinkage(20), shrinkage(5000));
    assert!((0.0..=1.0).contains(&few) && (0.0..=1.0).contains(&many));
    assert!(
        few > 10.0 * many,
        "shrinkage with 20 rows {few}, with 5,000 rows {many}"
    );
    assert!(many < 0.01, "shrinkage with 5,000 rows {many}");
    // isotropic noise: nothing to keep from the sample covariance's shape
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let noise = Array2::from_shape_fn((200, 40), |_| rng.gen_range(-1.0f32..1.0));
    let tr = Standardizer::fit(&noise).apply(&noise);
    let iso = PrincipalAxes::fit(&tr).unwrap().shrinkage();
    assert!(iso > 0.9, "shrinkage of isotropic noise {iso}");
}

#[test]
fn knn_ties_go_to_the_class_of_the_nearest_row() {
    let train = ndarray::array![[0.0], [1.0], [-1.5], [3.0]];
    // from 0.1 the nearest are 0.0 (class 1), 1.0 (class 0), -1.5 (class 0),
    // 3.0 (class 1): with k = 4 the vote ties 2-2 and class 1 is nearest
    let y = vec![1, 0, 0, 1];
    let test = ndarray::array![[0.1], [0.9]];
    assert_eq!(knn_predict(&train, &y, &test, 4, 2), vec![1, 0]);
}

/// Two classes with two kinds of evidence: a weak shift shared by 20
/// features (what a strong penalty, close to comparing class means, reads
/// well from few rows), and a small difference of two strongly correlated
/// features (what only a weak penalty in a whitened space reads, and only
/// with enough rows to estimate the covariance); plus `noise` columns.
fn two_kinds_of_evidence(rows: usize, noise: usize, seed: u64) -> (Array2<f32>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Array2::zeros((rows, 22 + noise));
    let y: Vec<usize> = (0..rows).map(|i| i % 2).collect();
    for (i, &c) in y.iter().enumerate() {
        let s = if c == 0 { -1.0f32 } else { 1.0 };
        let z: f32 = rng.gen_range(-1.0..1.0);
        x[[i, 0]] = z + 0.05 * s + 0.05 * rng.gen_range(-1.0f32..1.0);
        x[[i, 1]] = z + 0.05 * rng.gen_range(-1.0f32..1.0);
        for j in 2..22 {
            x[[i, j]] = 0.12 * s + rng.gen_range(-1.0f32..1.0);
        }
        for j in 0..noise {
            x[[i, 22 + j]] = rng.gen_range(-1.0..1.0);
        }
    }
    (x, y)
}

/// The logistic probe's settings are chosen for the rows it is given: on
/// 50 rows a strong penalty, on 5,000 a weak one. The choice is at least as
/// good as the fixed default on both (and far better on 50 rows, where
/// whitening 62 features from 50 rows is noise), and no single fixed
/// setting comes within a point of the chosen ones on both sizes.
#[test]
fn cross_validation_chooses_the_logistic_settings_for_the_number_of_rows() {
    let (test, y_test) = two_kinds_of_evidence(4000, 40, 99);
    let mut chosen = Vec::new();
    let mut fixed: Vec<(LogisticSettings, Vec<f64>)> = select::logistic_grid()
        .into_iter()
        .chain([LogisticSettings::default()])
        .map(|s| (s, Vec::new()))
        .collect();
    for rows in [50usize, 5000] {
        let (train, y) = two_kinds_of_evidence(rows, 40, rows as u64);
        let s = Standardizer::fit(&train);
        let (tr, te) = (s.apply(&train), s.apply(&test));
        let best = select::choose_logistic(&tr, &y, 0).unwrap().best;
        let probe = LogisticProbe::fit_with(&tr, &y, best).unwrap();
        chosen.push((best, accuracy(&probe.predict(&te), &y_test)));
        for (settings, scores) in &mut fixed {
            let probe = LogisticProbe::fit_with(&tr, &y, *settings).unwrap();
            scores.push(accuracy(&probe.predict(&te), &y_test));
        }
    }
    let (small, large) = (chosen[0], chosen[1]);
    assert!(
        small.0.l2 > large.0.l2,
        "50 rows chose {:?}, 5,000 rows {:?}",
        small.0,
        large.0
    );
    let default = &fixed.last().unwrap().1;
    assert!(
        small.1 > default[0] + 0.05,
        "50 rows: {} against the default's {}",
        small.1,
        default[0]
    );
    assert!(
        large.1 >= default[1] - 0.005,
        "5,000 rows: {} against the default's {}",
        large.1,
        default[1]
    );
    for (settings, scores) in &fixed {
        assert!(
            scores[0] < small.1 - 0.01 || scores[1] < large.1 - 0.01,
            "{settings:?} alone does as well as the chosen settings: {scores:?} against {} and {}",
            small.1,
            large.1
        );
    }
}

/// The folds partition the training rows (each row held out exactly once,
/// no other row ever), each class spread evenly over them.
#[test]
fn cross_validation_folds_are_a_stratified_partition_of_the_training_rows() {
    let labels: Vec<usize> = (0..103).map(|i| (i * 7) % 4).collect();
    let folds = select::stratified_folds(&labels, select::FOLDS, 5);
    let mut seen: Vec<usize> = folds.iter().flatten().copied().collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..labels.len()).collect::<Vec<_>>());
    for class in 0..4 {
        let counts: Vec<usize> = folds
            .iter()
            .map(|f| f.iter().filter(|&&r| labels[r] == class).count())
            .collect();
        let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(hi - lo <= 1, "class {class}: {counts:?}");
    }
}

/// kNN's k is chosen on the training rows: with a quarter of the training
/// labels flipped, one neighbour copies the noise and many outvote it.
#[test]
fn knn_chooses_k_by_cross_validation() {
    let (train, mut y) = classes(1200, 1.5, 11);
    let (test, y_test) = classes(1000, 1.5, 12);
    for (i, label) in y.iter_mut().enumerate() {
        if i % 4 == 1 {
            *label = (*label + 1) % 4;
        }
    }
    let (train, test) = (train.mapv(|v| v as f32), test.mapv(|v| v as f32));
    let s = Standardizer::fit(&train);
    let (tr, te) = (s.apply(&train), s.apply(&test));
    let chosen = eqae::eval::probes::select::with_chosen_k(KnnProbe::fit(&tr, &y, 4).unwrap(), 0);
    let picked = accuracy(&chosen.predict(&te), &y_test);
    let each: Vec<f64> = select::K_GRID
        .iter()
        .map(|&k| {
            let probe = KnnProbe::fit(&tr, &y, 4).unwrap().with_k(k);
            accuracy(&probe.predict(&te), &y_test)
        })
        .collect();
    let best = each.iter().copied().fold(0.0, f64::max);
    assert!(
        picked > each[0] + 0.03 && picked >= best - 0.01,
        "k = {}: {picked}; test accuracy of each k in {:?}: {each:?}",
        chosen.k(),
        select::K_GRID
    );
}
