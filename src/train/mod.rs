//! Training: Adam on the reconstruction loss (plus the attention entropy
//! regulariser, paper Eq. 16), a held-out validation split, a checkpoint
//! every epoch, resume, and a clean stop on a non-finite loss.

pub mod picture;
pub mod run_dir;

use std::sync::mpsc::sync_channel;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::{Config, TrainConfig};
use crate::data::{Dataset, Splits};
use crate::model::Autoencoder;
use crate::progress;
pub use run_dir::{load_weights, RunDir, METRICS_HEADER};

/// How to run a training.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Hide progress bars (logs only).
    pub quiet: bool,
    /// Continue from the run's latest checkpoint.
    pub resume: bool,
    /// Stop after this many epochs in total (simulates an interruption in tests).
    pub stop_after: Option<usize>,
}

/// What a training reached.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    /// Epochs completed in total.
    pub epochs: usize,
    /// Epochs trained by this call (0: the run was already complete).
    pub trained_now: usize,
    /// Mean training loss of the last epoch.
    pub train_loss: f64,
    /// Validation reconstruction loss (MSE) after the last epoch.
    pub validation_loss: f64,
    /// Training images per second in the last epoch.
    pub images_per_second: f64,
}

/// `[B, 1, S, S]` tensor of the images at `indices`.
pub fn batch_tensor(data: &Dataset, indices: &[usize], device: &Device) -> Tensor<4> {
    images_tensor(data.gather(indices), data.size, device)
}

/// `[B, 1, S, S]` tensor of `B` images of `S x S` pixels, one after the other.
pub fn images_tensor(pixels: Vec<f32>, size: usize, device: &Device) -> Tensor<4> {
    let b = pixels.len() / (size * size).max(1);
    Tensor::from_data(TensorData::new(pixels, [b, 1, size, size]), device)
}

/// The training objective of one batch and its parts.
pub struct Objective {
    /// Reconstruction MSE, plus `entropy_weight` times the attention
    /// entropy for attention models (paper Eq. 16).
    pub loss: Tensor<1>,
    /// The mean attention entropy (attention models).
    pub entropy: Option<Tensor<1>>,
}

/// The objective the autoencoders are trained on, for the batch `x`.
///
/// # Shapes
/// `x [B, 1, S, S]` -> `[1]`
pub fn objective(model: &Autoencoder, x: Tensor<4>, entropy_weight: f64) -> Objective {
    let out = model.forward(x.clone());
    let loss = (out.reconstruction - x).powi_scalar(2).mean();
    match out.weights {
        Some(w) => {
            let h = attention_entropy(w);
            Objective {
                loss: loss + h.clone() * entropy_weight,
                entropy: Some(h),
            }
        }
        None => Objective {
            loss,
            entropy: None,
        },
    }
}

/// What one optimisation step saw.
#[derive(Clone, Copy, Debug)]
pub struct StepStats {
    /// The batch's loss before the step.
    pub loss: f64,
    /// The batch's mean attention entropy (attention models).
    pub entropy: Option<f64>,
}

/// One optimisation step on the batch `x` at learning rate `lr`: objective,
/// backward, Adam. A non-finite loss is returned as `Err(loss)` before any
/// weight changes.
pub fn train_step(
    model: Autoencoder,
    optim: &mut ModuleOptimizer,
    x: Tensor<4>,
    t: &TrainConfig,
    lr: f64,
) -> std::result::Result<(Autoencoder, StepStats), f64> {
    let objective = objective(&model, x, t.entropy_weight);
    let loss = objective.loss.clone().into_scalar::<f32>() as f64;
    if !loss.is_finite() {
        return Err(loss);
    }
    let entropy = objective.entropy.map(|h| h.into_scalar::<f32>() as f64);
    let grads = GradientsParams::from_grads(objective.loss.backward(), &model);
    let model = optim.step(lr, model, grads);
    Ok((model, StepStats { loss, entropy }))
}

