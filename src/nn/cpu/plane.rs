//! 3x3, stride 1, padding 1 convolutions on plain `[C, H, W]` maps,
//! vectorised along the rows: training's layers with fewer than 16
//! channels on one side, the lift (1 input channel) and the decoder's last
//! layer (8 or 4 output channels). There the 16-channel blocks of
//! [`super::direct`] would be mostly padding, and im2col + GEMM multiplies
//! matrices with 9 or 72 rows.
//!
//! - [`forward`]: each output vector `z[o][y][x..x + 16]` is the bias plus
//!   `w[o][i][tap] * a[i][y + ky - 1][x + kx - 1..]` summed over input
//!   channels and taps: a register tile of `OT` output channels by `NV`
//!   vectors, each input vector loaded once for the `OT` channels. The
//!   input gradient is the same kernel on the output gradient with the
//!   filters flipped and transposed (as in [`super::conv`]).
//! - [`weight_gradient`]: `dW[o][i][tap]` as 16-lane partial sums of
//!   `dz[o][y][x..] * a[i][y + ky - 1][x + kx - 1..]` over a chunk of
//!   images, `OT` output channels by 9 taps in registers; the lanes and the
//!   chunks are added in a fixed order, so the result does not depend on
//!   the number of threads.
//!
//! Each image is first copied into zero-bordered planes whose rows are a
//! whole number of vectors plus a vector of slack (`Planes`), so that
//! every load is in bounds and the border needs no test. The kernels ask
//! for the next image's lines while they compute (`Prefetch`), so that the
//! copy reads from the cache; and where rows are whole vectors the forward
//! tiles write their activated sums straight into the output, which is
//! never zeroed first.

use rayon::prelude::*;

use super::direct::{Block16, Isa, Portable, LANES};
use super::geometry::ConvGeometry;

/// Whether this module computes the convolution `g`: 3x3, stride 1,
/// padding 1, fewer than 16 channels on one side.
pub fn applies(g: &ConvGeometry) -> bool {
    g.kernel == 3 && g.stride == 1 && g.padding == 1 && (g.ca < LANES || g.cz < LANES)
}

/// Zero-bordered copies of one image's `[C, H, W]` maps: value `(c, y, x)`
/// at `c * plane_len + (y + 1) * row + x + 1`.
#[derive(Clone, Copy, Debug)]
struct Planes {
    channels: usize,
    height: usize,
    width: usize,
}

impl Planes {
    /// Vectors per row of output.
    fn vectors(&self) -> usize {
        self.width.div_ceil(LANES)
    }

    /// Padded row length: the vectors, the border and slack for the
    /// loads shifted by up to two columns.
    fn row(&self) -> usize {
        (self.vectors() + 1) * LANES
    }

    fn plane_len(&self) -> usize {
        (self.height + 2) * self.row()
    }

    fn len(&self) -> usize {
        self.channels * self.plane_len()
    }

    /// Copy the plain maps `x [C, H, W]` into `out` (borders left zero),
    /// with `isa`'s vector moves.
    fn fill(&self, isa: Isa, x: &[f32], out: &mut [f32]) {
        assert_eq!(x.len(), self.channels * self.height * self.width);
        assert!(out.len() >= self.len());
        match isa {
            // SAFETY: the instruction set was checked by `Isa::detect`.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { x86::fill_avx512(self, x, out) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { x86::fill_avx2(self, x, out) },
            _ => self.fill_rows(x, out),
        }
    }

    /// [`Self::fill`] compiled for the instruction set of its caller:
    /// each row in blocks of 16 values, which compile to vector moves. (A
    /// loop of loads and stores through pointers is turned into a `memcpy`
    /// call per row, which costs more than the copy: rows are short.)
    #[inline(always)]
    fn fill_rows(&self, x: &[f32], out: &mut [f32]) {
        let (h, w, row) = (self.height, self.width, self.row());
        for (c, plane) in x.chunks(h * w).enumerate() {
            let dst = &mut out[c * self.plane_len()..];
            for (y, src) in plane.chunks(w).enumerate() {
                let dst = &mut dst[(y + 1) * row + 1..][..w];
                let mut d = dst.chunks_exact_mut(LANES);
                let mut s = src.chunks_exact(LANES);
                for (d, s) in d.by_ref().zip(s.by_ref()) {
                    let s: &[f32; LANES] = s.try_into().unwrap();
                    let d: &mut [f32; LANES] = d.try_into().unwrap();
                    *d = *s;
                }
                for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
                    *d = *s;
                }
            }
        }
    }
}

