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

use crate::config::{Config, ModelConfig};
use crate::model::Autoencoder;

/// Header of `metrics.csv`.
pub const METRICS_HEADER: &str =
    "epoch,train_loss,validation_loss,seconds,images_per_second,attention_entropy\n";

/// Paths inside one run directory.
#[derive(Clone, Debug)]
pub struct RunDir {
    /// The run directory itself.
    pub root: PathBuf,
}

/// What a weights file holds, written beside it (`model.json`): loading
/// compares it with the config, so weights are never read into a model of
/// another group or architecture whose tensors happen to have the same shapes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightsInfo {
    /// The model config the weights were trained with.
    pub model: ModelConfig,
    /// The image side they were trained on.
    pub image_size: usize,
}

impl WeightsInfo {
    /// The description of a config's model.
    pub fn of(config: &Config) -> Self {
        WeightsInfo {
            model: config.model.clone(),
            image_size: config.data.image_size,
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
    fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// Take the run's lock, or fail naming the process that holds it.
    pub fn lock(&self) -> Result<RunLock> {
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create {}", self.root.display()))?;
        let path = self.root.join(".lock");
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
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        Ok(RunLock { _file: file })
    }

    /// Remove what a killed writer left: `*.tmp` files and folders in the
    /// run and its checkpoints folder. Call with the lock held.
    pub fn clean_temporaries(&self) -> Result<()> {
        for dir in [self.root.clone(), self.checkpoints()] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().ends_with(".tmp") {
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
        Ok(Config::load(&self.config())?)
    }

    /// Load the run's final weights into a freshly built model.
    pub fn load_model(
        &self,
        config: &Config,
        device: &burn::tensor::Device,
    ) -> Result<Autoencoder> {
        let path = self.model();
        if !path.exists() {
            bail!(
                "{} has no trained weights (model.bpk); train it with `eqae train --config {}`",
                self.root.display(),
                self.config().display()
            );
        }
        load_weights(&path, config, device)
    }

    /// Save the final weights (and their description).
    pub fn save_model(&self, config: &Config, model: &Autoencoder) -> Result<()> {
        save_weights(&self.model(), config, model)
    }

    /// Write a file atomically: to a temporary file beside it, then rename.
    pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".{}.tmp", std::process::id()));
        let tmp = path.with_file_name(name);
        std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot rename to {}", path.display()))?;
        Ok(())
    }

    /// Save model, optimiser and the metrics so far after `epoch` (1-based)
    /// and point `latest` at them.
    pub fn save_checkpoint(
        &self,
        epoch: usize,
        config: &Config,
        model: &Autoencoder,
        optim: &ModuleOptimizer,
        metrics: &str,
    ) -> Result<()> {
        let dir = self.checkpoints();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let name = format!("epoch-{epoch:04}");
        let tmp = dir.join(format!("{name}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        save_weights(&tmp.join("model.bpk"), config, model)?;
        optim
            .save(tmp.join("optimizer.bpk"))
            .context("cannot save optimizer checkpoint")?;
        std::fs::write(tmp.join("metrics.csv"), metrics)?;
        let done = dir.join(&name);
        let _ = std::fs::remove_dir_all(&done);
        std::fs::rename(&tmp, &done)?;
        Self::write_atomic(&dir.join("latest"), name.as_bytes())?;
        // keep only the newest complete checkpoint
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let n = entry.file_name().to_string_lossy().into_owned();
            if n.starts_with("epoch-") && n != name {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }

    /// The newest complete checkpoint: its epoch and folder.
    pub fn latest_checkpoint(&self) -> Result<Option<(usize, PathBuf)>> {
        let latest = self.checkpoints().join("latest");
        if !latest.exists() {
            return Ok(None);
        }
        let name = std::fs::read_to_string(&latest)?.trim().to_string();
        let epoch: usize = name
            .strip_prefix("epoch-")
            .and_then(|e| e.parse().ok())
            .with_context(|| format!("corrupt checkpoint pointer {}", latest.display()))?;
        Ok(Some((epoch, self.checkpoints().join(name))))
    }

    /// The metrics of the first `epoch` epochs: the checkpoint's copy, or
    /// (checkpoints of older versions have none) the run's rows up to that
    /// epoch, each epoch once.
    pub fn metrics_up_to(&self, epoch: usize, checkpoint: &Path) -> Result<String> {
        if let Ok(text) = std::fs::read_to_string(checkpoint.join("metrics.csv")) {
            return Ok(text);
        }
        let text = std::fs::read_to_string(self.metrics()).unwrap_or_default();
        let mut rows: Vec<Option<&str>> = vec![None; epoch];
        for line in text.lines().skip(1) {
            let e: Option<usize> = line.split(',').next().and_then(|e| e.parse().ok());
            if let Some(e) = e.filter(|e| (1..=epoch).contains(e)) {
                rows[e - 1] = Some(line);
            }
        }
        let mut out = METRICS_HEADER.to_string();
        for line in rows.into_iter().flatten() {
            out.push_str(line);
            out.push('\n');
        }
        Ok(out)
    }
}

/// Save weights and, beside them, what they are.
pub fn save_weights(path: &Path, config: &Config, model: &Autoencoder) -> Result<()> {
    let info = serde_json::to_string_pretty(&WeightsInfo::of(config))?;
    // the description first: weights without one are never newer than it
    RunDir::write_atomic(&WeightsInfo::path(path), info.as_bytes())?;
    model
        .clone()
        .save_file(path)
        .with_context(|| format!("cannot save weights {}", path.display()))
}

/// Load weights into the model `config` describes, after checking that
/// they were trained as that model.
pub fn load_weights(
    path: &Path,
    config: &Config,
    device: &burn::tensor::Device,
) -> Result<Autoencoder> {
    let info_path = WeightsInfo::path(path);
    match std::fs::read_to_string(&info_path) {
        Ok(text) => {
            let info: WeightsInfo = serde_json::from_str(&text)
                .with_context(|| format!("corrupt {}", info_path.display()))?;
            let mut trained = config.clone();
            trained.model = info.model;
            trained.data.image_size = info.image_size;
            let differences = trained.diff(config);
            if !differences.is_empty() {
                bail!(
                    "{} was trained as another model than the config says ({}); restore the config or train a new run",
                    path.display(),
                    differences.join(", ")
                );
            }
        }
        // weights written before descriptions existed: shapes are checked by burn
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read {}", info_path.display()));
        }
    }
    Autoencoder::new(&config.model, config.data.image_size, device)
        .try_load_file(path)
        .with_context(|| format!("cannot load weights {}", path.display()))
}
