//! 2-D convolution on raw `f32` buffers for the CPU, forward and backward,
//! parallel over chunks of the batch. [`forward`] and [`backward`] choose
//! the kernel by geometry:
//! - 3x3 "same" convolutions with at least 16 channels on both sides: the
//!   blocked direct kernel ([`super::direct`]) in Winograd form
//!   ([`super::winograd`]; the weight gradient in [`super::winograd_grad`]
//!   where that pays);
//! - 3x3 "same" convolutions with fewer than 16 channels on one side: the
//!   plane kernels ([`super::plane`]);
//! - every other geometry, and the remaining weight gradients: im2col plus
//!   GEMM (the `gemm` crate, which burn's flex backend also uses for
//!   matmul), below.
//!
//! Why not burn's conv2d: on flex its backward is built from generic tensor
//! operations (the weight gradient as a convolution whose kernel is the
//! whole output map) and ran at a third of PyTorch's speed here; composing
//! im2col from burn tensor operations was slower still because of the
//! copies. Here each chunk's im2col matrix stays in cache and feeds one
//! GEMM per pass.
//!
//! One geometry serves both directions. A convolution maps the "wide"
//! tensor A `[B, Ca, Ha, Wa]` to the "narrow" tensor Z `[B, Cz, Hz, Wz]`
//! with weight W `[Cz, Ca, k, k]`:
//! - conv2d forward is `Z = W * A` ([`forward`]);
//! - its backward is `dA = W^T *^T dZ` and `dW = dZ . cols(A)^T`
//!   ([`backward`]);
//! - the transposed convolution with the same weight maps Z-shaped inputs
//!   to A-shaped outputs: its forward is the conv's `dA` computation and its
//!   backward reuses [`forward`] and the `dW` part of [`backward`].
//!
//! Symbols: B batch, Ca/Cz channels, k kernel, P = Hz * Wz output pixels per
//! image, K = Ca * k * k rows of the im2col matrix, c images per chunk.

use rayon::prelude::*;

use super::direct::{fill_blocked, Isa, PackedConv, LANES};
use super::gemm::{
    column_major, gemm_parallelism, matmul, matmul_strided, release, row_major, scratch,
};
use super::geometry::{ConvGeometry, Window};
use super::im2col::{col2im, im2col};
use super::plane;
use super::pointwise::{bias_and_activation, bias_and_activation_par, channel_sums, sum};
use super::winograd::{self, WinogradConv, WinogradScratch};
use super::winograd_grad;

/// Convolution forward: `Z = W * A + bias`, then leaky ReLU with `slope`
/// (1 = none), applied to each chunk while it is still in cache.
///
/// # Shapes
/// `a [B, Ca, Ha, Wa]`, `w [Cz, Ca, k, k]`, `bias [Cz]` -> `[B, Cz, Hz, Wz]`
pub fn forward(
    g: &ConvGeometry,
    a: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    slope: f32,
) -> Vec<f32> {
    if runs_direct(g) {
        forward_direct(g, a, w, bias, slope)
    } else if plane::applies(g) {
        plane::forward(g, a, w, bias, slope)
    } else {
        forward_gemm(g, a, w, bias, slope)
    }
}

/// Whether the blocked direct kernel ([`super::direct`]) computes this
/// convolution and its input gradient: "same" padding, stride 1, and at
/// least one block of channels on either side (the decoder's last layers,
/// with fewer, stay on im2col + GEMM).
fn runs_direct(g: &ConvGeometry) -> bool {
    let same = g.stride == 1 && g.kernel % 2 == 1 && g.padding == g.kernel / 2;
    same && g.ca >= LANES && g.cz >= LANES
}

/// Whether a convolution on the blocked kernels runs in Winograd form
/// (forward, input gradient and weight gradient): 3x3 filters on even
/// sizes, unless `EQAE_CONV_KERNEL=direct`.
fn runs_winograd(g: &ConvGeometry) -> bool {
    g.kernel == 3 && g.ha.is_multiple_of(2) && g.wa.is_multiple_of(2) && winograd::enabled()
}

