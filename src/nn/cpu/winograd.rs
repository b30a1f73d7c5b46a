//! Winograd F(2x2, 3x3) convolution on channel-blocked maps, with the bias,
//! leaky ReLU and 2x2 average pooling fused: inference only.
//!
//! Each 2x2 block of output pixels (a "tile", starting at even
//! coordinates) comes from the 4x4 input patch around it:
//! `Y = A^T [ (G g G^T) (.) (B^T d B) ] A`, the element-wise product summed
//! over input channels. Per tile and channel pair that is 16 multiply-adds
//! where the direct convolution does 36. The 16 sums over channels are 16
//! matrix products, each run as a 1x1 convolution over a row of tiles on
//! the direct kernel ([`super::direct`]), so both paths share one
//! microkernel.
//!
//! A tile is exactly one window of the 2x2 pooling that follows, so the
//! output transform, bias, activation and pooling give one pixel per tile,
//! written straight into the next layer's bordered input.
//!
//! The transforms add and subtract (and halve, exactly) where the direct
//! convolution only multiplies and adds: the results differ from it by
//! rounding (tested to 1e-5 relative).

use rayon::prelude::*;

use super::direct::{BlockedMaps, Isa, PackedConv, LANES};

/// `G g G^T` of one 3x3 filter `g` (row-major), with
/// `G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]`: the
/// filter in the transformed domain, `U[xi * 4 + nu]`.
fn transform_filter(g: &[f32]) -> [f32; 16] {
    // Applied to three values: G's four rows.
    let apply = |a: f32, b: f32, c: f32| [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
    // # Shapes: G g [4, 3], one column of g at a time
    let columns: [[f32; 4]; 3] = std::array::from_fn(|j| apply(g[j], g[3 + j], g[6 + j]));
    let mut u = [0.0f32; 16];
    for xi in 0..4 {
        let row = apply(columns[0][xi], columns[1][xi], columns[2][xi]);
        u[xi * 4..][..4].copy_from_slice(&row);
    }
    u
}

/// Whether the Winograd form may be used: yes, unless
/// `EQAE_CONV_KERNEL=direct` asks for the direct kernel everywhere (to
/// compare the two on whole commands).
pub fn enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("EQAE_CONV_KERNEL").as_deref() != Ok("direct"))
}

/// Tiles per matrix product: enough columns for the microkernel, few
/// enough that a product's operands stay in the core's cache.
const TILES: usize = 64;

/// A 3x3, stride 1, padding 1 convolution followed by the bias, leaky ReLU
/// and 2x2 average pooling, in Winograd form.
#[derive(Clone, Debug)]
pub struct WinogradConv {
    pub c_in: usize,
    pub c_out: usize,
    isa: Isa,
    /// The 16 products `U[xi nu] [c_out, c_in]` as 1x1 convolutions.
    products: Vec<PackedConv>,
    /// The bias, zero-padded to whole blocks.
    bias: Vec<f32>,
}

/// Scratch buffers for [`WinogradConv::run`], reused across calls.
#[derive(Default)]
pub struct WinogradScratch {
    /// Transformed inputs, 16 blocked `[c_in, 1, tiles]` maps.
    v: Vec<f32>,
    /// The 16 products, each `[c_out/16, tiles padded, 16]`.
    m: Vec<f32>,
}

impl WinogradConv {
    /// Transform `weight [c_out, c_in, 3, 3]` once.
    pub fn new(weight: &[f32], bias: &[f32], c_in: usize, c_out: usize, isa: Isa) -> Self {
        assert_eq!(weight.len(), c_out * c_in * 9);
        assert_eq!(bias.len(), c_out);
        // # Shapes: [c_out, c_in, 3, 3] -> 16 x [c_out, c_in]. Training
        // transforms the weights at every step, so this runs in parallel
        // and in f32 (exact to rounding: G holds 0, 1 and 1/2).
        let filters: Vec<[f32; 16]> = weight.par_chunks(9).map(transform_filter).collect();
        let zero = vec![0.0f32; c_out];
        let products = (0..16)
            .into_par_iter()
            .map(|p| {
                let u: Vec<f32> = filters.iter().map(|f| f[p]).collect();
                PackedConv::new(&u, &zero, c_in, c_out, 1, isa)
            })
            .collect();
        let mut padded_bias = bias.to_vec();
        padded_bias.resize(c_out.div_ceil(LANES) * LANES, 0.0);
        WinogradConv {
            c_in,
            c_out,
            isa,
            products,
            bias: padded_bias,
        }
    }

