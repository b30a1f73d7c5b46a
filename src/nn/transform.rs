//! Host copies of tensors, and the bilinear rotation the C12/D12 models
//! use inside the network (a fixed dense matrix, so it is differentiable).
//! The exact group actions on tensors are in [`super::field`].

use burn::tensor::Tensor;

use crate::group::action;

/// Host copy of a float tensor.
pub fn to_vec<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.to_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float tensor data")
}

/// Dense matrix `[S*S (in), S*S (out)]` of "mirror, then rotate
/// counter-clockwise by `degrees`" on `S x S` images with bilinear
/// interpolation, so that `x_flat.matmul(m)` rotates a batch of images.
pub fn bilinear_matrix(size: usize, degrees: f64, mirror: bool) -> Vec<f32> {
    let p = size * size;
    let mut m = vec![0.0f32; p * p];
    let mut basis = vec![0.0f32; p];
    for i in 0..p {
        basis[i] = 1.0;
        let col = action::rotate_bilinear(&basis, size, size, degrees, mirror, size, size);
        basis[i] = 0.0;
        // row i (input pixel) of the matrix holds where pixel i goes
        m[i * p..(i + 1) * p].copy_from_slice(&col);
    }
    m
}