/// [`forward`] on the blocked kernels: each image is copied into the
/// blocked layout, convolved, and written back with the bias and
/// activation. 3x3 filters on even sizes run in Winograd form
/// ([`super::winograd`], groups of images sharing each product), others
/// on the direct kernel. The weights are packed per call (they change every
/// training step; packing is a small fraction of a batch's work).
///
/// # Shapes
/// `a [B, Ca, H, W]`, `w [Cz, Ca, k, k]`, `bias [Cz]` -> `[B, Cz, H, W]`
fn forward_direct(
    g: &ConvGeometry,
    a: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    slope: f32,
) -> Vec<f32> {
    let (p, cz) = (g.p(), g.cz);
    assert_eq!(a.len(), g.batch * g.a_len());
    let zeros = vec![0.0f32; cz];
    let bias = bias.unwrap_or(&zeros);
    let isa = Isa::detect();
    let mut z = vec![0.0f32; g.batch * cz * p];
    if runs_winograd(g) {
        let conv = WinogradConv::new(w, bias, g.ca, cz, isa);
        let shape = conv.input_shape(g.ha, g.wa);
        let group = WinogradConv::images_per_group(g.ha, g.wa);
        z.par_chunks_mut(group * cz * p)
            .zip(a.par_chunks(group * g.a_len()))
            .for_each_init(
                || (Vec::new(), WinogradScratch::default()),
                |(blocked, scratch): &mut (Vec<Vec<f32>>, _), (z, a)| {
                    let n = a.len() / g.a_len();
                    blocked.resize_with(n, || vec![0.0f32; shape.alloc_len()]);
                    for (image, b) in a.chunks(g.a_len()).zip(blocked.iter_mut()) {
                        fill_blocked(image, &shape, b);
                    }
                    let inputs: Vec<&[f32]> = blocked[..n].iter().map(Vec::as_slice).collect();
                    let mut outputs: Vec<&mut [f32]> = z.chunks_mut(cz * p).collect();
                    conv.run_plain(&inputs, &shape, &mut outputs, slope, scratch);
                },
            );
        return z;
    }
    let conv = PackedConv::new(w, bias, g.ca, cz, g.kernel, isa);
    let shape = conv.input_shape(g.ha, g.wa);
    z.par_chunks_mut(cz * p)
        .zip(a.par_chunks(g.a_len()))
        .for_each_init(
            || {
                (
                    vec![0.0f32; shape.alloc_len()],
                    vec![0.0f32; conv.scratch_len(&shape)],
                )
            },
            |(blocked, scratch), (z, a)| {
                fill_blocked(a, &shape, blocked);
                conv.conv_image(blocked, &shape, scratch);
                conv.finish_into(scratch, &shape, slope, z);
            },
        );
    z
}

/// [`forward`] as im2col + GEMM.
fn forward_gemm(
    g: &ConvGeometry,
    a: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    slope: f32,
) -> Vec<f32> {
    let (p, kk, cz) = (g.p(), g.k(), g.cz);
    assert_eq!(a.len(), g.batch * g.a_len());
    assert_eq!(w.len(), cz * kk);
    if prefers_reversed(g) {
        // Z is the input gradient of the reversed convolution.
        let (rg, wf) = (reversed(g), flip_transpose(w, cz, g.ca, g.kernel));
        let mut z = backward(&rg, None, Some(&wf), a, false).a.expect("dA");
        bias_and_activation_par(&mut z, bias, cz, p, slope);
        return z;
    }
    let mut z = vec![0.0f32; g.batch * cz * p];
    if z.is_empty() {
        return z;
    }
    let c = g.chunk();
    let par = gemm_parallelism(g.batch.div_ceil(c));
    z.par_chunks_mut(c * cz * p)
        .zip(a.par_chunks(c * g.a_len()))
        .for_each(|(z_chunk, a_chunk)| {
            let c = a_chunk.len() / g.a_len();
            let n = c * p;
            let mut cols = scratch(kk * n);
            im2col(g, a_chunk, c, &mut cols);
            if c == 1 {
                matmul(
                    (cz, n, kk),
                    z_chunk,
                    false,
                    row_major(w, kk),
                    row_major(&cols, n),
                    par,
                );
            } else {
                // # Shapes: [Cz, c*P] -> [c, Cz, P]
                let mut y = scratch(cz * n);
                matmul(
                    (cz, n, kk),
                    &mut y,
                    false,
                    row_major(w, kk),
                    row_major(&cols, n),
                    par,
                );
                for b in 0..c {
                    for o in 0..cz {
                        z_chunk[(b * cz + o) * p..][..p].copy_from_slice(&y[o * n + b * p..][..p]);
                    }
                }
                release(y);
            }
            release(cols);
            bias_and_activation(z_chunk, bias, p, slope);
        });
    z
}

/// Gradients of a convolution, as far as they are asked for.
pub struct ConvGrads {
    /// `dA [B, Ca, Ha, Wa]`.
    pub a: Option<Vec<f32>>,
    /// `dW [Cz, Ca, k, k]`.
    pub w: Option<Vec<f32>>,
    /// `d bias [Cz]` (sum of dZ over batch and pixels).
    pub bias: Option<Vec<f32>>,
}

