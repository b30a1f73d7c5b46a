//! `eqae bench`: one training step (forward, backward, Adam) of each
//! encoder-decoder at a fixed batch on 32x32 inputs: images/s, achieved
//! GFLOP/s, the time spent expanding filter banks, and peak memory. Each
//! model runs in its own process so that its peak resident memory is its
//! own. Also the loading-plus-augmentation rate of a data set.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Distribution, Tensor};

use crate::config::{DatasetKind, ModelConfig, ModelKind};
use crate::device::Backend;
use crate::group::resample::Resampling;
use crate::group::GroupKind;
use crate::model::flops::forward_flops;
use crate::model::Autoencoder;
use crate::nn::profile::{self, Profile};
use crate::train::{objective, train_step};

/// A model `eqae bench` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchModel {
    /// The plain convolutional autoencoder.
    Baseline,
    /// The group-equivariant autoencoder of this group.
    Equivariant(GroupKind),
}

impl BenchModel {
    /// The models timed when none is named: the paper's, in its order.
    pub const PAPER: [BenchModel; 5] = [
        BenchModel::Baseline,
        BenchModel::Equivariant(GroupKind::C4),
        BenchModel::Equivariant(GroupKind::D4),
        BenchModel::Equivariant(GroupKind::C12),
        BenchModel::Equivariant(GroupKind::D12),
    ];

    /// The name `--model` takes and the table prints.
    pub fn name(self) -> &'static str {
        match self {
            BenchModel::Baseline => "baseline",
            BenchModel::Equivariant(g) => g.name(),
        }
    }

    /// Every name `--model` takes.
    pub fn names() -> Vec<&'static str> {
        let groups = GroupKind::ALL.map(BenchModel::Equivariant);
        std::iter::once(BenchModel::Baseline)
            .chain(groups)
            .map(BenchModel::name)
            .collect()
    }
}

impl std::str::FromStr for BenchModel {
    type Err = crate::group::NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("baseline") {
            return Ok(BenchModel::Baseline);
        }
        s.parse().map(BenchModel::Equivariant)
    }
}

/// How the models are timed.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Images per step.
    pub batch: usize,
    /// Timed steps after two warm-up steps.
    pub steps: usize,
    /// Channels per group element at each stage.
    pub channels: Vec<usize>,
    pub backend: Backend,
    /// Append one JSON line per model here.
    pub json: Option<PathBuf>,
    /// Also replay each operation alone (where the step's time goes).
    pub profile: bool,
    /// Off the CPU, upsample with burn's transposed convolution.
    pub burn_upsampling: bool,
}

/// The environment variable that makes a benchmark process time one model:
/// several models are timed by running this same command line once per
/// model with it set, so that each peak memory is the model's own (and no
/// flag has to be passed on by hand).
const ONE_MODEL: &str = "EQAE_BENCH_MODEL";

/// Time `models` (one process each when there are several), print the
/// table and append to `options.json`.
pub fn bench_models(models: &[BenchModel], options: &BenchOptions) -> Result<()> {
    // before the timing: a bad output path fails at once, not after minutes
    if let Some(path) = &options.json {
        crate::atomic::check_writable(path, "--json")?;
    }
    if let Ok(one) = std::env::var(ONE_MODEL) {
        let model = one
            .parse()
            .map_err(|e| anyhow::anyhow!("{ONE_MODEL}: {e}"))?;
        return bench_model(options, model);
    }
    for &m in models {
        model_config(m, &options.channels)?; // refuse bad arguments once, here
    }
    print_header();
    match models {
        [one] => bench_model(options, *one),
        _ => bench_in_processes(models),
    }
}

/// Several models: this command line again for each, with [`ONE_MODEL`] set.
fn bench_in_processes(models: &[BenchModel]) -> Result<()> {
    let exe = std::env::current_exe()?;
    for m in models {
        let status = std::process::Command::new(&exe)
            .args(std::env::args_os().skip(1))
            .env(ONE_MODEL, m.name())
            .status()
            .context("cannot start a benchmark process")?;
        if !status.success() {
            bail!("benchmark of {} failed", m.name());
        }
    }
    Ok(())
}

