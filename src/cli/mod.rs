//! The command line: clap subcommands, one `run` function each.

pub mod args;
pub mod bench;
pub mod check;
pub mod embed;
pub mod eval;
pub mod train;
pub mod tune;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::config::Config;

/// Invariant image features from group-equivariant autoencoders.
#[derive(Parser, Debug)]
#[command(name = "eqae", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train an autoencoder (the built-in default when no --config is given).
    Train(train::TrainArgs),
    /// Measure the equivariance error of a model, layer by layer.
    Check(check::CheckArgs),
    /// Time one training step of each model: images/s, GFLOP/s, peak memory.
    Bench(bench::BenchArgs),
    /// Write invariant features of a split or an image folder as .npy.
    Embed(embed::EmbedArgs),
    /// Probe frozen features (logistic regression, MLP, kNN, k-means), or
    /// reproduce the paper's tables with --table.
    Eval(eval::EvalArgs),
    /// Choose hyperparameters on the validation split: train variants of a
    /// config that each change one setting, and score their probes.
    Tune(tune::TuneArgs),
}

/// Dispatch a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => train::run(args),
        Command::Check(args) => check::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Embed(args) => embed::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Tune(args) => tune::run(args),
    }
}

/// The config at `path`, or the built-in default.
pub fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::builtin_default(),
    })
}