/// Mean entropy `H(w) = -sum_t w_t log w_t` over the batch.
///
/// # Shapes
/// `[B, N] -> [1]`
pub fn attention_entropy(w: Tensor<2>) -> Tensor<1> {
    let plogp = w.clone() * (w + 1e-12).log();
    plogp.sum_dim(1).mean().neg()
}

/// Mean squared reconstruction error of a whole data set, without autodiff.
pub fn reconstruction_loss(
    model: &Autoencoder,
    data: &Dataset,
    batch: usize,
    device: &Device,
) -> f64 {
    let model = model.for_inference();
    let device = device.clone().without_autodiff();
    let (mut total, mut count) = (0.0f64, 0usize);
    let all: Vec<usize> = (0..data.len()).collect();
    for chunk in all.chunks(batch) {
        let x = batch_tensor(data, chunk, &device);
        let out = model.forward(x.clone());
        let se: f32 = (out.reconstruction - x).powi_scalar(2).sum().into_scalar();
        total += se as f64;
        count += chunk.len() * data.size * data.size;
    }
    total / count.max(1) as f64
}

/// The trained model of `config` in `run`: loaded when the run holds
/// exactly this config's weights, trained (or resumed from its latest
/// checkpoint) when it holds none, refused when it holds another config's.
pub fn trained_model(
    config: &Config,
    run: &RunDir,
    data: &Splits,
    device: &Device,
    quiet: bool,
) -> Result<Autoencoder> {
    if run.model().exists() {
        // a change of [features] alone needs no training
        let changed = run_dir::training_differences(&run.load_config()?, config);
        if !changed.is_empty() {
            bail!(
                "{} was trained with another config ({}); delete that folder to train it again",
                run.root.display(),
                changed.join(", ")
            );
        }
    } else {
        let opts = TrainOptions {
            quiet,
            resume: true,
            stop_after: None,
        };
        train(config, run, data, device, &opts)
            .with_context(|| format!("training {}", config.name))?;
    }
    run.load_model(config, device)
}

/// Train a model as `config` says, writing everything into `run`.
///
/// Holds the run's lock throughout, so two processes never train one run.
/// The steps: check memory and the run folder, find where to start
/// ([`begin`]), then per epoch train ([`train_epoch`]) and validate,
/// checkpoint and record ([`end_epoch`]), and save the final weights.
pub fn train(
    config: &Config,
    run: &RunDir,
    data: &Splits,
    device: &Device,
    opts: &TrainOptions,
) -> Result<TrainSummary> {
    let t = &config.train;
    crate::model::flops::ensure_step_fits(
        &config.model,
        config.data.image_size,
        t.batch_size as f64,
        1.0,
        &format!("a training step: train.batch_size = {}", t.batch_size),
    )?;
    let _lock = run.lock()?;
    run.clean_temporaries()?;
    // the checkpoints can be written: found out now, not after an epoch
    crate::atomic::check_writable(&run.checkpoints().join("latest"), "checkpoint pointer")?;
    if data.train.is_empty() {
        bail!("the training set is empty");
    }
    let device = device.clone().autodiff();
    device.seed(t.seed);
    let mut state = match begin(config, run, opts, &device)? {
        Begin::Train(state) => state,
        Begin::AlreadyTrained(epochs) => {
            return Ok(TrainSummary {
                epochs,
                trained_now: 0,
                train_loss: f64::NAN,
                validation_loss: f64::NAN,
                images_per_second: 0.0,
            })
        }
    };
    log(
        opts,
        &format!(
            "{}: {} parameters, {} training / {} validation images",
            config.name,
            state.model.parameter_count(),
            data.train.len(),
            data.validation.len()
        ),
    );
    let last_epoch = opts.stop_after.unwrap_or(t.epochs).min(t.epochs);
    let mut summary = TrainSummary {
        epochs: state.epoch,
        trained_now: 0,
        train_loss: f64::NAN,
        validation_loss: f64::NAN,
        images_per_second: 0.0,
    };
    for epoch in state.epoch..last_epoch {
        let stats = train_epoch(&mut state, config, run, data, epoch, opts)?;
        summary = end_epoch(&mut state, config, run, data, (epoch, stats), opts)?;
    }
    if summary.epochs == t.epochs {
        run.save_model(config, &state.model)
            .context("cannot save final weights")?;
        crate::atomic::write(&run.config(), config.to_toml().as_bytes())?;
    }
    Ok(summary)
}

