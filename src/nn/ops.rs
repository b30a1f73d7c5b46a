//! The operations the layers call. Each dispatches by backend: on flex
//! (the CPU) to our kernels through the backend extension
//! ([`super::extension`], [`super::cpu`]); everywhere else (wgpu) to
//! burn's stock operations, except the decoders' upsampling, which is
//! [`upsample_as_products`] there. Both paths compute the same function; the tests below compare them in value and gradient, and
//! [`with_stock_ops`] forces the stock path for whole-model comparisons.

use burn::backend::{Dispatch, DispatchDevice};
use burn::tensor::module::{conv2d as burn_conv2d, conv_transpose2d as burn_conv_transpose2d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Int, Tensor};

use super::extension::{SquareConv, SquareConvBackend};
use super::profile;

thread_local! {
    /// Set by [`with_stock_ops`]: burn's operations even on flex.
    static STOCK_OPS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Set by [`set_burn_upsampling`]: off the CPU, burn's own transposed
    /// convolution for the decoders' upsampling instead of
    /// [`upsample_as_products`].
    static BURN_UPSAMPLING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Off the CPU, upsample with burn's own `conv_transpose2d` on this thread
/// instead of [`upsample_as_products`]: `eqae bench --burn-upsampling`, to
/// measure what the replacement saves.
pub fn set_burn_upsampling(on: bool) {
    BURN_UPSAMPLING.set(on);
}

/// Run `f` with the GPU path's operations (burn's stock operations, the
/// upsampling as [`upsample_as_products`]) in place of our CPU kernels on
/// this thread: the reference for whole-model tests and benchmarks.
pub fn with_stock_ops<R>(f: impl FnOnce() -> R) -> R {
    let before = STOCK_OPS.replace(true);
    let result = f();
    STOCK_OPS.set(before);
    result
}

/// Whether `x` lives on the flex CPU backend (with or without autodiff)
/// and our kernels are to be used for it.
fn on_flex<const D: usize>(x: &Tensor<D>) -> bool {
    matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_)) && !STOCK_OPS.get()
}

/// Whether `x` is an inference input for the frozen CPU encoder
/// ([`super::cpu::frozen`]): on flex, without autodiff, our kernels in use.
pub fn cpu_inference<const D: usize>(x: &Tensor<D>) -> bool {
    on_flex(x) && !x.device().is_autodiff()
}

/// Leaky ReLU: `x` where positive, `slope * x` elsewhere.
pub fn leaky_relu<const D: usize>(x: Tensor<D>, slope: f32) -> Tensor<D> {
    if profile::recording() {
        let x0 = profile::input(&x);
        profile::keep(
            format!("leaky ReLU {}", profile::shape(&x.dims())),
            move |b| profile::finish(leaky_relu_unrecorded(x0.clone(), slope), b),
        );
    }
    leaky_relu_unrecorded(x, slope)
}

fn leaky_relu_unrecorded<const D: usize>(x: Tensor<D>, slope: f32) -> Tensor<D> {
    if on_flex(&x) {
        Tensor::from_dispatch(<Dispatch as SquareConvBackend>::leaky_relu_fused(
            x.into_dispatch(),
            slope,
        ))
    } else {
        burn::tensor::activation::leaky_relu(x, slope as f64)
    }
}

/// 2x2 average pooling with stride 2.
///
/// # Shapes
/// `[B, C, H, W] -> [B, C, H/2, W/2]` (H, W even)
pub fn avg_pool2(x: Tensor<4>) -> Tensor<4> {
    if profile::recording() {
        let x0 = profile::input(&x);
        profile::keep(
            format!("2x2 average pooling {}", profile::shape(&x.dims())),
            move |b| profile::finish(avg_pool2_unrecorded(x0.clone()), b),
        );
    }
    avg_pool2_unrecorded(x)
}

fn avg_pool2_unrecorded(x: Tensor<4>) -> Tensor<4> {
    if on_flex(&x) {
        Tensor::from_dispatch(<Dispatch as SquareConvBackend>::avg_pool2_fused(
            x.into_dispatch(),
        ))
    } else {
        burn::tensor::module::avg_pool2d(x, burn::tensor::ops::AvgPoolOptions::new([2, 2]))
    }
}

