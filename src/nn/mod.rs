//! Equivariant layers (burn modules), the index tables they consume, and
//! the operations under them:
//! - [`gconv`], [`group_linear`]: the layers; [`filter_bank`]: their index tables;
//! - [`ops`]: the operations the layers call, dispatching by backend;
//!   [`profile`]: their replays, for the per-operation step profile;
//! - [`extension`]: the backend-extension interface our kernels implement;
//!   `autodiff`: its backward, for any backend; [`cpu`]: the CPU kernels;
//! - [`field`]: how group elements act on each kind of tensor, and the one
//!   equivariance check; [`transform`]: host copies of tensors.

mod autodiff;
pub mod cpu;
pub mod extension;
pub mod field;
pub mod filter_bank;
pub mod gconv;
pub mod group_linear;
pub mod ops;
pub mod profile;
pub mod transform;

pub use gconv::{GroupConv, GroupConvTranspose, LiftingConv, PlainConv};
pub use group_linear::GroupLinear;

use burn::tensor::Tensor;

/// The models' nonlinearity: leaky ReLU (slope 0.1). Pointwise, so it
/// commutes with every group action. Plain ReLU let whole decoders die
/// (every unit negative for every input) within a few dozen Adam steps on
/// the D12 model; the leak keeps a gradient everywhere.
///
/// On the CPU a fused kernel with its own backward ([`ops::leaky_relu`]):
/// burn's `leaky_relu` on flex cost 54 ms per 2M values forward and
/// backward (a masked select), an autodiff composition 11 ms.
///
/// Where a convolution comes first, its `forward_activated` fuses the two.
pub fn activation<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    ops::leaky_relu(x, LEAKY_SLOPE)
}

/// Negative slope of [`activation`].
pub const LEAKY_SLOPE: f32 = 0.1;

/// 2x2 average pooling, stride 2 (fused on the CPU).
pub use ops::avg_pool2;

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor};

    #[test]
    fn activation_matches_leaky_relu_in_value_and_gradient() {
        let device = Device::flex().autodiff();
        let data = [-2.0f32, -0.5, 0.0, 0.3, 1.7];
        let a = Tensor::<1>::from_floats(data, &device).require_grad();
        let b = Tensor::<1>::from_floats(data, &device).require_grad();
        let ya = super::activation(a.clone());
        let yb = burn::tensor::activation::leaky_relu(b.clone(), 0.1);
        let (va, vb) = (super::transform::to_vec(&ya), super::transform::to_vec(&yb));
        let (ga, gb) = ((ya * 3.0).sum().backward(), (yb * 3.0).sum().backward());
        let (da, db) = (a.grad(&ga).unwrap(), b.grad(&gb).unwrap());
        assert_eq!(va, vb);
        assert_eq!(super::transform::to_vec(&da), super::transform::to_vec(&db));
    }
}
