//! Training: Adam on the reconstruction loss (plus the attention entropy
//! regulariser, paper Eq. 16), a held-out validation split, a checkpoint
//! every epoch, resume, and a clean stop on a non-finite loss.

pub mod picture;
pub mod run_dir;
mod start;

use std::sync::mpsc::sync_channel;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::{changes_text, Config, TrainConfig};
use crate::data::{DataError, Dataset, Splits};
use crate::model::Autoencoder;
use crate::progress;
pub use run_dir::{load_weights, EpochMetrics, RunDir};
use start::{append_history, begin, Begin, TrainState};

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
pub fn batch_tensor(
    data: &Dataset,
    indices: &[usize],
    device: &Device,
) -> Result<Tensor<4>, DataError> {
    Ok(images_tensor(data.gather(indices)?, data.size, device))
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

/// Why a training step stopped before any weight changed.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum StepError {
    /// The batch's loss is NaN or infinite.
    #[error("the loss became {}", loss_text(*.0))]
    NonFiniteLoss(f64),
}

/// One optimisation step on the batch `x` at learning rate `lr`: objective,
/// backward, Adam. A non-finite loss stops it before any weight changes.
pub fn train_step(
    model: Autoencoder,
    optim: &mut ModuleOptimizer,
    x: Tensor<4>,
    t: &TrainConfig,
    lr: f64,
) -> std::result::Result<(Autoencoder, StepStats), StepError> {
    let objective = objective(&model, x, t.entropy_weight);
    let loss = objective.loss.clone().into_scalar::<f32>() as f64;
    if !loss.is_finite() {
        return Err(StepError::NonFiniteLoss(loss));
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
) -> Result<f64, DataError> {
    let model = model.for_inference();
    let device = device.clone().without_autodiff();
    let (mut total, mut count) = (0.0f64, 0usize);
    let all: Vec<usize> = (0..data.len()).collect();
    for chunk in all.chunks(batch) {
        let x = batch_tensor(data, chunk, &device)?;
        let out = model.forward(x.clone());
        let se: f32 = (out.reconstruction - x).powi_scalar(2).sum().into_scalar();
        total += se as f64;
        count += chunk.len() * data.size * data.size;
    }
    Ok(total / count.max(1) as f64)
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
                changes_text(&changed)
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
    let d = &config.data;
    if data.train.is_empty() {
        bail!(
            "the training set is empty: data.train_limit = {} with data.validation_fraction = {} leaves no training image",
            d.train_limit,
            d.validation_fraction
        );
    }
    if data.validation.is_empty() && d.validation_fraction > 0.0 {
        bail!(
            "no validation image: data.validation_fraction = {} of {} images is less than one; raise data.train_limit or data.validation_fraction",
            d.validation_fraction,
            data.train.len()
        );
    }
    let device = device.clone().autodiff();
    device.seed(t.seed);
    let mut state = match begin(config, run, opts, &device)? {
        Begin::Train(state) => *state,
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
    let (tx, rx) = sync_channel::<Result<Vec<f32>, DataError>>(2);
    let train_set = &data.train;
    std::thread::scope(|scope| -> Result<()> {
        scope.spawn(move || {
            for idx in &batches {
                let batch = train_set.gather(idx);
                let failed = batch.is_err();
                if tx.send(batch).is_err() || failed {
                    break; // the trainer stopped (an error or a panic), or the read failed
                }
            }
        });
        // Owned by this closure, so an early return or a panic drops it,
        // which ends the loader's blocked `send` and lets the scope join.
        let rx = rx;
        for (step, pixels) in rx.iter().enumerate() {
            let x = images_tensor(pixels?, train_set.size, &state.device);
            let n = x.dims()[0];
            let lr = t
                .learning_rate_at((epoch as f64 + step as f64 / steps_per_epoch) / t.epochs as f64);
            let stats = match train_step(state.model.clone(), &mut state.optim, x, t, lr) {
                Ok((next, stats)) => {
                    state.model = next;
                    stats
                }
                Err(StepError::NonFiniteLoss(value)) => {
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
        reconstruction_loss(&state.model, &data.validation, 256, device)?
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
    let entropy = (stats.entropy_sum > 0.0).then(|| stats.entropy_sum / stats.steps as f64);
    state.trained_now += 1;
    state.epoch = epoch + 1;
    let summary = TrainSummary {
        epochs: epoch + 1,
        trained_now: state.trained_now,
        train_loss: stats.loss_sum / stats.steps.max(1) as f64,
        validation_loss: val,
        images_per_second: stats.images as f64 / stats.seconds,
    };
    state.metrics.push(EpochMetrics {
        epoch: epoch + 1,
        train_loss: summary.train_loss,
        validation_loss: val,
        seconds: stats.seconds,
        images_per_second: summary.images_per_second,
        attention_entropy: entropy,
    });
    // checkpoint (with the metrics) first: a kill between the two writes
    // leaves a metrics.csv one row short, which the resume restores
    run.save_checkpoint(
        epoch + 1,
        config,
        &state.model,
        &state.optim,
        &state.metrics,
    )?;
    crate::atomic::write(
        &run.metrics(),
        run_dir::metrics_csv(&state.metrics)?.as_bytes(),
    )?;
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

/// `eqae train`: train `config` into `runs/<config name>` on its data set,
/// then say what was done (or that nothing was left to do).
pub fn train_and_report(
    config: &Config,
    runs: &std::path::Path,
    device: &Device,
    opts: &TrainOptions,
) -> Result<TrainSummary> {
    let data = crate::data::load_splits(&config.data)?;
    let run = RunDir::new(runs.join(&config.name));
    let s = train(config, &run, &data, device, opts)?;
    if s.trained_now == 0 {
        println!(
            "{} already trained for {} epochs (train.epochs = {}): nothing to do; run directory {}",
            config.name,
            s.epochs,
            config.train.epochs,
            run.root.display()
        );
    } else {
        println!(
            "trained {} for {} epochs: validation MSE {:.5}, {:.0} images/s; run directory {}",
            config.name,
            s.epochs,
            s.validation_loss,
            s.images_per_second,
            run.root.display()
        );
    }
    Ok(s)
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

/// The lowest finite validation MSE of the epochs so far.
fn best_validation(metrics: &[EpochMetrics]) -> Option<f64> {
    metrics
        .iter()
        .map(|m| m.validation_loss)
        .filter(|v| v.is_finite())
        .reduce(f64::min)
}

/// A line of the training's log, on standard error (quiet or not: the
/// log is what a quiet run still says).
fn log(_opts: &TrainOptions, line: &str) {
    eprintln!("{line}");
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
        use super::run_dir::{metrics_csv, read_metrics};
        let text = "epoch,train_loss,validation_loss,seconds\n1,0.5,0.25,3\n2,0.4,nan,4\n";
        let rows = read_metrics(text).unwrap();
        assert_eq!(super::best_validation(&rows), Some(0.25));
        assert_eq!(rows[1].seconds, 4.0);
        assert!(rows[0].images_per_second.is_nan() && rows[0].attention_entropy.is_none());
        // another column order reads the same
        let moved = "validation_loss,epoch\n0.5,1\n0.125,2\n";
        let rows = read_metrics(moved).unwrap();
        assert_eq!(super::best_validation(&rows), Some(0.125));
        assert_eq!(rows[1].epoch, 2);
        // written and read back: the same rows at the written precision
        let mut written = read_metrics(text).unwrap();
        written[0].attention_entropy = Some(1.25);
        let again = read_metrics(&metrics_csv(&written).unwrap()).unwrap();
        assert_eq!(again[0].attention_entropy, Some(1.25));
        assert_eq!(again[0].validation_loss, 0.25);
        assert!(read_metrics("epoch,train_loss\nx,1\n").is_err());
    }
}