/// A group filter bank from its base filters and gather table:
/// `out[co, r, ci, m] = weight[co, ci, index[r * M + m]]`.
///
/// # Shapes
/// `weight [Co, Ci, L]`, `index [n * M]` -> `[Co, n, Ci, M]`
pub fn expand_filters(weight: Tensor<3>, index: Tensor<1, Int>, n: usize) -> Tensor<4> {
    if profile::recording() {
        let (w0, i0) = (profile::input(&weight), index.clone());
        profile::keep(
            format!(
                "filter-bank gather {} x {n}",
                profile::shape(&weight.dims())
            ),
            move |b| profile::finish(expand_filters_unrecorded(w0.clone(), i0.clone(), n), b),
        );
    }
    expand_filters_unrecorded(weight, index, n)
}

fn expand_filters_unrecorded(weight: Tensor<3>, index: Tensor<1, Int>, n: usize) -> Tensor<4> {
    if on_flex(&weight) {
        return Tensor::from_dispatch(<Dispatch as SquareConvBackend>::expand_filters(
            weight.into_dispatch(),
            index.into_dispatch(),
            n,
        ));
    }
    let [co, ci, _] = weight.dims();
    let m = index.dims()[0] / n;
    weight
        // # Shapes: [Co, Ci, L] -> [Co, Ci, n*M] -> [Co, Ci, n, M] -> [Co, n, Ci, M]
        .select(2, index)
        .reshape([co, ci, n, m])
        .swap_dims(1, 2)
}

/// `conv2d(x, weight) + bias` with square stride and padding, followed
/// by leaky ReLU with slope `activation` if one is given (fused into the
/// convolution on the CPU).
///
/// # Shapes
/// `x [B, Ci, H, W]`, `weight [Co, Ci, k, k]`, `bias [Co]` -> `[B, Co, H', W']`
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: usize,
    padding: usize,
    activation: Option<f32>,
) -> Tensor<4> {
    let geometry = (stride, padding, activation);
    record_conv("conv2d", (&x, &weight, &bias), geometry, conv2d_unrecorded);
    conv2d_unrecorded(x, weight, bias, stride, padding, activation)
}

/// The signature of a convolution of this module.
type ConvFn = fn(Tensor<4>, Tensor<4>, Tensor<1>, usize, usize, Option<f32>) -> Tensor<4>;

/// While a profile records, keep a replay of the convolution `run` on
/// copies of its inputs, named `conv2d x[..] w[..] s1 p1 +act`.
fn record_conv(
    op: &str,
    (x, weight, bias): (&Tensor<4>, &Tensor<4>, &Tensor<1>),
    (stride, padding, activation): (usize, usize, Option<f32>),
    run: ConvFn,
) {
    if !profile::recording() {
        return;
    }
    let name = format!(
        "{op} x{} w{} s{stride} p{padding}{}",
        profile::shape(&x.dims()),
        profile::shape(&weight.dims()),
        if activation.is_some() { " +act" } else { "" }
    );
    let inputs = (
        profile::input(x),
        profile::input(weight),
        profile::input(bias),
    );
    profile::keep(name, move |backward| {
        let (x, w, bias) = inputs.clone();
        profile::finish(run(x, w, bias, stride, padding, activation), backward)
    });
}

fn conv2d_unrecorded(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: usize,
    padding: usize,
    activation: Option<f32>,
) -> Tensor<4> {
    if !on_flex(&x) {
        let options = ConvOptions::new([stride; 2], [padding; 2], [1, 1], 1);
        return stock_activation(burn_conv2d(x, weight, Some(bias), options), activation);
    }
    square_conv(x, weight, bias, (stride, padding), false, activation)
}

/// `conv_transpose2d(x, weight) + bias` with square stride and padding,
/// followed by leaky ReLU with slope `activation` if one is given.
///
/// # Shapes
/// `x [B, Ci, H, W]`, `weight [Ci, Co, k, k]`, `bias [Co]` -> `[B, Co, H', W']`
pub fn conv_transpose2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: usize,
    padding: usize,
    activation: Option<f32>,
) -> Tensor<4> {
    let geometry = (stride, padding, activation);
    record_conv(
        "conv_transpose2d",
        (&x, &weight, &bias),
        geometry,
        conv_transpose2d_unrecorded,
    );
    conv_transpose2d_unrecorded(x, weight, bias, stride, padding, activation)
}