    /// The input maps' shape for `height x width` images (both even).
    pub fn input_shape(&self, height: usize, width: usize) -> BlockedMaps {
        BlockedMaps {
            channels: self.c_in,
            height,
            width,
            border: 1,
        }
    }

    /// Images of `height x width` maps per matrix product.
    pub fn images_per_group(height: usize, width: usize) -> usize {
        (TILES / ((height / 2) * (width / 2)).max(1)).max(1)
    }

    /// Convolve, add the bias, apply leaky ReLU with `slope` and pool 2x2:
    /// the blocked maps `inputs[i]` of shape `shape` into `outputs[i]` of
    /// shape `next` (interiors only; their borders stay zero).
    ///
    /// # Shapes
    /// each input blocked `[Ci, H, W]` (border 1) -> output blocked `[Co, H/2, W/2]`
    pub fn run(
        &self,
        inputs: &[&[f32]],
        shape: &BlockedMaps,
        outputs: &mut [&mut [f32]],
        next: &BlockedMaps,
        slope: f32,
        scratch: &mut WinogradScratch,
    ) {
        let (h, w) = (shape.height, shape.width);
        assert_eq!(
            (next.channels, next.height, next.width),
            (self.c_out, h / 2, w / 2)
        );
        self.convolve(
            inputs,
            shape,
            outputs,
            Output::Pooled(*next),
            slope,
            scratch,
        );
    }

    /// Convolve, add the bias and apply leaky ReLU with `slope` (1 = none),
    /// without pooling: the blocked maps `inputs[i]` into the plain maps
    /// `outputs[i]`.
    ///
    /// # Shapes
    /// each input blocked `[Ci, H, W]` (border 1) -> output `[Co, H, W]`
    pub fn run_plain(
        &self,
        inputs: &[&[f32]],
        shape: &BlockedMaps,
        outputs: &mut [&mut [f32]],
        slope: f32,
        scratch: &mut WinogradScratch,
    ) {
        self.convolve(inputs, shape, outputs, Output::Plain, slope, scratch);
    }

    fn convolve(
        &self,
        inputs: &[&[f32]],
        shape: &BlockedMaps,
        outputs: &mut [&mut [f32]],
        mode: Output,
        slope: f32,
        scratch: &mut WinogradScratch,
    ) {
        let (h, w) = (shape.height, shape.width);
        assert!(
            h % 2 == 0 && w % 2 == 0,
            "Winograd tiles are 2x2: even sizes"
        );
        assert_eq!((shape.channels, shape.border), (self.c_in, 1));
        assert_eq!(inputs.len(), outputs.len());
        let per_image = (h / 2) * (w / 2);
        let tiles = inputs.len() * per_image;
        let v_shape = BlockedMaps {
            channels: self.c_in,
            height: 1,
            width: tiles,
            border: 0,
        };
        let v_len = v_shape.alloc_len();
        let m_len = self.products[0].scratch_len(&v_shape);
        scratch.v.resize(16 * v_len, 0.0);
        scratch.m.resize(16 * m_len, 0.0);
        let transform = InputTransform {
            shape: *shape,
            tile_stride: LANES,
            block_stride: v_shape.block_len(),
        };
        let mut v: Vec<&mut [f32]> = scratch.v.chunks_mut(v_len).collect();
        for (i, input) in inputs.iter().enumerate() {
            assert!(input.len() >= shape.alloc_len());
            transform.run(self.isa, input, i * per_image, &mut v);
        }
        for (p, product) in self.products.iter().enumerate() {
            product.conv_image(
                &scratch.v[p * v_len..][..v_len],
                &v_shape,
                &mut scratch.m[p * m_len..][..m_len],
            );
        }
        let finish = OutputTransform {
            m: &scratch.m,
            m_len,
            tiles_padded: m_len / (self.c_out.div_ceil(LANES) * LANES),
            bias: &self.bias,
            c_out: self.c_out,
            slope,
            tiles: (h / 2, w / 2),
            mode,
        };
        for (i, output) in outputs.iter_mut().enumerate() {
            match mode {
                Output::Pooled(next) => assert!(output.len() >= next.alloc_len()),
                Output::Plain => assert_eq!(output.len(), self.c_out * h * w),
            }
            finish.run(self.isa, i * per_image, output);
        }
    }
}

