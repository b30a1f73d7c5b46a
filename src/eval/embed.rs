//! Embedding a collection of any size in bounded memory (`eqae embed`):
//! images are decoded batch by batch on a background thread while the
//! network reads the previous batch, and every batch's rows are appended
//! to files in a partial folder beside the output, `.<out>.partial/`,
//! with a small `state.json` saying how far they are whole. The final
//! files (`<out>.npy` and its side files) appear by rename only when
//! everything is done, so a file with a final name is always complete; an
//! interrupted run continues from `state.json` with `--resume`.
//!
//! A folder is listed once, into the partial folder, and the work reads
//! that listing: files added or removed while it runs change nothing, and
//! a resume first checks that every listed file still has the name, size
//! and times it had (refused otherwise).
//!
//! Publishing is one step that a kill cannot split: the parts are renamed
//! into place after `publish.json` (the list of renames) is written, and
//! the manifest last; a kill in between leaves no manifest, and `--resume`
//! finishes the renames.
//!
//! Output files, for `--out F.npy`:
//! - `F.npy`: float32 `[rows, features]`;
//! - `F_files.txt`: the source of each row, relative to `--images`;
//! - `F_labels.npy`, `F_classes.txt`: for data splits and class folders;
//! - `F_skipped.txt`: with `--skip-bad`, each file left out and why;
//! - `F_manifest.json`, written last: every part with its size and
//!   SHA-256; a set without it, or whose parts differ from it, is not a
//!   complete output.