fn conv_transpose2d_unrecorded(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: usize,
    padding: usize,
    activation: Option<f32>,
) -> Tensor<4> {
    if !on_flex(&x) {
        let [_, _, k, k2] = weight.dims();
        let y = if stride == k && k2 == k && padding == 0 && !BURN_UPSAMPLING.get() {
            upsample_as_products(x, weight, bias)
        } else {
            let options = ConvTransposeOptions::new([stride; 2], [padding; 2], [0, 0], [1, 1], 1);
            burn_conv_transpose2d(x, weight, Some(bias), options)
        };
        return stock_activation(y, activation);
    }
    square_conv(x, weight, bias, (stride, padding), true, activation)
}

/// A transposed convolution whose stride equals its kernel, without
/// padding (the decoders' upsampling), as one matrix product and a
/// rearrangement: every input pixel writes its own `k x k` block,
/// `y[b, o, k i + u, k j + v] = sum_c w[c, o, u, v] x[b, c, i, j] + bias[o]`.
/// Off the CPU it replaces burn's `conv_transpose2d`, whose GPU kernels
/// are slow (its input gradient above all); products and their gradient
/// products are what a GPU does best. Exact: the same sums in another
/// order.
///
/// One product over all pixels (`M = B*H*W`) rather than one per image:
/// a batch of narrow products was slower on the 1x1 and 2x2 maps. The
/// rearranged result passes through a multiplication by one before the
/// bias is added: without it, burn 0.22's fused wgpu kernels computed the
/// rest of the training step wrongly (the reconstruction read back right,
/// but the loss computed from it came out 0.227, or 1.30 with autodiff,
/// where 0.248 is right). `tests/kernels.rs` checks the whole step on wgpu
/// against the CPU.
///
/// # Shapes
/// `x [B, Ci, H, W]`, `weight [Ci, Co, k, k]`, `bias [Co]` -> `[B, Co, kH, kW]`
pub fn upsample_as_products(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>) -> Tensor<4> {
    upsample_in_row_blocks(x, weight, bias, PRODUCT_ROWS)
}

/// The most rows one product of [`upsample_as_products`] takes: GPU APIs
/// bound the workgroups of one launch per dimension (65,535 on many
/// Vulkan drivers) and some of CubeCL's matrix-product kernels launch one
/// per 8 rows; D12's first upsampling at batch 512 has 786,432 rows.
const PRODUCT_ROWS: usize = 1 << 18;

/// [`upsample_as_products`] with its product split into blocks of at most
/// `block_rows` rows, joined again.
///
/// # Shapes
/// `x [B, Ci, H, W]`, `weight [Ci, Co, k, k]`, `bias [Co]` -> `[B, Co, kH, kW]`
fn upsample_in_row_blocks(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    block_rows: usize,
) -> Tensor<4> {
    let [b, ci, h, w] = x.dims();
    let [_, co, k, _] = weight.dims();
    let rows = b * h * w;
    // # Shapes: [B, Ci, H, W] -> [B*H*W, Ci] x [Ci, Co*k*k] -> [B*H*W, Co*k*k]
    let pixels = x.permute([0, 2, 3, 1]).reshape([rows, ci]);
    let taps = weight.reshape([ci, co * k * k]);
    let z = if rows <= block_rows {
        pixels.matmul(taps)
    } else {
        let blocks = (0..rows)
            .step_by(block_rows)
            .map(|start| {
                let n = block_rows.min(rows - start);
                pixels.clone().narrow(0, start, n).matmul(taps.clone())
            })
            .collect();
        Tensor::cat(blocks, 0)
    };
    // # Shapes: [B*H*W, Co*k*k] -> [B, H, W, Co, k, k] -> [B, Co, H, k, W, k] -> [B, Co, kH, kW]
    let y = z
        .reshape([b, h, w, co, k, k])
        .permute([0, 3, 1, 4, 2, 5])
        .reshape([b, co, h * k, w * k]);
    y * 1.0 + bias.reshape([1, co, 1, 1])
}

fn stock_activation(y: Tensor<4>, activation: Option<f32>) -> Tensor<4> {
    match activation {
        Some(slope) => burn::tensor::activation::leaky_relu(y, slope as f64),
        None => y,
    }
}

