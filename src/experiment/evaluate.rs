//! Trained runs evaluated as they are (`eqae eval --run`): every head of
//! every run through every probe, one report.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::tensor::Device;

use super::invariance::{label_efficiency, rotation_robustness, AnglePoint, LabelPoint};
use super::pose::{augment_draws, pose_study, PoseStudy};
use super::report::{mean_std, write_reports, RowResult};
use crate::config::{Config, ModelKind};
use crate::data::{load_splits, test_augment_seed, Splits};
use crate::eval::features::Head;
use crate::eval::probes::{cluster_classes, confusion_matrix, FittedProbes, ProbeScores};
use crate::eval::{figures::figures, plots, split_features};
use crate::model::Autoencoder;
use crate::train::RunDir;

/// The invariance studies to run beside the probes (`eqae eval --labels`,
/// `--rotations`).
#[derive(Clone, Debug, Default)]
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
    /// The attention pose study of every attention run.
    pub pose: bool,
}

impl Studies {
    /// Whether any study is asked for.
    pub fn any(&self) -> bool {
        !self.labels.is_empty() || self.rotation_step.is_some() || self.pose
    }
}

/// One run and head's studies.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct StudyResult {
    /// Config name of the run.
    pub config: String,
    /// Row label of the head.
    pub head: String,
    /// Label efficiency, one point per size.
    pub label_efficiency: Vec<LabelPoint>,
    /// Rotation robustness, one point per angle (unmirrored, then mirrored).
    pub rotation_robustness: Vec<AnglePoint>,
}

/// What `evaluate_runs` wrote.
pub struct Evaluation {
    /// One result per run and head.
    pub results: Vec<RowResult>,
    /// The Markdown report.
    pub markdown: String,
    /// The report files (JSON, Markdown).
    pub files: (PathBuf, PathBuf),
    /// Figures that could not be drawn, and why.
    pub warnings: Vec<String>,
    /// The invariance studies asked for.
    pub studies: Vec<StudyResult>,
    /// The attention pose studies asked for.
    pub poses: Vec<PoseStudy>,
}

