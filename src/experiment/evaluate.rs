//! Trained runs evaluated as they are (`eqae eval --run`): every head of
//! every run through every probe, one report.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::tensor::Device;

use super::report::{write_reports, RowResult};
use crate::config::ModelKind;
use crate::data::load_splits;
use crate::eval::features::Head;
use crate::eval::{evaluate_head, figures::figures};
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
}

/// Evaluate `heads` (each run's own when empty) of every run in `runs`,
/// write `eval.{json,md}` into `out` and, with `plots`, the figures after.
pub fn evaluate_runs(
    runs: &[PathBuf],
    heads: &[Head],
    out: &Path,
    plots: bool,
    quiet: bool,
    device: &Device,
) -> Result<Evaluation> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut results = Vec::new();
    let mut figure_rows = Vec::new();
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
            let (scores, f_test) =
                evaluate_head(&model, &config, head, &data, device, quiet, seed)?;
            let features = f_test.ncols();
            if plots {
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
    let warnings = if plots {
        figures(&figure_rows, out, "eval")
    } else {
        Vec::new()
    };
    Ok(Evaluation {
        results,
        markdown,
        files: (json, md),
        warnings,
    })
}