/// Our convolution through the dispatch layer (flex tensors only).
fn square_conv(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    (stride, padding): (usize, usize),
    transposed: bool,
    activation: Option<f32>,
) -> Tensor<4> {
    let conv = SquareConv {
        stride,
        padding,
        transposed,
        slope: activation.unwrap_or(1.0),
    };
    Tensor::from_dispatch(<Dispatch as SquareConvBackend>::square_conv(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        conv,
    ))
}
#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    fn max_diff(a: &Tensor<4>, b: &Tensor<4>) -> f32 {
        (a.clone() - b.clone()).abs().max().into_scalar()
    }

    fn max_diff_any<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    /// Our kernels and burn's stock convolutions agree in value and in
    /// every gradient, for the geometries the models use.
    #[test]
    fn matches_burn_convolutions_in_value_and_gradient() {
        let device = Device::flex().autodiff();
        // (batch, c_in, size, c_out, kernel, stride, padding, transposed)
        let cases = [
            (3, 2, 8, 5, 3, 1, 1, false),
            (3, 6, 8, 2, 3, 1, 1, false),
            (2, 4, 6, 3, 2, 2, 0, false),
            (70, 3, 2, 4, 2, 2, 0, false),
            (3, 4, 3, 2, 2, 2, 0, true),
            (2, 3, 1, 4, 4, 4, 0, true),
        ];
        for (b, ci, s, co, k, stride, pad, transposed) in cases {
            let normal = Distribution::Normal(0.0, 1.0);
            let x = Tensor::<4>::random([b, ci, s, s], normal, &device);
            let w_shape = if transposed {
                [ci, co, k, k]
            } else {
                [co, ci, k, k]
            };
            let w = Tensor::<4>::random(w_shape, normal, &device);
            let bias = Tensor::<1>::random([co], normal, &device);
            // Without and with the fused leaky ReLU; the stock path applies
            // burn's leaky_relu after burn's convolution.
            for activation in [None, Some(0.1)] {
                let run = |ours: bool| {
                    let (x, w, bias) = (
                        x.clone().require_grad(),
                        w.clone().require_grad(),
                        bias.clone().require_grad(),
                    );
                    let y = match (ours, transposed) {
                        (true, false) => {
                            conv2d(x.clone(), w.clone(), bias.clone(), stride, pad, activation)
                        }
                        (true, true) => conv_transpose2d(
                            x.clone(),
                            w.clone(),
                            bias.clone(),
                            stride,
                            pad,
                            activation,
                        ),
                        (false, false) => burn_conv2d(
                            x.clone(),
                            w.clone(),
                            Some(bias.clone()),
                            ConvOptions::new([stride; 2], [pad; 2], [1, 1], 1),
                        ),
                        (false, true) => burn_conv_transpose2d(
                            x.clone(),
                            w.clone(),
                            Some(bias.clone()),
                            ConvTransposeOptions::new([stride; 2], [pad; 2], [0, 0], [1, 1], 1),
                        ),
                    };
                    let y = if ours {
                        y
                    } else {
                        stock_activation(y, activation)
                    };
                    // A loss whose gradient differs per output element.
                    let weights = y.clone().detach().sin();
                    let grads = (y.clone() * weights).sum().backward();
                    (
                        y.detach(),
                        x.grad(&grads).unwrap(),
                        w.grad(&grads).unwrap(),
                        bias.grad(&grads).unwrap(),
                    )
                };
                let (y1, dx1, dw1, db1) = run(true);
                let (y2, dx2, dw2, db2) = run(false);
                let case = (b, ci, s, co, k, stride, pad, transposed, activation);
                assert_eq!(y1.dims(), y2.dims(), "{case:?}");
                assert!(max_diff(&y1, &y2) < 1e-4, "{case:?} value");
                assert!(max_diff(&dx1, &dx2) < 1e-4, "{case:?} dx");
                assert!(max_diff(&dw1, &dw2) < 1e-3, "{case:?} dw");
                assert!(max_diff_any(db1, db2) < 1e-3, "{case:?} db");
            }
        }
    }

    /// The GPU path's upsampling as products equals burn's transposed
    /// convolution in value and in every gradient.
    #[test]
    fn upsampling_as_products_matches_burn_transposed_convolution() {
        let device = Device::flex().autodiff();
        let normal = Distribution::Normal(0.0, 1.0);
        for (b, ci, s, co, k) in [(3, 4, 3, 2, 2), (2, 3, 1, 4, 4), (5, 8, 4, 16, 2)] {
            let x = Tensor::<4>::random([b, ci, s, s], normal, &device);
            let w = Tensor::<4>::random([ci, co, k, k], normal, &device);
            let bias = Tensor::<1>::random([co], normal, &device);
            let run = |products: bool| {
                let (x, w, bias) = (
                    x.clone().require_grad(),
                    w.clone().require_grad(),
                    bias.clone().require_grad(),
                );
                let y = if products {
                    // blocks of 7 rows: the split product too
                    upsample_in_row_blocks(x.clone(), w.clone(), bias.clone(), 7)
                } else {
                    let options = ConvTransposeOptions::new([k; 2], [0; 2], [0, 0], [1, 1], 1);
                    burn_conv_transpose2d(x.clone(), w.clone(), Some(bias.clone()), options)
                };
                let grads = (y.clone() * y.clone().detach().sin()).sum().backward();
                let g = |t: Tensor<4>| t.grad(&grads).unwrap();
                (y.detach(), g(x), g(w), bias.grad(&grads).unwrap())
            };
            let ((y1, dx1, dw1, db1), (y2, dx2, dw2, db2)) = (run(true), run(false));
            let case = (b, ci, s, co, k);
            assert_eq!(y1.dims(), [b, co, k * s, k * s], "{case:?}");
            assert!(max_diff_any(y1, y2) < 1e-5, "{case:?}");
            assert!(max_diff_any(dx1, dx2) < 1e-4, "{case:?}");
            assert!(max_diff_any(dw1, dw2) < 1e-4, "{case:?}");
            assert!(max_diff_any(db1, db2) < 1e-4, "{case:?}");
        }
    }
}

