//! The logistic probe's numerics: linfa-logistic's patched log-sum-exp
//! (vendor/linfa-logistic) and the whitening in front of it.

use eqae::eval::probes::{accuracy, LogisticProbe, LogisticSettings, Whitener};
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
        whiten: false,
        ..LogisticSettings::default()
    };
    let probe = LogisticProbe::fit_with(&x, &y, plain).unwrap();
    assert!(accuracy(&probe.predict(&xt), &yt) > 0.9);
}