/// Output channels per register tile and vectors per tile of the forward
/// kernel on `isa` for `c_out` output channels: 16 accumulators on
/// AVX-512 (4 channels by 4 vectors where there are no more than 4
/// channels, so that no lane of the tile is padding), 4 (8 registers) on
/// AVX2.
fn forward_tile(isa: Isa, c_out: usize) -> (usize, usize) {
    match isa {
        Isa::Avx512 if c_out <= 4 => (4, 4),
        Isa::Avx512 => (8, 2),
        _ => (4, 1),
    }
}

/// Filters `[Co, Ci, 3, 3]` as `[Co / ot][Ci][9][ot]` (zero-padded to
/// whole groups), so that a tile's weights for one tap are consecutive.
fn pack_weights(w: &[f32], c_in: usize, c_out: usize, ot: usize) -> Vec<f32> {
    let groups = c_out.div_ceil(ot);
    let mut packed = vec![0.0f32; groups * c_in * 9 * ot];
    for o in 0..c_out {
        let (g, t) = (o / ot, o % ot);
        for i in 0..c_in {
            for tap in 0..9 {
                packed[((g * c_in + i) * 9 + tap) * ot + t] = w[(o * c_in + i) * 9 + tap];
            }
        }
    }
    packed
}

/// What the forward kernel reads and writes for one image.
struct ForwardArgs {
    /// The image's [`Planes`].
    input: *const f32,
    c_in: usize,
    plane_len: usize,
    row: usize,
    /// Vectors per output row.
    vectors: usize,
    /// Output vectors per channel: height x vectors.
    positions: usize,
    /// [`pack_weights`] with this kernel's `OT`.
    weights: *const f32,
    /// `[groups * OT]`.
    bias: *const f32,
    groups: usize,
    /// `[groups * OT][positions][16]`.
    out: *mut f32,
    /// The image's output `[Co, H, W]`: the first `W` values of each row
    /// of `out`, activated. Written, never read (it may start unset).
    z: *mut f32,
    c_out: usize,
    height: usize,
    width: usize,
    slope: f32,
    /// Whether the tiles write `z` themselves: rows of whole vectors and
    /// a slope in [0, 1], where leaky ReLU is `max(v, slope * v)`.
    /// Otherwise they write `out`, copied into `z` row by row.
    direct: bool,
    /// The next image's plain maps, brought towards the cache while this
    /// one computes ([`Prefetch`]).
    next: Prefetch,
}

/// Plain maps to bring into the level-2 cache a few lines at a time,
/// spread over the work on the image before them: copying an image into
/// its [`Planes`] then reads from the cache instead of waiting on memory
/// in a pass of its own.
#[derive(Clone, Copy)]
struct Prefetch {
    start: *const f32,
    /// Cache lines of 16 floats.
    lines: usize,
}

impl Prefetch {
    /// The image after `index` in `maps` (images of `len` floats), if any.
    fn after(maps: &[f32], index: usize, len: usize) -> Self {
        let from = (index + 1) * len;
        if len == 0 || from + len > maps.len() {
            return Self {
                start: std::ptr::null(),
                lines: 0,
            };
        }
        Self {
            start: maps[from..].as_ptr(),
            lines: len.div_ceil(LANES),
        }
    }

    /// Hint lines `first..first + count` (those that exist).
    #[inline(always)]
    unsafe fn lines<V: Block16>(&self, first: usize, count: usize) {
        for line in first..(first + count).min(self.lines) {
            V::prefetch(self.start.add(line * LANES));
        }
    }
}