/// Where the output transform writes.
#[derive(Clone, Copy)]
enum Output {
    /// The 2x2 mean of each tile, into the next layer's blocked input.
    Pooled(BlockedMaps),
    /// Every pixel, into plain `[Co, H, W]` maps.
    Plain,
}

/// `B^T d B` of every 4x4 patch of one image, into 16 maps `v[xi * 4 + nu]`
/// in which tile `t`'s 16 channels of block `b` start at
/// `t * tile_stride + b * block_stride`: blocked `[C/16][tiles][16]` for
/// the forward pass, `[tiles][C]` for the weight gradient
/// ([`super::winograd_grad`]).
pub(super) struct InputTransform {
    pub shape: BlockedMaps,
    pub tile_stride: usize,
    pub block_stride: usize,
}

impl InputTransform {
    /// Transform the blocked image `input` (border 1), its tiles numbered
    /// from `first_tile`.
    pub fn run(&self, isa: Isa, input: &[f32], first_tile: usize, v: &mut [&mut [f32]]) {
        match isa {
            // SAFETY: the instruction set was checked by `Isa::detect`.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { x86::input_avx512(self, input, first_tile, v) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { x86::input_avx2(self, input, first_tile, v) },
            _ => self.transform(input, first_tile, v),
        }
    }

    /// Always inlined into the `#[target_feature]` entry points. Each line
    /// of the lane loops is one vector operation.
    #[inline(always)]
    fn transform(&self, input: &[f32], first_tile: usize, v: &mut [&mut [f32]]) {
        assert_eq!(v.len(), 16);
        let s = &self.shape;
        let (row, tiles_x) = (s.row(), s.width / 2);
        for block in 0..s.blocks() {
            let src = &input[block * s.block_len()..][..s.block_len()];
            for ty in 0..s.height / 2 {
                for tx in 0..tiles_x {
                    // The patch's rows and columns in padded coordinates:
                    // 2ty-1.. in the image is 2ty.. with the border.
                    // # Shapes: B^T d [4 rows][4 columns], one 16-lane
                    // vector per entry, a column at a time; then (B^T d) B,
                    // a row at a time. (Plain loops: closures and
                    // `array::from_fn` are not inlined into the vector
                    // entry points.)
                    let mut columns = [[[0.0f32; LANES]; 4]; 4];
                    for (j, column) in columns.iter_mut().enumerate() {
                        let q = |i: usize| ((2 * ty + i) * row + 2 * tx + j) * LANES;
                        let d: [&[f32; LANES]; 4] = [
                            src[q(0)..][..LANES].try_into().unwrap(),
                            src[q(1)..][..LANES].try_into().unwrap(),
                            src[q(2)..][..LANES].try_into().unwrap(),
                            src[q(3)..][..LANES].try_into().unwrap(),
                        ];
                        *column = apply_bt(d);
                    }
                    let tile = first_tile + ty * tiles_x + tx;
                    let at = tile * self.tile_stride + block * self.block_stride;
                    for a in 0..4 {
                        let row = apply_bt([
                            &columns[0][a],
                            &columns[1][a],
                            &columns[2][a],
                            &columns[3][a],
                        ]);
                        for (b, row) in row.iter().enumerate() {
                            v[a * 4 + b][at..at + LANES].copy_from_slice(row);
                        }
                    }
                }
            }
        }
    }
}

/// `B^T` applied to four 16-lane vectors (its rows: `d0 - d2`, `d1 + d2`,
/// `d2 - d1`, `d1 - d3`).
#[inline(always)]
fn apply_bt(d: [&[f32; LANES]; 4]) -> [[f32; LANES]; 4] {
    let mut r = [[0.0f32; LANES]; 4];
    for l in 0..LANES {
        r[0][l] = d[0][l] - d[2][l];
        r[1][l] = d[1][l] + d[2][l];
        r[2][l] = d[2][l] - d[1][l];
        r[3][l] = d[1][l] - d[3][l];
    }
    r
}

