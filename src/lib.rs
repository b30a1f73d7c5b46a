//! eqae: rotation- and reflection-invariant image features from
//! group-equivariant autoencoders.
//!
//! The crate is layered: each module below imports only modules listed
//! before it (`tests/layering.rs` reads this list and checks every
//! `crate::` path in `src/` against it).
//! - [`atomic`]: files written under a temporary name and renamed when whole;
//! - [`progress`]: progress bars;
//! - [`device`]: the compute device and the memory it has;
//! - [`group`]: the groups C_n and D_n (n = 4, 8, 12, 16, 24), their action on images and the resampling of turned images (no tensors);
//! - [`invariant`]: invariant heads over the equivariant embedding (average, Gram pooling);
//! - [`nn`]: equivariant layers built on burn, and their CPU kernels;
//! - [`config`]: the TOML configuration and its validation;
//! - [`model`]: encoders, decoders and autoencoders for each group, plus the baseline;
//! - [`data`]: data sets, image folders, augmentation;
//! - [`train`]: training, run folders, checkpoints;
//! - [`eval`]: frozen features, embedding, probes, figures;
//! - [`export`]: a trained feature extractor as an ONNX file (and its weights as safetensors);
//! - [`experiment`]: the paper's tables and multi-run evaluations;
//! - [`cli`]: the command line (clap lives here and nowhere below it).

pub mod atomic;
pub mod cli;
pub mod config;
pub mod data;
pub mod device;
pub mod eval;
pub mod experiment;
pub mod export;
pub mod group;
pub mod invariant;
pub mod model;
pub mod nn;
pub mod progress;
pub mod train;
