//! `eqae check`: measured equivariance error per layer and generator.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use super::args::DeviceArgs;

use crate::experiment::check::{check, AngleRequest, CheckRequest, ModelSource};
use crate::group::resample::Resampling;

/// Arguments of `eqae check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Check an untrained model built from this config.
    #[arg(long, conflicts_with = "run")]
    pub config: Option<PathBuf>,
    /// Check the trained model of this run directory.
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// Images per input kind.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub batch: u16,
    /// Write the rows as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Invariance over the whole circle: how far each invariant head's
    /// features move, `|f(R x) - f(x)| / |f(x)|`, when the test images
    /// turn by every multiple of this many degrees, plain and mirrored
    /// (mean and worst per angle; angles.csv, angles.json, angles.png).
    #[arg(long, value_parser = super::args::parse_angle_step)]
    pub angles: Option<f64>,
    /// With --angles: the first N upright test images [default: 1000].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub angle_images: Option<u32>,
    /// With --angles: the folder for its files (default: the run's folder,
    /// or `reports/` with --config).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// With --angles: how the test images are turned (default: as the
    /// run's training turned its images, `data.resampling`).
    #[arg(long, value_parser = super::args::resampling_parser())]
    pub resample: Option<Resampling>,
    /// The compute device.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Run `eqae check`.
pub fn run(args: CheckArgs) -> Result<()> {
    refuse_angle_options(&args)?;
    let device = args.device.select()?;
    let source = match args.run {
        Some(run) => ModelSource::Run(run),
        None => ModelSource::Config(Box::new(super::load_config(args.config.as_ref())?)),
    };
    let angles = args.angles.map(|step| AngleRequest {
        step,
        images: args.angle_images.unwrap_or(1000) as usize,
        out: args.out,
        resample: args.resample,
    });
    let request = CheckRequest {
        source,
        batch: usize::from(args.batch),
        json: args.json,
        angles,
    };
    check(&request, &device)
}

/// Options of `--angles` mean nothing without it: refused, not ignored.
fn refuse_angle_options(args: &CheckArgs) -> Result<()> {
    if args.angles.is_some() {
        return Ok(());
    }
    for (given, flag) in [
        (args.angle_images.is_some(), "--angle-images"),
        (args.out.is_some(), "--out"),
        (args.resample.is_some(), "--resample"),
    ] {
        if given {
            bail!("{flag} applies with --angles only");
        }
    }
    Ok(())
}
