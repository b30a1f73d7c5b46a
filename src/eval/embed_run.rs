//! `eqae embed` end to end: a trained run's head over a split of its data
//! set or a folder of images, streamed into `.npy` by [`super::embed`],
//! with the provenance a resume checks and the summary line.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::tensor::Device;

use super::embed::{embed, EmbedOptions, EmbedSummary, Source};
use super::features::{Head, TrainedHead};
use crate::config::Config;
use crate::data::folder::Canvas;
use crate::data::{load_splits, Dataset, Splits};
use crate::train::RunDir;

/// A split of a run's data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }
}

/// What `eqae embed` embeds and where.
#[derive(Clone, Debug)]
pub struct EmbedRequest {
    /// The trained run.
    pub run: PathBuf,
    /// Its head (None: the model's first).
    pub head: Option<Head>,
    /// A folder of images to embed, or (None) the split `split`.
    pub images: Option<PathBuf>,
    pub split: Split,
    /// The output `.npy`.
    pub out: PathBuf,
    /// Part I (0-based) of N of the sorted list.
    pub shard: (usize, usize),
    /// Leave out unreadable files instead of stopping.
    pub skip_bad: bool,
    /// Continue an interrupted embed from the rows it had written.
    pub resume: bool,
    /// No progress bar.
    pub quiet: bool,
}

/// Embed as `request` says, then print the summary line. Every check comes
/// before the work: the run and its head exist, the output can be written.
pub fn embed_run(request: &EmbedRequest, device: &Device) -> Result<EmbedSummary> {
    let TrainedHead {
        run,
        config,
        reader,
        ..
    } = TrainedHead::load(&request.run, request.head, device)?;
    crate::atomic::check_output(&request.out, "npy", "--out")?;
    let head = reader.head();
    let splits;
    let source = match &request.images {
        Some(dir) => Source::Files {
            root: dir,
            canvas: Canvas::of(&config.data),
        },
        None => {
            splits = load_splits(&config.data)?;
            Source::Split(split_of(&splits, request.split, &config, &run)?)
        }
    };
    let (fingerprint, about) = provenance(request, (&run, &config), head, request.shard);
    let opts = EmbedOptions {
        out: &request.out,
        shard: request.shard,
        skip_bad: request.skip_bad,
        resume: request.resume,
        fingerprint,
        quiet: request.quiet,
        about,
    };
    let done = embed(&reader, &source, &opts)
        .with_context(|| format!("embedding into {}", request.out.display()))?;
    report(&done, head, &request.out);
    Ok(done)
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
    args: &EmbedRequest,
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