/// Evaluate `heads` (each run's own when empty) of every run in `runs`,
/// write `eval.{json,md}` into `out` and, with `plots`, the figures after.
pub fn evaluate_runs(
    runs: &[PathBuf],
    heads: &[Head],
    out: &Path,
    (draw, studies): (bool, &Studies),
    quiet: bool,
    device: &Device,
) -> Result<Evaluation> {
    // every run is read before anything is computed or written: a typo in
    // the last one fails at once and leaves no empty report folder
    let mut configs = Vec::new();
    for dir in runs {
        let run = RunDir::new(dir);
        let config = run.load_config()?;
        if !run.model().exists() {
            anyhow::bail!(
                "{} has no trained weights (model.bpk); train it with `eqae train --config {}`",
                dir.display(),
                run.config().display()
            );
        }
        configs.push(config);
    }
    let names = row_names(runs, &configs);
    crate::atomic::check_writable(&out.join("eval.json"), "--out")?;
    let mut results = Vec::new();
    let mut figure_rows = Vec::new();
    let mut study_results = Vec::new();
    let mut poses = Vec::new();
    let mut confusions = Vec::new();
    for ((dir, config), name) in runs.iter().zip(configs).zip(names) {
        let mut one_run = || -> Result<()> {
            let run = RunDir::new(dir);
            let model = run.load_model(&config, device)?;
            // the row's name in reports and figure files
            let config = Config {
                name: name.clone(),
                ..config.clone()
            };
            let data = load_splits(&config.data)?;
            if studies.pose && config.model.kind == ModelKind::Attention {
                poses.push(test_set_pose(&model, &config, &data, device, quiet)?);
            }
            let heads = if heads.is_empty() {
                Head::defaults(config.model.kind)
            } else {
                heads.to_vec()
            };
            for head in heads {
                let seed = config.train.seed;
                let (f_train, f_test) =
                    split_features(&model, &config, head, &data, device, quiet)?;
                let (y_train, y_test) = (&data.train.labels, &data.test.labels);
                let classes = data.train.class_names.len();
                // fitted once: the scores, the confusion matrices, label
                // efficiency at all labels and every rotated test set reuse them
                let probes = FittedProbes::fit(&f_train, y_train, classes, seed)?;
                let (scores, clusters) = probes.score_all(&f_test, y_test, seed)?;
                let fitted = FittedFeatures {
                    head,
                    f_train: &f_train,
                    f_test: &f_test,
                    probes: &probes,
                    scores: &scores,
                    clusters: clusters.as_deref(),
                };
                if draw {
                    confusions.push(confusions_of(&config, &fitted, &data)?);
                }
                if let Some(study) =
                    run_studies(&model, &config, &data, &fitted, studies, device, quiet)?
                {
                    study_results.push(study);
                }
                let features = f_test.ncols();
                if draw {
                    figure_rows.push((
                        format!("{} {}", config.name, head.label()),
                        f_test,
                        data.test.labels.clone(),
                    ));
                }
                results.push(RowResult {
                    model: head.label().into(),
                    group: if config.model.kind == ModelKind::Baseline {
                        "-".into()
                    } else {
                        config.model.group.name().to_uppercase()
                    },
                    config: config.name.clone(),
                    seed,
                    features,
                    scores,
                    paper_logistic: f64::NAN,
                    paper_mlp: f64::NAN,
                });
                // written as they come (an evaluation of full-scale runs takes
                // an hour): an interrupted one keeps every head it finished
                write_reports(out, "eval", "Evaluation (frozen features", &results)?;
                if !study_results.is_empty() {
                    write_studies(out, &study_results)?;
                }
                if !confusions.is_empty() {
                    write_confusions(out, &confusions)?;
                }
            }
            if !poses.is_empty() {
                write_poses(out, &poses)?;
            }
            Ok(())
        };
        one_run().with_context(|| format!("run {}", dir.display()))?;
    }
    // the results first: a figure that fails must not lose them
    let (markdown, json, md) = write_reports(out, "eval", "Evaluation (frozen features", &results)?;
    let mut warnings = if draw {
        figures(
            &figure_rows,
            figure_rows.len().saturating_sub(1),
            out,
            "eval",
        )
    } else {
        Vec::new()
    };
    if !study_results.is_empty() {
        warnings.extend(write_studies(out, &study_results)?);
    }
    if !poses.is_empty() {
        warnings.extend(write_poses(out, &poses)?);
    }
    if !confusions.is_empty() {
        warnings.extend(write_confusions(out, &confusions)?);
    }
    Ok(Evaluation {
        results,
        markdown,
        files: (json, md),
        warnings,
        studies: study_results,
        poses,
    })
}

/// The name each run's rows carry: its config name, unless runs of the
/// same name would be mistaken for seeds of one row (the same seed, or
/// other settings than the seed): then its folder, as a file-name-safe
/// string (`runs/syn` -> `runs_syn`).
pub fn row_names(runs: &[PathBuf], configs: &[Config]) -> Vec<String> {
    let unseeded = |c: &Config| {
        let mut c = c.clone();
        c.train.seed = 0;
        c
    };
    configs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let clash = configs.iter().enumerate().any(|(j, o)| {
                j != i
                    && o.name == c.name
                    && (o.train.seed == c.train.seed || !unseeded(o).diff(&unseeded(c)).is_empty())
            });
            if clash {
                runs[i]
                    .display()
                    .to_string()
                    .chars()
                    .map(|ch| {
                        if ch.is_ascii_alphanumeric() || "-_.".contains(ch) {
                            ch
                        } else {
                            '_'
                        }
                    })
                    .collect::<String>()
                    .trim_matches('_')
                    .to_string()
            } else {
                c.name.clone()
            }
        })
        .collect()
}

