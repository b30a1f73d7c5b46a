//! Equivariant layers (burn modules) and the index tables they consume.

pub mod filter_bank;
pub mod gconv;
pub mod group_linear;
pub mod transform;

pub use gconv::{GroupConv, GroupConvTranspose, LiftingConv};
pub use group_linear::GroupLinear;

use burn::tensor::Tensor;

/// The models' nonlinearity: leaky ReLU (slope 0.1). Pointwise, so it
/// commutes with every group action. Plain ReLU let whole decoders die
/// (every unit negative for every input) within a few dozen Adam steps on
/// the D12 model; the leak keeps a gradient everywhere.
pub fn activation<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    burn::tensor::activation::leaky_relu(x, 0.1)
}