/// Convolution backward from `dZ`: `dA = W^T *^T dZ` (needs `w`),
/// `dW = dZ . cols(A)^T` (needs `a`), `d bias = sum dZ`.
///
/// # Shapes
/// `a [B, Ca, Ha, Wa]`, `w [Cz, Ca, k, k]`, `dz [B, Cz, Hz, Wz]`
pub fn backward(
    g: &ConvGeometry,
    a: Option<&[f32]>,
    w: Option<&[f32]>,
    dz: &[f32],
    want_bias: bool,
) -> ConvGrads {
    if plane::applies(g) {
        // The input gradient is the plane convolution of dZ with the
        // flipped, transposed filters (Cz -> Ca: few channels still).
        return ConvGrads {
            a: w.map(|w| {
                let flipped = flip_transpose(w, g.cz, g.ca, g.kernel);
                plane::forward(&reversed(g), dz, &flipped, None, 1.0)
            }),
            w: a.map(|a| plane::weight_gradient(g, a, dz)),
            bias: want_bias.then(|| channel_sums(dz, g.batch, g.cz)),
        };
    }
    if !runs_direct(g) {
        return backward_gemm(g, a, w, dz, want_bias);
    }
    // dA is the "same" convolution of dZ with the flipped, transposed
    // filters: the direct kernel's. dW is Winograd's where that pays, else
    // a GEMM.
    let da = w.map(|w| {
        let flipped = flip_transpose(w, g.cz, g.ca, g.kernel);
        forward_direct(&reversed(g), dz, &flipped, None, 1.0)
    });
    if runs_winograd(g) && winograd_grad::pays(g) {
        ConvGrads {
            a: da,
            w: a.map(|a| winograd_grad::weight_gradient(g, a, dz)),
            bias: want_bias.then(|| channel_sums(dz, g.batch, g.cz)),
        }
    } else {
        ConvGrads {
            a: da,
            ..backward_gemm(g, a, None, dz, want_bias)
        }
    }
}

/// [`backward`] as GEMMs over im2col matrices.
fn backward_gemm(
    g: &ConvGeometry,
    a: Option<&[f32]>,
    w: Option<&[f32]>,
    dz: &[f32],
    want_bias: bool,
) -> ConvGrads {
    let (p, kk, cz, a_len) = (g.p(), g.k(), g.cz, g.a_len());
    assert_eq!(dz.len(), g.batch * cz * p);
    let c = g.chunk();
    let chunks = g.batch.div_ceil(c).max(1);
    let par = gemm_parallelism(chunks);
    if let Some(w) = w {
        assert_eq!(w.len(), cz * kk);
    }
    if prefers_reversed(g) {
        let rg = reversed(g);
        let da = w.map(|w| forward(&rg, dz, &flip_transpose(w, cz, g.ca, g.kernel), None, 1.0));
        let dw = a.map(|a| {
            let dwf = backward(&rg, Some(dz), None, a, false).w.expect("dW");
            flip_transpose(&dwf, g.ca, cz, g.kernel)
        });
        return ConvGrads {
            a: da,
            w: dw,
            bias: want_bias.then(|| channel_sums(dz, g.batch, cz)),
        };
    }
    let mut da = w.is_some().then(|| vec![0.0f32; g.batch * a_len]);
    let want_w = a.is_some();
    if let Some(a) = a {
        assert_eq!(a.len(), g.batch * a_len);
    }

    let inputs = BackwardInputs {
        g,
        a,
        w,
        dz,
        want_bias,
        par,
    };
    let chunk_work = |i: usize, da_chunk: Option<&mut [f32]>| chunk_grads(&inputs, i, da_chunk);

    // Per-chunk sums are added in chunk order, so results do not depend on
    // how rayon split the work (resumed training must equal uninterrupted).
    let parts: Vec<(Vec<f32>, Vec<f32>)> = match da.as_mut() {
        Some(da) if !da.is_empty() => da
            .par_chunks_mut(c * a_len)
            .enumerate()
            .map(|(i, chunk)| chunk_work(i, Some(chunk)))
            .collect(),
        _ => (0..chunks)
            .into_par_iter()
            .map(|i| chunk_work(i, None))
            .collect(),
    };
    let mut dw_t = want_w.then(|| vec![0.0f32; cz * kk]);
    let mut db = want_bias.then(|| vec![0.0f32; cz]);
    for (part_w, part_b) in parts {
        for (sum, part) in [(&mut dw_t, part_w), (&mut db, part_b)] {
            if let Some(sum) = sum {
                sum.iter_mut().zip(&part).for_each(|(s, p)| *s += p);
            }
        }
    }
    // # Shapes: dW^T [K, Cz] -> dW [Cz, K]
    let dw = dw_t.map(|t| {
        let mut dw = vec![0.0f32; cz * kk];
        for (j, row) in t.chunks(cz).enumerate() {
            for (o, &v) in row.iter().enumerate() {
                dw[o * kk + j] = v;
            }
        }
        dw
    });
    ConvGrads {
        a: da,
        w: dw,
        bias: db,
    }
}

