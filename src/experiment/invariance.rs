//! What invariance buys, measured on one trained run and head:
//!
//! - **label efficiency**: the supervised probes fitted on 100, 1,000, ...
//!   labelled training rows (stratified draws, several per size), scored on
//!   the test features;
//! - **rotation robustness**: probes fitted on all training features, scored
//!   on the upright test images turned by one fixed angle at a time (and
//!   mirrored). Exactly invariant features give flat curves.

use anyhow::Result;
use burn::tensor::Device;
use ndarray::Array2;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::data::augment::Draw;
use crate::data::{load_raw, Dataset, Splits};
use crate::eval::features::{extract, Head};
use crate::eval::probes::{FittedProbes, SupervisedScores};
use crate::model::Autoencoder;

/// A seeded stratified subset of `labels`' indices of (about) `n` rows:
/// every class gets its share of `n` (rounded, at least one row where the
/// class has any), drawn without replacement. The same seed gives the same
/// rows.
pub fn stratified_subset(labels: &[usize], n: usize, seed: u64) -> Vec<usize> {
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l].push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let total = labels.len().max(1) as f64;
    let mut out = Vec::new();
    for rows in &mut by_class {
        if rows.is_empty() {
            continue;
        }
        let share = ((n as f64 * rows.len() as f64 / total).round() as usize).clamp(1, rows.len());
        rows.shuffle(&mut rng);
        out.extend_from_slice(&rows[..share]);
    }
    out.sort_unstable();
    out
}

/// The probes' accuracies with `labels` labelled training rows, over draws.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabelPoint {
    /// Labelled rows asked for (the draws hold about this many).
    pub labels: usize,
    /// One score per draw.
    pub draws: Vec<SupervisedScores>,
    /// The training rows of each draw (indices into the training split),
    /// for comparing other probes on the same draws; not kept in reports.
    #[serde(skip)]
    pub rows: Vec<Vec<usize>>,
}

/// Fit the probes on stratified subsets of the training features (with
/// their labels) of each size in `sizes` (`draws` seeded draws per size below the full set, one
/// at the full set) and score them on the test features.
///
/// `full`, when given, are the scores of the probes already fitted on all of
/// `f_train` with `seed`: the full size takes them instead of fitting and
/// scoring again.
pub fn label_efficiency(
    (f_train, y_train): (&Array2<f32>, &[usize]),
    (f_test, y_test): (&Array2<f32>, &[usize]),
    classes: usize,
    (sizes, draws): (&[usize], usize),
    full_scores: Option<SupervisedScores>,
    seed: u64,
) -> Result<Vec<LabelPoint>> {
    let mut points = Vec::new();
    for &size in sizes {
        let full = size >= y_train.len();
        let mut scores = Vec::new();
        let mut drawn = Vec::new();
        for draw in 0..if full { 1 } else { draws.max(1) } {
            if let (true, Some(known)) = (full, full_scores) {
                scores.push(known);
                continue;
            }
            let rows: Vec<usize> = if full {
                (0..y_train.len()).collect()
            } else {
                stratified_subset(y_train, size, seed.wrapping_add(draw as u64))
            };
            if !full {
                drawn.push(rows.clone());
            }
            let x = f_train.select(ndarray::Axis(0), &rows);
            let y: Vec<usize> = rows.iter().map(|&i| y_train[i]).collect();
            let probes = FittedProbes::fit(&x, &y, classes, seed.wrapping_add(draw as u64))?;
            scores.push(probes.score(f_test, y_test));
        }
        points.push(LabelPoint {
            labels: size.min(y_train.len()),
            draws: scores,
            rows: drawn,
        });
    }
    Ok(points)
}

/// The probes' accuracies on the test images under one fixed transform.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AnglePoint {
    /// Counter-clockwise rotation in degrees.
    pub degrees: f64,
    /// Mirrored before the rotation.
    pub mirrored: bool,
    /// The probes' accuracies.
    pub scores: SupervisedScores,
}

/// The run's test images as the data set stores them: upright, not yet on
/// the canvas.
pub fn upright_test_set(config: &Config) -> Result<Dataset> {
    let (_, raw) = load_raw(&config.data)?;
    Ok(raw.take(config.data.test_limit))
}

