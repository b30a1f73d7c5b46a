//! A run directory holds everything needed to understand and reuse a run:
//!
//! ```text
//! runs/<name>/config.toml        resolved configuration
//! runs/<name>/model.bpk          final weights (burn's burnpack record)
//! runs/<name>/model.json         what the weights are: model config and image size
//! runs/<name>/metrics.csv        epoch, losses, time, images/s, entropy
//! runs/<name>/history.txt        settings changed on --resume, one line per resume
//! runs/<name>/reconstructions.png  inputs (top) over reconstructions (bottom)
//! runs/<name>/checkpoints/epoch-NNNN/{model.bpk, model.json, optimizer.bpk, metrics.csv}
//! runs/<name>/checkpoints/latest   name of the newest complete checkpoint
//! runs/<name>/.lock              held (flock) by the process training the run
//! ```
//!
//! A checkpoint is written into a temporary folder and renamed into place,
//! then `latest` is replaced by write-and-rename, so a run killed at any
//! moment leaves the previous checkpoint intact. The checkpoint carries the
//! metrics up to its epoch, so a resume restores `metrics.csv` to exactly
//! the epochs the weights have seen.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};

use crate::config::{changes_text, Config, ConfigChange, ModelConfig};
use crate::model::Autoencoder;

/// One epoch's row of `metrics.csv`. Read by the header's names, not by
/// position; a column a file lacks reads as NaN (None for the entropy).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EpochMetrics {
    /// The epoch, 1-based.
    pub epoch: usize,
    /// Mean training loss over the epoch's steps.
    pub train_loss: f64,
    /// Reconstruction MSE on the validation split (NaN without one).
    pub validation_loss: f64,
    /// Wall-clock seconds of the epoch's steps.
    pub seconds: f64,
    pub images_per_second: f64,
    /// Mean attention entropy of the epoch (attention models only).
    pub attention_entropy: Option<f64>,
}

impl Default for EpochMetrics {
    fn default() -> Self {
        EpochMetrics {
            epoch: 0,
            train_loss: f64::NAN,
            validation_loss: f64::NAN,
            seconds: f64::NAN,
            images_per_second: f64::NAN,
            attention_entropy: None,
        }
    }
}

/// `metrics.csv`'s text: a header and a row per epoch, each number to the
/// precision people read (the losses to 6 decimals).
pub fn metrics_csv(rows: &[EpochMetrics]) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "epoch",
        "train_loss",
        "validation_loss",
        "seconds",
        "images_per_second",
        "attention_entropy",
    ])?;
    for m in rows {
        w.write_record([
            m.epoch.to_string(),
            format!("{:.6}", m.train_loss),
            format!("{:.6}", m.validation_loss),
            format!("{:.2}", m.seconds),
            format!("{:.1}", m.images_per_second),
            m.attention_entropy
                .map_or(String::new(), |h| format!("{h:.6}")),
        ])?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(String::from_utf8(bytes)?)
}

/// The rows of a `metrics.csv` text.
pub fn read_metrics(text: &str) -> Result<Vec<EpochMetrics>> {
    csv::Reader::from_reader(text.as_bytes())
        .deserialize()
        .collect::<Result<_, _>>()
        .context("metrics.csv is not a table of epochs")
}

/// Paths inside one run directory.
#[derive(Clone, Debug)]
pub struct RunDir {
    /// The run directory itself.
    pub root: PathBuf,
}

