//! `eqae embed`: invariant features of a data split or a folder of images
//! as `.npy`, with labels and file names beside them, streamed in bounded
//! memory, resumable and shardable (see [`crate::eval::embed`]).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use super::args::{DeviceArgs, HeadArg, TrainedHead};

use crate::config::Config;
use crate::data::folder::Canvas;
use crate::data::{load_splits, Dataset, Splits};
use crate::eval::embed::{embed, EmbedOptions, EmbedSummary, Source};
use crate::eval::features::Head;
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

impl Split {
    /// The name the command line uses.
    fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }
}

/// `I/N`: part I (1-based) of N.
fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: expected I/N, e.g. 3/8"))?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|e| format!("{i:?}: {e}"))?,
        n.trim().parse().map_err(|e| format!("{n:?}: {e}"))?,
    );
    if n == 0 || i == 0 || i > n {
        return Err(format!("{s}: I must be in 1..=N"));
    }
    Ok((i - 1, n))
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
    #[arg(long, requires = "images", conflicts_with = "split")]
    pub skip_bad: bool,
    /// Embed part I of N of the sorted list (e.g. `--shard 3/8`), for N
    /// processes started by a cluster's scheduler; the parts joined in
    /// order equal the whole.
    #[arg(long, value_parser = parse_shard, value_name = "I/N")]
    pub shard: Option<(usize, usize)>,
    /// Continue an interrupted embed with the same arguments from the rows
    /// it had written.
    #[arg(long)]
    pub resume: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// The compute device.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Run `eqae embed`.
pub fn run(args: EmbedArgs) -> Result<()> {
    // every check before the work: the run and its head exist, the output
    // can be written
    let device = args.device.select()?;
    let TrainedHead {
        run,
        config,
        reader,
        ..
    } = TrainedHead::load(&args.run, args.head, &device)?;
    crate::atomic::check_output(&args.out, "npy", "--out")?;
    let head = reader.head();
    let shard = args.shard.unwrap_or((0, 1));
    let splits;
    let source = match &args.images {
        Some(dir) => Source::Files {
            root: dir,
            canvas: Canvas::of(&config.data),
        },
        None => {
            splits = load_splits(&config.data)?;
            Source::Split(split_of(&splits, args.split, &config, &run)?)
        }
    };
    let (fingerprint, about) = provenance(&args, (&run, &config), head, shard);
    let opts = EmbedOptions {
        out: &args.out,
        shard,
        skip_bad: args.skip_bad,
        resume: args.resume,
        fingerprint,
        quiet: args.quiet,
        about,
    };
    let done = embed(&reader, &source, &opts)
        .with_context(|| format!("embedding into {}", args.out.display()))?;
    report(&done, head, &args.out);
    Ok(())
}

/// The split `split` of the run's data set, refused when it is empty.
fn split_of<'a>(
    splits: &'a Splits,
    split: Split,
    config: &Config,
    run: &RunDir,
) -> Result<&'a Dataset> {
    let (set, name) = match split {
        Split::Train => (&splits.train, "training"),
        Split::Validation => (&splits.validation, "validation"),
        Split::Test => (&splits.test, "test"),
    };
    if set.is_empty() {
        bail!(
            "{}: the {name} split is empty (see data.validation_fraction, data.train_limit and data.test_limit in {})",
            config.name,
            run.config().display()
        );
    }
    Ok(set)
}

/// What the output is computed from: a fingerprint (a resume with
/// anything else is refused; the folder's own contents are checked by the
/// resume) and the description the manifest carries.
fn provenance(
    args: &EmbedArgs,
    (run, config): (&RunDir, &Config),
    head: Head,
    shard: (usize, usize),
) -> (String, serde_json::Value) {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or(p.to_path_buf());
    let described = format!(
        "{}|{}|{}|{:?}|{:?}|{:?}|{:?}|{}",
        canonical(&run.root).display(),
        std::fs::read_to_string(run.root.join("model.json")).unwrap_or_default(),
        config.to_toml(),
        head,
        args.images.as_deref().map(canonical),
        args.images.is_none().then_some(args.split),
        shard,
        args.skip_bad,
    );
    let fingerprint = {
        use sha2::Digest;
        sha2::Sha256::digest(described.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let shown = |p: &Path| canonical(p).display().to_string();
    let about = serde_json::json!({
        "run": shown(&run.root),
        "head": head.name(),
        "images": args.images.as_deref().map(shown),
        "split": args.images.is_none().then(|| args.split.name()),
        "shard": [shard.0 + 1, shard.1],
    });
    (fingerprint, about)
}

/// The summary line (and where the left-out files are listed).
fn report(done: &EmbedSummary, head: Head, out: &Path) {
    if done.skipped > 0 {
        eprintln!(
            "left out {} unreadable files: see {}",
            done.skipped,
            crate::eval::embed::side_path(out, "_skipped.txt").display()
        );
    }
    let resumed = if done.resumed_rows > 0 {
        format!(" ({} of them from the interrupted run)", done.resumed_rows)
    } else {
        String::new()
    };
    let rate = if done.embedded_now > 0 {
        format!(
            " ({:.0} images/s)",
            done.embedded_now as f64 / done.seconds.max(1e-9)
        )
    } else {
        String::new()
    };
    println!(
        "{} images{resumed} -> {} features ({:?}) in {:.1}s{rate}: {}",
        done.rows,
        done.cols,
        head,
        done.seconds,
        out.display()
    );
}
