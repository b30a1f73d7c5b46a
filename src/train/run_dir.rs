//! A run directory holds everything needed to understand and reuse a run:
//!
//! ```text
//! runs/<name>/config.toml        resolved configuration
//! runs/<name>/model.bpk          final weights (burn's burnpack record)
//! runs/<name>/metrics.csv        epoch, losses, time, images/s, entropy
//! runs/<name>/reconstructions.png  inputs (top) over reconstructions (bottom)
//! runs/<name>/checkpoints/epoch-NNNN/{model.bpk, optimizer.bpk}
//! runs/<name>/checkpoints/latest   name of the newest complete checkpoint
//! ```
//!
//! A checkpoint is written into a temporary folder and renamed into place,
//! then `latest` is replaced by write-and-rename, so a run killed at any
//! moment leaves the previous checkpoint intact.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::module::Module;
use burn::optim::ModuleOptimizer;

use crate::config::Config;
use crate::model::Autoencoder;

/// Paths inside one run directory.
#[derive(Clone, Debug)]
pub struct RunDir {
    /// The run directory itself.
    pub root: PathBuf,
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
    /// `reconstructions.png`.
    pub fn reconstructions(&self) -> PathBuf {
        self.root.join("reconstructions.png")
    }
    fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
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
            anyhow::bail!(
                "{} has no trained weights (model.bpk); train it with `eqae train --config {}`",
                self.root.display(),
                self.config().display()
            );
        }
        Autoencoder::new(&config.model, config.data.image_size, device)
            .try_load_file(&path)
            .with_context(|| format!("cannot load weights {}", path.display()))
    }

    /// Write a file atomically: to `<path>.tmp`, then rename.
    pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot rename to {}", path.display()))?;
        Ok(())
    }

    /// Save model and optimiser after `epoch` (1-based) and point `latest` at them.
    pub fn save_checkpoint(
        &self,
        epoch: usize,
        model: &Autoencoder,
        optim: &ModuleOptimizer,
    ) -> Result<()> {
        let dir = self.checkpoints();
        std::fs::create_dir_all(&dir)?;
        let name = format!("epoch-{epoch:04}");
        let tmp = dir.join(format!("{name}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        model
            .clone()
            .save_file(tmp.join("model.bpk"))
            .context("cannot save model checkpoint")?;
        optim
            .save(tmp.join("optimizer.bpk"))
            .context("cannot save optimizer checkpoint")?;
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
}