/// What a weights file holds, written beside it (`model.json`): loading
/// compares it with the config, so weights are never read into a model of
/// another group or architecture whose tensors happen to have the same
/// shapes, nor described by a config whose training never produced them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightsInfo {
    /// The model config the weights were trained with.
    pub model: ModelConfig,
    /// The image side they were trained on.
    pub image_size: usize,
    /// The whole config of the training that produced them (absent in
    /// descriptions written by older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trained_with: Option<Config>,
    /// SHA-256 of the weights file, hex (absent in older descriptions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl WeightsInfo {
    /// The description of a config's model.
    pub fn of(config: &Config) -> Self {
        WeightsInfo {
            model: config.model.clone(),
            image_size: config.data.image_size,
            trained_with: Some(config.clone()),
            sha256: None,
        }
    }

    /// Read the description beside a weights file; None when there is
    /// none (weights written before descriptions existed).
    pub fn read(weights: &Path) -> Result<Option<Self>> {
        let path = Self::path(weights);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("corrupt {}", path.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// The sidecar of a weights file: `model.bpk` -> `model.json`.
    pub fn path(weights: &Path) -> PathBuf {
        weights.with_extension("json")
    }
}

/// Exclusive hold on a run directory while a process trains it; released
/// when dropped or when the process dies (an OS file lock, not a marker file).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunDir {
    /// Wrap a directory path.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RunDir { root: root.into() }
    }

    /// `config.toml`.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    /// `model.bpk`.
    pub fn model(&self) -> PathBuf {
        self.root.join("model.bpk")
    }
    /// `metrics.csv`.
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.csv")
    }
    /// `history.txt`.
    pub fn history(&self) -> PathBuf {
        self.root.join("history.txt")
    }
    /// `reconstructions.png`.
    pub fn reconstructions(&self) -> PathBuf {
        self.root.join("reconstructions.png")
    }
    /// `checkpoints/`.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    fn lock_path(&self) -> PathBuf {
        self.root.join(".lock")
    }

    /// Take the run's lock, or fail naming the process that holds it.
    pub fn lock(&self) -> Result<RunLock> {
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create {}", self.root.display()))?;
        let path = self.lock_path();
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                bail!(
                    "run {} is in use by process {}; wait for it to finish or stop it",
                    self.root.display(),
                    if pid.is_empty() { "(unknown)" } else { pid }
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
        let noted = file
            .set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| write!(file, "{}", std::process::id()));
        noted.with_context(|| format!("cannot write {}", path.display()))?;
        Ok(RunLock { _file: file })
    }

    /// The process training this run right now, if any (its lock is held).
    pub fn trained_by(&self) -> Option<String> {
        let mut file = File::open(self.lock_path()).ok()?;
        match file.try_lock_shared() {
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                Some(if pid.is_empty() {
                    "(unknown)".into()
                } else {
                    pid.into()
                })
            }
            _ => None,
        }
    }

    /// Remove what a killed writer left: `*.tmp` files and folders in the
    /// run and its checkpoints folder. Call with the lock held.
    pub fn clean_temporaries(&self) -> Result<()> {
        for dir in [self.root.clone(), self.checkpoints()] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".tmp") || name.ends_with(".tmp.bpk") {
                    let p = entry.path();
                    let gone = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                    gone.with_context(|| format!("cannot remove {}", p.display()))?;
                }
            }
        }
        Ok(())
    }

    /// Load the run's resolved config.
    pub fn load_config(&self) -> Result<Config> {
        if !self.root.is_dir() {
            bail!(
                "{}: no such run directory (runs are made by `eqae train`)",
                self.root.display()
            );
        }
        Ok(Config::load(&self.config())?)
    }

    /// Load the run's final weights into a freshly built model, after
    /// checking that `config.toml` describes the training that produced
    /// them (an interrupted resume or save leaves them apart). Warns when
    /// the run is being trained right now.
    pub fn load_model(
        &self,
        config: &Config,
        device: &burn::tensor::Device,
    ) -> Result<Autoencoder> {
        let path = self.model();
        if !path.exists() {
            if let Some(pid) = self.trained_by() {
                bail!(
                    "{} is being trained by process {pid} and has no final weights yet (model.bpk is written when its last epoch ends); wait for it to finish",
                    self.root.display()
                );
            }
            bail!(
                "{} has no trained weights (model.bpk); train it with `eqae train --config {}`",
                self.root.display(),
                self.config().display()
            );
        }
        // the model's own tables (a smoothed D24 on large images) first
        crate::model::flops::ensure_step_fits(
            &config.model,
            config.data.image_size,
            1.0,
            1.0 / 3.0,
            "the model",
        )?;
        if let Some(pid) = self.trained_by() {
            eprintln!(
                "warning: {} is being trained by process {pid}; reading its weights as last saved",
                self.root.display()
            );
        }
        if let Some(trained) = WeightsInfo::read(&path)?.and_then(|i| i.trained_with) {
            let apart = training_differences(&trained, config);
            if !apart.is_empty() {
                bail!(
                    "{} does not describe the weights in {} ({}): a training or resume was interrupted; finish it with `eqae train --config <config> --resume` (the config it was started with)",
                    self.config().display(),
                    path.display(),
                    changes_text(&apart)
                );
            }
        }
        load_weights(&path, config, device)
    }

    /// Save the final weights (and their description).
    pub fn save_model(&self, config: &Config, model: &Autoencoder) -> Result<()> {
        save_weights(&self.model(), config, model)
    }

    /// Save model, optimiser and the metrics so far after `epoch` (1-based)
    /// and point `latest` at them.
    pub fn save_checkpoint(
        &self,
        epoch: usize,
        config: &Config,
        model: &Autoencoder,
        optim: &ModuleOptimizer,
        metrics: &[EpochMetrics],
    ) -> Result<()> {
        let dir = self.checkpoints();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let name = format!("epoch-{epoch:04}");
        let tmp = dir.join(format!("{name}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        save_weights(&tmp.join("model.bpk"), config, model)?;
        optim
            .save(tmp.join("optimizer.bpk"))
            .with_context(|| format!("cannot save the optimizer state in {}", tmp.display()))?;
        let m = tmp.join("metrics.csv");
        std::fs::write(&m, metrics_csv(metrics)?)
            .with_context(|| format!("cannot write {}", m.display()))?;
        let done = dir.join(&name);
        let _ = std::fs::remove_dir_all(&done);
        std::fs::rename(&tmp, &done)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), done.display()))?;
        crate::atomic::write(&dir.join("latest"), name.as_bytes())?;
        // keep only the newest complete checkpoint
        for entry in std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .flatten()
        {
            let n = entry.file_name().to_string_lossy().into_owned();
            if n.starts_with("epoch-") && n != name {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }

    /// The newest complete checkpoint: its epoch and folder. A pointer
    /// that names no complete checkpoint is an error, never trusted.
    pub fn latest_checkpoint(&self) -> Result<Option<(usize, PathBuf)>> {
        let latest = self.checkpoints().join("latest");
        if !latest.exists() {
            return Ok(None);
        }
        let name = std::fs::read_to_string(&latest)
            .with_context(|| format!("cannot read the checkpoint pointer {}", latest.display()))?
            .trim()
            .to_string();
        let epoch: usize = name
            .strip_prefix("epoch-")
            .and_then(|e| e.parse().ok())
            .with_context(|| format!("corrupt checkpoint pointer {}", latest.display()))?;
        let dir = self.checkpoints().join(&name);
        if !dir.join("model.bpk").is_file() || !dir.join("optimizer.bpk").is_file() {
            bail!(
                "{} names {name}, which is not a complete checkpoint ({} has no model.bpk or optimizer.bpk); the run cannot be resumed",
                latest.display(),
                dir.display()
            );
        }
        Ok(Some((epoch, dir)))
    }

    /// The config a checkpoint was trained with: its own record, or (older
    /// checkpoints have none) the run's `config.toml`.
    pub fn checkpoint_config(&self, checkpoint: &Path) -> Result<Config> {
        match WeightsInfo::read(&checkpoint.join("model.bpk"))?.and_then(|i| i.trained_with) {
            Some(c) => Ok(c),
            None => self.load_config(),
        }
    }

    /// The metrics of the first `epoch` epochs: the checkpoint's copy, or
    /// (checkpoints of older versions have none) the run's rows up to that
    /// epoch, each epoch once.
    pub fn metrics_up_to(&self, epoch: usize, checkpoint: &Path) -> Result<Vec<EpochMetrics>> {
        let copy = checkpoint.join("metrics.csv");
        if let Ok(text) = std::fs::read_to_string(&copy) {
            return read_metrics(&text).with_context(|| copy.display().to_string());
        }
        let path = self.metrics();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut rows: Vec<Option<EpochMetrics>> = vec![None; epoch];
        for m in read_metrics(&text).with_context(|| path.display().to_string())? {
            if (1..=epoch).contains(&m.epoch) {
                let e = m.epoch;
                rows[e - 1] = Some(m);
            }
        }
        Ok(rows.into_iter().flatten().collect())
    }
}

