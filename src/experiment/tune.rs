//! Hyperparameters chosen on a validation split (`eqae tune`), never on
//! the test set.
//!
//! One base config, and variants that each change one setting of it
//! (one factor at a time, around the defaults). Every variant's model is
//! trained on the training split; its features' probes are fitted on the
//! training split and scored on the validation split, which the
//! autoencoder never trained on. The test set is not read. A variant that
//! changes only `features.*` reads the base's model, since those settings
//! only change how the features are read from V.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::row_cache::{row_key, RowCache};
use crate::config::{changes_text, Config, ConfigChange, Section};
use crate::data::{load_splits, Splits};
use crate::eval::features::{self, Head};
use crate::eval::probes::{FittedProbes, ProbeScores};
use crate::model::Autoencoder;
use crate::train::{trained_model, RunDir};

/// The name of the base variant.
pub const BASE: &str = "default";

/// What `eqae tune` does.
#[derive(Clone, Debug)]
pub struct TuneOptions {
    /// The base config, with every `--set` applied.
    pub base: Config,
    /// The variants: one `KEY=VALUE` setting each, applied to the base.
    pub variants: Vec<String>,
    /// A trained run whose model every variant reads (the base config is
    /// then the run's own): only `features.*` settings may vary, nothing
    /// trains.
    pub trained: Option<PathBuf>,
    /// Heads to score (the base model's own when empty).
    pub heads: Vec<Head>,
    /// Runs go to `<runs>/tune-<base name>/<variant>`.
    pub runs: PathBuf,
    /// Reports go to `<out>/tune_<base name>.{json,csv,md}`.
    pub out: PathBuf,
    /// No progress bars.
    pub quiet: bool,
}

/// One variant and head, scored on the validation split.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TuneRow {
    /// `default` or the setting that makes the variant.
    pub variant: String,
    /// The head (written by its name).
    #[serde(with = "super::report::spelled::head_name")]
    pub head: Head,
    /// Trainable parameters of the model.
    pub parameters: usize,
    /// Epochs trained.
    pub epochs: usize,
    /// Reconstruction MSE on the validation split after the last epoch.
    pub validation_mse: f64,
    /// Seconds of training, all epochs.
    pub train_seconds: f64,
    /// Feature columns.
    pub features: usize,
    /// Probe scores on the validation split.
    pub scores: ProbeScores,
}

