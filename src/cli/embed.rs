//! `eqae embed`: invariant features of a data split or a folder of images
//! as `.npy`, with labels and file names beside them.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use super::args::{DeviceArgs, HeadArg};
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
    pub head: Option<HeadArg>,
    /// Output `.npy` (float32, one row per image).
    #[arg(long)]
    pub out: PathBuf,
    /// With --images: leave out files that cannot be read, decoded or
    /// named (listed in `<out>_skipped.txt`) instead of stopping at the first.
    #[arg(long, requires = "images")]
    pub skip_bad: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// The compute device.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Run `eqae embed`.
pub fn run(args: EmbedArgs) -> Result<()> {
    if args.out.extension().and_then(|e| e.to_str()) != Some("npy") {
        bail!("--out {}: the output must end in .npy", args.out.display());
    }
    let device = args.device.select()?;
    let run = RunDir::new(&args.run);
    let config = run.load_config()?;
    let model = run.load_model(&config, &device)?;
    let mut skipped = Vec::new();
    let data = match &args.images {
        Some(dir) => {
            let (data, bad) = folder::load_folder(dir, config.data.image_size, args.skip_bad)?;
            skipped = bad;
            data
        }
        None => {
            let splits = load_splits(&config.data)?;
            match args.split {
                Split::Train => splits.train,
                Split::Validation => splits.validation,
                Split::Test => splits.test,
            }
        }
    };
    let head = args
        .head
        .map(Head::from)
        .unwrap_or(Head::defaults(config.model.kind)[0]);
    let started = std::time::Instant::now();
    let features = extract(&model, &config, head, &data, &device, args.quiet)?;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create the folder {} for --out", parent.display()))?;
    }
    write_npy(&args.out, &features)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    let stem = args.out.with_extension("").display().to_string();
    let side = |suffix: &str| PathBuf::from(format!("{stem}{suffix}"));
    let write_text = |path: PathBuf, text: String| {
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    if args.images.is_none() {
        let labels = Array1::from(data.labels.iter().map(|&l| l as i64).collect::<Vec<_>>());
        let path = side("_labels.npy");
        write_npy(&path, &labels).with_context(|| format!("cannot write {}", path.display()))?;
        write_text(side("_classes.txt"), data.class_names.join("\n") + "\n")?;
    }
    if let Some(files) = &data.file_names {
        // names with line breaks or in other encodings were refused on loading
        write_text(side("_files.txt"), files.join("\n") + "\n")?;
    }
    if args.skip_bad {
        let lines: Vec<String> = skipped.iter().map(|e| e.to_string()).collect();
        for line in &lines {
            eprintln!("skipped {line}");
        }
        write_text(side("_skipped.txt"), lines.join("\n") + "\n")?;
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
