//! The command line: clap subcommands, one `run` function each.

pub mod args;
pub mod bench;
pub mod check;
pub mod cluster;
pub mod embed;
pub mod eval;
pub mod export;
pub mod index;
pub mod map;
pub mod search;
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
    /// Write a trained run's feature extractor as an ONNX file (and its
    /// weights as safetensors), to compute the features without eqae.
    Export(export::ExportArgs),
    /// Probe frozen features (logistic regression, MLP, kNN, k-means), or
    /// reproduce the paper's tables with --table.
    Eval(eval::EvalArgs),
    /// Choose hyperparameters on the validation split: train variants of a
    /// config that each change one setting, and score their probes.
    Tune(tune::TuneArgs),
    /// The nearest images of query images (or of rows) in a collection
    /// embedded by `eqae embed`: the same at any turn or mirror image of
    /// the query (CSV, JSON and a PNG strip).
    Search(search::SearchArgs),
    /// A map of an embedded collection: an HTML page (points coloured by
    /// class, the image on hover, the nearest neighbours on a click) and a
    /// PNG.
    Map(map::MapArgs),
    /// The groups in an embedded collection, found without labels: a
    /// cluster per row (.npy, CSV), a report (sizes; accuracy, NMI and ARI
    /// where there are labels) and a contact sheet per cluster.
    Cluster(cluster::ClusterArgs),
    /// An approximate neighbour index (HNSW) beside an embedded collection,
    /// which `eqae search` then uses: for collections of millions of rows.
    Index(index::IndexArgs),
}

/// Dispatch a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => train::run(args),
        Command::Check(args) => check::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Embed(args) => embed::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Export(args) => export::run(args),
        Command::Tune(args) => tune::run(args),
        Command::Search(args) => search::run(args),
        Command::Map(args) => map::run(args),
        Command::Cluster(args) => cluster::run(args),
        Command::Index(args) => index::run(args),
    }
}

/// The config at `path`, or the built-in default.
pub fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::builtin_default(),
    })
}

/// An error as the one line `main` prints after `Error: `: its causes
/// joined by `: `, each once (an error that quotes its source's text, an
/// OS error say, is not followed by that text again), control characters
/// escaped (a file name with a line break stays one line).
pub fn error_line(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text.chars()
        .flat_map(|c| {
            let shown: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            shown
        })
        .collect()
}

#[cfg(test)]
mod tests {
    /// An error that shows its source's text and also returns it as source.
    #[derive(Debug)]
    struct Quoting(std::io::Error);

    impl std::fmt::Display for Quoting {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "I/O error: {}", self.0)
        }
    }

    impl std::error::Error for Quoting {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn an_os_error_is_said_once_on_one_line() {
        let io = std::io::Error::from_raw_os_error(28);
        let e = anyhow::Error::new(Quoting(io)).context("cannot write out/f\nnpy");
        let line = super::error_line(&e);
        assert_eq!(line.matches("os error 28").count(), 1, "{line}");
        assert!(
            line.starts_with("cannot write out/f\\nnpy: I/O error: "),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }
}