/// Fit the probes on all training features of `head` (or take `fitted`,
/// fitted on them already), then score them on the upright test images
/// (the first `images` of them; 0 = all) rotated by `0, step, 2 step, ...
/// < 360` degrees, unmirrored and mirrored. Probes fitted here use the
/// config's training seed.
pub fn rotation_robustness(
    model: &Autoencoder,
    config: &Config,
    (head, fitted): (Head, Option<&FittedProbes>),
    data: &Splits,
    (step_degrees, images): (f64, usize),
    device: &Device,
    quiet: bool,
) -> Result<Vec<AnglePoint>> {
    let seed = config.train.seed;
    anyhow::ensure!(
        step_degrees > 0.0 && step_degrees <= 360.0,
        "the angle step must be in (0, 360] degrees, got {step_degrees}"
    );
    let classes = data.train.class_names.len();
    // expanded once here, not once per angle inside `extract`
    let model = &model.for_inference();
    let own;
    let probes = match fitted {
        Some(p) => p,
        None => {
            let f_train = extract(model, config, head, &data.train, device, quiet)?;
            own = FittedProbes::fit(&f_train, &data.train.labels, classes, seed)?;
            &own
        }
    };
    let mut raw = upright_test_set(config)?;
    if images > 0 {
        raw = raw.take(images);
    }
    let steps = (360.0 / step_degrees).round() as usize;
    let mut points = Vec::new();
    for mirrored in [false, true] {
        for k in 0..steps {
            let degrees = k as f64 * step_degrees;
            let d = Draw {
                degrees,
                mirror: mirrored,
            };
            let test = raw.transformed(config.data.image_size, d, config.data.resampling)?;
            let f_test = extract(model, config, head, &test, device, true)?;
            points.push(AnglePoint {
                degrees,
                mirrored,
                scores: probes.score(&f_test, &test.labels),
            });
        }
    }
    Ok(points)
}

/// Whether the model's group has reflections (a mirror is then exact).
pub fn group_mirrors(model: &Autoencoder) -> bool {
    match model {
        Autoencoder::Equivariant(m) => m.group().group().dihedral,
        Autoencoder::Baseline(_) => false,
    }
}

/// How far one head's features move when the images turn by one angle
/// (`eqae check --angles`): `|f(T x) - f(x)| / |f(x)|` per image, for `T`
/// the rotation by `degrees`, after a mirror when `mirrored`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AngleChange {
    /// Counter-clockwise rotation in degrees.
    pub degrees: f64,
    /// Mirrored before the rotation.
    pub mirrored: bool,
    /// Mean relative change over the images.
    pub mean: f64,
    /// Largest relative change over the images.
    pub worst: f64,
    /// Whether the transform moves pixels to pixels and is in the model's
    /// group, so that the features must not move beyond rounding.
    pub exact: bool,
}

/// The relative change of `head`'s features under every rotation by a
/// multiple of `step_degrees`, plain and mirrored, on `raw` (upright
/// images as the data set stores them, placed on the run's canvas and
/// turned as `config.data.resampling` says); the reference is each image
/// placed upright. A mirror is exact too when the model's group has
/// reflections.
pub fn feature_change_over_angles(
    model: &Autoencoder,
    config: &Config,
    (head, raw): (Head, &Dataset),
    step_degrees: f64,
    device: &Device,
    quiet: bool,
) -> Result<Vec<AngleChange>> {
    let group_mirrors = group_mirrors(model);
    anyhow::ensure!(
        step_degrees > 0.0 && step_degrees <= 360.0,
        "the angle step must be in (0, 360] degrees, got {step_degrees}"
    );
    let model = &model.for_inference();
    let canvas = config.data.image_size;
    let upright = Draw {
        degrees: 0.0,
        mirror: false,
    };
    let reference = extract(
        model,
        config,
        head,
        &raw.transformed(canvas, upright, config.data.resampling)?,
        device,
        true,
    )?;
    let norms: Vec<f64> = reference
        .rows()
        .into_iter()
        .map(|r| r.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt())
        .collect();
    let steps = (360.0 / step_degrees).round() as usize;
    let bar = crate::progress::bar((2 * steps) as u64, quiet, "angles");
    let mut out = Vec::new();
    for mirrored in [false, true] {
        for k in 0..steps {
            let degrees = k as f64 * step_degrees;
            let turned = raw.transformed(
                canvas,
                Draw {
                    degrees,
                    mirror: mirrored,
                },
                config.data.resampling,
            )?;
            let f = extract(model, config, head, &turned, device, true)?;
            let changes: Vec<f64> = f
                .rows()
                .into_iter()
                .zip(reference.rows())
                .zip(&norms)
                .map(|((a, b), &norm)| {
                    let d: f64 = a
                        .iter()
                        .zip(b)
                        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
                        .sum();
                    d.sqrt() / norm.max(1e-30)
                })
                .collect();
            let quarter = (degrees / 90.0 - (degrees / 90.0).round()).abs() < 1e-9;
            out.push(AngleChange {
                degrees,
                mirrored,
                mean: changes.iter().sum::<f64>() / changes.len().max(1) as f64,
                worst: changes.iter().copied().fold(0.0, f64::max),
                exact: quarter && (group_mirrors || !mirrored),
            });
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(out)
}
