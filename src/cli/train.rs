//! `eqae train`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::args::DeviceArgs;

use crate::data::load_splits;
use crate::train::{train, RunDir, TrainOptions};

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
    let data = load_splits(&config.data)?;
    let run = RunDir::new(args.runs.join(&config.name));
    let opts = TrainOptions {
        quiet: args.quiet,
        resume: args.resume,
        stop_after: None,
    };
    let s = train(&config, &run, &data, &device, &opts)?;
    if s.trained_now == 0 {
        println!(
            "{} already trained for {} epochs (train.epochs = {}): nothing to do; run directory {}",
            config.name,
            s.epochs,
            config.train.epochs,
            run.root.display()
        );
        return Ok(());
    }
    println!(
        "trained {} for {} epochs: validation MSE {:.5}, {:.0} images/s; run directory {}",
        config.name,
        s.epochs,
        s.validation_loss,
        s.images_per_second,
        run.root.display()
    );
    Ok(())
}
