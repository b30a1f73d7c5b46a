//! The one evaluation every table row and every evaluated run goes
//! through: a head's frozen features, the probes fitted on the training
//! split and scored on the test split, and the studies asked for beside
//! them (label efficiency, rotation robustness, the attention's pose,
//! confusion matrices). `eqae eval --run` ([`super::evaluate`]) and
//! `eqae eval --table` ([`super::reproduce`]) both call [`evaluate_head`]
//! and write the studies through [`StudyFiles`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::tensor::Device;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::invariance::{label_efficiency, rotation_robustness, AnglePoint, LabelPoint};
use super::pose::{augment_draws, pose_study, PoseStudy};
use super::report::{csv_text, mean_std};
use crate::config::{Config, ModelKind};
use crate::data::{test_augment_seed, Splits};
use crate::eval::cluster::{cluster_rows, ClusterSettings};
use crate::eval::features::Head;
use crate::eval::probes::{
    cluster_classes, confusion_matrix, matched_accuracy, nmi, FittedProbes, ProbeScores,
};
use crate::eval::{plots, split_features};
use crate::group::resample::Resampling;
use crate::model::Autoencoder;

/// The invariance studies to run beside the probes (`eqae eval --labels`,
/// `--rotations`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Studies {
    /// Labelled training rows for the label-efficiency study (0 = all);
    /// empty: no study.
    pub labels: Vec<usize>,
    /// Draws per size below all.
    pub draws: usize,
    /// Angle step of the rotation-robustness study, in degrees.
    pub rotation_step: Option<f64>,
    /// Upright test images the rotation-robustness study turns (0 = all).
    pub rotation_images: usize,
    /// How the rotation-robustness study turns them; `None`: as each
    /// run's training did (`data.resampling`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_resampling: Option<Resampling>,
    /// The attention pose study of every attention run.
    pub pose: bool,
}

impl Studies {
    /// Refuse a label count below the number of classes: a draw holds at
    /// least one image of each class, so it could not be the count asked.
    pub fn check_label_counts(&self, classes: usize) -> Result<()> {
        if let Some(n) = self.labels.iter().find(|&&n| n != 0 && n < classes) {
            anyhow::bail!(
                "--labels {n}: fewer labels than the {classes} classes (every draw holds at least one image of each class); give at least {classes}, or 0 for all"
            );
        }
        Ok(())
    }

    /// Whether any study is asked for.
    pub fn any(&self) -> bool {
        !self.labels.is_empty() || self.rotation_step.is_some() || self.pose
    }
}

/// One run and head's studies.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StudyResult {
    /// Config name of the run.
    pub config: String,
    /// The head (written by its row label).
    #[serde(with = "super::report::spelled::head_label")]
    pub head: Head,
    /// Label efficiency, one point per size.
    pub label_efficiency: Vec<LabelPoint>,
    /// Rotation robustness, one point per angle (unmirrored, then mirrored).
    pub rotation_robustness: Vec<AnglePoint>,
}

/// What one head gives beyond its scores, chosen by the caller.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Extras<'a> {
    /// Label efficiency and rotation robustness (none when neither is
    /// asked for).
    pub studies: &'a Studies,
    /// The attention's pose study on the augmented test set.
    pub pose: bool,
    /// The logistic probe's and k-means' confusion matrices.
    pub confusions: bool,
}

/// One head of one trained model, evaluated: what reports, studies and the
/// row cache keep.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeadResult {
    /// Number of features.
    pub features: usize,
    /// The probes' test scores.
    pub scores: ProbeScores,
    /// Label-efficiency and rotation studies, when asked for.
    pub study: Option<StudyResult>,
    /// The attention pose study, when asked for.
    pub pose: Option<PoseStudy>,
    /// The confusion matrices, when asked for.
    pub confusions: Option<Confusions>,
}

