//! `eqae bench`: the arguments of the training-step and data-loading
//! benchmarks ([`crate::experiment::bench`]).

use anyhow::Result;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, ValueEnum};

use super::args::DeviceArgs;

use crate::config::DatasetKind;
use crate::experiment::bench::{bench_data, bench_models, BenchModel, BenchOptions};

/// Arguments of `eqae bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Models to time (default: all).
    #[arg(long, num_args = 1.., value_parser = model_parser())]
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

/// `--model`: baseline or a group's name.
fn model_parser() -> impl TypedValueParser<Value = BenchModel> {
    PossibleValuesParser::new(BenchModel::names())
        .map(|name| name.parse().expect("one of the names listed"))
}

/// The data sets `eqae bench --data` loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchData {
    /// MNIST.
    Mnist,
    /// Fashion-MNIST.
    FashionMnist,
}

impl From<BenchData> for DatasetKind {
    fn from(data: BenchData) -> DatasetKind {
        match data {
            BenchData::Mnist => DatasetKind::Mnist,
            BenchData::FashionMnist => DatasetKind::FashionMnist,
        }
    }
}

/// Run `eqae bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    if let Some(data) = args.data {
        return bench_data(data.into(), args.json.as_deref());
    }
    let models = if args.model.is_empty() {
        BenchModel::PAPER.to_vec()
    } else {
        args.model
    };
    let options = BenchOptions {
        batch: args.batch as usize,
        steps: args.steps as usize,
        channels: args.channels.iter().map(|&c| usize::from(c)).collect(),
        backend: args.device.backend(),
        json: args.json,
        profile: args.profile,
        burn_upsampling: args.burn_upsampling,
    };
    bench_models(&models, &options)
}
