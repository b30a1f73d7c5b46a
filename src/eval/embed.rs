//! Embedding a collection of any size in bounded memory (`eqae embed`):
//! images are decoded batch by batch on a background thread while the
//! network reads the previous batch, and every batch's rows are appended
//! to files in a partial folder beside the output, `.<out>.partial/`,
//! with a small `state.json` saying how far they are whole. The final
//! files (`<out>.npy` and its side files) appear by rename only when
//! everything is done, so a file with a final name is always complete; an
//! interrupted run continues from `state.json` with `--resume`.
//!
//! Output files, for `--out F.npy`:
//! - `F.npy`: float32 `[rows, features]`;
//! - `F_files.txt`: the source of each row, relative to `--images`;
//! - `F_labels.npy`, `F_classes.txt`: for data splits and class folders;
//! - `F_skipped.txt`: with `--skip-bad`, each file left out and why.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::features::{FeatureReader, BATCH};
use super::npy::NpyRows;
use crate::data::folder::{load_image_onto, Canvas, FolderSummary, ImageWalk};
use crate::data::{DataError, Dataset};
use crate::nn::transform::to_vec;
use crate::progress;
use crate::train::images_tensor;

/// Where the images come from.
pub enum Source<'a> {
    /// A split of the run's data set, in memory.
    Split(&'a Dataset),
    /// Image files under a folder, walked in sorted order.
    Files {
        /// The folder.
        root: &'a Path,
        /// What a first walk found: the count and the classes.
        summary: &'a FolderSummary,
        /// How each file is placed on the model's canvas.
        canvas: Canvas,
    },
}

impl Source<'_> {
    fn len(&self) -> usize {
        match self {
            Source::Split(d) => d.len(),
            Source::Files { summary, .. } => summary.count,
        }
    }

    fn class_names(&self) -> Option<Vec<String>> {
        match self {
            Source::Split(d) => Some(d.class_names.clone()),
            Source::Files { summary, .. } if !summary.classes.is_empty() => {
                Some(summary.classes.clone())
            }
            Source::Files { .. } => None,
        }
    }

    fn has_names(&self) -> bool {
        match self {
            Source::Split(d) => d.file_names.is_some(),
            Source::Files { .. } => true,
        }
    }
}

/// Part `index` (0-based) of `count` of a list of `len` items: contiguous
/// and in order, so the parts joined in order are the whole list.
pub fn shard_range(len: usize, (index, count): (usize, usize)) -> std::ops::Range<usize> {
    let at = |k: usize| (len as u128 * k as u128 / count as u128) as usize;
    at(index)..at(index + 1)
}

/// How to embed.
pub struct EmbedOptions<'a> {
    /// The `.npy` to write.
    pub out: &'a Path,
    /// This process's part of the list: `(index, count)`, 0-based.
    pub shard: (usize, usize),
    /// Leave out unreadable files (listed in `_skipped.txt`).
    pub skip_bad: bool,
    /// Continue an interrupted run with the same arguments.
    pub resume: bool,
    /// What the output is computed from (run, weights, head, source):
    /// a resume is refused when it differs.
    pub fingerprint: String,
    /// No progress bar.
    pub quiet: bool,
}

/// What an embedding wrote.
pub struct EmbedSummary {
    /// Rows written.
    pub rows: u64,
    /// Features per row.
    pub cols: usize,
    /// Files left out (with --skip-bad).
    pub skipped: usize,
    /// Rows that were already done by an earlier, interrupted run.
    pub resumed_rows: u64,
    /// Seconds this process spent.
    pub seconds: f64,
}

/// How far the files in the partial folder are whole.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
struct State {
    fingerprint: String,
    /// Items of the shard processed (embedded or skipped).
    done: usize,
    /// Rows in `features.npy`.
    rows: u64,
    /// Columns of `features.npy` (0 before the first batch).
    cols: usize,
    /// Bytes of `files.txt` and of `skipped.txt`.
    files_bytes: u64,
    skipped_bytes: u64,
    skipped: usize,
}

/// The partial folder of an output.
pub fn partial_dir(out: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(out.file_name().unwrap_or_default());
    name.push(".partial");
    out.with_file_name(name)
}

/// `<stem><suffix>` beside the output.
pub fn side_path(out: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", out.with_extension("").display()))
}

/// One item of a batch: its file name (where it has one), its class, and
/// whether it was read (its pixels are then in the batch, in order).
struct Item {
    name: Option<String>,
    label: usize,
    read: Result<(), DataError>,
}

/// One decoded batch.
struct Batch {
    pixels: Vec<f32>,
    items: Vec<Item>,
}

