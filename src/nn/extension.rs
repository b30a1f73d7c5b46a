//! The interface between the layers' operations and the backends' kernels:
//! a burn backend extension. Each backend that has its own kernels
//! implements [`SquareConvBackend`]: flex (the CPU, [`super::cpu`]) and,
//! generically, burn's autodiff wrapper around any of them
//! ([`super::autodiff`]). Backends without an implementation (wgpu today)
//! are served by burn's stock operations in [`super::ops`].

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{backend_extension, Backend};

/// How a square convolution steps over its input, and what it fuses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SquareConv {
    /// Stride of both axes.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
    /// `conv_transpose2d` instead of `conv2d` (the same weight read the
    /// other way).
    pub transposed: bool,
    /// Slope of the leaky ReLU fused after the bias (1: none).
    pub slope: f32,
}

/// Square convolutions with equal stride and padding in both directions,
/// dilation 1, one group: all the group layers need.
#[backend_extension(Flex, Autodiff)]
pub trait SquareConvBackend: Backend {
    /// `conv2d(x, weight) + bias`, or with `conv.transposed`
    /// `conv_transpose2d(x, weight) + bias` (no output padding), followed
    /// by leaky ReLU with `conv.slope` in the same pass (`slope = 1`: none).
    fn square_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        conv: SquareConv,
    ) -> FloatTensor<Self>;

    /// Gradients `(dx, dweight, dbias)` of [`Self::square_conv`] from the
    /// gradient `grad` of its output `output` (read only when `slope != 1`);
    /// `dx` is all zeros when `need_x` is false.
    fn square_conv_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        conv: SquareConv,
        need_x: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// `x` where positive, `slope * x` elsewhere.
    fn leaky_relu_fused(x: FloatTensor<Self>, slope: f32) -> FloatTensor<Self>;

    /// Gradient of [`Self::leaky_relu_fused`] at `x`.
    fn leaky_relu_fused_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        slope: f32,
    ) -> FloatTensor<Self>;

    /// A group filter bank gathered from its base filters:
    /// `out[co, r, ci, m] = weight[co, ci, index[r * M + m]]` for `r < n`,
    /// `M = len(index) / n`.
    ///
    /// # Shapes
    /// `weight [Co, Ci, L]`, `index [n * M]` -> `[Co, n, Ci, M]`
    fn expand_filters(
        weight: FloatTensor<Self>,
        index: IntTensor<Self>,
        n: usize,
    ) -> FloatTensor<Self>;

    /// Gradient of [`Self::expand_filters`]: each base weight sums the
    /// gradients of its copies.
    ///
    /// # Shapes
    /// `grad [Co, n, Ci, M]` -> `[Co, Ci, base_len]`
    fn expand_filters_backward(
        grad: FloatTensor<Self>,
        index: IntTensor<Self>,
        base_len: usize,
    ) -> FloatTensor<Self>;

    /// 2x2 average pooling with stride 2 (even sizes).
    fn avg_pool2_fused(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// Gradient of [`Self::avg_pool2_fused`]: each input pixel gets a
    /// quarter of its window's output gradient.
    fn avg_pool2_fused_backward(grad: FloatTensor<Self>) -> FloatTensor<Self>;
}
