//! The CPU kernels behind [`crate::nn::ops`] on burn's flex backend:
//! convolution and transposed convolution with their own backward
//! (activation fused in), the filter-bank gather, leaky ReLU and 2x2
//! pooling; and the frozen encoder for inference.
//!
//! - [`geometry`]: the sizes of one convolution;
//! - [`im2col`]: images to matrices and back;
//! - [`gemm`]: the matrix products and scratch buffers;
//! - [`conv`]: forward and backward of a convolution on raw buffers, and
//!   which kernel computes what;
//! - [`direct`]: the blocked direct kernel (channels in blocks of 16);
//! - [`winograd`], [`winograd_grad`]: 3x3 in Winograd F(2x2, 3x3) form on
//!   it, and its weight gradient;
//! - [`plane`]: 3x3 with fewer than 16 channels on one side, on plain maps;
//! - [`frozen`]: the grid encoder with packed weights, for inference;
//! - [`pointwise`]: bias + activation, leaky ReLU, pooling, channel sums;
//! - [`gather`]: the filter-bank gather and its scatter-add backward;
//! - [`flex`]: the flex backend's implementation of the extension.
//!
//! Why not burn's conv2d: on flex its backward is built from generic tensor
//! operations and ran at a third of PyTorch's speed here.

pub mod conv;
pub mod direct;
mod flex;
pub mod frozen;
pub mod gather;
pub mod gemm;
pub mod geometry;
pub mod im2col;
pub mod plane;
pub mod pointwise;
pub mod winograd;
pub mod winograd_grad;

pub use geometry::{ConvGeometry, Window};

/// Reference implementations and inputs for the kernels' tests.
#[cfg(test)]
pub(crate) mod test_util {
    use super::geometry::{ConvGeometry, Window};

    /// `dW [Co, Ci, 3, 3]` summed directly, in f64.
    pub(crate) fn naive_weight_gradient(
        a: &[f32],
        dz: &[f32],
        batch: usize,
        (c_in, c_out): (usize, usize),
        (h, w): (usize, usize),
    ) -> Vec<f32> {
        let mut dw = vec![0.0f64; c_out * c_in * 9];
        for b in 0..batch {
            for o in 0..c_out {
                for i in 0..c_in {
                    for tap in 0..9 {
                        let (ky, kx) = (tap / 3, tap % 3);
                        let mut acc = 0.0f64;
                        for y in 0..h {
                            for x in 0..w {
                                let (iy, ix) = (y + ky, x + kx);
                                if iy < 1 || ix < 1 || iy > h || ix > w {
                                    continue;
                                }
                                let av = a[((b * c_in + i) * h + iy - 1) * w + ix - 1];
                                acc += (dz[((b * c_out + o) * h + y) * w + x] * av) as f64;
                            }
                        }
                        dw[(o * c_in + i) * 9 + tap] += acc;
                    }
                }
            }
        }
        dw.into_iter().map(|v| v as f32).collect()
    }

    /// Direct convolution, the reference.
    pub(crate) fn naive_forward(g: &ConvGeometry, a: &[f32], w: &[f32]) -> Vec<f32> {
        let mut z = vec![0.0f32; g.batch * g.cz * g.p()];
        for b in 0..g.batch {
            for o in 0..g.cz {
                for oy in 0..g.hz {
                    for ox in 0..g.wz {
                        let mut acc = 0.0f64;
                        for ci in 0..g.ca {
                            for ky in 0..g.kernel {
                                for kx in 0..g.kernel {
                                    let iy = (oy * g.stride + ky) as isize - g.padding as isize;
                                    let ix = (ox * g.stride + kx) as isize - g.padding as isize;
                                    if iy < 0
                                        || ix < 0
                                        || iy >= g.ha as isize
                                        || ix >= g.wa as isize
                                    {
                                        continue;
                                    }
                                    let av = a[((b * g.ca + ci) * g.ha + iy as usize) * g.wa
                                        + ix as usize];
                                    let wv = w[((o * g.ca + ci) * g.kernel + ky) * g.kernel + kx];
                                    acc += (av * wv) as f64;
                                }
                            }
                        }
                        z[((b * g.cz + o) * g.hz + oy) * g.wz + ox] = acc as f32;
                    }
                }
            }
        }
        z
    }

    pub(crate) fn pseudo_random(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(12345);
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    pub(crate) fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    pub(crate) fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (*x as f64) * (*y as f64))
            .sum()
    }

    pub(crate) fn geometries() -> Vec<ConvGeometry> {
        vec![
            ConvGeometry::conv([3, 2, 7, 7], 4, Window::new(3, 1, 1)),
            ConvGeometry::conv([5, 3, 6, 6], 2, Window::new(3, 2, 1)),
            ConvGeometry::conv([4, 3, 4, 4], 5, Window::new(2, 2, 0)),
            ConvGeometry::conv([2, 1, 5, 5], 3, Window::new(1, 1, 0)),
            ConvGeometry::conv([70, 2, 2, 2], 3, Window::new(2, 2, 0)),
            // Fewer output than input channels: dA through the flipped conv.
            ConvGeometry::conv([3, 6, 9, 9], 2, Window::new(5, 1, 2)),
            ConvGeometry::conv([2, 5, 8, 7], 3, Window::new(3, 1, 0)),
            ConvGeometry::conv([2, 2, 10, 10], 3, Window::new(3, 3, 1)),
        ]
    }
}