/// Embed `source` (its part `opts.shard`) into `opts.out` with `reader`.
pub fn embed(reader: &FeatureReader, source: &Source, opts: &EmbedOptions) -> Result<EmbedSummary> {
    let out = opts.out;
    let partial = partial_dir(out);
    let range = shard_range(source.len(), opts.shard);
    let _lock = lock_partial(&partial)?;
    let state_path = partial.join("state.json");
    let previous: Option<State> = if opts.resume {
        match std::fs::read_to_string(&state_path) {
            Ok(text) => Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("corrupt {}", state_path.display()))?,
            ),
            Err(_) => None,
        }
    } else {
        None
    };
    if let Some(p) = &previous {
        if p.fingerprint != opts.fingerprint {
            bail!(
                "--resume: {} was started with other arguments, weights or images; run without --resume to start again",
                partial.display()
            );
        }
    }
    let mut state = match previous {
        Some(p) => p,
        None => {
            // a fresh start: whatever an earlier run left goes
            for entry in std::fs::read_dir(&partial)
                .with_context(|| format!("cannot read {}", partial.display()))?
                .flatten()
            {
                if entry.file_name() != ".lock" {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
            State {
                fingerprint: opts.fingerprint.clone(),
                ..State::default()
            }
        }
    };
    let resumed_rows = state.rows;
    let (features_path, files_path, skipped_path) = (
        partial.join("features.npy"),
        partial.join("files.txt"),
        partial.join("skipped.txt"),
    );
    let mut features = if state.cols > 0 {
        Some(NpyRows::reopen(&features_path, state.cols, state.rows)?)
    } else {
        None
    };
    let mut files_txt = append_at(&files_path, state.files_bytes)?;
    let mut skipped_txt = append_at(&skipped_path, state.skipped_bytes)?;
    let labels_path = partial.join("labels.npy");
    let mut labels = match (source.class_names(), state.rows) {
        (None, _) => None,
        (Some(_), 0) => Some(NpyRows::create_labels(&labels_path)?),
        (Some(_), rows) => Some(NpyRows::reopen_labels(&labels_path, rows)?),
    };

    let todo = range.start + state.done..range.end;
    let bar = progress::bar(range.len() as u64, opts.quiet, "embed");
    bar.set_position(state.done as u64);
    let started = Instant::now();
    let mut embedded_now = 0u64;
    let (tx, rx) = sync_channel::<Batch>(2);
    std::thread::scope(|scope| -> Result<()> {
        scope.spawn(move || produce(source, todo, tx));
        let rx = rx;
        for Batch { pixels, items } in rx.iter() {
            let n = items.len();
            let mut batch_labels = Vec::with_capacity(n);
            for Item { name, label, read } in items {
                match read {
                    Ok(()) => {
                        if let Some(name) = name {
                            writeln!(files_txt, "{name}")?;
                        }
                        batch_labels.push(label as i64);
                    }
                    Err(e) if opts.skip_bad => {
                        let line = format!("skipped {e}");
                        if bar.is_hidden() {
                            eprintln!("{line}");
                        } else {
                            bar.println(line);
                        }
                        writeln!(skipped_txt, "{e}")?;
                        state.skipped += 1;
                    }
                    Err(e) => {
                        return Err(anyhow::Error::new(
                            e.hinted("pass --skip-bad to leave such files out"),
                        ))
                    }
                }
            }
            if let Some(l) = &mut labels {
                l.append_labels(&batch_labels)?;
            }
            if !pixels.is_empty() {
                let x = images_tensor(pixels, reader.size(), reader.device());
                let f = reader.read(x)?;
                let cols = f.dims()[1];
                let rows = to_vec(&f);
                let w = match &mut features {
                    Some(w) => w,
                    None => {
                        state.cols = cols;
                        features.insert(NpyRows::create(&features_path, cols)?)
                    }
                };
                w.append(&rows)?;
                embedded_now += (rows.len() / cols.max(1)) as u64;
            }
            state.done += n;
            // a point a resume can continue from: the files first, then
            // the state that says how much of them is whole
            files_txt.flush()?;
            skipped_txt.flush()?;
            if let Some(l) = &mut labels {
                l.flush()?;
            }
            if let Some(w) = &mut features {
                w.flush()?;
                state.rows = w.rows();
            }
            state.files_bytes = files_txt.get_ref().metadata()?.len();
            state.skipped_bytes = skipped_txt.get_ref().metadata()?.len();
            crate::atomic::write(&state_path, serde_json::to_string(&state)?.as_bytes())?;
            bar.set_position(state.done as u64);
            let rate = embedded_now as f64 / started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("{rate:.0} images/s"));
        }
        Ok(())
    })
    .map_err(|e| disk_full_hint(e, &partial))?;
    bar.finish_and_clear();
    let Some(features) = features else {
        bail!(
            "no image was embedded: {}",
            if range.is_empty() {
                "the list to embed is empty".to_string()
            } else {
                format!("all {} files were bad (see the skipped list)", range.len())
            }
        );
    };
    let (rows, cols) = (features.rows(), features.cols());
    features.finish().map_err(|e| disk_full_hint(e, &partial))?;
    drop((files_txt, skipped_txt));

    if let (Some(l), Some(classes)) = (labels, source.class_names()) {
        l.finish()?;
        std::fs::write(partial.join("classes.txt"), classes.join("\n") + "\n")
            .with_context(|| format!("cannot write {}", partial.display()))?;
    }
    // publish: the side files first, stale ones of an earlier output
    // removed, the features last
    let mut publish: Vec<(PathBuf, PathBuf)> = Vec::new();
    for (file, suffix) in [
        ("files.txt", "_files.txt"),
        ("labels.npy", "_labels.npy"),
        ("classes.txt", "_classes.txt"),
        ("skipped.txt", "_skipped.txt"),
    ] {
        let from = partial.join(file);
        let keep = match file {
            "files.txt" => source.has_names(),
            "skipped.txt" => opts.skip_bad,
            _ => from.exists(),
        };
        let to = side_path(out, suffix);
        if keep && from.exists() {
            publish.push((from, to));
        } else if to.exists() {
            std::fs::remove_file(&to)
                .with_context(|| format!("cannot remove the stale {}", to.display()))?;
        }
    }
    publish.push((features_path, out.to_path_buf()));
    for (from, to) in publish {
        std::fs::rename(&from, &to)
            .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))?;
    }
    drop(_lock);
    let _ = std::fs::remove_dir_all(&partial);
    Ok(EmbedSummary {
        rows,
        cols,
        skipped: state.skipped,
        resumed_rows,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Decode a batch of files in parallel, in order.
fn decode_files(
    root: &Path,
    summary: &FolderSummary,
    canvas: Canvas,
    walked: Vec<Result<String, DataError>>,
) -> Batch {
    let decoded: Vec<(Item, Option<Vec<f32>>)> = walked
        .into_par_iter()
        .map(|w| match w {
            Ok(rel) => {
                let label = summary.label(&rel);
                match load_image_onto(&root.join(&rel), canvas) {
                    Ok(p) => (
                        Item {
                            name: Some(rel),
                            label,
                            read: Ok(()),
                        },
                        Some(p),
                    ),
                    Err(e) => (
                        Item {
                            name: Some(rel),
                            label,
                            read: Err(e),
                        },
                        None,
                    ),
                }
            }
            Err(e) => (
                Item {
                    name: None,
                    label: 0,
                    read: Err(e),
                },
                None,
            ),
        })
        .collect();
    let mut pixels = Vec::with_capacity(decoded.len() * canvas.size * canvas.size);
    let mut items = Vec::with_capacity(decoded.len());
    for (item, p) in decoded {
        if let Some(p) = p {
            pixels.extend(p);
        }
        items.push(item);
    }
    Batch { pixels, items }
}

/// Send the batches of `source`'s items `range` (already shifted past what
/// was done), decoded, until the receiver hangs up.
fn produce(source: &Source, range: std::ops::Range<usize>, tx: std::sync::mpsc::SyncSender<Batch>) {
    match source {
        Source::Split(d) => {
            for start in range.clone().step_by(BATCH) {
                let idx: Vec<usize> = (start..(start + BATCH).min(range.end)).collect();
                let batch = Batch {
                    pixels: d.gather(&idx),
                    items: idx
                        .iter()
                        .map(|&i| Item {
                            name: d.file_names.as_ref().map(|f| f[i].clone()),
                            label: d.labels[i],
                            read: Ok(()),
                        })
                        .collect(),
                };
                if tx.send(batch).is_err() {
                    return;
                }
            }
        }
        Source::Files {
            root,
            summary,
            canvas,
        } => {
            let walk = match ImageWalk::new(root) {
                Ok(w) => w,
                Err(e) => {
                    let _ = tx.send(Batch {
                        pixels: Vec::new(),
                        items: vec![Item {
                            name: None,
                            label: 0,
                            read: Err(e),
                        }],
                    });
                    return;
                }
            };
            let mut walk = walk.skip(range.start).take(range.len());
            loop {
                let walked: Vec<Result<String, DataError>> = walk.by_ref().take(BATCH).collect();
                if walked.is_empty() {
                    return;
                }
                if tx
                    .send(decode_files(root, summary, *canvas, walked))
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// A text file opened for appending after its first `bytes` bytes.
fn append_at(path: &Path, bytes: u64) -> Result<BufWriter<File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.set_len(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let mut w = BufWriter::new(file);
    use std::io::Seek;
    w.seek(std::io::SeekFrom::Start(bytes))?;
    Ok(w)
}

/// The partial folder, created and locked: two processes never write one
/// output.
fn lock_partial(partial: &Path) -> Result<File> {
    std::fs::create_dir_all(partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let path = partial.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another eqae embed is writing the same output ({} is locked)",
            partial.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// An out-of-space error says what is kept and how to go on.
fn disk_full_hint(e: anyhow::Error, partial: &Path) -> anyhow::Error {
    let full = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(libc::ENOSPC))
    });
    if full {
        e.context(format!(
            "the disk is full; the rows done so far are kept in {}: free space and run the same command with --resume",
            partial.display()
        ))
    } else {
        e
    }
}