/// What every chunk of a backward pass reads.
struct BackwardInputs<'a> {
    g: &'a ConvGeometry,
    a: Option<&'a [f32]>,
    w: Option<&'a [f32]>,
    dz: &'a [f32],
    want_bias: bool,
    par: gemm::Parallelism,
}

/// One chunk of images' part of the backward pass: its (dW^T, d bias)
/// contributions, and its dA written into `da_chunk` where asked.
fn chunk_grads(
    inputs: &BackwardInputs,
    i: usize,
    da_chunk: Option<&mut [f32]>,
) -> (Vec<f32>, Vec<f32>) {
    let BackwardInputs {
        g,
        a,
        w,
        dz,
        want_bias,
        par,
    } = *inputs;
    let (p, kk, cz, a_len) = (g.p(), g.k(), g.cz, g.a_len());
    let c = g.chunk();
    let b0 = i * c;
    let c = c.min(g.batch - b0);
    let n = c * p;
    let dz_chunk = &dz[b0 * cz * p..][..n * cz];
    // # Shapes: [c, Cz, P] -> [Cz, c*P]
    let mut gathered = Vec::new();
    if c > 1 {
        gathered = scratch(cz * n);
        for b in 0..c {
            for o in 0..cz {
                gathered[o * n + b * p..][..p].copy_from_slice(&dz_chunk[(b * cz + o) * p..][..p]);
            }
        }
    }
    let gm: &[f32] = if c == 1 { dz_chunk } else { &gathered };
    let mut dw = Vec::new();
    if let Some(a) = a {
        let mut cols = scratch(kk * n);
        im2col(g, &a[b0 * a_len..][..c * a_len], c, &mut cols);
        dw = vec![0.0f32; cz * kk];
        // dW [Cz, K] = G [Cz, n] . cols^T [n, K], stored column-major
        // (as dW^T [K, Cz]): gemm then reads cols in place and packs only
        // the smaller G (rows of cols had been repacked per chunk).
        let dw_t = (1, cz);
        let (g_rows, cols_t) = (row_major(gm, n), column_major(&cols, n));
        matmul_strided((cz, kk, n), (&mut dw, dw_t), false, g_rows, cols_t, par);
        release(cols);
    }
    let mut db = Vec::new();
    if want_bias {
        db = (0..cz).map(|o| sum(&gm[o * n..][..n])).collect();
    }
    if let (Some(w), Some(da_chunk)) = (w, da_chunk) {
        // cols' [K, n] = W^T [K, Cz] . G [Cz, n]
        let mut cols = scratch(kk * n);
        matmul(
            (kk, n, cz),
            &mut cols,
            false,
            column_major(w, kk),
            row_major(gm, n),
            par,
        );
        col2im(g, &mut cols, c, da_chunk);
        release(cols);
    }
    release(gathered);
    (dw, db)
}

/// A stride-1 convolution with fewer output than input channels runs as
/// its mirror image: the reversed convolution from Z to A (filters flipped
/// in space and transposed in channels, padding `k - 1 - p`), whose input
/// gradient is our output and whose output is our input gradient. Its
/// im2col matrices have `Cz * k * k` rows instead of `Ca * k * k`
/// (72 instead of 288 for the decoder's last 32 -> 8 layer), which is
/// where the time of these layers went.
fn prefers_reversed(g: &ConvGeometry) -> bool {
    g.stride == 1 && g.cz < g.ca && g.padding < g.kernel
}

fn reversed(g: &ConvGeometry) -> ConvGeometry {
    let window = Window {
        kernel: g.kernel,
        stride: 1,
        padding: g.kernel - 1 - g.padding,
    };
    let r = ConvGeometry::conv([g.batch, g.cz, g.hz, g.wz], g.ca, window);
    debug_assert_eq!((r.hz, r.wz), (g.ha, g.wa));
    r
}

