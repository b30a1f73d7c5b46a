//! `eqae tune`: a hyperparameter study on the validation split.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::args::{DeviceArgs, HeadArg};

use crate::eval::features::Head;
use crate::experiment::tune::{report_stem, tune, TuneOptions};

/// Arguments of `eqae tune`.
#[derive(Args, Debug)]
pub struct TuneArgs {
    /// The base config (see configs/).
    #[arg(long, required_unless_present = "trained", conflicts_with = "trained")]
    pub config: Option<PathBuf>,
    /// Instead of --config: a trained run, read as it is (its config is the
    /// base, nothing trains, only `features.*` settings may vary). Its
    /// validation split was held out of its training, so the study stays
    /// off the test set.
    #[arg(long, value_name = "RUN")]
    pub trained: Option<PathBuf>,
    /// A setting of every variant, the base included, e.g.
    /// `--set data.train_limit=12000 --set train.epochs=4` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// One variant: the base with this one setting changed, e.g.
    /// `--vary model.latent=64 --vary train.schedule=cosine` (repeatable;
    /// `features.*` settings reuse the base's model).
    #[arg(long, value_name = "KEY=VALUE")]
    pub vary: Vec<String>,
    /// Heads to score (default: the model's own).
    #[arg(long, value_enum, num_args = 1..)]
    pub head: Vec<HeadArg>,
    /// Folder for run directories (`<runs>/tune-<name>/<variant>`).
    #[arg(long, default_value = "runs")]
    pub runs: PathBuf,
    /// Folder for the report (`tune_<name>.{json,csv,md}`).
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// The compute device.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Run `eqae tune`.
pub fn run(args: TuneArgs) -> Result<()> {
    let mut base = match &args.trained {
        Some(dir) => crate::train::RunDir::new(dir).load_config()?,
        None => super::load_config(args.config.as_ref())?,
    };
    for s in &args.set {
        base = base.with_setting(s)?;
    }
    let device = args.device.select()?;
    let opts = TuneOptions {
        base,
        variants: args.vary,
        trained: args.trained,
        heads: args.head.iter().copied().map(Head::from).collect(),
        runs: args.runs,
        out: args.out,
        quiet: args.quiet,
    };
    let rows = tune(&opts, &device)?;
    let stem = report_stem(&opts);
    println!(
        "scored {} variant(s) and head(s) on the validation split; written {}.{{md,csv,json}}",
        rows.len(),
        stem.display()
    );
    Ok(())
}