/// `eqae cluster`'s clustering of the test features (k = classes, its
/// default settings, the run's seed) scored against the labels, beside the
/// paper's k-means column; left NaN for test sets too small to cluster.
fn score_graph_clusters(
    scores: &mut ProbeScores,
    f_test: &Array2<f32>,
    (labels, classes): (&[usize], usize),
    seed: u64,
) -> Result<()> {
    if f_test.nrows() <= 2 * classes {
        return Ok(());
    }
    let t = std::time::Instant::now();
    let settings = ClusterSettings::defaults(Some(classes), seed);
    let found = cluster_rows(f_test, &settings)?;
    scores.cluster_accuracy = matched_accuracy(&found, labels, classes);
    scores.cluster_nmi = nmi(&found, labels, classes);
    scores.seconds.clustering = t.elapsed().as_secs_f64();
    Ok(())
}

/// Evaluate `head` of `model` (trained as `config`, whose name labels the
/// studies): features of both splits, the probes fitted on the training
/// features with the run's seed and scored on the test features, then the
/// `extras`. Returns the result and the test features (for the figures).
pub fn evaluate_head(
    (model, config): (&Autoencoder, &Config),
    head: Head,
    data: &Splits,
    extras: Extras,
    device: &Device,
    quiet: bool,
) -> Result<(HeadResult, Array2<f32>)> {
    let seed = config.train.seed;
    let (f_train, f_test) = split_features(model, config, head, data, device, quiet)?;
    let classes = data.train.class_names.len();
    // fitted once: the scores, the confusion matrices, label efficiency at
    // all labels and every rotated test set reuse them
    let probes = FittedProbes::fit(&f_train, &data.train.labels, classes, seed)?;
    let (mut scores, clusters) = probes.score_all(&f_test, &data.test.labels, seed)?;
    score_graph_clusters(&mut scores, &f_test, (&data.test.labels, classes), seed)?;
    let fitted = FittedFeatures {
        head,
        f_train: &f_train,
        f_test: &f_test,
        probes: &probes,
        scores: &scores,
        clusters: clusters.as_deref(),
    };
    let study = run_studies(model, config, data, &fitted, extras.studies, device, quiet)?;
    let pose = if extras.pose && config.model.kind == ModelKind::Attention {
        Some(test_set_pose(model, config, data, device, quiet)?)
    } else {
        None
    };
    let confusions = if extras.confusions {
        Some(confusions_of(config, &fitted, data)?)
    } else {
        None
    };
    let result = HeadResult {
        features: f_test.ncols(),
        scores,
        study,
        pose,
        confusions,
    };
    Ok((result, f_test))
}

/// The study files of a folder, rewritten whole as each head's studies
/// arrive (an interrupted evaluation keeps every head it finished):
/// `studies.json`, `label_draws.json`, `label_efficiency.{csv,png}`,
/// `rotation_robustness.{csv,png}`, `pose.json`, `pose_<run>.png`,
/// `confusion.json`, `confusion_<run>_<head>.png`, `kmeans_<run>_<head>.png`.
pub struct StudyFiles {
    dir: PathBuf,
    studies: Vec<StudyResult>,
    poses: Vec<PoseStudy>,
    confusions: Vec<Confusions>,
}

impl StudyFiles {
    /// Study files in `dir` (created when the first one is written).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            studies: Vec::new(),
            poses: Vec::new(),
            confusions: Vec::new(),
        }
    }

    /// Add what `result` has of the studies and rewrite the files it
    /// touches; returns the figures that could not be drawn.
    pub fn add(&mut self, result: &HeadResult) -> Result<Vec<String>> {
        let mut touched = (false, false, false);
        if let Some(s) = &result.study {
            self.studies.push(s.clone());
            touched.0 = true;
        }
        if let Some(p) = &result.pose {
            self.poses.push(p.clone());
            touched.1 = true;
        }
        if let Some(c) = &result.confusions {
            self.confusions.push(c.clone());
            touched.2 = true;
        }
        self.write(touched)
    }

    /// Rewrite every file (the figures' warnings once, at the end).
    pub fn write_all(&self) -> Result<Vec<String>> {
        self.write((true, true, true))
    }

    /// The studies gathered so far.
    pub fn studies(&self) -> &[StudyResult] {
        &self.studies
    }

    /// The pose studies gathered so far.
    pub fn poses(&self) -> &[PoseStudy] {
        &self.poses
    }

    fn write(&self, (studies, poses, confusions): (bool, bool, bool)) -> Result<Vec<String>> {
        let mut warnings = Vec::new();
        let any = (studies && !self.studies.is_empty())
            || (poses && !self.poses.is_empty())
            || (confusions && !self.confusions.is_empty());
        if !any {
            return Ok(warnings);
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        if studies && !self.studies.is_empty() {
            warnings.extend(write_studies(&self.dir, &self.studies)?);
        }
        if poses && !self.poses.is_empty() {
            warnings.extend(write_poses(&self.dir, &self.poses)?);
        }
        if confusions && !self.confusions.is_empty() {
            warnings.extend(write_confusions(&self.dir, &self.confusions)?);
        }
        Ok(warnings)
    }
}

