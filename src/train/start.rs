//! Where a training starts: a fresh model, or the latest checkpoint of a
//! run with `--resume` (refusing what would mix two trainings in one
//! folder, and finishing a run that already has its epochs).

use anyhow::{bail, Context, Result};
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, ModuleOptimizer};
use burn::tensor::Device;

use super::run_dir::{self, load_weights, metrics_csv, EpochMetrics, RunDir};
use super::{log, TrainOptions};
use crate::config::{changes_text, Config, ConfigChange, Section};
use crate::model::Autoencoder;

/// A training under way: the model, its optimiser, the next epoch, the
/// metrics so far and the resume change still to record.
pub(super) struct TrainState {
    pub(super) model: Autoencoder,
    pub(super) optim: ModuleOptimizer,
    /// Epochs done (0-based index of the next one).
    pub(super) epoch: usize,
    /// Epochs this process has trained.
    pub(super) trained_now: usize,
    /// `metrics.csv` as it will be written.
    pub(super) metrics: Vec<EpochMetrics>,
    /// What a resume changed, recorded with the first checkpoint trained
    /// under it: a kill or a divergence before then leaves `config.toml`
    /// and `history.txt` describing the weights that exist.
    pub(super) pending_history: Option<String>,
    pub(super) device: Device,
}

/// Where a training starts.
pub(super) enum Begin {
    /// Train from this state.
    Train(Box<TrainState>),
    /// The run already has every epoch asked for.
    AlreadyTrained(usize),
}

/// A fresh model, or the run's latest checkpoint with `--resume`; refuses
/// what would mix two trainings in one folder.
pub(super) fn begin(
    config: &Config,
    run: &RunDir,
    opts: &TrainOptions,
    device: &Device,
) -> Result<Begin> {
    let t = &config.train;
    let mut adam = AdamConfig::new();
    if t.grad_clip > 0.0 {
        adam = adam.with_grad_clipping(Some(GradientClippingConfig::Norm(t.grad_clip as f32)));
    }
    let mut state = TrainState {
        model: Autoencoder::new(&config.model, config.data.image_size, device),
        optim: adam.init(),
        epoch: 0,
        trained_now: 0,
        metrics: Vec::new(),
        pending_history: None,
        device: device.clone(),
    };
    match (opts.resume, run.latest_checkpoint()?) {
        (true, Some((epoch, dir))) => {
            let saved = run.checkpoint_config(&dir)?;
            let fixed: Vec<ConfigChange> = saved
                .diff(config)
                .into_iter()
                .filter(|d| matches!(d.section, Section::Model | Section::Data))
                .collect();
            if !fixed.is_empty() {
                bail!(
                    "--resume: the model or data differs from {} ({}); start a new run name instead",
                    run.config().display(),
                    changes_text(&fixed)
                );
            }
            if epoch >= t.epochs {
                finish_trained_run(config, run, &saved, (epoch, &dir), device, opts)?;
                return Ok(Begin::AlreadyTrained(epoch));
            }
            state.model = load_weights(&dir.join("model.bpk"), config, device)
                .with_context(|| format!("cannot load checkpoint {}", dir.display()))?;
            state.optim = state
                .optim
                .load(dir.join("optimizer.bpk"))
                .with_context(|| format!("cannot load optimizer state {}", dir.display()))?;
            state.epoch = epoch;
            state.metrics = run.metrics_up_to(epoch, &dir)?;
            crate::atomic::write(&run.metrics(), metrics_csv(&state.metrics)?.as_bytes())?;
            let changed = saved.diff(config);
            if !changed.is_empty() {
                // the run continues under the new settings: say so now, and
                // record it with the first checkpoint trained under them
                let line = format!(
                    "resumed after epoch {epoch} with {}",
                    changes_text(&changed)
                );
                log(opts, &line);
                state.pending_history = Some(line);
            }
            log(
                opts,
                &format!("resuming {} after epoch {epoch}", run.root.display()),
            );
        }
        (true, None) if run.model().exists() => bail!(
            "{} holds trained weights but no checkpoint to resume from ({} is missing); train a new run name instead",
            run.root.display(),
            run.checkpoints().join("latest").display()
        ),
        (true, None) => log(opts, "--resume: no checkpoint yet, starting from scratch"),
        (false, Some(_)) => bail!(
            "{} already holds a run; pass --resume to continue it, or choose another name",
            run.root.display()
        ),
        (false, None) if run.model().exists() => bail!(
            "{} already holds trained weights; choose another name",
            run.root.display()
        ),
        (false, None) => {}
    }
    if state.epoch == 0 {
        crate::atomic::write(&run.config(), config.to_toml().as_bytes())?;
        crate::atomic::write(&run.metrics(), metrics_csv(&state.metrics)?.as_bytes())?;
    }
    Ok(Begin::Train(Box::new(state)))
}

/// A resume of a run whose checkpoint has every epoch `config` asks for:
/// repair what a kill during the final save left (the weights, their
/// config, the metrics row), and apply a change of `[features]` (how
/// features are read, which needs no training). Other changes cannot
/// apply to weights that are already trained: say so.
fn finish_trained_run(
    config: &Config,
    run: &RunDir,
    saved: &Config,
    (epoch, dir): (usize, &std::path::Path),
    device: &Device,
    opts: &TrainOptions,
) -> Result<()> {
    // model.bpk must be the final checkpoint's weights: whole, and trained
    // as the checkpoint was (a kill between the last checkpoint and the
    // final save leaves the whole weights of the earlier training)
    let final_weights = run_dir::weights_are_whole(&run.model())?
        && run_dir::WeightsInfo::read(&run.model())?
            .and_then(|i| i.trained_with)
            .is_some_and(|trained| run_dir::training_differences(&trained, saved).is_empty());
    if !final_weights {
        let weights = load_weights(&dir.join("model.bpk"), saved, device)?;
        run.save_model(saved, &weights)?;
        log(
            opts,
            &format!("restored the final weights from {}", dir.display()),
        );
    }
    let metrics = metrics_csv(&run.metrics_up_to(epoch, dir)?)?;
    crate::atomic::write(&run.metrics(), metrics.as_bytes())?;
    // the features as config.toml reads them now (an earlier change applied)
    let mut described = run.load_config().unwrap_or_else(|_| saved.clone());
    if !run_dir::training_differences(saved, &described).is_empty() {
        described = saved.clone();
    }
    let features: Vec<ConfigChange> = described
        .diff(config)
        .into_iter()
        .filter(|d| d.section == Section::Features)
        .collect();
    let others = run_dir::training_differences(saved, config);
    if !features.is_empty() {
        described.features = config.features.clone();
        let line = format!(
            "features changed after epoch {epoch}: {}",
            changes_text(&features)
        );
        log(opts, &line);
        append_history(run, &line)?;
    }
    if !others.is_empty() {
        log(
            opts,
            &format!(
                "not applied: the run is already trained for {epoch} epochs, so {} would change no weights; raise train.epochs to train further",
                changes_text(&others)
            ),
        );
    }
    crate::atomic::write(&run.config(), described.to_toml().as_bytes())
}

/// Add one line to the run's `history.txt`.
pub(super) fn append_history(run: &RunDir, line: &str) -> Result<()> {
    let mut history = std::fs::read_to_string(run.history()).unwrap_or_default();
    history.push_str(line);
    history.push('\n');
    crate::atomic::write(&run.history(), history.as_bytes())
}