/// A training under way: the model, its optimiser, the next epoch, the
/// metrics so far and the resume change still to record.
struct TrainState {
    model: Autoencoder,
    optim: ModuleOptimizer,
    /// Epochs done (0-based index of the next one).
    epoch: usize,
    /// Epochs this process has trained.
    trained_now: usize,
    /// `metrics.csv` as it will be written.
    metrics: String,
    /// What a resume changed, recorded with the first checkpoint trained
    /// under it: a kill or a divergence before then leaves `config.toml`
    /// and `history.txt` describing the weights that exist.
    pending_history: Option<String>,
    device: Device,
}

/// Where a training starts.
enum Begin {
    /// Train from this state.
    Train(TrainState),
    /// The run already has every epoch asked for.
    AlreadyTrained(usize),
}

/// A fresh model, or the run's latest checkpoint with `--resume`; refuses
/// what would mix two trainings in one folder.
fn begin(config: &Config, run: &RunDir, opts: &TrainOptions, device: &Device) -> Result<Begin> {
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
        metrics: METRICS_HEADER.to_string(),
        pending_history: None,
        device: device.clone(),
    };
    match (opts.resume, run.latest_checkpoint()?) {
        (true, Some((epoch, dir))) => {
            let saved = run.checkpoint_config(&dir)?;
            let fixed: Vec<String> = saved
                .diff(config)
                .into_iter()
                .filter(|d| d.starts_with("model.") || d.starts_with("data."))
                .collect();
            if !fixed.is_empty() {
                bail!(
                    "--resume: the model or data differs from {} ({}); start a new run name instead",
                    run.config().display(),
                    fixed.join(", ")
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
            crate::atomic::write(&run.metrics(), state.metrics.as_bytes())?;
            let changed = saved.diff(config);
            if !changed.is_empty() {
                // the run continues under the new settings: say so now, and
                // record it with the first checkpoint trained under them
                let line = format!("resumed after epoch {epoch} with {}", changed.join(", "));
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
        crate::atomic::write(&run.metrics(), state.metrics.as_bytes())?;
    }
    Ok(Begin::Train(state))
}

/// What one epoch's steps saw.
struct EpochStats {
    loss_sum: f64,
    entropy_sum: f64,
    steps: usize,
    images: usize,
    seconds: f64,
}

/// One epoch of optimisation steps, the batches assembled on a background
/// thread while the model trains. A non-finite loss stops it at once.
fn train_epoch(
    state: &mut TrainState,
    config: &Config,
    run: &RunDir,
    data: &Splits,
    epoch: usize,
    opts: &TrainOptions,
) -> Result<EpochStats> {
    let t = &config.train;
    let mut order: Vec<usize> = (0..data.train.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(
        t.seed.wrapping_add(1000 + epoch as u64),
    ));
    let batches: Vec<Vec<usize>> = order.chunks(t.batch_size).map(|c| c.to_vec()).collect();
    let steps_per_epoch = batches.len() as f64;
    let bar = progress::bar(
        batches.len() as u64,
        opts.quiet,
        &format!("epoch {}/{}", epoch + 1, t.epochs),
    );
    let started = Instant::now();
    let (mut loss_sum, mut entropy_sum, mut steps) = (0.0f64, 0.0f64, 0usize);
    let mut seen = 0usize;
    let (tx, rx) = sync_channel::<Vec<f32>>(2);
    let train_set = &data.train;
    std::thread::scope(|scope| -> Result<()> {
        scope.spawn(move || {
            for idx in &batches {
                if tx.send(train_set.gather(idx)).is_err() {
                    break; // the trainer stopped: an error or a panic
                }
            }
        });
        // Owned by this closure, so an early return or a panic drops it,
        // which ends the loader's blocked `send` and lets the scope join.
        let rx = rx;
        for (step, pixels) in rx.iter().enumerate() {
            let x = images_tensor(pixels, train_set.size, &state.device);
            let n = x.dims()[0];
            let lr = t
                .learning_rate_at((epoch as f64 + step as f64 / steps_per_epoch) / t.epochs as f64);
            let stats = match train_step(state.model.clone(), &mut state.optim, x, t, lr) {
                Ok((next, stats)) => {
                    state.model = next;
                    stats
                }
                Err(value) => {
                    bar.abandon();
                    let kept = match run.latest_checkpoint()? {
                        Some((e, dir)) => format!(
                            "the last good checkpoint (epoch {e}) is kept in {}",
                            dir.display()
                        ),
                        None => "no checkpoint was written yet".to_string(),
                    };
                    bail!(
                        "loss became {} at epoch {}, step {}: training stopped; {kept}. Check the data for NaN/inf values or lower train.learning_rate",
                        loss_text(value),
                        epoch + 1,
                        step + 1
                    );
                }
            };
            entropy_sum += stats.entropy.unwrap_or(0.0);
            loss_sum += stats.loss;
            steps += 1;
            seen += n;
            let rate = seen as f64 / started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "loss {:.5}  {rate:.0} img/s",
                loss_sum / steps as f64
            ));
            bar.inc(1);
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    Ok(EpochStats {
        loss_sum,
        entropy_sum,
        steps,
        images: seen,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// After an epoch: validate, stop on a divergence before its weights
/// replace the last good checkpoint, then checkpoint, record the metrics
/// (and a pending resume change), draw the reconstructions and log.
fn end_epoch(
    state: &mut TrainState,
    config: &Config,
    run: &RunDir,
    data: &Splits,
    (epoch, stats): (usize, EpochStats),
    opts: &TrainOptions,
) -> Result<TrainSummary> {
    let device = &state.device;
    let val = if data.validation.is_empty() {
        f64::NAN
    } else {
        reconstruction_loss(&state.model, &data.validation, 256, device)
    };
    // a loss that jumps by orders of magnitude without becoming NaN is a
    // divergence too: stop before its weights replace the last good
    // checkpoint (only the newest checkpoint is kept)
    if let Some(best) = best_validation(&state.metrics).filter(|b| val > DIVERGED * b) {
        bail!(
            "validation MSE jumped from {} to {} in epoch {}: training diverged and was stopped; the checkpoint of epoch {epoch} is kept. Resume with train.grad_clip (e.g. 1.0) or a lower train.learning_rate",
            loss_text(best),
            loss_text(val),
            epoch + 1
        );
    }
    let entropy = if stats.entropy_sum > 0.0 {
        format!("{:.6}", stats.entropy_sum / stats.steps as f64)
    } else {
        String::new()
    };
    state.trained_now += 1;
    state.epoch = epoch + 1;
    let summary = TrainSummary {
        epochs: epoch + 1,
        trained_now: state.trained_now,
        train_loss: stats.loss_sum / stats.steps.max(1) as f64,
        validation_loss: val,
        images_per_second: stats.images as f64 / stats.seconds,
    };
    state.metrics.push_str(&format!(
        "{},{:.6},{:.6},{:.2},{:.1},{}\n",
        epoch + 1,
        summary.train_loss,
        val,
        stats.seconds,
        summary.images_per_second,
        entropy
    ));
    // checkpoint (with the metrics) first: a kill between the two writes
    // leaves a metrics.csv one row short, which the resume restores
    run.save_checkpoint(
        epoch + 1,
        config,
        &state.model,
        &state.optim,
        &state.metrics,
    )?;
    crate::atomic::write(&run.metrics(), state.metrics.as_bytes())?;
    if let Some(line) = state.pending_history.take() {
        append_history(run, &line)?;
    }
    // config.toml describes model.bpk while there is one (it is replaced
    // with the final weights at the end), else the newest checkpoint
    if !run.model().exists() {
        crate::atomic::write(&run.config(), config.to_toml().as_bytes())?;
    }
    let shown = if data.validation.is_empty() {
        &data.train
    } else {
        &data.validation
    };
    picture::save_reconstructions(&state.model, shown, 8, device, &run.reconstructions())?;
    log(
        opts,
        &format!(
            "epoch {}/{}: train loss {:.5}, validation MSE {:.5}, {:.1}s, {:.0} img/s",
            epoch + 1,
            config.train.epochs,
            summary.train_loss,
            val,
            stats.seconds,
            summary.images_per_second
        ),
    );
    Ok(summary)
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
    if !run_dir::weights_are_whole(&run.model())? {
        let weights = load_weights(&dir.join("model.bpk"), saved, device)?;
        run.save_model(saved, &weights)?;
    }
    crate::atomic::write(&run.metrics(), run.metrics_up_to(epoch, dir)?.as_bytes())?;
    // the features as config.toml reads them now (an earlier change applied)
    let mut described = run.load_config().unwrap_or_else(|_| saved.clone());
    if !run_dir::training_differences(saved, &described).is_empty() {
        described = saved.clone();
    }
    let features: Vec<String> = described
        .diff(config)
        .into_iter()
        .filter(|d| d.starts_with("features."))
        .collect();
    let others: Vec<String> = run_dir::training_differences(saved, config);
    if !features.is_empty() {
        described.features = config.features.clone();
        let line = format!(
            "features changed after epoch {epoch}: {}",
            features.join(", ")
        );
        log(opts, &line);
        append_history(run, &line)?;
    }
    if !others.is_empty() {
        log(
            opts,
            &format!(
                "not applied: the run is already trained for {epoch} epochs, so {} would change no weights; raise train.epochs to train further",
                others.join(", ")
            ),
        );
    }
    crate::atomic::write(&run.config(), described.to_toml().as_bytes())
}

/// Add one line to the run's `history.txt`.
fn append_history(run: &RunDir, line: &str) -> Result<()> {
    let mut history = std::fs::read_to_string(run.history()).unwrap_or_default();
    history.push_str(line);
    history.push('\n');
    crate::atomic::write(&run.history(), history.as_bytes())
}

/// A loss as people read it: 5 decimals in the usual range, scientific
/// notation for the very large or very small (a diverged 3.9e30).
pub fn loss_text(v: f64) -> String {
    if v == 0.0 || !v.is_finite() || (1e-4..1e4).contains(&v.abs()) {
        format!("{v:.5}")
    } else {
        format!("{v:.3e}")
    }
}

/// A validation MSE this many times the best of the run so far stops it.
pub const DIVERGED: f64 = 10.0;

/// The lowest finite validation MSE in a metrics.csv text.
fn best_validation(metrics: &str) -> Option<f64> {
    run_dir::metric_values(metrics, "validation_loss")
        .into_iter()
        .flatten()
        .filter(|v| v.is_finite())
        .reduce(f64::min)
}

fn log(opts: &TrainOptions, line: &str) {
    if opts.quiet {
        eprintln!("{line}");
    } else {
        progress::println(line);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn losses_read_as_numbers_people_can_read() {
        assert_eq!(super::loss_text(3.9e30), "3.900e30");
        assert_eq!(super::loss_text(0.01234), "0.01234");
        assert_eq!(super::loss_text(1e-7), "1.000e-7");
        assert_eq!(super::loss_text(f64::INFINITY), "inf");
    }

    #[test]
    fn metrics_are_read_by_column_name() {
        let text = "epoch,train_loss,validation_loss,seconds\n1,0.5,0.25,3\n2,0.4,nan,4\n";
        assert_eq!(super::best_validation(text), Some(0.25));
        // another column order reads the same
        let moved = "validation_loss,epoch\n0.5,1\n0.125,2\n";
        assert_eq!(super::best_validation(moved), Some(0.125));
        assert_eq!(
            super::run_dir::metric_values(text, "seconds"),
            vec![Some(3.0), Some(4.0)]
        );
    }
}
