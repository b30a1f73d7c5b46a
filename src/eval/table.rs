//! The paper's Tables 1 and 2: train what is missing, evaluate every row
//! over several seeds, and write JSON and Markdown with the paper's numbers
//! beside ours.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::tensor::Device;
use serde::Serialize;

use super::features::Head;
use super::probes::ProbeScores;
use crate::config::Config;
use crate::data::{load_splits, Splits};
use crate::group::GroupKind;
use crate::train::{train, RunDir, TrainOptions};

/// One row of a paper table: which config, which head, the paper's numbers.
#[derive(Clone, Debug)]
pub struct PaperRow {
    /// Config file stem in `configs/`.
    pub config: &'static str,
    /// Head read from that run.
    pub head: Head,
    /// Group column.
    pub group: Option<GroupKind>,
    /// Paper's logistic-regression accuracy (%).
    pub logistic: f64,
    /// Paper's neural-network accuracy (%).
    pub mlp: f64,
}

/// Rows of Table 1 (augmented MNIST) or Table 2 (Plankton).
pub fn paper_rows(table: u8) -> Vec<PaperRow> {
    use GroupKind::{D12, D4};
    let r = |config, head, group, logistic, mlp| PaperRow {
        config,
        head,
        group,
        logistic,
        mlp,
    };
    match table {
        1 => vec![
            r("baseline", Head::Code, None, 47.8, 58.3),
            r("d4_gram", Head::Average, Some(D4), 58.2, 60.8),
            r("d12_gram", Head::Average, Some(D12), 80.7, 82.5),
            r("d4_attention", Head::Attention, Some(D4), 81.6, 83.8),
            r("d12_attention", Head::Attention, Some(D12), 72.6, 76.5),
            r("d4_gram", Head::Gram, Some(D4), 65.2, 67.5),
            r("d12_gram", Head::Gram, Some(D12), 87.9, 88.8),
        ],
        _ => vec![
            r("plankton_baseline", Head::Code, None, 44.3, 53.3),
            r("plankton_d4_gram", Head::Average, Some(D4), 48.0, 56.1),
            r("plankton_d12_gram", Head::Average, Some(D12), 53.9, 58.3),
            r(
                "plankton_d4_attention",
                Head::Attention,
                Some(D4),
                49.1,
                58.0,
            ),
            r(
                "plankton_d12_attention",
                Head::Attention,
                Some(D12),
                49.5,
                57.8,
            ),
            r("plankton_d4_gram", Head::Gram, Some(D4), 55.2, 57.8),
            r("plankton_d12_gram", Head::Gram, Some(D12), 55.7, 62.2),
        ],
    }
}

/// Size of a reproduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// 5,000 training and 2,000 test images, 3 epochs: tens of minutes on 2 cores.
    Quick,
    /// The configs as written (all images, their epochs): hours on 2 cores.
    Full,
}

impl Preset {
    fn apply(self, config: &mut Config) {
        if self == Preset::Quick {
            config.data.train_limit = 5000;
            config.data.test_limit = 2000;
            config.train.epochs = 3;
        }
    }
}

/// One evaluated (row, seed).
#[derive(Clone, Debug, Serialize)]
pub struct RowResult {
    /// Row label, e.g. "Gram Pooling".
    pub model: String,
    /// Group column.
    pub group: String,
    /// Config stem.
    pub config: String,
    /// Training seed.
    pub seed: u64,
    /// Number of features.
    pub features: usize,
    /// Probe scores.
    pub scores: ProbeScores,
    /// Paper's logistic-regression accuracy (%).
    pub paper_logistic: f64,
    /// Paper's neural-network accuracy (%).
    pub paper_mlp: f64,
}

/// Options of a table reproduction.
#[derive(Clone, Debug)]
pub struct TableOptions {
    /// 1 (MNIST) or 2 (Plankton).
    pub table: u8,
    /// Quick or full.
    pub preset: Preset,
    /// Seeds 0..seeds.
    pub seeds: u64,
    /// Where the row configs live.
    pub configs: PathBuf,
    /// Where runs go (`<runs>/table<N>-<preset>/<name>-s<seed>`).
    pub runs: PathBuf,
    /// Where the report goes.
    pub out: PathBuf,
    /// No progress bars.
    pub quiet: bool,
}

