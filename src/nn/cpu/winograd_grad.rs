//! The weight gradient of a 3x3, stride 1, padding 1 convolution in
//! Winograd form F(2x2, 3x3), for training.
//!
//! The forward pass of [`super::winograd`] computes each 2x2 output tile as
//! `Y = A^T M A` with `M_p[o] = sum_i U_p[o, i] V_p[i]` over the 16
//! positions `p` of the transformed domain, `U = G g G^T` the transformed
//! filter and `V = B^T d B` the transformed input patch. Differentiating:
//!
//! - `dM = A dY A^T` for every output tile (4 values in, 16 out);
//! - `dU_p [Co, Ci] = sum over tiles of dM_p [Co, tiles] . V_p [Ci, tiles]^T`,
//!   16 matrix products whose long dimension is the tiles;
//! - `dg = G^T dU G` for every filter.
//!
//! Per tile and channel pair that is 16 multiply-adds where the im2col form
//! does 36, and the input is expanded 4 times instead of 9, but the output
//! gradient 4 times where im2col reads it as it is. Each chunk of images is
//! transformed and multiplied (the gemm crate) on one thread; the chunks'
//! sums are added in chunk order, so the result does not depend on the
//! number of threads. [`pays`] says where this beats im2col + GEMM.

use rayon::prelude::*;

use super::direct::{fill_blocked, BlockedMaps, Isa, LANES};
use super::gemm::{matmul_strided, Operand};
use super::geometry::ConvGeometry;
use super::winograd::InputTransform;

/// Tiles per chunk of images: long enough products for the microkernel,
/// transformed chunks that stay in a core's cache (and two chunks for the
/// 4x4 maps of a batch of 64).
const CHUNK_TILES: usize = 128;

/// Whether the Winograd weight gradient beats im2col + GEMM for the 3x3
/// convolution `g`, by measurement (`cargo bench --bench
/// conv` on the D4 model's layers, batch 64, 2 threads of a Zen 5 EPYC): on
/// maps of 8x8 or less into at least as many channels (64 -> 128 at 8x8:
/// 1.4 against 1.8 ms; 128 -> 128 at 4x4: 0.9 against 1.5 ms). Larger maps
/// and fewer output channels (32 -> 64 at 16x16, 128 -> 64 at 8x8) came out
/// even or slower: there the 16 transformed output gradients outweigh the
/// saved multiply-adds.
pub fn pays(g: &ConvGeometry) -> bool {
    (g.ha / 2) * (g.wa / 2) <= 16 && g.cz >= g.ca
}

/// `dW [Co, Ci, 3, 3]` of the 3x3, stride 1, padding 1 convolution `g` of
/// `a` (H and W even) whose output gradient is `dz`.
///
/// # Shapes
/// `a [B, Ci, H, W]`, `dz [B, Co, H, W]` -> `[Co, Ci, 3, 3]`
pub fn weight_gradient(g: &ConvGeometry, a: &[f32], dz: &[f32]) -> Vec<f32> {
    assert!(
        (g.kernel, g.stride, g.padding) == (3, 1, 1),
        "not a Winograd convolution: {g:?}"
    );
    let (channels, size) = ((g.ca, g.cz), (g.ha, g.wa));
    weight_gradient_on(Isa::detect(), a, dz, g.batch, channels, size)
}

/// [`weight_gradient`] on the instruction set `isa`.
fn weight_gradient_on(
    isa: Isa,
    a: &[f32],
    dz: &[f32],
    batch: usize,
    (c_in, c_out): (usize, usize),
    (h, w): (usize, usize),
) -> Vec<f32> {
    assert!(
        h % 2 == 0 && w % 2 == 0,
        "Winograd tiles are 2x2: even sizes"
    );
    assert_eq!(a.len(), batch * c_in * h * w);
    assert_eq!(dz.len(), batch * c_out * h * w);
    let per_image = (h / 2) * (w / 2);
    let images = (CHUNK_TILES / per_image).max(1);
    let chunk = Chunk {
        isa,
        a,
        dz,
        channels: (c_in, c_out),
        size: (h, w),
    };
    // Chunks in waves of a fixed size, each chunk's sums added in chunk
    // order: the same result on any number of threads.
    let starts: Vec<usize> = (0..batch).step_by(images).collect();
    let len = 16 * c_out * c_in;
    let mut du = vec![0.0f32; len];
    let mut parts = vec![0.0f32; WAVE.min(starts.len()) * len];
    for wave in starts.chunks(WAVE) {
        parts.par_chunks_mut(len).zip(wave).for_each_init(
            ChunkScratch::default,
            |scratch, (part, &first)| {
                chunk.transformed_gradient(first, images.min(batch - first), scratch, part)
            },
        );
        for part in parts.chunks(len).take(wave.len()) {
            du.iter_mut().zip(part).for_each(|(s, p)| *s += p);
        }
    }
    filters_from_transformed(&du, c_out * c_in)
}

