//! `eqae bench`: one training step (forward, backward, Adam) of each
//! encoder-decoder at a fixed batch on 32x32 inputs: images/s, achieved
//! GFLOP/s, the time spent expanding filter banks, and peak memory. Each
//! model runs in its own process so that its peak resident memory is its own.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Distribution, Tensor};
use clap::{Args, ValueEnum};

use super::args::DeviceArgs;

use crate::config::{ModelConfig, ModelKind};
use crate::group::resample::Resampling;
use crate::group::GroupKind;
use crate::model::flops::forward_flops;
use crate::model::Autoencoder;
use crate::nn::profile::{self, Profile};
use crate::train::{objective, train_step};

/// Arguments of `eqae bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Models to time (default: all).
    #[arg(long, value_enum, num_args = 1..)]
    pub model: Vec<BenchModel>,
    /// Images per step.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// Timed steps after two warm-up steps.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub steps: u32,
    /// Channels per group element at each stage (32x32 inputs: at most 5 stages).
    #[arg(long, num_args = 1.., default_values_t = vec![4u16, 8, 16, 16], value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub channels: Vec<u16>,
    /// The compute device.
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Write one JSON line per model here (appending).
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// After the timing, where the step's time goes: every operation of the
    /// forward pass replayed alone, forward and backward, the device
    /// synchronised around each (a table of milliseconds and shares).
    #[arg(long, conflicts_with = "data")]
    pub profile: bool,
    /// Off the CPU, upsample with burn's own transposed convolution instead
    /// of eqae's matrix product (to measure what the replacement saves).
    #[arg(long)]
    pub burn_upsampling: bool,
    /// Instead of models: time loading plus augmentation of this data
    /// set's full training split (from data/).
    #[arg(long, value_enum)]
    pub data: Option<BenchData>,
}

/// The models `eqae bench` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchModel {
    /// The plain convolutional autoencoder.
    Baseline,
    /// p4 (C4).
    C4,
    /// p4m (D4).
    D4,
    /// C8.
    C8,
    /// D8.
    D8,
    /// C12.
    C12,
    /// D12.
    D12,
    /// C16.
    C16,
    /// D16.
    D16,
    /// C24.
    C24,
    /// D24.
    D24,
}

impl BenchModel {
    /// The models timed when none is named: the paper's, in its order.
    const ALL: [BenchModel; 5] = [
        BenchModel::Baseline,
        BenchModel::C4,
        BenchModel::D4,
        BenchModel::C12,
        BenchModel::D12,
    ];

    /// The group of an equivariant model (None for the baseline).
    fn group(self) -> Option<GroupKind> {
        Some(match self {
            BenchModel::Baseline => return None,
            BenchModel::C4 => GroupKind::C4,
            BenchModel::D4 => GroupKind::D4,
            BenchModel::C8 => GroupKind::C8,
            BenchModel::D8 => GroupKind::D8,
            BenchModel::C12 => GroupKind::C12,
            BenchModel::D12 => GroupKind::D12,
            BenchModel::C16 => GroupKind::C16,
            BenchModel::D16 => GroupKind::D16,
            BenchModel::C24 => GroupKind::C24,
            BenchModel::D24 => GroupKind::D24,
        })
    }

    /// The name `--model` takes and the table prints.
    fn name(self) -> &'static str {
        self.group().map_or("baseline", GroupKind::name)
    }
}

/// The data sets `eqae bench --data` loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchData {
    /// MNIST.
    Mnist,
    /// Fashion-MNIST.
    FashionMnist,
}

/// Loading-plus-augmentation throughput of a whole training split.
fn bench_data(data: BenchData, json: Option<&std::path::Path>) -> Result<()> {
    let mut config = crate::config::DataConfig::default();
    config.dataset = match data {
        BenchData::Mnist => crate::config::DatasetKind::Mnist,
        BenchData::FashionMnist => crate::config::DatasetKind::FashionMnist,
    };
    let name = config.dataset.name();
    let started = Instant::now();
    let (train, test) = crate::data::load_raw(&config)?;
    let loaded = started.elapsed().as_secs_f64();
    let t = Instant::now();
    let augmented = train.augmented(config.image_size, true, 0, Resampling::Bilinear);
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
fn append_json_line(path: &std::path::Path, line: &serde_json::Value) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("--json {}: cannot open it", path.display()))?;
    writeln!(f, "{line}").with_context(|| format!("--json {}: cannot write", path.display()))
}

/// The benchmark's model, validated as a config would be.
fn model_config(model: BenchModel, channels: &[u16]) -> Result<ModelConfig> {
    let mut c = ModelConfig {
        channels: channels.iter().map(|&c| usize::from(c)).collect(),
        ..ModelConfig::default()
    };
    match model.group() {
        None => c.kind = ModelKind::Baseline,
        Some(group) => c.group = group,
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

/// Run `eqae bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    // before the timing: a bad output path fails at once, not after minutes
    if let Some(path) = &args.json {
        crate::atomic::check_writable(path, "--json")?;
    }
    if let Some(data) = args.data {
        return bench_data(data, args.json.as_deref());
    }
    let models = if args.model.is_empty() {
        BenchModel::ALL.to_vec()
    } else {
        args.model.clone()
    };
    if models.len() > 1 {
        bench_in_processes(&args, &models)
    } else {
        bench_model(&args, models[0])
    }
}

/// The table's header line.
fn print_header() {
    println!(
        "{:<9} {:>9} {:>10} {:>9} {:>13} {:>12} {:>9} {:>12}",
        "model", "params", "ms/step", "img/s", "GFLOP/s", "expand ms", "peak MiB", "first step s"
    );
}

/// Several models: one process each, so that each peak memory is its own.
fn bench_in_processes(args: &BenchArgs, models: &[BenchModel]) -> Result<()> {
    for &m in models {
        model_config(m, &args.channels)?; // refuse bad arguments once, here
    }
    print_header();
    let exe = std::env::current_exe()?;
    for m in models {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args([
            "bench",
            "--model",
            m.name(),
            "--batch",
            &args.batch.to_string(),
            "--steps",
            &args.steps.to_string(),
        ]);
        cmd.arg("--channels")
            .args(args.channels.iter().map(|c| c.to_string()));
        cmd.args(["--device", args.device.device.name()]);
        if args.profile {
            cmd.arg("--profile");
        }
        if args.burn_upsampling {
            cmd.arg("--burn-upsampling");
        }
        if let Some(j) = &args.json {
            cmd.arg("--json").arg(j);
        }
        let status = cmd.status().context("cannot start a benchmark process")?;
        if !status.success() {
            bail!("benchmark of {} failed", m.name());
        }
    }
    Ok(())
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
fn bench_model(args: &BenchArgs, model: BenchModel) -> Result<()> {
    let name = model.name();
    let config = model_config(model, &args.channels)?;
    let batch = args.batch as usize;
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
            "model": name, "batch": args.batch, "device": args.device.device.name(),
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
            args.device.device.name()
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
fn time_steps(args: &BenchArgs, config: &ModelConfig) -> Result<Measured> {
    let (batch, steps) = (args.batch as usize, args.steps as usize);
    let device = args.device.select()?.autodiff();
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
            .map_err(|loss| anyhow::anyhow!("the benchmark's loss became {loss}"))?;
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