/// One head's features and the probes fitted on them.
struct FittedFeatures<'a> {
    /// The head they came from.
    pub head: Head,
    /// Training features.
    pub f_train: &'a ndarray::Array2<f32>,
    /// Test features.
    pub f_test: &'a ndarray::Array2<f32>,
    /// The probes fitted on all of `f_train` with the run's seed.
    pub probes: &'a FittedProbes,
    /// Their scores on `f_test`.
    pub scores: &'a ProbeScores,
    /// The k-means cluster of every test row, when there was one.
    pub clusters: Option<&'a [usize]>,
}

/// The label-efficiency and rotation studies `studies` asks for, on one
/// head (None when it asks for neither).
fn run_studies(
    model: &Autoencoder,
    config: &Config,
    data: &Splits,
    fitted: &FittedFeatures,
    studies: &Studies,
    device: &Device,
    quiet: bool,
) -> Result<Option<StudyResult>> {
    if studies.labels.is_empty() && studies.rotation_step.is_none() {
        return Ok(None);
    }
    let seed = config.train.seed;
    studies.check_label_counts(data.train.class_names.len())?;
    let (y_train, y_test) = (&data.train.labels, &data.test.labels);
    let sizes: Vec<usize> = studies
        .labels
        .iter()
        .map(|&n| if n == 0 { usize::MAX } else { n })
        .collect();
    let labels = label_efficiency(
        (fitted.f_train, y_train),
        (fitted.f_test, y_test),
        data.train.class_names.len(),
        (&sizes, studies.draws),
        Some(fitted.scores.supervised()),
        seed,
    )?;
    let mut turned_by = config.clone();
    if let Some(r) = studies.rotation_resampling {
        turned_by.data.resampling = r;
    }
    let angles = match studies.rotation_step {
        Some(step) => rotation_robustness(
            model,
            &turned_by,
            (fitted.head, Some(fitted.probes)),
            data,
            (step, studies.rotation_images),
            device,
            quiet,
        )?,
        None => Vec::new(),
    };
    Ok(Some(StudyResult {
        config: config.name.clone(),
        head: fitted.head,
        label_efficiency: labels,
        rotation_robustness: angles,
    }))
}

/// The pose study of an attention run on its augmented test set.
fn test_set_pose(
    model: &Autoencoder,
    config: &Config,
    data: &Splits,
    device: &Device,
    quiet: bool,
) -> Result<PoseStudy> {
    anyhow::ensure!(
        config.data.augment,
        "{}: the pose study needs augmented test images (data.augment = true)",
        config.name
    );
    let draws = augment_draws(test_augment_seed(&config.data), data.test.len());
    pose_study(model, config, &data.test, &draws, device, quiet)
}

/// Test-set confusion matrices of one run and head.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Confusions {
    /// `<config>_<head>`, the stem of the figures.
    pub name: String,
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// Logistic probe: `[true][predicted]`.
    pub logistic: Vec<Vec<usize>>,
    /// k-means clusters, each named by its Hungarian-matched class:
    /// `[true][cluster's class]`.
    pub kmeans: Vec<Vec<usize>>,
}

