//! Equivariant layers (burn modules) and the index tables they consume.

pub mod filter_bank;
pub mod gconv;
pub mod group_linear;
pub mod transform;

pub use gconv::{GroupConv, GroupConvTranspose, LiftingConv};
pub use group_linear::GroupLinear;
