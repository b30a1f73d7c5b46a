//! `eqae train`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::args::DeviceArgs;

use crate::train::{train_and_report, TrainOptions};

/// Arguments of `eqae train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// TOML config (see configs/); the built-in default when omitted.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Folder that holds run directories.
    #[arg(long, default_value = "runs")]
    pub runs: PathBuf,
    /// Continue the run from its latest checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// No progress bars, one log line per epoch.
    #[arg(long)]
    pub quiet: bool,
    /// The compute device.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Run `eqae train`.
pub fn run(args: TrainArgs) -> Result<()> {
    let config = super::load_config(args.config.as_ref())?;
    let device = args.device.select()?;
    let opts = TrainOptions {
        quiet: args.quiet,
        resume: args.resume,
        stop_after: None,
    };
    train_and_report(&config, &args.runs, &device, &opts).map(drop)
}