/// Loading-plus-augmentation throughput of a whole training split.
/// (`eqae bench --data`), printed and appended to `json`.
pub fn bench_data(dataset: DatasetKind, json: Option<&Path>) -> Result<()> {
    if let Some(path) = json {
        crate::atomic::check_writable(path, "--json")?;
    }
    let config = crate::config::DataConfig {
        dataset,
        ..Default::default()
    };
    let name = config.dataset.name();
    let started = Instant::now();
    let (train, test) = crate::data::load_raw(&config)?;
    let loaded = started.elapsed().as_secs_f64();
    let t = Instant::now();
    let augmented = train.augmented(config.image_size, true, 0, Resampling::Bilinear)?;
    let augment = t.elapsed().as_secs_f64();
    let counts = train.class_counts();
    println!(
        "{name}: {} training images; decode {:.2}s, augment {:.2}s ({:.0} images/s with {} threads); total {:.0} images/s; class counts train {counts:?}, test {:?}",
        augmented.len(),
        loaded,
        augment,
        augmented.len() as f64 / augment,
        rayon::current_num_threads(),
        augmented.len() as f64 / (loaded + augment),
        test.class_counts()
    );
    if let Some(path) = json {
        let line = serde_json::json!({
            "data": name, "training_images": augmented.len(),
            "decode_s": loaded, "augment_s": augment,
            "threads": rayon::current_num_threads(),
            "images_per_second": augmented.len() as f64 / (loaded + augment),
        });
        append_json_line(path, &line)?;
    }
    Ok(())
}

/// Append one JSON line to `--json` (several processes add theirs).
fn append_json_line(path: &Path, line: &serde_json::Value) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("--json {}: cannot open it", path.display()))?;
    writeln!(f, "{line}").with_context(|| format!("--json {}: cannot write", path.display()))
}

/// The benchmark's model, validated as a config would be.
fn model_config(model: BenchModel, channels: &[usize]) -> Result<ModelConfig> {
    let mut c = ModelConfig {
        channels: channels.to_vec(),
        ..ModelConfig::default()
    };
    match model {
        BenchModel::Baseline => c.kind = ModelKind::Baseline,
        BenchModel::Equivariant(group) => c.group = group,
    }
    let mut whole = crate::config::Config {
        model: c.clone(),
        ..Default::default()
    };
    whole.data.image_size = SIZE;
    whole
        .validate()
        .map_err(|e| anyhow::anyhow!("--channels: {e}"))?;
    Ok(c)
}

/// Side of the benchmark's inputs.
const SIZE: usize = 32;

/// The table's header line.
fn print_header() {
    println!(
        "{:<9} {:>9} {:>10} {:>9} {:>13} {:>12} {:>9} {:>12}",
        "model", "params", "ms/step", "img/s", "GFLOP/s", "expand ms", "peak MiB", "first step s"
    );
}

/// What one model's benchmark measured.
struct Measured {
    parameters: usize,
    /// Seconds per timed step.
    per_step: f64,
    /// Seconds of the first step (kernel compilation on a GPU).
    first_step: f64,
    /// Seconds of one filter expansion.
    expand: f64,
    /// FLOPs of one step.
    flops: f64,
    /// Peak resident memory, MiB.
    peak: f64,
    profile: Option<Profile>,
}

/// One model: time its training steps, then print and record them.
fn bench_model(args: &BenchOptions, model: BenchModel) -> Result<()> {
    let name = model.name();
    let config = model_config(model, &args.channels)?;
    let batch = args.batch;
    // refuse before allocating what the machine does not have
    crate::device::ensure_fits(
        crate::model::flops::training_bytes(&config, SIZE) * batch as f64,
        &format!("--batch {batch}: a training step of {name}"),
    )?;
    let measured = time_steps(args, &config)?;
    let m = &measured;
    println!(
        "{:<9} {:>9} {:>10.1} {:>9.1} {:>13.1} {:>12.2} {:>9.0} {:>12.2}",
        name,
        m.parameters,
        m.per_step * 1e3,
        batch as f64 / m.per_step,
        m.flops / m.per_step / 1e9,
        m.expand * 1e3,
        m.peak,
        m.first_step
    );
    if let Some(path) = &args.json {
        let line = serde_json::json!({
            "model": name, "batch": args.batch, "device": args.backend.name(),
            "ms_per_step": m.per_step * 1e3, "images_per_second": batch as f64 / m.per_step,
            "gflops": m.flops / m.per_step / 1e9, "expand_ms": m.expand * 1e3, "peak_mib": m.peak,
            "parameters": m.parameters,
            "first_step_s": m.first_step,
            "profile": m.profile,
        });
        append_json_line(path, &line)?;
    }
    if let Some(profile) = &m.profile {
        println!(
            "\n{name}, batch {batch}, {}: one training step by operation",
            args.backend.name()
        );
        print!("{}", profile.table());
    }
    Ok(())
}