/// The forward kernel over every group and output vector of one image.
/// Always inlined into the `#[target_feature]` entry points.
#[inline(always)]
unsafe fn forward_image<V: Block16, const OT: usize, const NV: usize>(a: &ForwardArgs) {
    let per_tile = a.next.lines.div_ceil(a.groups * a.positions.div_ceil(NV));
    let mut line = 0;
    for g in 0..a.groups {
        let mut p = 0;
        while p + NV <= a.positions {
            a.next.lines::<V>(line, per_tile);
            line += per_tile;
            forward_tile_at::<V, OT, NV>(a, g, p);
            p += NV;
        }
        while p < a.positions {
            forward_tile_at::<V, OT, 1>(a, g, p);
            p += 1;
        }
        if a.direct {
            continue;
        }
        // # Shapes: [OT, H, vectors * 16] -> [OT, H, W], activated while
        // the group's rows are in cache
        let row = a.vectors * LANES;
        for o in g * OT..((g + 1) * OT).min(a.c_out) {
            for y in 0..a.height {
                let src = std::slice::from_raw_parts(a.out.add((o * a.height + y) * row), a.width);
                // Raw writes: `z` may not be initialised yet.
                let dst = a.z.add((o * a.height + y) * a.width);
                for (x, &v) in src.iter().enumerate() {
                    dst.add(x).write(if v > 0.0 { v } else { a.slope * v });
                }
            }
        }
    }
}

/// Output vectors `p..p + NV` of output channels `g * OT..(g + 1) * OT`.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // `acc[v][t]`: two indices in step
unsafe fn forward_tile_at<V: Block16, const OT: usize, const NV: usize>(
    a: &ForwardArgs,
    g: usize,
    p: usize,
) {
    let mut acc = [[V::zero(); OT]; NV];
    let mut base = [0usize; NV];
    for (v, base) in base.iter_mut().enumerate() {
        let q = p + v;
        *base = (q / a.vectors) * a.row + (q % a.vectors) * LANES;
        for (t, acc) in acc[v].iter_mut().enumerate() {
            *acc = V::splat(*a.bias.add(g * OT + t));
        }
    }
    let weights = a.weights.add(g * a.c_in * 9 * OT);
    for i in 0..a.c_in {
        let plane = a.input.add(i * a.plane_len);
        let w = weights.add(i * 9 * OT);
        for tap in 0..9 {
            let shift = (tap / 3) * a.row + tap % 3;
            let mut x = [V::zero(); NV];
            for v in 0..NV {
                x[v] = V::load(plane.add(base[v] + shift));
            }
            for t in 0..OT {
                let wv = V::splat(*w.add(tap * OT + t));
                for v in 0..NV {
                    acc[v][t] = V::mul_add(x[v], wv, acc[v][t]);
                }
            }
        }
    }
    if a.direct {
        // `acc * slope` as a multiply-add of -0, the sum that leaves
        // every product as it is (signed zeros included).
        let (slope, minus_zero) = (V::splat(a.slope), V::splat(-0.0));
        for (v, acc) in acc.iter().enumerate() {
            for (t, &acc) in acc.iter().enumerate().take(a.c_out - g * OT) {
                let at = a.z.add(((g * OT + t) * a.positions + p + v) * LANES);
                V::max(acc, V::mul_add(acc, slope, minus_zero)).store(at);
            }
        }
        return;
    }
    for (v, acc) in acc.iter().enumerate() {
        for (t, acc) in acc.iter().enumerate() {
            acc.store(a.out.add(((g * OT + t) * a.positions + p + v) * LANES));
        }
    }
}

/// Run [`forward_image`] compiled for `isa`.
///
/// # Safety
/// `a` must describe buffers of the sizes [`forward`] allocates, and the
/// processor must run `isa`.
unsafe fn run_forward(isa: Isa, a: &ForwardArgs) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => x86::forward_avx512(a),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86::forward_avx2(a),
        _ => forward_image::<Portable, 4, 1>(a),
    }
}

/// Convolution forward: `Z = W * A + bias`, then leaky ReLU with `slope`
/// (1 = none).
///
/// # Shapes
/// `a [B, Ca, H, W]`, `w [Cz, Ca, 3, 3]`, `bias [Cz]` -> `[B, Cz, H, W]`
pub fn forward(
    g: &ConvGeometry,
    a: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    slope: f32,
) -> Vec<f32> {
    forward_on(Isa::detect(), g, a, w, bias, slope)
}

