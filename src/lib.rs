//! eqae: rotation- and reflection-invariant image features from
//! group-equivariant autoencoders.
//!
//! The crate is layered so that nothing imports upwards:
//! - [`atomic`]: files written under a temporary name and renamed when whole;
//! - [`group`]: finite groups C4, D4, C12, D12 and their action on images (no tensors);
//! - [`nn`]: equivariant layers built on burn;
//! - [`model`]: encoders, decoders and autoencoders for each group, plus the baseline;
//! - [`config`]: the TOML configuration;
//! - [`progress`]: progress bars and log lines, used by training and evaluation;
//! - [`data`], [`invariant`], [`train`], [`eval`]: data sets, invariant heads,
//!   training, evaluation (features, probes, figures);
//! - [`experiment`]: the paper's tables and multi-run evaluations, above training and evaluation;
//! - [`cli`]: the command line (clap lives only here).

pub mod atomic;
pub mod cli;
pub mod config;
pub mod data;
pub mod device;
pub mod eval;
pub mod experiment;
pub mod group;
pub mod invariant;
pub mod model;
pub mod nn;
pub mod progress;
pub mod train;