/// `A^T M A` of every tile, bias and leaky ReLU; then either the mean of
/// the 2x2 outputs (one pixel of the next map per tile) or the four pixels.
struct OutputTransform<'a> {
    m: &'a [f32],
    m_len: usize,
    tiles_padded: usize,
    bias: &'a [f32],
    c_out: usize,
    slope: f32,
    /// Tiles per image down and across.
    tiles: (usize, usize),
    mode: Output,
}

impl OutputTransform<'_> {
    fn run(&self, isa: Isa, first_tile: usize, out: &mut [f32]) {
        match isa {
            // SAFETY: the instruction set was checked by `Isa::detect`.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { x86::output_avx512(self, first_tile, out) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { x86::output_avx2(self, first_tile, out) },
            _ => self.transform(first_tile, out),
        }
    }

    /// Always inlined into the `#[target_feature]` entry points.
    #[inline(always)]
    fn transform(&self, first_tile: usize, out: &mut [f32]) {
        let (tiles_y, tiles_x) = self.tiles;
        let (h, w) = (2 * tiles_y, 2 * tiles_x);
        for block in 0..self.bias.len() / LANES {
            let bias: &[f32; LANES] = self.bias[block * LANES..][..LANES].try_into().unwrap();
            for ty in 0..tiles_y {
                for tx in 0..tiles_x {
                    let tile = first_tile + ty * tiles_x + tx;
                    let mut m = [[0.0f32; LANES]; 16];
                    for (p, m) in m.iter_mut().enumerate() {
                        let at = p * self.m_len + (block * self.tiles_padded + tile) * LANES;
                        *m = self.m[at..at + LANES].try_into().unwrap();
                    }
                    // # Shapes: A^T M A with A^T = [[1, 1, 1, 0], [0, 1, -1, -1]],
                    // then bias and activation: [4 pixels][16 lanes]. Whole
                    // 16-lane rows at a time, so that each line is one
                    // vector operation.
                    let mut r = [[[0.0f32; LANES]; 2]; 4];
                    for (a, r) in r.iter_mut().enumerate() {
                        let (m0, m1, m2, m3) =
                            (&m[a * 4], &m[a * 4 + 1], &m[a * 4 + 2], &m[a * 4 + 3]);
                        for l in 0..LANES {
                            r[0][l] = m0[l] + m1[l] + m2[l];
                            r[1][l] = m1[l] - m2[l] - m3[l];
                        }
                    }
                    let mut y = [[0.0f32; LANES]; 4];
                    for (p, y) in y.iter_mut().enumerate() {
                        let (dy, dx) = (p / 2, p % 2);
                        for l in 0..LANES {
                            let v = if dy == 0 {
                                r[0][dx][l] + r[1][dx][l] + r[2][dx][l]
                            } else {
                                r[1][dx][l] - r[2][dx][l] - r[3][dx][l]
                            };
                            let z = v + bias[l];
                            y[l] = if z > 0.0 { z } else { self.slope * z };
                        }
                    }
                    match self.mode {
                        Output::Pooled(next) => {
                            let at = next.index(block * LANES, ty, tx);
                            let dst: &mut [f32; LANES] =
                                (&mut out[at..at + LANES]).try_into().unwrap();
                            for l in 0..LANES {
                                dst[l] = 0.25 * (y[0][l] + y[1][l] + y[2][l] + y[3][l]);
                            }
                        }
                        Output::Plain => {
                            let lanes = (self.c_out - block * LANES).min(LANES);
                            let planes = &mut out[block * LANES * h * w..];
                            for (p, y) in y.iter().enumerate() {
                                let at = (2 * ty + p / 2) * w + 2 * tx + p % 2;
                                for (l, &v) in y[..lanes].iter().enumerate() {
                                    planes[l * h * w + at] = v;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{InputTransform, OutputTransform};

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn input_avx512(
        t: &InputTransform,
        input: &[f32],
        first: usize,
        v: &mut [&mut [f32]],
    ) {
        t.transform(input, first, v)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn input_avx2(
        t: &InputTransform,
        input: &[f32],
        first: usize,
        v: &mut [&mut [f32]],
    ) {
        t.transform(input, first, v)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn output_avx512(t: &OutputTransform, first: usize, out: &mut [f32]) {
        t.transform(first, out)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn output_avx2(t: &OutputTransform, first: usize, out: &mut [f32]) {
        t.transform(first, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::cpu::direct::fill_blocked;
    use crate::nn::cpu::test_util::pseudo_random;

    /// `B^T`: input patch to the transformed domain.
    const BT: [[f32; 4]; 4] = [
        [1.0, 0.0, -1.0, 0.0],
        [0.0, 1.0, 1.0, 0.0],
        [0.0, -1.0, 1.0, 0.0],
        [0.0, 1.0, 0.0, -1.0],
    ];

    /// `apply_bt` multiplies by `B^T`, lane by lane.
    #[test]
    fn input_rows_are_bt() {
        let d: Vec<[f32; LANES]> = (0..4)
            .map(|i| pseudo_random(LANES, 20 + i).try_into().unwrap())
            .collect();
        let got = apply_bt([&d[0], &d[1], &d[2], &d[3]]);
        for (row, bt) in got.iter().zip(BT) {
            for l in 0..LANES {
                let want: f32 = (0..4).map(|i| bt[i] * d[i][l]).sum();
                assert_eq!(row[l], want);
            }
        }
    }

    /// The filter transform is `G g G^T`, written out in f64.
    #[test]
    fn filter_transform_is_g_g_gt() {
        const G: [[f64; 3]; 4] = [
            [1.0, 0.0, 0.0],
            [0.5, 0.5, 0.5],
            [0.5, -0.5, 0.5],
            [0.0, 0.0, 1.0],
        ];
        let g = pseudo_random(9, 7);
        let u = transform_filter(&g);
        for xi in 0..4 {
            for nu in 0..4 {
                let mut want = 0.0f64;
                for a in 0..3 {
                    for b in 0..3 {
                        want += G[xi][a] * g[a * 3 + b] as f64 * G[nu][b];
                    }
                }
                assert!((u[xi * 4 + nu] as f64 - want).abs() < 1e-6, "({xi}, {nu})");
            }
        }
    }

    /// The Winograd stage equals the direct one (conv, bias, leaky ReLU,
    /// pooling) to rounding, on every instruction set, for several images
    /// at once and channel counts that fill blocks partly.
    #[test]
    fn winograd_stage_matches_the_direct_one() {
        for isa in Isa::available() {
            for (c_in, c_out, size, images) in [
                (32, 64, 16, 1),
                (64, 128, 8, 3),
                (20, 24, 4, 5),
                (16, 16, 2, 2),
            ] {
                let w = pseudo_random(c_out * c_in * 9, 1);
                let b = pseudo_random(c_out, 2);
                let direct = PackedConv::new(&w, &b, c_in, c_out, 3, isa);
                let wino = WinogradConv::new(&w, &b, c_in, c_out, isa);
                let shape = wino.input_shape(size, size);
                assert_eq!(shape, direct.input_shape(size, size));
                let next = BlockedMaps {
                    channels: c_out,
                    height: size / 2,
                    width: size / 2,
                    border: 1,
                };
                let mut inputs = Vec::new();
                for i in 0..images {
                    let mut x = vec![0.0f32; shape.alloc_len()];
                    let plain = pseudo_random(c_in * size * size, 10 + i as u32);
                    fill_blocked(&plain, &shape, &mut x);
                    inputs.push(x);
                }
                let mut outs = vec![vec![0.0f32; next.alloc_len()]; images];
                let mut scratch = WinogradScratch::default();
                let input_refs: Vec<&[f32]> = inputs.iter().map(|x| x.as_slice()).collect();
                let mut out_refs: Vec<&mut [f32]> =
                    outs.iter_mut().map(|x| x.as_mut_slice()).collect();
                wino.run(&input_refs, &shape, &mut out_refs, &next, 0.1, &mut scratch);
                for (x, got) in inputs.iter().zip(&outs) {
                    let mut conv = vec![0.0f32; direct.scratch_len(&shape)];
                    direct.conv_image(x, &shape, &mut conv);
                    let mut want = vec![0.0f32; next.alloc_len()];
                    direct.finish_pooled(&conv, &shape, 0.1, &mut want, &next);
                    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    let err = got
                        .iter()
                        .zip(&want)
                        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
                    assert!(
                        err <= 1e-5 * scale,
                        "{isa:?} {c_in}->{c_out} @{size}: {err} of {scale}"
                    );
                }
            }
        }
    }
}