/// The differences between the config weights were trained with and
/// `config` that matter to the weights ([`ConfigChange::alters_training`]).
pub fn training_differences(trained: &Config, config: &Config) -> Vec<ConfigChange> {
    trained
        .diff(config)
        .into_iter()
        .filter(ConfigChange::alters_training)
        .collect()
}

/// Save weights and, beside them, what they are. The weights go to a
/// temporary file, then the description (with their SHA-256), then the
/// weights are renamed into place: a kill at any moment leaves either the
/// old pair, or a pair whose checksum disagrees (refused on loading, and
/// repaired by `--resume`), never a silent mismatch.
pub fn save_weights(path: &Path, config: &Config, model: &Autoencoder) -> Result<()> {
    crate::atomic::remove_stale(path);
    let tmp = crate::atomic::temp_path(path, ".bpk");
    let saved = model
        .clone()
        .save_file(&tmp)
        .with_context(|| format!("cannot save weights {}", path.display()))
        .and_then(|_| crate::atomic::sha256_file(&tmp))
        .and_then(|sha| {
            let info = WeightsInfo {
                sha256: Some(sha),
                ..WeightsInfo::of(config)
            };
            crate::atomic::write(
                &WeightsInfo::path(path),
                serde_json::to_string_pretty(&info)?.as_bytes(),
            )
        })
        .and_then(|_| {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
        });
    if saved.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    saved
}