/// [`forward`] on the instruction set `isa`.
fn forward_on(
    isa: Isa,
    g: &ConvGeometry,
    a: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    slope: f32,
) -> Vec<f32> {
    assert!(applies(g), "not a plane convolution: {g:?}");
    assert_eq!(a.len(), g.batch * g.a_len());
    assert_eq!(w.len(), g.cz * g.ca * 9);
    let (h, wd, cz) = (g.ha, g.wa, g.cz);
    let (ot, _) = forward_tile(isa, cz);
    let groups = cz.div_ceil(ot);
    let weights = pack_weights(w, g.ca, cz, ot);
    let mut padded_bias = bias.map_or_else(|| vec![0.0f32; cz], <[f32]>::to_vec);
    padded_bias.resize(groups * ot, 0.0);
    let planes = Planes {
        channels: g.ca,
        height: h,
        width: wd,
    };
    let positions = h * planes.vectors();
    let len = g.batch * cz * h * wd;
    if len == 0 {
        return Vec::new();
    }
    // The tiles write `z` themselves (see `ForwardArgs::direct`), or go
    // through a per-thread `out` buffer.
    let direct = wd.is_multiple_of(LANES) && (0.0..=1.0).contains(&slope);
    let out_len = if direct {
        0
    } else {
        groups * ot * positions * LANES
    };
    // Left unset until the kernel writes it: zeroing 8 MB first costs a
    // pass over memory of its own.
    let mut z: Vec<f32> = Vec::with_capacity(len);
    z.spare_capacity_mut()
        .par_chunks_mut(cz * h * wd)
        .zip(a.par_chunks(g.a_len()))
        .enumerate()
        .for_each_init(
            || (vec![0.0f32; planes.len()], vec![0.0f32; out_len]),
            |(input, out), (b, (z, image))| {
                planes.fill(isa, image, input);
                let args = ForwardArgs {
                    input: input.as_ptr(),
                    c_in: g.ca,
                    plane_len: planes.plane_len(),
                    row: planes.row(),
                    vectors: planes.vectors(),
                    positions,
                    weights: weights.as_ptr(),
                    bias: padded_bias.as_ptr(),
                    groups,
                    out: out.as_mut_ptr(),
                    z: z.as_mut_ptr().cast::<f32>(),
                    c_out: cz,
                    height: h,
                    width: wd,
                    slope,
                    direct,
                    next: Prefetch::after(a, b, g.a_len()),
                };
                // SAFETY: every load is inside the planes (the rows have a
                // vector of slack, `Planes::row`), every store inside `z`
                // (`[Co, H, W]`) or, when not `direct`, `out`; the
                // instruction set was checked by `Isa::detect`.
                unsafe { run_forward(isa, &args) };
            },
        );
    // SAFETY: `forward_image` wrote every value of every image: each
    // output channel, row and column.
    unsafe { z.set_len(len) };
    z
}

/// What the weight-gradient kernel reads and accumulates for one image.
struct GradArgs {
    /// The image's input [`Planes`].
    input: *const f32,
    c_in: usize,
    plane_len: usize,
    row: usize,
    /// The output gradient `[Co][H][vectors * 16]`, zero past the width.
    grad: *const f32,
    c_out: usize,
    vectors: usize,
    height: usize,
    /// Partial sums `[Co][Ci][9][16]`, added to.
    sums: *mut f32,
    /// The next image's input maps ([`Prefetch`]).
    next: Prefetch,
}

/// Add one image's products to the partial sums. Always inlined into the
/// `#[target_feature]` entry points.
#[inline(always)]
unsafe fn grad_image<V: Block16, const OT: usize>(a: &GradArgs) {
    // Hints spread over the (tile, input channel, tap row) steps.
    let rest = a.c_out % OT;
    let fours = if OT > 4 { rest / 4 } else { 0 };
    let tiles = a.c_out / OT + fours + rest - 4 * fours;
    let steps = tiles * a.c_in * 3;
    let per_step = a.next.lines.div_ceil(steps.max(1));
    let mut line = 0;
    let mut o = 0;
    while o + OT <= a.c_out {
        grad_tile_at::<V, OT>(a, o, per_step, &mut line);
        o += OT;
    }
    // Fewer than `OT` left (the decoder's last layer of the D12 model has
    // 4 channels in all): 4 at a time before 1 at a time.
    while OT > 4 && o + 4 <= a.c_out {
        grad_tile_at::<V, 4>(a, o, per_step, &mut line);
        o += 4;
    }
    while o < a.c_out {
        grad_tile_at::<V, 1>(a, o, per_step, &mut line);
        o += 1;
    }
}