fn confusions_of(config: &Config, fitted: &FittedFeatures, data: &Splits) -> Result<Confusions> {
    let (y_test, class_names) = (&data.test.labels, &data.test.class_names);
    let classes = class_names.len();
    let predicted = fitted.probes.predict_logistic(fitted.f_test);
    let logistic = confusion_matrix(&predicted, y_test, classes);
    let kmeans = match fitted.clusters {
        Some(clusters) => {
            let class_of = cluster_classes(clusters, y_test, classes);
            let named: Vec<usize> = clusters.iter().map(|&c| class_of[c]).collect();
            confusion_matrix(&named, y_test, classes)
        }
        None => vec![vec![0; classes]; classes],
    };
    Ok(Confusions {
        name: format!("{}_{}", config.name, fitted.head.name()),
        classes: class_names.to_vec(),
        logistic,
        kmeans,
    })
}

/// `confusion.json`, and per run and head `confusion_<name>.png` (logistic
/// probe) and `kmeans_<name>.png` (matched k-means clusters).
fn write_confusions(out: &Path, all: &[Confusions]) -> Result<Vec<String>> {
    write_json(&out.join("confusion.json"), all)?;
    let mut warnings = Vec::new();
    for c in all {
        for (what, counts, file) in [
            (
                "logistic regression",
                &c.logistic,
                format!("confusion_{}.png", c.name),
            ),
            (
                "k-means, clusters matched to classes",
                &c.kmeans,
                format!("kmeans_{}.png", c.name),
            ),
        ] {
            let drawn = plots::heatmap(
                counts,
                (&c.classes, &c.classes),
                &format!("{}: {what} on the test set", c.name),
                ("predicted class", "true class"),
                &out.join(&file),
            );
            if let Err(e) = drawn {
                warnings.push(format!("no figure {file}: {e:#}"));
            }
        }
    }
    Ok(warnings)
}

/// `value` as pretty JSON, written atomically.
fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    crate::atomic::write(path, serde_json::to_string_pretty(value)?.as_bytes())?;
    Ok(())
}

/// `pose.json`, and `pose_<config>.png` per attention run: true transform
/// against the one the attention recovered.
fn write_poses(out: &Path, poses: &[PoseStudy]) -> Result<Vec<String>> {
    write_json(&out.join("pose.json"), poses)?;
    let mut warnings = Vec::new();
    for p in poses {
        let path = out.join(format!("pose_{}.png", p.config));
        let title = format!(
            "{}: attention pose, {:.1}% recovered (entropy {:.2} of {:.2} nats)",
            p.config,
            100.0 * p.agreement,
            p.mean_entropy,
            p.uniform_entropy
        );
        let drawn = plots::heatmap(
            &p.counts,
            (&p.elements, &p.elements),
            &title,
            (
                "recovered transform (argmax of w, class offset removed)",
                "true transform (nearest element)",
            ),
            &path,
        );
        if let Err(e) = drawn {
            warnings.push(format!("no pose figure for {}: {e:#}", p.config));
        }
    }
    Ok(warnings)
}

/// A study's name in the files: `<run> <head>`.
fn name(s: &StudyResult) -> String {
    format!("{} {}", s.config, s.head.label())
}

/// `studies.json`, `label_efficiency.csv` and `.png`,
/// `rotation_robustness.csv` and `.png`; returns the figures' warnings.
fn write_studies(out: &Path, studies: &[StudyResult]) -> Result<Vec<String>> {
    write_json(&out.join("studies.json"), studies)?;
    let mut warnings = Vec::new();
    // the rows of every draw, for other probes on the same draws
    // (scripts/compare_probes.py): {"<run> <head>": {"<labels>": [[row, ...], ...]}}
    let draws: std::collections::BTreeMap<
        String,
        std::collections::BTreeMap<String, &Vec<Vec<usize>>>,
    > = studies
        .iter()
        .map(|s| {
            let points = s
                .label_efficiency
                .iter()
                .filter(|p| !p.rows.is_empty())
                .map(|p| (p.labels.to_string(), &p.rows))
                .collect();
            (name(s), points)
        })
        .filter(|(_, points): &(String, std::collections::BTreeMap<_, _>)| !points.is_empty())
        .collect();
    if draws.is_empty() {
        // an earlier evaluation's draws do not belong beside these studies
        remove_if_there(&out.join("label_draws.json"))?;
    } else {
        write_json(&out.join("label_draws.json"), &draws)?;
    }
    warnings.extend(write_label_efficiency(out, studies)?);
    warnings.extend(write_rotation_robustness(out, studies)?);
    Ok(warnings)
}