/// A variant's run folder name: the setting with every character that is
/// not a letter, digit, `.` or `-` written as `_`.
pub fn variant_slug(variant: &str) -> String {
    variant
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// (epochs, last validation MSE, total seconds) from a run's metrics.csv.
fn metrics_summary(run: &RunDir) -> (usize, f64, f64) {
    let text = std::fs::read_to_string(run.metrics()).unwrap_or_default();
    let rows = crate::train::run_dir::read_metrics(&text).unwrap_or_default();
    (
        rows.len(),
        rows.last().map_or(f64::NAN, |m| m.validation_loss),
        rows.iter()
            .map(|m| m.seconds)
            .filter(|s| s.is_finite())
            .sum(),
    )
}

/// Train (or reuse) every variant and score it on the validation split;
/// the reports are rewritten after every variant, and each scored variant
/// is kept in `<out>/tune_<name>_rows/`, so an interrupted study keeps what
/// it measured and a rerun scores only what is missing.
pub fn tune(opts: &TuneOptions, device: &Device) -> Result<Vec<TuneRow>> {
    let variants = checked_variants(opts)?;
    let data = load_splits(&opts.base.data)?;
    anyhow::ensure!(
        !data.validation.is_empty(),
        "the validation split is empty: set data.validation_fraction above 0"
    );
    let root = opts.runs.join(format!("tune-{}", opts.base.name));
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    let cache = RowCache::new(&opts.out, &format!("tune_{}", opts.base.name));
    let mut rows = Vec::new();
    for (variant, config) in &variants {
        let (slug, model_config) = variant_model_config(opts, variant, config);
        // the variant's own data settings (a smaller train_limit, say)
        let own_data;
        let split: &Splits = if config.data == opts.base.data {
            &data
        } else {
            own_data = load_splits(&config.data)?;
            anyhow::ensure!(
                !own_data.validation.is_empty() && !own_data.train.is_empty(),
                "variant {variant}: its data settings leave an empty training or validation split"
            );
            &own_data
        };
        let run = match &opts.trained {
            Some(dir) => RunDir::new(dir),
            None => RunDir::new(root.join(&slug)),
        };
        let model = match &opts.trained {
            // every variant was checked above to vary features.* only
            Some(_) => run.load_model(&run.load_config()?, device)?,
            None => trained_model(&model_config, &run, split, device, opts.quiet)
                .with_context(|| format!("variant {variant}"))?,
        };
        let (epochs, validation_mse, train_seconds) = metrics_summary(&run);
        let heads = if opts.heads.is_empty() {
            Head::defaults(config.model.kind)
        } else {
            opts.heads.clone()
        };
        for head in heads {
            // a variant scored before, by an interrupted study, is read back
            let name = format!("{}_{}", variant_slug(variant), head.name());
            let key = row_key(&run.model(), config, head, &"validation")?;
            if let Some(row) = cache.load::<TuneRow>(&name, &key) {
                eprintln!(
                    "tune {}: {variant} ({}): scored before, read from {}",
                    opts.base.name,
                    row.head.name(),
                    cache.dir().display()
                );
                rows.push(row);
                write_tune_reports(opts, &data, &rows)?;
                continue;
            }
            let (scores, features) =
                validation_scores((&model, config), head, split, device, opts.quiet)?;
            let row = TuneRow {
                variant: variant.clone(),
                head,
                parameters: model.parameter_count(),
                epochs,
                validation_mse,
                train_seconds,
                features,
                scores,
            };
            eprintln!(
                "tune {}: {variant} ({}): validation {}",
                opts.base.name,
                row.head.name(),
                row.scores.summary()
            );
            cache.store(&name, &key, &row, None)?;
            rows.push(row);
            write_tune_reports(opts, &data, &rows)?;
        }
    }
    Ok(rows)
}

/// The run name and config a variant trains: the base's, under the name
/// `base`, where the variant changes only `features.*` (its model is the
/// base model), else its own.
fn variant_model_config(opts: &TuneOptions, variant: &str, config: &Config) -> (String, Config) {
    let reads_base = opts
        .base
        .diff(config)
        .iter()
        .all(|d| d.section == Section::Features);
    let (slug, mut model_config) = if reads_base {
        (BASE.to_string(), opts.base.clone())
    } else {
        (variant_slug(variant), config.clone())
    };
    model_config.name = format!("{}-{slug}", opts.base.name);
    (slug, model_config)
}

/// The probes fitted on the training split's features of `head` and
/// scored on the validation split's; and the number of features.
fn validation_scores(
    (model, config): (&Autoencoder, &Config),
    head: Head,
    split: &Splits,
    device: &Device,
    quiet: bool,
) -> Result<(ProbeScores, usize)> {
    let f_train = features::extract(model, config, head, &split.train, device, quiet)?;
    let f_val = features::extract(model, config, head, &split.validation, device, quiet)?;
    let classes = split.train.class_names.len();
    let seed = config.train.seed;
    let probes = FittedProbes::fit(&f_train, &split.train.labels, classes, seed)?;
    let (scores, _) = probes.score_all(&f_val, &split.validation.labels, seed)?;
    Ok((scores, f_val.ncols()))
}

/// The report files' common path without extension.
pub fn report_stem(opts: &TuneOptions) -> PathBuf {
    opts.out.join(format!("tune_{}", opts.base.name))
}

/// Every variant built and checked before anything trains (a typo in the
/// last one does not wait hours to be reported), with the base first; and
/// the reports checked writable.
fn checked_variants(opts: &TuneOptions) -> Result<Vec<(String, Config)>> {
    // every variant is built (and checked) before anything trains, so a
    // typo in the last one does not wait hours to be reported
    let mut variants: Vec<(String, Config)> = vec![(BASE.to_string(), opts.base.clone())];
    for v in &opts.variants {
        variants.push((v.clone(), opts.base.with_setting(v)?));
    }
    // variants are scored on their validation split: one without any is
    // refused here, not after the variants before it have trained
    for (variant, config) in &variants {
        anyhow::ensure!(
            config.data.validation_fraction > 0.0,
            "variant {variant}: data.validation_fraction = {} leaves no validation images to score it on; keep it above 0",
            config.data.validation_fraction
        );
    }
    // on a trained run only features.* may vary: refused before any scoring
    if let Some(dir) = &opts.trained {
        let saved = RunDir::new(dir).load_config()?;
        for (variant, config) in &variants {
            let changed: Vec<ConfigChange> = saved
                .diff(config)
                .into_iter()
                .filter(|d| d.section != Section::Features)
                .collect();
            anyhow::ensure!(
                changed.is_empty(),
                "variant {variant}: {} was trained with other settings ({}); only features.* can vary on a trained run",
                dir.display(),
                changes_text(&changed)
            );
        }
    }
    // the reports can be written: found out now, not after the scoring
    let stem = report_stem(opts);
    for ext in ["json", "csv", "md"] {
        crate::atomic::check_writable(&stem.with_extension(ext), "--out")?;
    }
    Ok(variants)
}

/// `tune_<name>.json` (rows and base config), `.csv` and `.md`.
fn write_tune_reports(opts: &TuneOptions, data: &Splits, rows: &[TuneRow]) -> Result<()> {
    let stem = report_stem(opts);
    let json = serde_json::json!({
        "base": opts.base,
        "training_images": data.train.len(),
        "validation_images": data.validation.len(),
        "rows": rows,
    });
    write(
        &stem.with_extension("json"),
        &serde_json::to_string_pretty(&json)?,
    )?;
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.variant.clone(),
                r.head.name().to_string(),
                r.parameters.to_string(),
                r.epochs.to_string(),
                format!("{:.6}", r.validation_mse),
                format!("{:.1}", r.train_seconds),
                r.features.to_string(),
                format!("{:.4}", r.scores.logistic),
                format!("{:.4}", r.scores.mlp),
                format!("{:.4}", r.scores.knn),
                format!("{:.4}", r.scores.kmeans_accuracy),
                format!("{:.4}", r.scores.nmi),
            ]
        })
        .collect();
    let csv = super::report::csv_text(
        &[
            "variant",
            "head",
            "parameters",
            "epochs",
            "validation_mse",
            "train_seconds",
            "features",
            "logistic",
            "mlp",
            "knn",
            "kmeans_accuracy",
            "nmi",
        ],
        &table,
    )?;
    write(&stem.with_extension("csv"), &csv)?;
    write(
        &stem.with_extension("md"),
        &tune_markdown(&opts.base.name, data, rows),
    )
}

