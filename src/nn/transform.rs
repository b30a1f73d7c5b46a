//! Host copies of tensors. (The bilinear rotations the C12/D12 models use
//! inside the network are sparse taps, in [`crate::model::branches`].)
//! The exact group actions on tensors are in [`super::field`].

use burn::tensor::Tensor;

/// Host copy of a float tensor.
pub fn to_vec<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.to_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float tensor data")
}