/// One head's features and the probes fitted on them.
pub struct FittedFeatures<'a> {
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
pub fn run_studies(
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
    let angles = match studies.rotation_step {
        Some(step) => rotation_robustness(
            model,
            config,
            (fitted.head, Some(fitted.probes)),
            data,
            (step, studies.rotation_images),
            device,
            quiet,
            seed,
        )?,
        None => Vec::new(),
    };
    Ok(Some(StudyResult {
        config: config.name.clone(),
        head: fitted.head.label().into(),
        label_efficiency: labels,
        rotation_robustness: angles,
    }))
}

/// The pose study of an attention run on its augmented test set.
pub fn test_set_pose(
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
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
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

pub(crate) fn confusions_of(
    config: &Config,
    fitted: &FittedFeatures,
    data: &Splits,
) -> Result<Confusions> {
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
pub(crate) fn write_confusions(out: &Path, all: &[Confusions]) -> Result<Vec<String>> {
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
fn write_json<T: serde::Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    crate::atomic::write(path, serde_json::to_string_pretty(value)?.as_bytes())?;
    Ok(())
}

/// `pose.json`, and `pose_<config>.png` per attention run: true transform
/// against the one the attention recovered.
pub(crate) fn write_poses(out: &Path, poses: &[PoseStudy]) -> Result<Vec<String>> {
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

/// `studies.json`, `label_efficiency.csv` and `.png`,
/// `rotation_robustness.csv` and `.png`; returns the figures' warnings.
pub(crate) fn write_studies(out: &Path, studies: &[StudyResult]) -> Result<Vec<String>> {
    write_json(&out.join("studies.json"), studies)?;
    let mut warnings = Vec::new();
    let name = |s: &StudyResult| format!("{} {}", s.config, s.head);
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
    if !draws.is_empty() {
        write_json(&out.join("label_draws.json"), &draws)?;
    }
    let mut csv = String::from("run,head,labels,draw,logistic,mlp,knn\n");
    let mut curves = Vec::new();
    for s in studies.iter().filter(|s| !s.label_efficiency.is_empty()) {
        let mut curve = Vec::new();
        for p in &s.label_efficiency {
            for (d, sc) in p.draws.iter().enumerate() {
                csv += &format!(
                    "{},{},{},{d},{:.4},{:.4},{:.4}\n",
                    s.config, s.head, p.labels, sc.logistic, sc.mlp, sc.knn
                );
            }
            let logistic: Vec<f64> = p.draws.iter().map(|d| d.logistic).collect();
            curve.push((p.labels as f64, mean_std(&logistic).0));
        }
        curves.push((name(s), curve));
    }
    warnings.extend(write_curves(
        &out.join("label_efficiency"),
        &csv,
        &curves,
        (
            "Label efficiency: logistic regression on frozen features",
            ("labelled training images", "test accuracy"),
            true,
        ),
    )?);
    let mut csv = String::from("run,head,degrees,mirrored,logistic,mlp,knn\n");
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
            csv += &format!(
                "{},{},{},{},{:.4},{:.4},{:.4}\n",
                s.config,
                s.head,
                p.degrees,
                p.mirrored,
                p.scores.logistic,
                p.scores.mlp,
                p.scores.knn
            );
        }
    }
    warnings.extend(write_curves(
        &out.join("rotation_robustness"),
        &csv,
        &curves,
        (
            "Rotation robustness: logistic regression on upright test images turned by one angle",
            ("rotation (degrees)", "test accuracy"),
            false,
        ),
    )?);
    Ok(warnings)
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
        return Ok(None);
    }
    crate::atomic::write(&stem.with_extension("csv"), csv.as_bytes())?;
    let path = stem.with_extension("png");
    Ok(plots::lines(title, axes, log_x, curves, &path)
        .err()
        .map(|e| format!("no figure {}: {e:#}", path.display())))
}
