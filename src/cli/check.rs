//! `eqae check`: measured equivariance error per layer and generator.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use burn::tensor::{Distribution, Tensor};
use clap::Args;

use super::args::DeviceArgs;

use crate::data::synthetic;
use crate::model::check::check_model;
use crate::model::Autoencoder;
use crate::train::{batch_tensor, RunDir};

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
    /// The compute device.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Run `eqae check`.
pub fn run(args: CheckArgs) -> Result<()> {
    let device = args.device.select()?;
    // The untrained model and the random inputs come from the config's
    // training seed, so that repeated checks print the same numbers.
    let seed_from = |config: &crate::config::Config| device.seed(config.train.seed);
    let (config, model) = match &args.run {
        Some(dir) => {
            let run = RunDir::new(dir);
            let config = run.load_config()?;
            seed_from(&config);
            let model = run.load_model(&config, &device)?;
            (config, model)
        }
        None => {
            let config = super::load_config(args.config.as_ref())?;
            seed_from(&config);
            let model = Autoencoder::new(&config.model, config.data.image_size, &device);
            (config, model)
        }
    };
    crate::model::flops::ensure_step_fits(
        &config.model,
        config.data.image_size,
        f64::from(args.batch),
        4.0, // every input kind and layer of the check at once
        &format!("the check: --batch {}", args.batch),
    )?;
    let Autoencoder::Equivariant(model) = model else {
        bail!(
            "{}: the baseline autoencoder is not equivariant; nothing to check",
            config.name
        );
    };
    let s = config.data.image_size;
    let batch = usize::from(args.batch);
    // Random pixels stress every layer; smooth centred shapes look like real
    // data and stay inside the canvas under any rotation.
    let random = Tensor::<4>::random([batch, 1, s, s], Distribution::Uniform(0.0, 1.0), &device);
    let shapes = synthetic::shapes(batch, s - 4, 5).augmented(s, true, 5);
    let blobs = batch_tensor(&shapes, &(0..batch).collect::<Vec<_>>(), &device);
    let mut rows = check_model(&model, &random, "random");
    rows.extend(check_model(&model, &blobs, "shapes"));

    println!(
        "equivariance of {} ({}), relative error ||f(t.x) - t.f(x)|| / ||t.f(x)||",
        config.name,
        model.group()
    );
    println!(
        "{:<40} {:<8} {:<8} {:>10}  note",
        "layer", "element", "input", "error"
    );
    let mut worst_exact = 0.0f64;
    for r in &rows {
        let note = if r.exact {
            "exact on the grid"
        } else {
            "30-degree step: bilinear interpolation"
        };
        println!(
            "{:<40} {:<8} {:<8} {:>10.2e}  {note}",
            r.layer, r.element, r.input, r.error
        );
        if r.exact {
            worst_exact = worst_exact.max(r.error);
        }
    }
    println!("worst error over exact elements: {worst_exact:.2e}");
    if let Some(path) = &args.json {
        crate::atomic::write(path, serde_json::to_string_pretty(&rows)?.as_bytes())
            .with_context(|| format!("--json {}", path.display()))?;
    }
    if worst_exact > 1e-5 {
        bail!("equivariance broken: error {worst_exact:.2e} > 1e-5 for an exact element");
    }
    Ok(())
}