/// Whether the weights at `path` are the ones their description names
/// (true for descriptions without a checksum, and for no description).
pub fn weights_are_whole(path: &Path) -> Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    match WeightsInfo::read(path)?.and_then(|i| i.sha256) {
        Some(sha) => Ok(crate::atomic::sha256_file(path)? == sha),
        None => Ok(true),
    }
}

/// Load weights into the model `config` describes, after checking that
/// they were trained as that model and are the file their description names.
pub fn load_weights(
    path: &Path,
    config: &Config,
    device: &burn::tensor::Device,
) -> Result<Autoencoder> {
    // weights written before descriptions existed: shapes are checked by burn
    if let Some(info) = WeightsInfo::read(path)? {
        let whole = match &info.sha256 {
            Some(sha) => crate::atomic::sha256_file(path)? == *sha,
            None => true,
        };
        if !whole {
            bail!(
                "{} is not the file {} describes: a save was interrupted; `eqae train --config <config> --resume` restores it from the last checkpoint",
                path.display(),
                WeightsInfo::path(path).display()
            );
        }
        let mut trained = config.clone();
        trained.model = info.model;
        trained.data.image_size = info.image_size;
        let differences = trained.diff(config);
        if !differences.is_empty() {
            bail!(
                "{} was trained as another model than the config says ({}); restore the config or train a new run",
                path.display(),
                changes_text(&differences)
            );
        }
    }
    Autoencoder::new(&config.model, config.data.image_size, device)
        .try_load_file(path)
        .with_context(|| format!("cannot load weights {}", path.display()))
}
