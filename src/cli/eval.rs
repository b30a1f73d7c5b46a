//! `eqae eval`: probes on frozen features of trained runs, or the paper's
//! tables end to end (`--table 1`).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

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
    pub preset: Preset,
    /// Seeds per row (0..seeds).
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Trained run directories to evaluate.
    #[arg(long, num_args = 1..)]
    pub run: Vec<PathBuf>,
    /// Heads to evaluate (default: each model's own).
    #[arg(long, value_enum, num_args = 1..)]
    pub head: Vec<Head>,
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
    /// cpu or wgpu.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// Run `eqae eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    let device = crate::device::select(&args.device)?;
    if let Some(table) = args.table {
        let opts = TableOptions {
            table,
            preset: args.preset,
            seeds: args.seeds.max(1),
            configs: args.configs.clone(),
            runs: args.runs.clone(),
            out: args.out.clone(),
            quiet: args.quiet,
        };
        let results = reproduce(&opts, &device)?;
        println!("{}", markdown(table, args.preset, &results));
        return Ok(());
    }
    if args.run.is_empty() {
        bail!("give --table 1|2, or one or more --run directories");
    }
    std::fs::create_dir_all(&args.out)?;
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
            args.head.clone()
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
    if args.plots {
        figures(&figure_rows, &args.out, "eval")?;
    }
    let md = markdown(0, Preset::Full, &results);
    std::fs::write(
        args.out.join("eval.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    std::fs::write(args.out.join("eval.md"), &md)?;
    println!("{md}");
    println!(
        "written {} and {}",
        args.out.join("eval.json").display(),
        args.out.join("eval.md").display()
    );
    Ok(())
}