#[cfg(test)]
mod pointwise_tests {
    use super::*;
    use burn::tensor::{Device, Distribution, TensorData};

    #[test]
    fn avg_pool2_matches_burn_in_value_and_gradient() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::random([3, 5, 6, 8], Distribution::Normal(0.0, 1.0), &device);
        let run = |ours: bool| {
            let x = x.clone().require_grad();
            let y = if ours {
                avg_pool2(x.clone())
            } else {
                burn::tensor::module::avg_pool2d(
                    x.clone(),
                    burn::tensor::ops::AvgPoolOptions::new([2, 2]),
                )
            };
            let grads = (y.clone() * y.clone().detach().cos()).sum().backward();
            (y.detach(), x.grad(&grads).unwrap())
        };
        let ((y1, g1), (y2, g2)) = (run(true), run(false));
        assert_eq!(y1.dims(), [3, 5, 3, 4]);
        assert!((y1 - y2).abs().max().into_scalar::<f32>() < 1e-6);
        assert!((g1 - g2).abs().max().into_scalar::<f32>() < 1e-6);
    }

    /// The gather op equals burn's select + reshape + swap_dims in value
    /// and gradient, on a real D4 table (repeated indices included).
    #[test]
    fn expand_filters_matches_burn_select_in_value_and_gradient() {
        use crate::group::GroupKind;
        use crate::nn::filter_bank::filter_bank_indices;
        let device = Device::flex().autodiff();
        let group = GroupKind::D4.group();
        for lifting in [true, false] {
            let idx = filter_bank_indices(&group, lifting, 3);
            let (n, len) = (group.order(), idx.len());
            let l = len / n;
            let index = Tensor::<1, Int>::from_data(TensorData::new(idx, [len]), &device);
            let w = Tensor::<3>::random([3, 2, l], Distribution::Normal(0.0, 1.0), &device);
            let run = |ours: bool| {
                let w = w.clone().require_grad();
                let y = if ours {
                    expand_filters(w.clone(), index.clone(), n)
                } else {
                    w.clone()
                        .select(2, index.clone())
                        .reshape([3, 2, n, l])
                        .swap_dims(1, 2)
                };
                let grads = (y.clone() * y.clone().detach().sin()).sum().backward();
                (y.detach(), w.grad(&grads).unwrap())
            };
            let ((y1, g1), (y2, g2)) = (run(true), run(false));
            assert_eq!(y1.dims(), [3, n, 2, l]);
            assert_eq!(y1.into_data(), y2.into_data());
            assert!((g1 - g2).abs().max().into_scalar::<f32>() < 1e-5);
        }
    }
}