/// Chunks summed at once, their partial sums held until added in order.
const WAVE: usize = 8;

/// What every chunk of a weight gradient reads.
struct Chunk<'a> {
    isa: Isa,
    a: &'a [f32],
    dz: &'a [f32],
    channels: (usize, usize),
    size: (usize, usize),
}

/// One thread's buffers for [`Chunk::transformed_gradient`].
#[derive(Default)]
struct ChunkScratch {
    blocked_a: Vec<f32>,
    blocked_z: Vec<f32>,
    v: Vec<f32>,
    dm: Vec<f32>,
}

impl Chunk<'_> {
    /// `du [16][Co][Ci]`: the transformed gradient of images `first..first + n`.
    fn transformed_gradient(
        &self,
        first: usize,
        n: usize,
        scratch: &mut ChunkScratch,
        du: &mut [f32],
    ) {
        let ((c_in, c_out), (h, w)) = (self.channels, self.size);
        let (ci16, co16) = (c_in.div_ceil(LANES) * LANES, c_out.div_ceil(LANES) * LANES);
        let input_shape = BlockedMaps {
            channels: c_in,
            height: h,
            width: w,
            border: 1,
        };
        let grad_shape = BlockedMaps {
            channels: c_out,
            height: h,
            width: w,
            border: 0,
        };
        let per_image = (h / 2) * (w / 2);
        let tiles = n * per_image;
        let (a_len, z_len) = (c_in * h * w, c_out * h * w);
        // # Shapes: v [16][tiles][Ci16], dm [16][tiles][Co16]
        scratch.blocked_a.resize(input_shape.alloc_len(), 0.0);
        scratch.blocked_z.resize(grad_shape.alloc_len(), 0.0);
        scratch.v.resize(16 * tiles * ci16, 0.0);
        scratch.dm.resize(16 * tiles * co16, 0.0);
        let transform = InputTransform {
            shape: input_shape,
            tile_stride: ci16,
            block_stride: LANES,
        };
        let mut v: Vec<&mut [f32]> = scratch.v.chunks_mut(tiles * ci16).collect();
        let mut dm: Vec<&mut [f32]> = scratch.dm.chunks_mut(tiles * co16).collect();
        for (i, b) in (first..first + n).enumerate() {
            fill_blocked(
                &self.a[b * a_len..][..a_len],
                &input_shape,
                &mut scratch.blocked_a,
            );
            transform.run(self.isa, &scratch.blocked_a, i * per_image, &mut v);
            fill_blocked(
                &self.dz[b * z_len..][..z_len],
                &grad_shape,
                &mut scratch.blocked_z,
            );
            let offset = i * per_image * co16;
            let mut dm_image: Vec<&mut [f32]> = dm.iter_mut().map(|d| &mut d[offset..]).collect();
            grad_transform(
                self.isa,
                &scratch.blocked_z,
                &grad_shape,
                co16,
                &mut dm_image,
            );
        }
        for (p, du) in du.chunks_mut(c_out * c_in).enumerate() {
            // dU_p [Co, Ci] = dM_p [Co, tiles] . V_p^T [tiles, Ci]
            let lhs = Operand {
                values: &scratch.dm[p * tiles * co16..][..tiles * co16],
                strides: (1, co16),
            };
            let rhs = Operand {
                values: &scratch.v[p * tiles * ci16..][..tiles * ci16],
                strides: (ci16, 1),
            };
            matmul_strided(
                (c_out, c_in, tiles),
                (du, (c_in, 1)),
                false,
                lhs,
                rhs,
                gemm::Parallelism::None,
            );
        }
    }
}

/// `dg = G^T dU G` for each of `filters` filters, `du [16][filters]` ->
/// `[filters][3][3]`, with `G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]`.
fn filters_from_transformed(du: &[f32], filters: usize) -> Vec<f32> {
    // G^T's three rows applied to four values.
    let apply = |u: [f32; 4]| {
        [
            u[0] + 0.5 * (u[1] + u[2]),
            0.5 * (u[1] - u[2]),
            0.5 * (u[1] + u[2]) + u[3],
        ]
    };
    let mut dw = vec![0.0f32; filters * 9];
    dw.par_chunks_mut(9).enumerate().for_each(|(f, dw)| {
        let u = |xi: usize, nu: usize| du[(xi * 4 + nu) * filters + f];
        // # Shapes: G^T dU [3, 4], one column of dU at a time
        let columns: [[f32; 3]; 4] =
            std::array::from_fn(|nu| apply([u(0, nu), u(1, nu), u(2, nu), u(3, nu)]));
        for r in 0..3 {
            let row = apply([columns[0][r], columns[1][r], columns[2][r], columns[3][r]]);
            dw[r * 3..][..3].copy_from_slice(&row);
        }
    });
    dw
}