/// Output channels `o..o + OT`, every input channel, one row of taps at a
/// time: `OT x 3` accumulators, and per output vector three input loads
/// and `OT` gradient loads for `3 OT` multiply-adds.
#[inline(always)]
unsafe fn grad_tile_at<V: Block16, const OT: usize>(
    a: &GradArgs,
    o: usize,
    per_step: usize,
    line: &mut usize,
) {
    let positions = a.height * a.vectors;
    for i in 0..a.c_in {
        let plane = a.input.add(i * a.plane_len);
        for ky in 0..3 {
            a.next.lines::<V>(*line, per_step);
            *line += per_step;
            let mut acc = [[V::zero(); 3]; OT];
            for y in 0..a.height {
                for v in 0..a.vectors {
                    let (base, p) = ((y + ky) * a.row + v * LANES, y * a.vectors + v);
                    let x = [
                        V::load(plane.add(base)),
                        V::load(plane.add(base + 1)),
                        V::load(plane.add(base + 2)),
                    ];
                    for (t, acc) in acc.iter_mut().enumerate() {
                        let d = V::load(a.grad.add(((o + t) * positions + p) * LANES));
                        for kx in 0..3 {
                            acc[kx] = V::mul_add(d, x[kx], acc[kx]);
                        }
                    }
                }
            }
            for (t, acc) in acc.iter().enumerate() {
                for (kx, acc) in acc.iter().enumerate() {
                    let tap = ky * 3 + kx;
                    let at = a.sums.add((((o + t) * a.c_in + i) * 9 + tap) * LANES);
                    V::mul_add(*acc, V::splat(1.0), V::load(at)).store(at);
                }
            }
        }
    }
}

/// Run [`grad_image`] compiled for `isa`.
///
/// # Safety
/// As [`run_forward`], for the buffers of [`weight_gradient`].
unsafe fn run_grad(isa: Isa, a: &GradArgs) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => x86::grad_avx512(a),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86::grad_avx2(a),
        _ => grad_image::<Portable, 1>(a),
    }
}

/// Images per chunk of the weight gradient, and chunks summed at once.
const CHUNK: usize = 4;
const WAVE: usize = 8;

/// `dW [Cz, Ca, 3, 3]` of the convolution `g` from its input `a` and
/// output gradient `dz`.
///
/// # Shapes
/// `a [B, Ca, H, W]`, `dz [B, Cz, H, W]` -> `[Cz, Ca, 3, 3]`
pub fn weight_gradient(g: &ConvGeometry, a: &[f32], dz: &[f32]) -> Vec<f32> {
    weight_gradient_on(Isa::detect(), g, a, dz)
}