use std::fs::File;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::features::FeatureReader;
use super::npy::NpyRows;
use crate::data::folder::{
    listing_line, load_image_onto, parse_listing_line, Canvas, FolderSummary, Listed,
};
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
        /// How each file is placed on the model's canvas.
        canvas: Canvas,
    },
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
    /// What the rows were computed from (run, head, images or split,
    /// shard), written into the manifest for the commands that read the
    /// output back (`eqae search`).
    pub about: serde_json::Value,
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
    /// Images embedded by this process.
    pub embedded_now: u64,
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
    /// Columns of `features.npy`.
    cols: usize,
    /// Bytes of `files.txt` and of `skipped.txt`.
    files_bytes: u64,
    skipped_bytes: u64,
    skipped: usize,
    /// Items of the whole list (the folder's listing, or the split).
    count: usize,
    /// Class names of the source (none for a folder without classes).
    classes: Option<Vec<String>>,
    /// For a folder: the digest of its listing ([`FolderSummary::digest`]).
    folder_digest: String,
    /// The first reason a file was left out.
    first_skip: Option<String>,
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
    let _lock = lock_partial(&partial)?;
    if opts.resume && partial.join(PUBLISH).exists() {
        return finish_publishing(&partial, out);
    }
    let mut state = start_or_resume(source, opts, &partial)?;
    let cols = reader.width()?;
    if state.done == 0 {
        state.cols = cols;
    } else if state.cols != cols {
        bail!(
            "--resume: {} holds rows of {} features where this model gives {cols}; run without --resume to start again",
            partial.display(),
            state.cols
        );
    }
    let range = shard_range(state.count, opts.shard);
    let resumed_rows = state.rows;
    let started = Instant::now();
    let mut parts = Parts::open(&partial, &state)?;
    let embedded_now = run_batches(
        reader,
        source,
        opts,
        (&partial, range.clone()),
        &mut state,
        &mut parts,
    )
    .map_err(|e| disk_full_hint(e, &partial))?;
    if state.rows == 0 && !range.is_empty() && opts.shard.1 == 1 {
        bail!(
            "no image was embedded: all {} files were bad (the first: {})",
            range.len(),
            state.first_skip.as_deref().unwrap_or("unknown")
        );
    }
    parts
        .finish(&partial, &state)
        .map_err(|e| disk_full_hint(e, &partial))?;
    publish(&partial, out, (source, &state), opts)?;
    drop(_lock);
    let _ = std::fs::remove_dir_all(&partial);
    Ok(EmbedSummary {
        rows: state.rows,
        cols,
        skipped: state.skipped,
        resumed_rows,
        embedded_now,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The state to continue from: a resume's, after checking that it was
/// started with the same arguments and that its folder has not changed;
/// or a fresh one, the partial folder emptied and the folder listed.
fn start_or_resume(source: &Source, opts: &EmbedOptions, partial: &Path) -> Result<State> {
    let state_path = partial.join("state.json");
    let previous = match std::fs::read_to_string(&state_path) {
        Ok(text) if opts.resume => Some(
            serde_json::from_str::<State>(&text)
                .with_context(|| format!("corrupt {}", state_path.display()))?,
        ),
        _ => None,
    };
    if let Some(p) = previous {
        if p.fingerprint != opts.fingerprint {
            bail!(
                "--resume: {} was started with other arguments, weights, features settings or images; run without --resume to start again",
                partial.display()
            );
        }
        if let Source::Files { root, .. } = source {
            let now = FolderSummary::of(root, opts.skip_bad)?;
            if now.digest != p.folder_digest {
                bail!(
                    "--resume: {} changed since the interrupted embed (files added, removed, renamed or rewritten); run without --resume to start again",
                    root.display()
                );
            }
        }
        return Ok(p);
    }
    // a fresh start: whatever an earlier run left goes
    for entry in std::fs::read_dir(partial)
        .with_context(|| format!("cannot read {}", partial.display()))?
        .flatten()
    {
        if entry.file_name() != ".lock" {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let mut state = State {
        fingerprint: opts.fingerprint.clone(),
        ..State::default()
    };
    match source {
        Source::Split(d) => {
            state.count = d.len();
            state.classes = Some(d.class_names.clone());
        }
        Source::Files { root, .. } => {
            let summary = list_folder(root, opts.skip_bad, &partial.join(LISTING))?;
            if summary.count == 0 {
                bail!(
                    "PNG or JPEG images not found in {} (searched its sub-folders too): point --images at a folder of .png/.jpg/.jpeg files",
                    root.display()
                );
            }
            state.count = summary.count;
            state.classes = (!summary.classes.is_empty()).then_some(summary.classes);
            state.folder_digest = summary.digest;
        }
    }
    Ok(state)
}

/// The listing of the folder, written once: the work reads it, not the
/// folder, so files that come or go while it runs change nothing.
const LISTING: &str = "listing.txt";

/// Walk `root` once, writing each item to `listing`.
fn list_folder(root: &Path, skip_bad: bool, listing: &Path) -> Result<FolderSummary> {
    let file =
        File::create(listing).with_context(|| format!("cannot write {}", listing.display()))?;
    let mut w = BufWriter::new(file);
    let summary = FolderSummary::walk(root, skip_bad, |item| {
        w.write_all(listing_line(item).as_bytes())
    })?;
    w.flush()
        .and_then(|_| w.get_ref().sync_all())
        .with_context(|| format!("cannot write {}", listing.display()))?;
    Ok(summary)
}

/// The growing files of the partial folder.
struct Parts {
    features: NpyRows,
    labels: Option<NpyRows>,
    files_txt: BufWriter<File>,
    skipped_txt: BufWriter<File>,
}

impl Parts {
    /// Create them, or reopen them at the lengths `state` says are whole
    /// (refused where a file is shorter: something else changed it).
    fn open(partial: &Path, state: &State) -> Result<Self> {
        let features_path = partial.join("features.npy");
        let labels_path = partial.join("labels.npy");
        let fresh = state.done == 0;
        Ok(Parts {
            features: if fresh {
                NpyRows::create(&features_path, state.cols)?
            } else {
                NpyRows::reopen(&features_path, state.cols, state.rows).map_err(incomplete)?
            },
            labels: match (&state.classes, fresh) {
                (None, _) => None,
                (Some(_), true) => Some(NpyRows::create_labels(&labels_path)?),
                (Some(_), false) => {
                    Some(NpyRows::reopen_labels(&labels_path, state.rows).map_err(incomplete)?)
                }
            },
            files_txt: append_at(&partial.join("files.txt"), state.files_bytes)?,
            skipped_txt: append_at(&partial.join("skipped.txt"), state.skipped_bytes)?,
        })
    }

    /// Hand what is buffered to the operating system and record in `state`
    /// how much is written: a point a resume can continue from once
    /// [`write_checkpoints`] has waited for the disk.
    fn write_buffered(&mut self, state: &mut State) -> Result<()> {
        self.files_txt.flush()?;
        self.skipped_txt.flush()?;
        if let Some(l) = &mut self.labels {
            l.write_buffered()?;
        }
        self.features.write_buffered()?;
        state.rows = self.features.rows();
        state.files_bytes = self.files_txt.get_ref().metadata()?.len();
        state.skipped_bytes = self.skipped_txt.get_ref().metadata()?.len();
        Ok(())
    }

    /// Second handles on every part, for [`write_checkpoints`].
    fn handles(&self) -> Result<Vec<File>> {
        let mut handles = vec![
            self.features.handle()?,
            self.files_txt.get_ref().try_clone()?,
            self.skipped_txt.get_ref().try_clone()?,
        ];
        if let Some(l) = &self.labels {
            handles.push(l.handle()?);
        }
        Ok(handles)
    }

    /// Close every part with its final header, and the class names.
    fn finish(self, partial: &Path, state: &State) -> Result<()> {
        self.features.finish()?;
        for mut w in [self.files_txt, self.skipped_txt] {
            w.flush()?;
            w.get_ref().sync_all()?;
        }
        if let (Some(l), Some(classes)) = (self.labels, &state.classes) {
            l.finish()?;
            std::fs::write(partial.join("classes.txt"), classes.join("\n") + "\n")
                .with_context(|| format!("cannot write {}", partial.display()))?;
        }
        Ok(())
    }
}

/// Record the states sent by the embedding loop in `state.json`, each
/// only once the parts (`files`) have reached the disk, so that a state
/// never describes rows a crash could still lose. Runs beside the loop,
/// which does not wait for the disk; when it falls behind, the newest
/// state is the one written.
fn write_checkpoints(
    states: std::sync::mpsc::Receiver<State>,
    files: Vec<File>,
    state_path: &Path,
) -> Result<()> {
    while let Ok(mut state) = states.recv() {
        while let Ok(newer) = states.try_recv() {
            state = newer;
        }
        for f in &files {
            f.sync_data()
                .with_context(|| format!("cannot write {}", state_path.display()))?;
        }
        crate::atomic::write(state_path, serde_json::to_string(&state)?.as_bytes())?;
    }
    Ok(())
}

/// A partial file shorter than its state says.
fn incomplete(e: anyhow::Error) -> anyhow::Error {
    e.context("the partial output is not as its state.json describes; run without --resume to start again")
}

/// Read, embed and append every batch of the shard's remaining items,
/// checkpointing after each (on a thread of its own,
/// [`write_checkpoints`]); returns the images embedded by this process.
fn run_batches(
    reader: &FeatureReader,
    source: &Source,
    opts: &EmbedOptions,
    (partial, range): (&Path, std::ops::Range<usize>),
    state: &mut State,
    parts: &mut Parts,
) -> Result<u64> {
    let state_path = partial.join("state.json");
    let todo = range.start + state.done..range.end;
    let bar = progress::bar(range.len() as u64, opts.quiet, "embed");
    bar.set_position(state.done as u64);
    let started = Instant::now();
    let mut embedded_now = 0u64;
    let batch = reader.batch()?;
    let labels = FolderSummary {
        classes: state.classes.clone().unwrap_or_default(),
        ..FolderSummary::default()
    };
    let (tx, rx) = sync_channel::<Batch>(2);
    let listing = partial.join(LISTING);
    let handles = parts.handles()?;
    std::thread::scope(|scope| -> Result<()> {
        let labels = &labels;
        let listing = &listing;
        scope.spawn(move || produce(source, (listing, labels), (todo, batch), tx));
        let (checkpoints, states) = std::sync::mpsc::channel::<State>();
        let state_path = &state_path;
        let checkpointer = scope.spawn(move || write_checkpoints(states, handles, state_path));
        for Batch { pixels, items } in rx.iter() {
            let n = items.len();
            let mut batch_labels = Vec::with_capacity(n);
            for Item { name, label, read } in items {
                match read {
                    Ok(()) => {
                        if let Some(name) = name {
                            writeln!(parts.files_txt, "{name}")?;
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
                        writeln!(parts.skipped_txt, "{e}")?;
                        state.skipped += 1;
                        state.first_skip.get_or_insert_with(|| e.to_string());
                    }
                    Err(e) => {
                        return Err(anyhow::Error::new(
                            e.hinted("pass --skip-bad to leave such files out"),
                        ))
                    }
                }
            }
            if let Some(l) = &mut parts.labels {
                l.append_labels(&batch_labels)?;
            }
            if !pixels.is_empty() {
                let x = images_tensor(pixels, reader.size(), reader.device());
                let rows = to_vec(&reader.read(x)?);
                parts.features.append(&rows)?;
                embedded_now += (rows.len() / state.cols.max(1)) as u64;
            }
            state.done += n;
            parts.write_buffered(state)?;
            if checkpoints.send(state.clone()).is_err() {
                break; // the checkpoints stopped on an error, returned below
            }
            bar.set_position(state.done as u64);
            let rate = embedded_now as f64 / started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("{rate:.0} images/s"));
        }
        drop(checkpoints);
        checkpointer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })?;
    bar.finish_and_clear();
    Ok(embedded_now)
}

/// The list of renames that publishes an output, written before the first
/// of them: a resume after a kill among them finishes them.
const PUBLISH: &str = "publish.json";

/// What publishing does, as written to [`PUBLISH`].
#[derive(Debug, Serialize, Deserialize)]
struct Publishing {
    /// `(file in the partial folder, suffix beside the output)`; the
    /// suffix `""` is the output itself.
    parts: Vec<(String, String)>,
    /// Suffixes of an earlier output's side files that this one has not.
    stale: Vec<String>,
    rows: u64,
    cols: usize,
    skipped: usize,
}

/// The side files an output may have.
const SIDE_FILES: [(&str, &str); 4] = [
    ("files.txt", "_files.txt"),
    ("labels.npy", "_labels.npy"),
    ("classes.txt", "_classes.txt"),
    ("skipped.txt", "_skipped.txt"),
];

/// The manifest's suffix: written last, it makes the parts current.
const MANIFEST: &str = "_manifest.json";

/// Publish the finished parts: the manifest (sizes and SHA-256 of every
/// part), then the list of renames, then the renames ([`finish_publishing`]).
fn publish(
    partial: &Path,
    out: &Path,
    (source, state): (&Source, &State),
    opts: &EmbedOptions,
) -> Result<()> {
    let mut parts = Vec::new();
    let mut stale = Vec::new();
    for (file, suffix) in SIDE_FILES {
        let keep = match file {
            "files.txt" => !matches!(source, Source::Split(d) if d.file_names.is_none()),
            "skipped.txt" => opts.skip_bad,
            _ => partial.join(file).exists(),
        };
        if keep {
            parts.push((file.to_string(), suffix.to_string()));
        } else {
            stale.push(suffix.to_string());
        }
    }
    parts.push(("features.npy".to_string(), String::new()));
    let mut manifest = serde_json::Map::new();
    for (file, suffix) in &parts {
        let path = partial.join(file);
        let name = published_path(out, suffix);
        let name = name
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        manifest.insert(
            name,
            serde_json::json!({
                "bytes": std::fs::metadata(&path)?.len(),
                "sha256": crate::atomic::sha256_file(&path)?,
            }),
        );
    }
    let manifest = serde_json::json!({
        "rows": state.rows,
        "cols": state.cols,
        "source": opts.about,
        "parts": manifest,
    });
    crate::atomic::write(
        &partial.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)?.as_bytes(),
    )?;
    let publishing = Publishing {
        parts,
        stale,
        rows: state.rows,
        cols: state.cols,
        skipped: state.skipped,
    };
    crate::atomic::write(
        &partial.join(PUBLISH),
        serde_json::to_string(&publishing)?.as_bytes(),
    )?;
    finish_publishing(partial, out).map(|_| ())
}

/// The path of a part: the output itself for `""`, else beside it.
fn published_path(out: &Path, suffix: &str) -> PathBuf {
    if suffix.is_empty() {
        out.to_path_buf()
    } else {
        side_path(out, suffix)
    }
}

/// Carry out (or finish, after a kill) the renames [`PUBLISH`] lists: the
/// earlier output's manifest goes first, so that no moment shows a
/// manifest beside parts it does not describe; the new manifest comes last.
fn finish_publishing(partial: &Path, out: &Path) -> Result<EmbedSummary> {
    let path = partial.join(PUBLISH);
    let publishing: Publishing = serde_json::from_str(&std::fs::read_to_string(&path)?)
        .with_context(|| format!("corrupt {}", path.display()))?;
    let remove = |p: &Path| match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove the stale {}", p.display()))
        }
        _ => Ok(()),
    };
    remove(&side_path(out, MANIFEST))?;
    for suffix in &publishing.stale {
        remove(&side_path(out, suffix))?;
    }
    let renames = publishing
        .parts
        .iter()
        .map(|(file, suffix)| (partial.join(file), published_path(out, suffix)))
        .chain([(partial.join("manifest.json"), side_path(out, MANIFEST))]);
    for (from, to) in renames {
        if from.exists() {
            std::fs::rename(&from, &to)
                .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))?;
        } else if !to.exists() {
            bail!(
                "cannot finish publishing {}: {} is gone; run without --resume to start again",
                out.display(),
                from.display()
            );
        }
    }
    let _ = std::fs::remove_dir_all(partial);
    Ok(EmbedSummary {
        rows: publishing.rows,
        cols: publishing.cols,
        skipped: publishing.skipped,
        resumed_rows: publishing.rows,
        embedded_now: 0,
        seconds: 0.0,
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
/// was done), decoded, until the receiver hangs up. A folder's items come
/// from its listing in the partial folder, labelled by `labels`' classes.
fn produce(
    source: &Source,
    (listing, labels): (&Path, &FolderSummary),
    (range, batch): (std::ops::Range<usize>, usize),
    tx: std::sync::mpsc::SyncSender<Batch>,
) {
    match source {
        Source::Split(d) => {
            for start in range.clone().step_by(batch) {
                let idx: Vec<usize> = (start..(start + batch).min(range.end)).collect();
                let pixels = match d.gather(&idx) {
                    Ok(p) => p,
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
                let batch = Batch {
                    pixels,
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
        Source::Files { root, canvas } => {
            let lines = match File::open(listing) {
                Ok(f) => std::io::BufReader::new(f).lines(),
                Err(error) => {
                    let _ = tx.send(Batch {
                        pixels: Vec::new(),
                        items: vec![Item {
                            name: None,
                            label: 0,
                            read: Err(DataError::Io {
                                path: listing.to_path_buf(),
                                error,
                            }),
                        }],
                    });
                    return;
                }
            };
            let mut walk = lines
                .map(|line| {
                    line.ok()
                        .and_then(|l| parse_listing_line(&l))
                        .unwrap_or_else(|| Err(DataError::format(listing, "corrupt listing line")))
                })
                .skip(range.start)
                .take(range.len());
            loop {
                let walked: Vec<Listed> = walk.by_ref().take(batch).collect();
                if walked.is_empty() {
                    return;
                }
                if tx
                    .send(decode_files(root, labels, *canvas, walked))
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
    // never write through a link: a link named like the working folder
    // would have its target's files removed by a fresh start
    if let Ok(meta) = std::fs::symlink_metadata(partial) {
        if !meta.is_dir() {
            bail!(
                "{} is {}, not the working folder eqae makes there; remove it",
                partial.display(),
                if meta.file_type().is_symlink() {
                    "a symbolic link"
                } else {
                    "a file"
                }
            );
        }
    }
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