fn write(path: &Path, text: &str) -> Result<()> {
    crate::atomic::write(path, text.as_bytes())
}

/// The study as a Markdown table: validation accuracies in %, the
/// difference to the base variant of the same head in brackets.
pub fn tune_markdown(name: &str, data: &Splits, rows: &[TuneRow]) -> String {
    let mut out = format!(
        "Validation study of {name}: probes fitted on {} training images, scored on {} validation images (accuracies in %, change against `{BASE}` in brackets)\n\n",
        data.train.len(),
        data.validation.len()
    );
    out.push_str("| variant | head | parameters | epochs | val. MSE | train min | logistic | MLP | 5-NN | k-means | NMI |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let base = rows
            .iter()
            .find(|b| b.variant == BASE && b.head == r.head)
            .map(|b| &b.scores);
        let cell = |v: f64, b: Option<f64>| match b {
            Some(b) if r.variant != BASE => format!("{:.2} ({:+.2})", 100.0 * v, 100.0 * (v - b)),
            _ => format!("{:.2}", 100.0 * v),
        };
        let s = &r.scores;
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {:.5} | {:.1} | {} | {} | {} | {} | {:.3} |",
            r.variant,
            r.head.name(),
            r.parameters,
            r.epochs,
            r.validation_mse,
            r.train_seconds / 60.0,
            cell(s.logistic, base.map(|b| b.logistic)),
            cell(s.mlp, base.map(|b| b.mlp)),
            cell(s.knn, base.map(|b| b.knn)),
            cell(s.kmeans_accuracy, base.map(|b| b.kmeans_accuracy)),
            s.nmi
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_folder_names() {
        assert_eq!(variant_slug("model.latent=64"), "model.latent_64");
        assert_eq!(
            variant_slug("model.channels=[2, 4]"),
            "model.channels__2__4_"
        );
        assert_eq!(variant_slug("../x"), ".._x");
    }
}
