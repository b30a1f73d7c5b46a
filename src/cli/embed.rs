//! `eqae embed`: invariant features of a data split or a folder of images
//! as `.npy`, with labels and file names beside them.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use ndarray::Array1;
use ndarray_npy::write_npy;

use crate::data::{folder, load_splits};
use crate::eval::features::{extract, Head};
use crate::train::RunDir;

/// Which split of the run's data set.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Split {
    /// Training images.
    Train,
    /// Validation images.
    Validation,
    /// Test images.
    Test,
}

/// Arguments of `eqae embed`.
#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// Trained run directory.
    #[arg(long)]
    pub run: PathBuf,
    /// Split of the run's data set to embed.
    #[arg(long, value_enum, default_value = "test", conflicts_with = "images")]
    pub split: Split,
    /// A folder of PNG/JPEG images to embed instead.
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Which features (default: the model's first head; `v` dumps the raw
    /// equivariant embedding).
    #[arg(long, value_enum)]
    pub head: Option<Head>,
    /// Output `.npy` (float32, one row per image).
    #[arg(long)]
    pub out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// cpu or wgpu.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// Run `eqae embed`.
pub fn run(args: EmbedArgs) -> Result<()> {
    if args.out.extension().and_then(|e| e.to_str()) != Some("npy") {
        bail!("--out {}: the output must end in .npy", args.out.display());
    }
    let device = crate::device::select(&args.device)?;
    let run = RunDir::new(&args.run);
    let config = run.load_config()?;
    let model = run.load_model(&config, &device)?;
    let data = match &args.images {
        Some(dir) => folder::load_folder(dir, config.data.image_size)?,
        None => {
            let splits = load_splits(&config.data)?;
            match args.split {
                Split::Train => splits.train,
                Split::Validation => splits.validation,
                Split::Test => splits.test,
            }
        }
    };
    let head = args.head.unwrap_or(Head::defaults(config.model.kind)[0]);
    let started = std::time::Instant::now();
    let features = extract(&model, &config, head, &data, &device, args.quiet)?;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    write_npy(&args.out, &features)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    let stem = args.out.with_extension("");
    let labels = Array1::from(data.labels.iter().map(|&l| l as i64).collect::<Vec<_>>());
    if args.images.is_none() {
        write_npy(format!("{}_labels.npy", stem.display()), &labels)?;
        std::fs::write(
            format!("{}_classes.txt", stem.display()),
            data.class_names.join("\n") + "\n",
        )?;
    }
    if let Some(files) = &data.file_names {
        std::fs::write(
            format!("{}_files.txt", stem.display()),
            files.join("\n") + "\n",
        )?;
    }
    println!(
        "{} images -> {} features ({:?}) in {:.1}s ({:.0} images/s): {}",
        features.nrows(),
        features.ncols(),
        head,
        seconds,
        features.nrows() as f64 / seconds.max(1e-9),
        args.out.display()
    );
    Ok(())
}