/// The training loop's own step on random inputs (the loss stays finite):
/// two warm-up steps (the first compiles and autotunes every new kernel
/// shape on a GPU, kept for later processes in CubeCL's cache, see
/// cubecl.toml), then `--steps` timed ones; the filter expansion; and the
/// profile with `--profile`.
fn time_steps(args: &BenchOptions, config: &ModelConfig) -> Result<Measured> {
    let (batch, steps) = (args.batch, args.steps);
    let device = crate::device::select(args.backend)?.autodiff();
    device.seed(0);
    crate::nn::ops::set_burn_upsampling(args.burn_upsampling);
    let mut model = Autoencoder::new(config, SIZE, &device);
    let mut optim: ModuleOptimizer = AdamConfig::new().init();
    let train = crate::config::TrainConfig::default();
    let x = Tensor::<4>::random(
        [batch, 1, SIZE, SIZE],
        Distribution::Uniform(0.0, 1.0),
        &device,
    );
    let mut step = |model: Autoencoder| -> Result<Autoencoder> {
        let (model, _) = train_step(model, &mut optim, x.clone(), &train, train.learning_rate)
            .context("the benchmark's step")?;
        let _ = device.sync();
        Ok(model)
    };
    let first = Instant::now();
    model = step(model)?;
    let first_step = first.elapsed().as_secs_f64();
    model = step(model)?;
    let started = Instant::now();
    for _ in 0..steps {
        model = step(model)?;
    }
    let per_step = started.elapsed().as_secs_f64() / steps as f64;
    // Filter expansion alone, forward only (its backward is a scatter of the
    // same size): what freezing the model for inference does once.
    let expand = match &model {
        Autoencoder::Equivariant(m) => {
            let t = Instant::now();
            for _ in 0..steps {
                drop(m.clone().freeze());
            }
            let _ = device.sync();
            t.elapsed().as_secs_f64() / steps as f64
        }
        Autoencoder::Baseline(_) => 0.0,
    };
    // the peak of the steps themselves, before the profile's extra ones
    let peak = crate::progress::peak_rss_mib().unwrap_or(f64::NAN);
    let profile = if args.profile {
        Some(profile_step(&model, &x, &train, steps, per_step)?)
    } else {
        None
    };
    Ok(Measured {
        parameters: model.parameter_count(),
        per_step,
        first_step,
        expand,
        flops: 3.0 * forward_flops(config, SIZE) * batch as f64,
        peak,
        profile,
    })
}

/// Where one training step of `model` on `x` goes: the forward pass
/// recorded once, each distinct operation replayed `reps` times, beside the
/// measured step (`step_s`) and the measured forward + backward.
fn profile_step(
    model: &Autoencoder,
    x: &Tensor<4>,
    train: &crate::config::TrainConfig,
    reps: usize,
    step_s: f64,
) -> Result<Profile> {
    let device = x.device();
    let forward_backward = || {
        let objective = objective(model, x.clone(), train.entropy_weight);
        let _ = GradientsParams::from_grads(objective.loss.backward(), model);
        let _ = device.sync();
    };
    forward_backward();
    let t = Instant::now();
    for _ in 0..reps {
        forward_backward();
    }
    let forward_backward_s = t.elapsed().as_secs_f64() / reps as f64;
    let (_, calls) = profile::record(|| objective(model, x.clone(), train.entropy_weight));
    Ok(Profile::measure(
        calls,
        &device,
        reps,
        (step_s * 1e3, forward_backward_s * 1e3),
    ))
}
