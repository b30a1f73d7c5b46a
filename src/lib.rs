//! eqae: rotation- and reflection-invariant image features from
//! group-equivariant autoencoders.
//!
//! The crate is layered so that nothing imports upwards:
//! - [`group`]: finite groups C4, D4, C12, D12 and their action on images (no tensors);
//! - [`nn`]: equivariant layers built on burn;
//! - [`model`]: encoders, decoders and autoencoders for each group, plus the baseline;
//! - [`config`]: the TOML configuration;
//! - [`data`], [`train`], [`cli`]: data sets, training, command line.

pub mod cli;
pub mod config;
pub mod data;
pub mod device;
pub mod eval;
pub mod group;
pub mod invariant;
pub mod model;
pub mod nn;
pub mod train;