/// `A dY A^T` of every 2x2 tile of one image's output gradient (blocked,
/// no border), into the 16 maps `dm[xi * 4 + nu]`, `[tiles][Co16]`.
fn grad_transform(isa: Isa, dz: &[f32], shape: &BlockedMaps, co16: usize, dm: &mut [&mut [f32]]) {
    match isa {
        // SAFETY: the instruction set was checked by `Isa::detect`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::grad_avx512(dz, shape, co16, dm) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::grad_avx2(dz, shape, co16, dm) },
        _ => grad_transform_generic(dz, shape, co16, dm),
    }
}

/// Always inlined into the `#[target_feature]` entry points; the lane
/// loops vectorise.
#[inline(always)]
fn grad_transform_generic(dz: &[f32], shape: &BlockedMaps, co16: usize, dm: &mut [&mut [f32]]) {
    assert_eq!(dm.len(), 16);
    let (row, tiles_x) = (shape.row(), shape.width / 2);
    // `A = [[1, 0], [1, 1], [1, -1], [0, -1]]` applied to two values.
    let apply = |x: &[f32; LANES], y: &[f32; LANES]| -> [[f32; LANES]; 4] {
        let mut r = [[0.0f32; LANES]; 4];
        for l in 0..LANES {
            r[0][l] = x[l];
            r[1][l] = x[l] + y[l];
            r[2][l] = x[l] - y[l];
            r[3][l] = -y[l];
        }
        r
    };
    for block in 0..shape.blocks() {
        let src = &dz[block * shape.block_len()..][..shape.block_len()];
        for ty in 0..shape.height / 2 {
            for tx in 0..tiles_x {
                let pixel = |dy: usize, dx: usize| -> &[f32; LANES] {
                    let q = (2 * ty + dy) * row + 2 * tx + dx;
                    src[q * LANES..][..LANES].try_into().unwrap()
                };
                // # Shapes: A dY [4 rows][2 columns], then (A dY) A^T [4][4]
                let left = apply(pixel(0, 0), pixel(1, 0));
                let right = apply(pixel(0, 1), pixel(1, 1));
                let at = (ty * tiles_x + tx) * co16 + block * LANES;
                for xi in 0..4 {
                    let out = apply(&left[xi], &right[xi]);
                    for (nu, out) in out.iter().enumerate() {
                        dm[xi * 4 + nu][at..at + LANES].copy_from_slice(out);
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{grad_transform_generic, BlockedMaps};

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn grad_avx512(
        dz: &[f32],
        shape: &BlockedMaps,
        co16: usize,
        dm: &mut [&mut [f32]],
    ) {
        grad_transform_generic(dz, shape, co16, dm)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn grad_avx2(
        dz: &[f32],
        shape: &BlockedMaps,
        co16: usize,
        dm: &mut [&mut [f32]],
    ) {
        grad_transform_generic(dz, shape, co16, dm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::cpu::test_util::{naive_weight_gradient, pseudo_random};

    /// The Winograd weight gradient equals the direct sum to rounding, on
    /// every instruction set, for several chunks of images, channel counts
    /// that fill blocks partly, and rectangular maps.
    #[test]
    fn weight_gradient_matches_the_direct_sum() {
        for (batch, c_in, c_out, (h, w)) in [
            (3, 16, 32, (16, 16)),
            (70, 20, 24, (4, 4)),
            (5, 33, 17, (8, 6)),
            (2, 8, 16, (2, 2)),
        ] {
            let a = pseudo_random(batch * c_in * h * w, 1);
            let dz = pseudo_random(batch * c_out * h * w, 2);
            let want = naive_weight_gradient(&a, &dz, batch, (c_in, c_out), (h, w));
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for isa in Isa::available() {
                let got = weight_gradient_on(isa, &a, &dz, batch, (c_in, c_out), (h, w));
                let err = got
                    .iter()
                    .zip(&want)
                    .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
                assert!(
                    err <= 1e-5 * scale,
                    "{isa:?} {batch}x{c_in}->{c_out} @{h}x{w}: {err} of {scale}"
                );
            }
        }
    }
}