/// Reproduce a table; returns the per-seed results (also written to disk).
pub fn reproduce(opts: &TableOptions, device: &Device) -> Result<Vec<RowResult>> {
    let rows = paper_rows(opts.table);
    let preset_name = format!("{:?}", opts.preset).to_lowercase();
    let runs_root = opts.runs.join(format!("table{}-{preset_name}", opts.table));
    std::fs::create_dir_all(&opts.out)?;
    let mut data_cache: BTreeMap<String, Splits> = BTreeMap::new();
    let mut results = Vec::new();
    // seed 0's test features of every row, for the figures
    let mut figure_rows: Vec<(String, ndarray::Array2<f32>, Vec<usize>)> = Vec::new();
    for seed in 0..opts.seeds {
        let mut trained: BTreeMap<&str, (Config, crate::model::Autoencoder)> = BTreeMap::new();
        for row in &rows {
            if !trained.contains_key(row.config) {
                let path = opts.configs.join(format!("{}.toml", row.config));
                let mut config = Config::load(&path)?;
                opts.preset.apply(&mut config);
                config.train.seed = seed;
                config.name = format!("{}-s{seed}", row.config);
                let key = toml::to_string(&config.data)?;
                if !data_cache.contains_key(&key) {
                    data_cache.insert(key.clone(), load_splits(&config.data)?);
                }
                let data = &data_cache[&key];
                let run = RunDir::new(runs_root.join(&config.name));
                if run.model().exists() {
                    // a finished run is reused only when it is this row's run
                    let changed = run.load_config()?.diff(&config);
                    if !changed.is_empty() {
                        bail!(
                            "{} was trained with another config than {} (preset {preset_name}) gives now ({}); delete that folder to train it again",
                            run.root.display(),
                            path.display(),
                            changed.join(", ")
                        );
                    }
                } else {
                    let topts = TrainOptions {
                        quiet: opts.quiet,
                        resume: true,
                        stop_after: None,
                    };
                    train(&config, &run, data, device, &topts)
                        .with_context(|| format!("training {}", config.name))?;
                }
                let model = run.load_model(&config, device)?;
                trained.insert(row.config, (config, model));
            }
            let (config, model) = &trained[row.config];
            let data = &data_cache[&toml::to_string(&config.data)?];
            let (scores, f_test) =
                super::evaluate_head(model, config, row.head, data, device, opts.quiet, seed)?;
            let features = f_test.ncols();
            if seed == 0 {
                let group = row
                    .group
                    .map(|g| format!(" {}", g.name().to_uppercase()))
                    .unwrap_or_default();
                figure_rows.push((
                    format!("{}{group}", row.head.label()),
                    f_test,
                    data.test.labels.clone(),
                ));
            }
            let result = RowResult {
                model: row.head.label().to_string(),
                group: row
                    .group
                    .map(|g| g.name().to_uppercase())
                    .unwrap_or_else(|| "-".into()),
                config: row.config.to_string(),
                seed,
                features,
                scores,
                paper_logistic: row.logistic,
                paper_mlp: row.mlp,
            };
            eprintln!(
                "table {} seed {seed}: {} {}: logistic {:.1}%, MLP {:.1}%, kNN {:.1}%, k-means {:.1}%, NMI {:.3}",
                opts.table,
                result.model,
                result.group,
                100.0 * result.scores.logistic,
                100.0 * result.scores.mlp,
                100.0 * result.scores.knn,
                100.0 * result.scores.kmeans_accuracy,
                result.scores.nmi
            );
            results.push(result);
            write_report(opts, &results)?;
        }
    }
    let stem = format!("table{}_{preset_name}", opts.table);
    for warning in figures(&figure_rows, &opts.out, &stem) {
        eprintln!("warning: {warning}");
    }
    Ok(results)
}