/// Filters `[Co, Ci, k, k]` to `[Ci, Co, k, k]`, flipped in both spatial
/// axes (its own inverse with `co` and `ci` swapped).
fn flip_transpose(w: &[f32], co: usize, ci: usize, k: usize) -> Vec<f32> {
    let mut flipped = vec![0.0f32; w.len()];
    for o in 0..co {
        for i in 0..ci {
            for ky in 0..k {
                for kx in 0..k {
                    flipped[((i * co + o) * k + ky) * k + kx] =
                        w[((o * ci + i) * k + (k - 1 - ky)) * k + (k - 1 - kx)];
                }
            }
        }
    }
    flipped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::cpu::test_util::{dot, geometries, max_diff, naive_forward, pseudo_random};

    #[test]
    fn forward_matches_direct_convolution() {
        for (i, g) in geometries().into_iter().enumerate() {
            let a = pseudo_random(g.batch * g.a_len(), i as u32);
            let w = pseudo_random(g.cz * g.k(), 100 + i as u32);
            let bias = pseudo_random(g.cz, 200 + i as u32);
            let mut want = naive_forward(&g, &a, &w);
            for (j, v) in want.iter_mut().enumerate() {
                *v += bias[(j / g.p()) % g.cz];
            }
            let got = forward(&g, &a, &w, Some(&bias), 1.0);
            assert!(max_diff(&got, &want) < 1e-4, "{g:?}");
        }
    }

    /// The direct kernel's forward and input gradient equal im2col +
    /// GEMM's on the convolutions it takes (the encoder's and decoder's
    /// 3x3 layers).
    #[test]
    fn direct_path_matches_the_gemm_path() {
        for (i, (ca, cz, size)) in [
            (32, 64, 16),
            (64, 128, 8),
            (128, 128, 4),
            (128, 64, 8),
            (16, 40, 5),
        ]
        .into_iter()
        .enumerate()
        {
            let g = ConvGeometry::conv([3, ca, size, size], cz, Window::new(3, 1, 1));
            assert!(runs_direct(&g));
            let a = pseudo_random(g.batch * g.a_len(), i as u32);
            let w = pseudo_random(g.cz * g.k(), 100 + i as u32);
            let bias = pseudo_random(g.cz, 200 + i as u32);
            let dz = pseudo_random(g.batch * g.cz * g.p(), 300 + i as u32);
            // Within 1e-5 of the largest value (sums of up to 1,152
            // products of order 1, in another order).
            let close = |got: &[f32], want: &[f32], what: &str| {
                let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let err = max_diff(got, want);
                assert!(err <= 1e-5 * scale, "{g:?} {what}: {err} of {scale}");
            };
            let want = forward_gemm(&g, &a, &w, Some(&bias), 0.1);
            close(
                &forward_direct(&g, &a, &w, Some(&bias), 0.1),
                &want,
                "forward",
            );
            let want = backward_gemm(&g, Some(&a), Some(&w), &dz, true);
            let got = backward(&g, Some(&a), Some(&w), &dz, true);
            close(got.a.as_deref().unwrap(), want.a.as_deref().unwrap(), "dA");
            close(got.w.as_deref().unwrap(), want.w.as_deref().unwrap(), "dW");
            close(
                got.bias.as_deref().unwrap(),
                want.bias.as_deref().unwrap(),
                "d bias",
            );
        }
    }

    /// The backward pass is the adjoint of the forward pass:
    /// `<dZ, W * A> = <W^T *^T dZ, A> = <dZ . cols(A)^T, W>`.
    #[test]
    fn backward_is_the_adjoint_of_forward() {
        for (i, g) in geometries().into_iter().enumerate() {
            let a = pseudo_random(g.batch * g.a_len(), i as u32);
            let w = pseudo_random(g.cz * g.k(), 100 + i as u32);
            let dz = pseudo_random(g.batch * g.cz * g.p(), 300 + i as u32);
            let z = forward(&g, &a, &w, None, 1.0);
            let grads = backward(&g, Some(&a), Some(&w), &dz, true);
            let lhs = dot(&dz, &z);
            let via_a = dot(&grads.a.unwrap(), &a);
            let via_w = dot(&grads.w.unwrap(), &w);
            let tol = 1e-4 * lhs.abs().max(1.0);
            assert!((lhs - via_a).abs() < tol, "{g:?}: {lhs} vs {via_a}");
            assert!((lhs - via_w).abs() < tol, "{g:?}: {lhs} vs {via_w}");
            let want_bias: Vec<f32> = (0..g.cz)
                .map(|o| {
                    (0..g.batch)
                        .map(|b| dz[(b * g.cz + o) * g.p()..][..g.p()].iter().sum::<f32>())
                        .sum()
                })
                .collect();
            assert!(max_diff(&grads.bias.unwrap(), &want_bias) < 1e-3);
        }
    }
}
