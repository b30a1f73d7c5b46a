//! Group actions on tensors, for tests, `eqae check` and the C12/D12
//! rotated copies. Exact actions work on host data; the bilinear rotation
//! used inside models is a fixed dense matrix so that it is differentiable.
//!
//! Symbols: B batch, C channels, N = |H|, S spatial size.

use burn::tensor::{Int, Tensor, TensorData};

use crate::group::{action, Group};

/// Host copy of a float tensor.
pub fn to_vec<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.to_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float tensor data")
}

/// `t . x` on every channel of `[B, C, S, S]` images (spatial action only).
pub fn act_on_images(x: &Tensor<4>, group: &Group, t: usize) -> Tensor<4> {
    let [b, c, s, s2] = x.dims();
    assert_eq!(s, s2, "images must be square");
    let data = to_vec(x);
    let mut out = Vec::with_capacity(data.len());
    for img in data.chunks(s * s) {
        out.extend(action::transform_square(img, s, group, t));
    }
    Tensor::from_data(TensorData::new(out, [b, c, s, s]), &x.device())
}

/// `t . F` on feature maps over H, `[B, C * N, S, S]` with channel `c*N + h`:
/// `(t . F)(g, y) = F(t^-1 g, t^-1 y)`.
pub fn act_on_group_maps(x: &Tensor<4>, group: &Group, t: usize) -> Tensor<4> {
    let cn = x.dims()[1];
    let n = group.order();
    assert_eq!(cn % n, 0, "channels {cn} not a multiple of |H| = {n}");
    let perm = group.left_regular_perm(t);
    // channel gather: out channel c*N + g <- in channel c*N + t^-1 g
    let chan: Vec<i64> = (0..cn)
        .map(|k| ((k / n) * n + perm[k % n]) as i64)
        .collect();
    let idx = Tensor::<1, Int>::from_data(TensorData::new(chan, [cn]), &x.device());
    // # Shapes: [B, C*N, S, S] -> [B, C*N, S, S]
    let permuted = x.clone().select(1, idx);
    act_on_images(&permuted, group, t)
}

/// `lambda(t) V` on rows of `[B, N, C]`: `out[g] = V[t^-1 g]`.
pub fn act_on_rows(v: &Tensor<3>, group: &Group, t: usize) -> Tensor<3> {
    let perm: Vec<i64> = group
        .left_regular_perm(t)
        .into_iter()
        .map(|p| p as i64)
        .collect();
    let n = perm.len();
    let idx = Tensor::<1, Int>::from_data(TensorData::new(perm, [n]), &v.device());
    v.clone().select(1, idx)
}

/// Relative error `||a - b|| / ||b||` (Frobenius), computed in f64 on host.
pub fn relative_error<const D: usize>(a: &Tensor<D>, b: &Tensor<D>) -> f64 {
    let (a, b) = (to_vec(a), to_vec(b));
    assert_eq!(a.len(), b.len(), "shapes differ");
    let num: f64 = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
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

/// Relative error of `[B, C, S, S]` images inside the centred disk of
/// radius `S/2 - 1`: rotations by angles other than multiples of 90 degrees
/// move the corners off the canvas, so they are compared inside the disk
/// (as escnn does).
pub fn relative_error_in_disk(a: &Tensor<4>, b: &Tensor<4>) -> f64 {
    let s = a.dims()[3];
    let c = (s as f64 - 1.0) / 2.0;
    let r2 = (s as f64 / 2.0 - 1.0).powi(2);
    let (a, b) = (to_vec(a), to_vec(b));
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (k, (x, y)) in a.iter().zip(&b).enumerate() {
        let (i, j) = ((k / s) % s, k % s);
        if (i as f64 - c).powi(2) + (j as f64 - c).powi(2) <= r2 {
            num += (*x as f64 - *y as f64).powi(2);
            den += (*y as f64).powi(2);
        }
    }
    (num / den.max(1e-30)).sqrt()
}
