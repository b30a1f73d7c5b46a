//! `eqae eval`: probes on frozen features of trained runs, or the paper's
//! tables end to end (`--table 1`).

use std::path::PathBuf;

use anyhow::{bail, Result};
use burn::tensor::Device;
use clap::Args;

use super::args::{DeviceArgs, HeadArg, PresetArg};

use crate::eval::features::Head;
use crate::experiment::evaluate::evaluate_and_print;
use crate::experiment::pipeline::Studies;
use crate::experiment::reproduce::reproduce_and_print;
use crate::experiment::{PaperTable, TableOptions};
use crate::group::resample::Resampling;

/// Arguments of `eqae eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Reproduce the paper's Table 1 (augmented MNIST) or 2 (Plankton), or
    /// give Table 1's rows on augmented Fashion-MNIST (3, not in the paper).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=3), conflicts_with = "run")]
    pub table: Option<u8>,
    /// Size of a table reproduction.
    #[arg(long, value_enum, default_value = "quick")]
    pub preset: PresetArg,
    /// Seeds per row (0..seeds).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub seeds: u64,
    /// With --table: the first seed to evaluate (seeds first..seeds), where
    /// the earlier seeds were evaluated elsewhere (see --with-rows).
    #[arg(long, default_value_t = 0, requires = "table")]
    pub first_seed: u64,
    /// With --table: earlier reports of the same table and preset
    /// (`<table>_<preset>.json`, e.g. `table1_full.json`, one per seed
    /// evaluated at another time or on another machine), whose rows are
    /// reported together with this run's; a (row, seed) evaluated now
    /// replaces the same one from a file.
    #[arg(long = "with-rows", num_args = 1.., requires = "table", conflicts_with = "train_only")]
    pub with_rows: Vec<PathBuf>,
    /// Trained run directories to evaluate.
    #[arg(long, num_args = 1..)]
    pub run: Vec<PathBuf>,
    /// Heads to evaluate (default: each model's own).
    #[arg(long, value_enum, num_args = 1..)]
    pub head: Vec<HeadArg>,
    /// Folder with the row configs.
    #[arg(long, default_value = "configs")]
    pub configs: PathBuf,
    /// Folder for run directories.
    #[arg(long, default_value = "runs")]
    pub runs: PathBuf,
    /// Folder for reports (JSON and Markdown).
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
    /// Also draw PCA, t-SNE and explained-variance pictures of the test
    /// features (with --run; table reproductions always draw them).
    #[arg(long)]
    pub plots: bool,
    /// Label efficiency: the probes fitted on this many stratified training
    /// labels each (0 = all), e.g. `--labels 100 1000 10000 0` (with
    /// --table: on seed 0's rows).
    #[arg(long, num_args = 1..)]
    pub labels: Vec<usize>,
    /// Draws per label count below all (seeded, stratified).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub draws: u16,
    /// Rotation robustness: the probes scored on the upright test images
    /// turned by every multiple of this many degrees, and mirrored (with
    /// --table: on seed 0's rows).
    #[arg(long, value_parser = super::args::parse_angle_step)]
    pub rotations: Option<f64>,
    /// Upright test images turned by --rotations (the first N; 0 = all):
    /// 48 angles of 10,000 images are half a million embeddings per row.
    #[arg(long, default_value_t = 2000)]
    pub rotation_images: usize,
    /// How --rotations turns the test images (default: as each run's
    /// training turned its images, `data.resampling`).
    #[arg(long, value_parser = super::args::resampling_parser(), requires = "rotations")]
    pub resample: Option<Resampling>,
    /// What the attention does with the pose, for attention runs (with
    /// --table: seed 0's attention rows): how often its argmax recovers each
    /// test image's rotation and reflection (pose.json, pose_<run>.png).
    #[arg(long)]
    pub pose: bool,
    /// With --table: train (or resume) every row's model for every seed and
    /// stop; a later `--table` run evaluates them without training.
    #[arg(long, requires = "table")]
    pub train_only: bool,
    /// With --table: evaluate only the rows whose models are trained and
    /// leave the others out, training nothing (while a `--train-only` run
    /// is still training them). Rows evaluated before are read back from
    /// `<out>/<table>_rows/` either way, so a later run adds the rest.
    #[arg(long, requires = "table", conflicts_with = "train_only")]
    pub skip_untrained: bool,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// The compute device.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Run `eqae eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    let device = args.device.select()?;
    let studies = Studies {
        labels: args.labels.clone(),
        draws: usize::from(args.draws),
        rotation_step: args.rotations,
        rotation_images: args.rotation_images,
        rotation_resampling: args.resample,
        pose: args.pose,
    };
    match args.table {
        Some(table) => eval_table(&args, table, studies, &device),
        None => eval_runs(&args, studies, &device),
    }
}

/// `eval --table N`: the paper's table, trained where missing and evaluated.
fn eval_table(args: &EvalArgs, table: u8, studies: Studies, device: &Device) -> Result<()> {
    let opts = TableOptions {
        table: PaperTable::from_number(table)
            .ok_or_else(|| anyhow::anyhow!("--table {table}: expected 1, 2 or 3"))?,
        preset: args.preset.into(),
        seeds: args.seeds,
        first_seed: args.first_seed,
        earlier: args.with_rows.clone(),
        configs: args.configs.clone(),
        runs: args.runs.clone(),
        out: args.out.clone(),
        quiet: args.quiet,
        train_only: args.train_only,
        skip_untrained: args.skip_untrained,
        studies,
    };
    reproduce_and_print(&opts, device)
}

/// `eval --run R...`: the probes and studies of trained runs.
fn eval_runs(args: &EvalArgs, studies: Studies, device: &Device) -> Result<()> {
    if args.run.is_empty() {
        bail!("give --table 1|2|3, or one or more --run directories");
    }
    // options of table reproductions mean nothing to --run: refuse them
    // rather than ignore them
    for (given, flag) in [
        (!args.with_rows.is_empty(), "--with-rows"),
        (args.first_seed != 0, "--first-seed"),
        (args.train_only, "--train-only"),
        (args.skip_untrained, "--skip-untrained"),
    ] {
        if given {
            bail!("{flag} applies to --table reproductions only, not to --run");
        }
    }
    let heads: Vec<Head> = args.head.iter().copied().map(Head::from).collect();
    evaluate_and_print(
        &args.run,
        &heads,
        &args.out,
        (args.plots, &studies),
        (args.pose, args.quiet),
        device,
    )
}
