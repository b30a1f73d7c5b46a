//! `eqae eval`: probes on frozen features of trained runs, or the paper's
//! tables end to end (`--table 1`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::args::{DeviceArgs, HeadArg, PresetArg};

use crate::data::load_splits;
use crate::eval::evaluate_head;
use crate::eval::features::Head;
use crate::eval::table::{figures, markdown, reproduce, Preset, RowResult, TableOptions};
use crate::train::RunDir;

/// Arguments of `eqae eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Reproduce the paper's Table 1 (augmented MNIST) or 2 (Plankton).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=2), conflicts_with = "run")]
    pub table: Option<u8>,
    /// Size of a table reproduction.
    #[arg(long, value_enum, default_value = "quick")]
    pub preset: PresetArg,
    /// Seeds per row (0..seeds).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub seeds: u64,
    /// Trained run directories to evaluate.
    #[arg(long, num_args = 1..)]
    pub run: Vec<PathBuf>,
    /// Heads to evaluate (default: each model's own).
    #[arg(long, value_enum, num_args = 1..)]
    pub head: Vec<HeadArg>,
    /// Folder with the row configs.
    #[arg(long, default_value = "configs")]
    pub configs: PathBuf,
    /// Folder for run directories.
    #[arg(long, default_value = "runs")]
    pub runs: PathBuf,
    /// Folder for reports (JSON and Markdown).
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
    /// Also draw PCA, t-SNE and explained-variance pictures of the test
    /// features (with --run; table reproductions always draw them).
    #[arg(long)]
    pub plots: bool,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// The compute device.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Run `eqae eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    let device = args.device.select()?;
    if let Some(table) = args.table {
        let opts = TableOptions {
            table,
            preset: args.preset.into(),
            seeds: args.seeds,
            configs: args.configs.clone(),
            runs: args.runs.clone(),
            out: args.out.clone(),
            quiet: args.quiet,
        };
        let results = reproduce(&opts, &device)?;
        println!("{}", markdown(table, args.preset.into(), &results));
        return Ok(());
    }
    if args.run.is_empty() {
        bail!("give --table 1|2, or one or more --run directories");
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create --out {}", args.out.display()))?;
    let mut results = Vec::new();
    let mut figure_rows = Vec::new();
    for dir in &args.run {
        let run = RunDir::new(dir);
        let config = run.load_config()?;
        let model = run.load_model(&config, &device)?;
        let data = load_splits(&config.data)?;
        let heads = if args.head.is_empty() {
            Head::defaults(config.model.kind)
        } else {
            args.head.iter().copied().map(Head::from).collect()
        };
        for head in heads {
            let (scores, f_test) = evaluate_head(
                &model,
                &config,
                head,
                &data,
                &device,
                args.quiet,
                config.train.seed,
            )?;
            let features = f_test.ncols();
            if args.plots {
                figure_rows.push((
                    format!("{} {}", config.name, head.label()),
                    f_test,
                    data.test.labels.clone(),
                ));
            }
            results.push(RowResult {
                model: head.label().into(),
                group: if config.model.kind == crate::config::ModelKind::Baseline {
                    "-".into()
                } else {
                    config.model.group.name().to_uppercase()
                },
                config: config.name.clone(),
                seed: config.train.seed,
                features,
                scores,
                paper_logistic: f64::NAN,
                paper_mlp: f64::NAN,
            });
        }
    }
    // the results first: a figure that fails must not lose them
    let md = markdown(0, Preset::Full, &results);
    let (json_path, md_path) = (args.out.join("eval.json"), args.out.join("eval.md"));
    RunDir::write_atomic(
        &json_path,
        serde_json::to_string_pretty(&results)?.as_bytes(),
    )?;
    RunDir::write_atomic(&md_path, md.as_bytes())?;
    println!("{md}");
    println!("written {} and {}", json_path.display(), md_path.display());
    if args.plots {
        for warning in figures(&figure_rows, &args.out, "eval") {
            eprintln!("warning: {warning}");
        }
    }
    Ok(())
}
