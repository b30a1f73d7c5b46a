//! `eqae embed`: invariant features of a data split or a folder of images
//! as `.npy`, with labels and file names beside them, streamed in bounded
//! memory, resumable and shardable (see [`crate::eval::embed`]).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};

use super::args::{DeviceArgs, HeadArg};

use crate::eval::embed_run::{embed_run, EmbedRequest, Split};

/// Which split of the run's data set.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SplitArg {
    /// Training images.
    Train,
    /// Validation images.
    Validation,
    /// Test images.
    Test,
}

impl From<SplitArg> for Split {
    fn from(s: SplitArg) -> Split {
        match s {
            SplitArg::Train => Split::Train,
            SplitArg::Validation => Split::Validation,
            SplitArg::Test => Split::Test,
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
    pub split: SplitArg,
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

impl EmbedArgs {
    /// The request these arguments make.
    pub fn request(self) -> EmbedRequest {
        EmbedRequest {
            run: self.run,
            head: self.head.map(Into::into),
            images: self.images,
            split: self.split.into(),
            out: self.out,
            shard: self.shard.unwrap_or((0, 1)),
            skip_bad: self.skip_bad,
            resume: self.resume,
            quiet: self.quiet,
        }
    }
}

/// Run `eqae embed`.
pub fn run(args: EmbedArgs) -> Result<()> {
    let device = args.device.select()?;
    embed_run(&args.request(), &device).map(drop)
}