/// `label_efficiency.csv` and its chart (none without label studies).
fn write_label_efficiency(out: &Path, studies: &[StudyResult]) -> Result<Option<String>> {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut curves = Vec::new();
    for s in studies.iter().filter(|s| !s.label_efficiency.is_empty()) {
        let mut curve = Vec::new();
        for p in &s.label_efficiency {
            for (d, sc) in p.draws.iter().enumerate() {
                rows.push(vec![
                    s.config.clone(),
                    s.head.label().to_string(),
                    p.labels.to_string(),
                    d.to_string(),
                    format!("{:.4}", sc.logistic),
                    format!("{:.4}", sc.mlp),
                    format!("{:.4}", sc.knn),
                ]);
            }
            let logistic: Vec<f64> = p.draws.iter().map(|d| d.logistic).collect();
            curve.push((p.labels as f64, mean_std(&logistic).0));
        }
        curves.push((name(s), curve));
    }
    let csv = csv_text(
        &["run", "head", "labels", "draw", "logistic", "mlp", "knn"],
        &rows,
    )?;
    write_curves(
        &out.join("label_efficiency"),
        &csv,
        &curves,
        (
            "Label efficiency: logistic regression on frozen features",
            ("labelled training images", "test accuracy"),
            true,
        ),
    )
}

/// `rotation_robustness.csv` and its chart (none without rotation studies).
fn write_rotation_robustness(out: &Path, studies: &[StudyResult]) -> Result<Option<String>> {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut curves = Vec::new();
    for s in studies.iter().filter(|s| !s.rotation_robustness.is_empty()) {
        for mirrored in [false, true] {
            let curve: Vec<(f64, f64)> = s
                .rotation_robustness
                .iter()
                .filter(|p| p.mirrored == mirrored)
                .map(|p| (p.degrees, p.scores.logistic))
                .collect();
            let suffix = if mirrored { plots::MIRRORED } else { "" };
            curves.push((format!("{}{suffix}", name(s)), curve));
        }
        for p in &s.rotation_robustness {
            rows.push(vec![
                s.config.clone(),
                s.head.label().to_string(),
                p.degrees.to_string(),
                p.mirrored.to_string(),
                format!("{:.4}", p.scores.logistic),
                format!("{:.4}", p.scores.mlp),
                format!("{:.4}", p.scores.knn),
            ]);
        }
    }
    let csv = csv_text(
        &[
            "run", "head", "degrees", "mirrored", "logistic", "mlp", "knn",
        ],
        &rows,
    )?;
    write_curves(
        &out.join("rotation_robustness"),
        &csv,
        &curves,
        (
            "Rotation robustness: logistic regression on upright test images turned by one angle",
            ("rotation (degrees)", "test accuracy"),
            false,
        ),
    )
}

/// Remove a file left by an earlier evaluation into the same folder.
fn remove_if_there(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove the stale {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// A study's `<stem>.csv` and its line chart `<stem>.png` (title, axis
/// labels, logarithmic x), unless there are no curves; returns the chart's
/// warning if it could not be drawn.
fn write_curves(
    stem: &Path,
    csv: &str,
    curves: &[(String, Vec<(f64, f64)>)],
    (title, axes, log_x): (&str, (&str, &str), bool),
) -> Result<Option<String>> {
    if curves.is_empty() {
        // an earlier evaluation's study does not belong beside this one
        remove_if_there(&stem.with_extension("csv"))?;
        remove_if_there(&stem.with_extension("png"))?;
        return Ok(None);
    }
    crate::atomic::write(&stem.with_extension("csv"), csv.as_bytes())?;
    let path = stem.with_extension("png");
    Ok(plots::lines(title, axes, log_x, curves, &path)
        .err()
        .map(|e| format!("no figure {}: {e:#}", path.display())))
}