/// [`weight_gradient`] on the instruction set `isa`.
fn weight_gradient_on(isa: Isa, g: &ConvGeometry, a: &[f32], dz: &[f32]) -> Vec<f32> {
    assert!(applies(g), "not a plane convolution: {g:?}");
    assert_eq!(a.len(), g.batch * g.a_len());
    let (h, wd, ca, cz) = (g.ha, g.wa, g.ca, g.cz);
    assert_eq!(dz.len(), g.batch * cz * h * wd);
    let planes = Planes {
        channels: ca,
        height: h,
        width: wd,
    };
    let row = planes.vectors() * LANES;
    let len = cz * ca * 9 * LANES;
    let starts: Vec<usize> = (0..g.batch).step_by(CHUNK).collect();
    let mut sums = vec![0.0f32; len];
    let mut parts = vec![0.0f32; WAVE.min(starts.len()).max(1) * len];
    for wave in starts.chunks(WAVE) {
        parts.par_chunks_mut(len).zip(wave).for_each_init(
            || (vec![0.0f32; planes.len()], vec![0.0f32; cz * h * row]),
            |(input, grad), (part, &first)| {
                part.fill(0.0);
                for b in first..(first + CHUNK).min(g.batch) {
                    planes.fill(isa, &a[b * g.a_len()..][..g.a_len()], input);
                    let dz = &dz[b * cz * h * wd..][..cz * h * wd];
                    // Rows of whole vectors are read in place; others
                    // are copied into zero-padded ones.
                    // # Shapes: [Cz, H, W] -> [Cz, H, vectors * 16]
                    let grad: &[f32] = if wd == row {
                        dz
                    } else {
                        for (dst, src) in grad.chunks_mut(row).zip(dz.chunks(wd)) {
                            dst[..wd].copy_from_slice(src);
                        }
                        grad
                    };
                    let args = GradArgs {
                        input: input.as_ptr(),
                        c_in: ca,
                        plane_len: planes.plane_len(),
                        row: planes.row(),
                        grad: grad.as_ptr(),
                        c_out: cz,
                        vectors: planes.vectors(),
                        height: h,
                        sums: part.as_mut_ptr(),
                        next: Prefetch::after(a, b, g.a_len()),
                    };
                    // SAFETY: loads inside the planes and `grad`, stores
                    // inside `part`; the instruction set was checked.
                    unsafe { run_grad(isa, &args) };
                }
            },
        );
        for part in parts.chunks(len).take(wave.len()) {
            sums.iter_mut().zip(part).for_each(|(s, p)| *s += p);
        }
    }
    sums.chunks(LANES).map(|lanes| lanes.iter().sum()).collect()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::direct::x86::{Y, Z};
    use super::{forward_image, grad_image, ForwardArgs, GradArgs, Planes};

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn fill_avx512(p: &Planes, x: &[f32], out: &mut [f32]) {
        p.fill_rows(x, out)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn fill_avx2(p: &Planes, x: &[f32], out: &mut [f32]) {
        p.fill_rows(x, out)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn forward_avx512(a: &ForwardArgs) {
        // As `forward_tile`.
        if a.c_out <= 4 {
            forward_image::<Z, 4, 4>(a)
        } else {
            forward_image::<Z, 8, 2>(a)
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn forward_avx2(a: &ForwardArgs) {
        forward_image::<Y, 4, 1>(a)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn grad_avx512(a: &GradArgs) {
        grad_image::<Z, 8>(a)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn grad_avx2(a: &GradArgs) {
        grad_image::<Y, 1>(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::cpu::geometry::Window;
    use crate::nn::cpu::test_util::{
        max_diff, naive_forward, naive_weight_gradient, pseudo_random,
    };

    /// Forward and weight gradient equal the direct sums to rounding, on
    /// every instruction set: the lift and the decoder's last layer, odd
    /// widths and heights, channel counts that fill no tile (with rows of
    /// whole vectors, written by the tiles themselves, and without),
    /// batches that end inside a chunk.
    #[test]
    fn plane_kernels_match_the_direct_sums() {
        for (batch, ca, cz, (h, w)) in [
            (3, 1, 32, (32, 32)),
            (2, 32, 8, (16, 16)),
            (9, 8, 32, (5, 7)),
            (5, 3, 5, (33, 17)),
            (2, 3, 12, (4, 16)),
            (3, 16, 4, (16, 16)),
            (1, 1, 1, (1, 1)),
        ] {
            let g = ConvGeometry::conv([batch, ca, h, w], cz, Window::new(3, 1, 1));
            assert!(applies(&g));
            let a = pseudo_random(batch * ca * h * w, 1);
            let wt = pseudo_random(cz * ca * 9, 2);
            let bias = pseudo_random(cz, 3);
            let dz = pseudo_random(batch * cz * h * w, 4);
            let mut want = naive_forward(&g, &a, &wt);
            for (i, v) in want.iter_mut().enumerate() {
                let z = *v + bias[(i / (h * w)) % cz];
                *v = if z > 0.0 { z } else { 0.1 * z };
            }
            let want_dw = naive_weight_gradient(&a, &dz, batch, (ca, cz), (h, w));
            let scale = |v: &[f32]| v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            for isa in Isa::available() {
                let got = forward_on(isa, &g, &a, &wt, Some(&bias), 0.1);
                let err = max_diff(&got, &want);
                assert!(err <= 1e-5 * scale(&want), "{isa:?} {g:?} forward: {err}");
                let got = weight_gradient_on(isa, &g, &a, &dz);
                let err = max_diff(&got, &want_dw);
                assert!(err <= 1e-5 * scale(&want_dw), "{isa:?} {g:?} dW: {err}");
            }
        }
    }
}
