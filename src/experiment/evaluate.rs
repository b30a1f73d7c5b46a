//! Trained runs evaluated as they are (`eqae eval --run`): every head of
//! every run through the evaluation pipeline ([`super::pipeline`]), one
//! report.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::tensor::Device;

use super::pipeline::{evaluate_head, Extras, Studies, StudyFiles, StudyResult};
use super::pose::PoseStudy;
use super::report::{write_reports, RowResult};
use crate::config::{Config, ModelKind};
use crate::data::load_splits;
use crate::eval::features::Head;
use crate::eval::figures::figures;
use crate::group::GroupKind;
use crate::train::RunDir;

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

/// [`evaluate_runs`], then print the table, the files written and the pose
/// studies (`pose`: they were asked for).
pub fn evaluate_and_print(
    runs: &[PathBuf],
    heads: &[Head],
    out: &Path,
    (draw, studies): (bool, &Studies),
    (pose, quiet): (bool, bool),
    device: &Device,
) -> Result<()> {
    let done = evaluate_runs(runs, heads, out, (draw, studies), quiet, device)?;
    println!("{}", done.markdown);
    println!(
        "written {} and {}",
        done.files.0.display(),
        done.files.1.display()
    );
    if !done.studies.is_empty() {
        println!(
            "written {}/studies.json and the label-efficiency and rotation-robustness CSV and PNG files",
            out.display()
        );
    }
    for p in &done.poses {
        println!(
            "{}: attention recovers the pose of {:.1}% of {} test images ({:.1}% within one step, reflection right for {:.1}%); mean weight entropy {:.3} nats of {:.3}; canonical element per class: {}",
            p.config,
            100.0 * p.agreement,
            p.images,
            100.0 * p.within_one_step,
            100.0 * p.mirror_agreement,
            p.mean_entropy,
            p.uniform_entropy,
            p.canonical.join(", ")
        );
    }
    if pose && done.poses.is_empty() {
        eprintln!("warning: --pose: none of the runs is an attention model");
    } else if !done.poses.is_empty() {
        println!("written {}/pose.json and pose_<run>.png", out.display());
    }
    for warning in &done.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(())
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
    let configs = read_runs(runs)?;
    let names = row_names(runs, &configs);
    crate::atomic::check_writable(&out.join("eval.json"), "--out")?;
    let mut results = Vec::new();
    let mut figure_rows = Vec::new();
    let mut files = StudyFiles::new(out);
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
            studies.check_label_counts(data.train.class_names.len())?;
            let heads = if heads.is_empty() {
                Head::defaults(config.model.kind)
            } else {
                heads.to_vec()
            };
            for (i, head) in heads.into_iter().enumerate() {
                let extras = Extras {
                    studies,
                    // the pose is the run's, not a head's: once per run
                    pose: studies.pose && i == 0,
                    confusions: draw,
                };
                let (done, f_test) =
                    evaluate_head((&model, &config), head, &data, extras, device, quiet)?;
                if draw {
                    figure_rows.push((
                        format!("{} {}", config.name, head.label()),
                        f_test,
                        data.test.labels.clone(),
                    ));
                }
                results.push(RowResult::new(
                    (&config.name, head),
                    row_group(&config),
                    config.train.seed,
                    (done.features, &done.scores),
                    (f64::NAN, f64::NAN),
                ));
                // written as they come (an evaluation of full-scale runs takes
                // an hour): an interrupted one keeps every head it finished
                write_reports(out, "eval", "Evaluation (frozen features", &results)?;
                files.add(&done)?;
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
    warnings.extend(files.write_all()?);
    Ok(Evaluation {
        results,
        markdown,
        files: (json, md),
        warnings,
        studies: files.studies().to_vec(),
        poses: files.poses().to_vec(),
    })
}

/// Every run's config, read before anything is computed or written (a
/// typo in the last one fails at once and leaves no empty report folder);
/// a run without weights, or given twice, is refused.
fn read_runs(runs: &[PathBuf]) -> Result<Vec<Config>> {
    let mut configs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for dir in runs {
        let same = std::fs::canonicalize(dir).unwrap_or(dir.clone());
        if !seen.insert(same) {
            anyhow::bail!(
                "--run {} is given twice (it would count as two seeds)",
                dir.display()
            );
        }
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
    Ok(configs)
}

/// The group of a run's rows: None for the baseline.
pub fn row_group(config: &Config) -> Option<GroupKind> {
    (config.model.kind != ModelKind::Baseline).then_some(config.model.group)
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
    let mut names: Vec<String> = Vec::new();
    for (i, c) in configs.iter().enumerate() {
        let clash = configs.iter().enumerate().any(|(j, o)| {
            j != i
                && o.name == c.name
                && (o.train.seed == c.train.seed || !unseeded(o).diff(&unseeded(c)).is_empty())
        });
        if !clash {
            names.push(c.name.clone());
            continue;
        }
        let folder = runs[i]
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
            .to_string();
        // folders that read alike (`a-b/x`, `a_b/x`) stay apart: `name-2`
        let taken = |n: &String| names.contains(n) || configs.iter().any(|o| &o.name == n);
        let unique = std::iter::once(folder.clone())
            .chain((2..).map(|k| format!("{folder}-{k}")))
            .find(|n| !taken(n))
            .expect("an unused name");
        names.push(unique);
    }
    names
}