/// PCA and t-SNE scatter plots of the first row (the baseline) and the
/// last row (the paper's best, Gram pooling D12), and the explained
/// variance ratio of every row (paper Figures 1, 7 and 8). A figure that
/// the data cannot support (too few rows for t-SNE, say) is left out;
/// the returned lines say which and why.
pub fn figures(
    rows: &[(String, ndarray::Array2<f32>, Vec<usize>)],
    out: &Path,
    stem: &str,
) -> Vec<String> {
    use super::plots::{explained_variance, pca, scatter, tsne};
    use super::probes::standardize;
    let mut warnings = Vec::new();
    let mut curves = Vec::new();
    for (k, (name, features, labels)) in rows.iter().enumerate() {
        let n = features.nrows().min(1500);
        if n < 3 {
            warnings.push(format!(
                "{name}: {n} test rows, too few for PCA or t-SNE; no figures"
            ));
            continue;
        }
        let (x, _) = standardize(features, &features.slice(ndarray::s![..0, ..]).to_owned());
        let x = x.slice(ndarray::s![..n, ..]).to_owned();
        let slug = name.to_lowercase().replace(' ', "_");
        let drawn = pca(&x, 2, 20).and_then(|(proj, ratio)| {
            curves.push((name.clone(), ratio));
            if k == 0 || k + 1 == rows.len() {
                scatter(
                    &proj,
                    &labels[..n],
                    &format!("PCA: {name}"),
                    &out.join(format!("{stem}_pca_{slug}.png")),
                )?;
            }
            Ok(())
        });
        if let Err(e) = drawn {
            warnings.push(format!("{name}: no PCA figure: {e:#}"));
        }
        if k == 0 || k + 1 == rows.len() {
            let drawn = tsne(&x, 0).and_then(|emb| {
                scatter(
                    &emb,
                    &labels[..n],
                    &format!("t-SNE: {name}"),
                    &out.join(format!("{stem}_tsne_{slug}.png")),
                )
            });
            if let Err(e) = drawn {
                warnings.push(format!("{name}: no t-SNE figure: {e:#}"));
            }
        }
    }
    if !curves.is_empty() {
        let path = out.join(format!("{stem}_explained_variance.png"));
        if let Err(e) = explained_variance(&curves, &path) {
            warnings.push(format!("no explained-variance figure: {e:#}"));
        }
    }
    warnings
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, var.sqrt())
}

/// Markdown table of mean ± standard deviation over seeds, paper beside ours.
pub fn markdown(table: u8, preset: Preset, results: &[RowResult]) -> String {
    let mut out = String::new();
    let seeds = results.iter().map(|r| r.seed).max().map_or(0, |s| s + 1);
    let title = match table {
        1 => format!("Table 1 (augmented MNIST, preset {preset:?}"),
        2 => format!("Table 2 (Plankton, preset {preset:?}"),
        _ => "Evaluation (".to_string(),
    };
    let _ = writeln!(
        out,
        "{title}, mean ± std over {seeds} seed(s); accuracies in %)\n"
    );
    let paper = |v: f64| {
        if v.is_nan() {
            "–".to_string()
        } else {
            format!("{v:.1}")
        }
    };
    let _ = writeln!(
        out,
        "| Model | Group | Features | LogReg (paper) | LogReg (ours) | NN (paper) | NN (ours) | kNN (ours) | k-means acc (ours) | NMI (ours) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    let mut seen = Vec::new();
    for r in results {
        let key = (r.config.clone(), r.model.clone());
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let same: Vec<&RowResult> = results
            .iter()
            .filter(|x| x.config == r.config && x.model == r.model)
            .collect();
        let stat = |f: &dyn Fn(&RowResult) -> f64, scale: f64| {
            let (m, s) = mean_std(&same.iter().map(|x| f(x) * scale).collect::<Vec<_>>());
            format!("{m:.1} ± {s:.1}")
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.model,
            r.group,
            r.features,
            paper(r.paper_logistic),
            stat(&|x| x.scores.logistic, 100.0),
            paper(r.paper_mlp),
            stat(&|x| x.scores.mlp, 100.0),
            stat(&|x| x.scores.knn, 100.0),
            stat(&|x| x.scores.kmeans_accuracy, 100.0),
            {
                let (m, s) = mean_std(&same.iter().map(|x| x.scores.nmi).collect::<Vec<_>>());
                format!("{m:.3} ± {s:.3}")
            }
        );
    }
    out
}

fn write_report(opts: &TableOptions, results: &[RowResult]) -> Result<()> {
    let stem = format!(
        "table{}_{}",
        opts.table,
        format!("{:?}", opts.preset).to_lowercase()
    );
    write(
        &opts.out.join(format!("{stem}.json")),
        &serde_json::to_string_pretty(results)?,
    )?;
    write(
        &opts.out.join(format!("{stem}.md")),
        &markdown(opts.table, opts.preset, results),
    )
}

fn write(path: &Path, text: &str) -> Result<()> {
    RunDir::write_atomic(path, text.as_bytes())
}
