//! Trained runs evaluated as they are (`eqae eval --run`): every head of
//! every run through every probe, one report.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::tensor::Device;

use super::invariance::{label_efficiency, rotation_robustness, AnglePoint, LabelPoint};
use super::report::{mean_std, write_reports, RowResult};
use crate::config::ModelKind;
use crate::data::load_splits;
use crate::eval::features::Head;
use crate::eval::probes::run_all;
use crate::eval::{figures::figures, plots, split_features};
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
}

/// One run and head's studies.
#[derive(Clone, Debug, serde::Serialize)]
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
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut results = Vec::new();
    let mut figure_rows = Vec::new();
    let mut study_results = Vec::new();
    for dir in runs {
        let run = RunDir::new(dir);
        let config = run.load_config()?;
        let model = run.load_model(&config, device)?;
        let data = load_splits(&config.data)?;
        let heads = if heads.is_empty() {
            Head::defaults(config.model.kind)
        } else {
            heads.to_vec()
        };
        for head in heads {
            let seed = config.train.seed;
            let (f_train, f_test) = split_features(&model, &config, head, &data, device, quiet)?;
            let (y_train, y_test) = (&data.train.labels, &data.test.labels);
            let classes = data.train.class_names.len();
            let scores = run_all(&f_train, y_train, &f_test, y_test, classes, seed)?;
            if !studies.labels.is_empty() || studies.rotation_step.is_some() {
                let sizes: Vec<usize> = studies
                    .labels
                    .iter()
                    .map(|&n| if n == 0 { usize::MAX } else { n })
                    .collect();
                let labels = label_efficiency(
                    (&f_train, y_train),
                    (&f_test, y_test),
                    classes,
                    &sizes,
                    studies.draws,
                    seed,
                )?;
                let angles = match studies.rotation_step {
                    Some(step) => rotation_robustness(
                        &model, &config, head, &data, step, device, quiet, seed,
                    )?,
                    None => Vec::new(),
                };
                study_results.push(StudyResult {
                    config: config.name.clone(),
                    head: head.label().into(),
                    label_efficiency: labels,
                    rotation_robustness: angles,
                });
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
        }
    }
    // the results first: a figure that fails must not lose them
    let (markdown, json, md) = write_reports(out, "eval", "Evaluation (", &results)?;
    let mut warnings = if draw {
        figures(&figure_rows, out, "eval")
    } else {
        Vec::new()
    };
    if !study_results.is_empty() {
        warnings.extend(write_studies(out, &study_results)?);
    }
    Ok(Evaluation {
        results,
        markdown,
        files: (json, md),
        warnings,
        studies: study_results,
    })
}

/// `studies.json`, `label_efficiency.csv` and `.png`,
/// `rotation_robustness.csv` and `.png`; returns the figures' warnings.
fn write_studies(out: &Path, studies: &[StudyResult]) -> Result<Vec<String>> {
    RunDir::write_atomic(
        &out.join("studies.json"),
        serde_json::to_string_pretty(studies)?.as_bytes(),
    )?;
    let mut warnings = Vec::new();
    let name = |s: &StudyResult| format!("{} {}", s.config, s.head);
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
    if !curves.is_empty() {
        RunDir::write_atomic(&out.join("label_efficiency.csv"), csv.as_bytes())?;
        let path = out.join("label_efficiency.png");
        let drawn = plots::lines(
            "Label efficiency: logistic regression on frozen features",
            ("labelled training images", "test accuracy"),
            true,
            &curves,
            &path,
        );
        if let Err(e) = drawn {
            warnings.push(format!("no label-efficiency figure: {e:#}"));
        }
    }
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
            let suffix = if mirrored { " (mirrored)" } else { "" };
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
    if !curves.is_empty() {
        RunDir::write_atomic(&out.join("rotation_robustness.csv"), csv.as_bytes())?;
        let path = out.join("rotation_robustness.png");
        let drawn = plots::lines(
            "Rotation robustness: logistic regression on upright test images turned by one angle",
            ("rotation (degrees)", "test accuracy"),
            false,
            &curves,
            &path,
        );
        if let Err(e) = drawn {
            warnings.push(format!("no rotation-robustness figure: {e:#}"));
        }
    }
    Ok(warnings)
}
