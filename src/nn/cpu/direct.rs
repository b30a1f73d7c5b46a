//! Direct convolution on channel-blocked maps, the layout ONNX Runtime's
//! and oneDNN's CPU convolutions use (NCHWc): inference only.
//!
//! A stack of maps is stored as `[C/16 blocks][pixels][16 lanes]` with a
//! zero border of width `b` ([`BlockedMaps`]): rows of `Wp = W + b` pixels,
//! whose last `b` pixels are at once the right border of their row and the
//! left border of the next. The 16 channels of a block sit side by side, so
//! one vector register holds one pixel of 16 output channels, and a "same"
//! convolution needs no im2col copy: output pixel `q = y * Wp + x` reads
//! input pixel `q + ky * Wp + kx` for tap `(ky, kx)`. Each output row is
//! computed over the whole padded row, so the `b` border columns are wasted
//! work (`b / Wp` of it) that keeps the inner loop free of branches.
//!
//! The microkernel holds a tile of `OB` output blocks by `PX` pixels in
//! registers (24 accumulators with AVX-512) and, for every input channel and
//! tap, loads `OB` weight vectors and broadcasts `PX` input values. The
//! bias, the leaky ReLU and the 2x2 average pooling are applied to each
//! image's output while it is still in cache, writing straight into the
//! next layer's bordered input.
//!
//! The instruction set is chosen at run time ([`Isa::detect`]): AVX-512,
//! AVX2 with FMA, or portable Rust, each through the same generic kernel.
//! `EQAE_ISA=avx512|avx2|portable` forces one (tests run all that the
//! processor has).

use std::sync::OnceLock;

/// Channels per block: one AVX-512 register of `f32`.
pub const LANES: usize = 16;

/// The widest pixel tile of any instruction set; buffers read by a tile
/// carry this much slack past their last block (see [`BlockedMaps::alloc_len`]).
const MAX_PX: usize = 24;

/// The vector instructions a kernel is compiled for.
/// Ordered from the least to the most capable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Plain Rust (whatever the compiler vectorises).
    Portable,
    /// 256-bit vectors with fused multiply-add: two registers per block.
    Avx2,
    /// 512-bit vectors: one block per register.
    Avx512,
}

impl Isa {
    /// The best instruction set of this processor, or the one `EQAE_ISA`
    /// names (falling back to the best when the processor lacks it).
    pub fn detect() -> Isa {
        static CHOSEN: OnceLock<Isa> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let best = Isa::best();
            match std::env::var("EQAE_ISA").ok().as_deref() {
                Some("portable") => Isa::Portable,
                Some("avx2") if best != Isa::Portable => Isa::Avx2,
                _ => best,
            }
        })
    }

    /// The best instruction set this processor runs.
    pub fn best() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }

    /// Every instruction set this processor runs, best first.
    pub fn available() -> Vec<Isa> {
        [Isa::Avx512, Isa::Avx2, Isa::Portable]
            .into_iter()
            .filter(|&isa| isa <= Isa::best())
            .collect()
    }

    /// Output blocks per register tile for a layer with `blocks` output
    /// blocks, and the pixel counts the kernel is compiled for: as many
    /// accumulators as the registers hold, or a little fewer.
    fn tiles(self, blocks: usize) -> (usize, &'static [usize]) {
        match self {
            Isa::Avx512 if blocks.is_multiple_of(4) => (4, &[6, 5, 4]),
            Isa::Avx512 if blocks.is_multiple_of(2) => (2, &[12, 10, 8]),
            Isa::Avx512 => (1, &[24, 20, 16]),
            Isa::Avx2 => (1, &[6, 5, 4]),
            Isa::Portable => (1, &[4]),
        }
    }

    /// The register tile `(OB, PX)` for a layer with `blocks` output blocks
    /// and `pixels` flat output pixels per image: the pixel count that
    /// wastes least on the last, partly filled tile, a wider tile winning
    /// near-ties (it reloads the weights less often).
    fn tile(self, blocks: usize, pixels: usize) -> (usize, usize) {
        let (ob, widths) = self.tiles(blocks);
        // The padded pixels, plus one pixel's work per tile for its
        // weight loads and stores; the first (widest) wins ties.
        let cost = |px: usize| pixels.div_ceil(px) * (px + 1);
        let px = widths
            .iter()
            .copied()
            .min_by_key(|&px| cost(px))
            .expect("a tile width");
        (ob, px)
    }
}

/// The shape of a stack of square-or-not maps in the blocked layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockedMaps {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Zero border on every side.
    pub border: usize,
}

impl BlockedMaps {
    pub fn blocks(&self) -> usize {
        self.channels.div_ceil(LANES)
    }

    /// Padded row length `Wp`, in pixels: one border between two rows
    /// serves as the right border of one and the left border of the other.
    pub fn row(&self) -> usize {
        self.width + self.border
    }

    /// Pixels of one block, border included.
    pub fn block_pixels(&self) -> usize {
        (self.height + 2 * self.border) * self.row() + self.border
    }

    /// Elements of one block.
    pub fn block_len(&self) -> usize {
        self.block_pixels() * LANES
    }

    /// Elements to allocate: every block plus the slack a tile may read past
    /// the last one.
    pub fn alloc_len(&self) -> usize {
        self.blocks() * self.block_len() + (MAX_PX + 2 * self.border + 1) * LANES
    }

    /// Index of channel `c` at unpadded pixel `(y, x)`.
    pub fn index(&self, c: usize, y: usize, x: usize) -> usize {
        let pixel = (y + self.border) * self.row() + x + self.border;
        (c / LANES) * self.block_len() + pixel * LANES + c % LANES
    }
}

/// Copy one plain `[C, H, W]` image into the interior of its blocked
/// maps `shape` (the border and unused lanes are left as they are: zero).
pub fn fill_blocked(plain: &[f32], shape: &BlockedMaps, blocked: &mut [f32]) {
    let (h, w) = (shape.height, shape.width);
    assert_eq!(plain.len(), shape.channels * h * w);
    assert!(blocked.len() >= shape.alloc_len());
    // Pixel by pixel, 16 channels at a time: one vector written, 16 planes
    // read in step (reading lane by lane would touch every cache line of
    // the block 16 times).
    for block in 0..shape.blocks() {
        let lanes = (shape.channels - block * LANES).min(LANES);
        let planes = &plain[block * LANES * h * w..][..lanes * h * w];
        for y in 0..h {
            let at = shape.index(block * LANES, y, 0);
            let row = &mut blocked[at..][..w * LANES];
            let mut first = 0;
            #[cfg(target_arch = "x86_64")]
            if lanes.is_multiple_of(4) {
                first = w - w % 4;
                // SAFETY: the slices' lengths are what the function reads
                // and writes: `lanes` planes of `h * w`, `w` pixels of 16.
                unsafe { x86::transpose_quads(planes, (h, w, y), lanes, first, row) };
            }
            for x in first..w {
                let dst = &mut row[x * LANES..][..lanes];
                for (l, d) in dst.iter_mut().enumerate() {
                    *d = planes[(l * h + y) * w + x];
                }
            }
        }
    }
}

/// A convolution with odd kernel `k`, stride 1 and "same" padding `k / 2`,
/// its weights packed once for the microkernel:
/// `[output groups][input blocks][k * k taps][16 input lanes][OB blocks][16]`.
#[derive(Clone, Debug)]
pub struct PackedConv {
    pub c_in: usize,
    pub c_out: usize,
    pub kernel: usize,
    isa: Isa,
    weights: Vec<f32>,
    /// The bias, zero-padded to whole blocks.
    bias: Vec<f32>,
}

/// What the microkernel reads and writes for one image and one group of
/// output blocks (raw pointers: the kernel's loops carry no bounds checks;
/// [`PackedConv::conv_image`] checks every length once).
struct TileArgs {
    input: *const f32,
    in_blocks: usize,
    in_block_len: usize,
    /// Lanes used in the last input block.
    last_lanes: usize,
    /// Padded row length of the input.
    row: usize,
    kernel: usize,
    weights: *const f32,
    /// Flat output pixels to compute (`(H - 1) * Wp + W`).
    pixels: usize,
    /// `pixels` rounded up to whole tiles: the stride between output blocks.
    pixels_padded: usize,
    out: *mut f32,
}

impl PackedConv {
    /// Pack `weight [c_out, c_in, k, k]` (cross-correlation, as conv2d) and
    /// `bias [c_out]` for `isa`.
    pub fn new(
        weight: &[f32],
        bias: &[f32],
        c_in: usize,
        c_out: usize,
        kernel: usize,
        isa: Isa,
    ) -> Self {
        assert_eq!(weight.len(), c_out * c_in * kernel * kernel);
        assert_eq!(bias.len(), c_out);
        assert!(kernel % 2 == 1, "direct convolution needs an odd kernel");
        let (in_blocks, out_blocks) = (c_in.div_ceil(LANES), c_out.div_ceil(LANES));
        let ob = isa.tiles(out_blocks).0;
        let taps = kernel * kernel;
        let mut weights = vec![0.0f32; out_blocks * in_blocks * taps * LANES * LANES];
        let mut at = 0;
        for group in 0..out_blocks / ob {
            for ib in 0..in_blocks {
                for tap in 0..taps {
                    for i in 0..LANES {
                        for o in 0..ob {
                            for l in 0..LANES {
                                let (oc, ic) = ((group * ob + o) * LANES + l, ib * LANES + i);
                                if oc < c_out && ic < c_in {
                                    weights[at] = weight[(oc * c_in + ic) * taps + tap];
                                }
                                at += 1;
                            }
                        }
                    }
                }
            }
        }
        let mut padded_bias = bias.to_vec();
        padded_bias.resize(out_blocks * LANES, 0.0);
        PackedConv {
            c_in,
            c_out,
            kernel,
            isa,
            weights,
            bias: padded_bias,
        }
    }

    /// The input maps' shape for `height x width` images.
    pub fn input_shape(&self, height: usize, width: usize) -> BlockedMaps {
        BlockedMaps {
            channels: self.c_in,
            height,
            width,
            border: self.kernel / 2,
        }
    }

    /// Elements of the scratch that [`Self::conv_image`] writes its
    /// pre-activation output to.
    pub fn scratch_len(&self, input: &BlockedMaps) -> usize {
        let blocks = self.c_out.div_ceil(LANES);
        blocks * self.pixels_padded(input) * LANES
    }

    fn pixels(&self, input: &BlockedMaps) -> usize {
        (input.height - 1) * input.row() + input.width
    }

    fn tile(&self, input: &BlockedMaps) -> (usize, usize) {
        self.isa
            .tile(self.c_out.div_ceil(LANES), self.pixels(input))
    }

    fn pixels_padded(&self, input: &BlockedMaps) -> usize {
        let px = self.tile(input).1;
        self.pixels(input).div_ceil(px) * px
    }

    /// The convolution of one image without bias: `out[block][q][lane]`,
    /// `q = y * Wp + x` on the input's padded row length (columns
    /// `x >= W` hold junk).
    ///
    /// # Shapes
    /// `input` blocked `[Ci, H, W]` with border `k / 2` -> `out [Co/16, pixels_padded, 16]`
    pub fn conv_image(&self, input: &[f32], shape: &BlockedMaps, out: &mut [f32]) {
        assert_eq!(shape.channels, self.c_in);
        assert_eq!(shape.border, self.kernel / 2);
        assert!(input.len() >= shape.alloc_len());
        assert!(out.len() >= self.scratch_len(shape));
        let tile = self.tile(shape);
        let ob = tile.0;
        let taps = self.kernel * self.kernel;
        let group_weights = shape.blocks() * taps * LANES * ob * LANES;
        let pixels_padded = self.pixels_padded(shape);
        for group in 0..self.c_out.div_ceil(LANES) / ob {
            let args = TileArgs {
                input: input.as_ptr(),
                in_blocks: shape.blocks(),
                in_block_len: shape.block_len(),
                last_lanes: self.c_in - (shape.blocks() - 1) * LANES,
                row: shape.row(),
                kernel: self.kernel,
                weights: self.weights[group * group_weights..].as_ptr(),
                pixels: self.pixels(shape),
                pixels_padded,
                out: out[group * ob * pixels_padded * LANES..].as_mut_ptr(),
            };
            // SAFETY: the asserts above bound every read (the last tile reads
            // at most `MAX_PX + 2 * border` pixels past the last block, inside
            // `alloc_len`) and every write (`scratch_len`); the instruction
            // set was checked by `Isa::detect` / `Isa::available`.
            unsafe { run_tiles(self.isa, tile, &args) };
        }
    }

    /// Bias, leaky ReLU with `slope`, and 2x2 average pooling of the
    /// output of [`Self::conv_image`], written into the interior of the next
    /// layer's blocked input `next` (border left as it is, zero).
    ///
    /// # Shapes
    /// `out [Co/16, pixels_padded, 16]` -> `next` blocked `[Co, H/2, W/2]`
    pub fn finish_pooled(
        &self,
        out: &[f32],
        input: &BlockedMaps,
        slope: f32,
        next: &mut [f32],
        next_shape: &BlockedMaps,
    ) {
        assert_eq!(
            (next_shape.height, next_shape.width),
            (input.height / 2, input.width / 2)
        );
        assert_eq!(next_shape.channels, self.c_out);
        assert!(next.len() >= next_shape.alloc_len());
        let pool = Pool {
            out,
            bias: &self.bias,
            input: *input,
            pixels_padded: self.pixels_padded(input),
            slope,
            next_shape: *next_shape,
        };
        match self.isa {
            // SAFETY: the instruction set was checked by `Isa::detect`.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { x86::pool_avx512(&pool, next) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { x86::pool_avx2(&pool, next) },
            _ => pool.run(next),
        }
    }

    /// [`Self::finish_plain`] into `z`.
    pub fn finish_into(&self, out: &[f32], input: &BlockedMaps, slope: f32, z: &mut [f32]) {
        let (h, w, row) = (input.height, input.width, input.row());
        assert_eq!(z.len(), self.c_out * h * w);
        let pixels_padded = self.pixels_padded(input);
        for block in 0..self.c_out.div_ceil(LANES) {
            let lanes = (self.c_out - block * LANES).min(LANES);
            let bias = &self.bias[block * LANES..][..lanes];
            let planes = &mut z[block * LANES * h * w..];
            for y in 0..h {
                for x in 0..w {
                    let src = &out[(block * pixels_padded + y * row + x) * LANES..][..lanes];
                    for (l, (&v, &b)) in src.iter().zip(bias).enumerate() {
                        let v = v + b;
                        planes[(l * h + y) * w + x] = if v > 0.0 { v } else { slope * v };
                    }
                }
            }
        }
    }

    /// Bias and leaky ReLU with `slope` (1 = none) of the output of
    /// [`Self::conv_image`], as a plain `[Co, H, W]` map.
    pub fn finish_plain(&self, out: &[f32], input: &BlockedMaps, slope: f32) -> Vec<f32> {
        let mut z = vec![0.0f32; self.c_out * input.height * input.width];
        self.finish_into(out, input, slope, &mut z);
        z
    }
}

/// The fused epilogue of [`PackedConv::finish_pooled`].
struct Pool<'a> {
    out: &'a [f32],
    bias: &'a [f32],
    input: BlockedMaps,
    pixels_padded: usize,
    slope: f32,
    next_shape: BlockedMaps,
}

impl Pool<'_> {
    /// Always inlined into the `#[target_feature]` entry points, where the
    /// 16-lane loops become vector instructions of that set.
    #[inline(always)]
    fn run(&self, next: &mut [f32]) {
        let (h, w, row) = (self.input.height, self.input.width, self.input.row());
        for block in 0..self.bias.len() / LANES {
            let bias: &[f32; LANES] = self.bias[block * LANES..][..LANES].try_into().unwrap();
            let src = &self.out[block * self.pixels_padded * LANES..][..self.pixels_padded * LANES];
            for y in 0..h / 2 {
                for x in 0..w / 2 {
                    let mut sum = [0.0f32; LANES];
                    for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        let q = (2 * y + dy) * row + 2 * x + dx;
                        let v: &[f32; LANES] = src[q * LANES..][..LANES].try_into().unwrap();
                        for l in 0..LANES {
                            let z = v[l] + bias[l];
                            sum[l] += if z > 0.0 { z } else { self.slope * z };
                        }
                    }
                    let at = self.next_shape.index(block * LANES, y, x);
                    let dst: &mut [f32; LANES] = (&mut next[at..at + LANES]).try_into().unwrap();
                    for l in 0..LANES {
                        dst[l] = 0.25 * sum[l];
                    }
                }
            }
        }
    }
}

/// Dispatch to the kernel compiled for `isa` and `(OB, PX)`.
///
/// # Safety
/// `args` must bound every access (see [`PackedConv::conv_image`]) and the
/// processor must run `isa`.
unsafe fn run_tiles(isa: Isa, tile: (usize, usize), args: &TileArgs) {
    match (isa, tile) {
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, (4, 6)) => x86::avx512::<4, 6>(args),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, (4, 5)) => x86::avx512::<4, 5>(args),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, (4, 4)) => x86::avx512::<4, 4>(args),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, (2, 12)) => x86::avx512::<2, 12>(args),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, (2, 10)) => x86::avx512::<2, 10>(args),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, (2, 8)) => x86::avx512::<2, 8>(args),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, (1, 24)) => x86::avx512::<1, 24>(args),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, (1, 20)) => x86::avx512::<1, 20>(args),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, (1, 16)) => x86::avx512::<1, 16>(args),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, (1, 6)) => x86::avx2::<1, 6>(args),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, (1, 5)) => x86::avx2::<1, 5>(args),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, (1, 4)) => x86::avx2::<1, 4>(args),
        (Isa::Portable, (1, 4)) => tiles::<Portable, 1, 4>(args),
        _ => unreachable!("no kernel for {isa:?} with tile {tile:?}"),
    }
}

/// The vector operations the generic kernels need, on one block of 16 lanes
/// (this one's and [`super::plane`]'s).
pub(super) trait Block16: Copy {
    unsafe fn zero() -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn splat(v: f32) -> Self;
    /// `a * b + c`.
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self;
    unsafe fn store(self, p: *mut f32);
    /// Lane-wise maximum.
    unsafe fn max(a: Self, b: Self) -> Self;
    /// Ask for the cache line at `p` to be brought into the level-2 cache
    /// (a hint: nothing happens where the instruction set has none).
    #[inline(always)]
    unsafe fn prefetch(_p: *const f32) {}
}

/// The microkernel, generic over the vector type. Always inlined into the
/// `#[target_feature]` entry points, so that the intrinsics are compiled
/// for the instruction set of the entry point.
#[inline(always)]
unsafe fn tiles<V: Block16, const OB: usize, const PX: usize>(a: &TileArgs) {
    let k = a.kernel;
    let tap_len = LANES * OB * LANES;
    let mut q0 = 0;
    while q0 < a.pixels {
        let mut acc = [[V::zero(); OB]; PX];
        for ib in 0..a.in_blocks {
            let lanes = if ib + 1 == a.in_blocks {
                a.last_lanes
            } else {
                LANES
            };
            let input = a.input.add(ib * a.in_block_len);
            let weights = a.weights.add(ib * k * k * tap_len);
            for ky in 0..k {
                for kx in 0..k {
                    let src = input.add((q0 + ky * a.row + kx) * LANES);
                    let w = weights.add((ky * k + kx) * tap_len);
                    for i in 0..lanes {
                        let mut wv = [V::zero(); OB];
                        for (o, wv) in wv.iter_mut().enumerate() {
                            *wv = V::load(w.add((i * OB + o) * LANES));
                        }
                        for (p, acc) in acc.iter_mut().enumerate() {
                            let x = V::splat(*src.add(p * LANES + i));
                            for o in 0..OB {
                                acc[o] = V::mul_add(x, wv[o], acc[o]);
                            }
                        }
                    }
                }
            }
        }
        for (p, acc) in acc.iter().enumerate() {
            for (o, v) in acc.iter().enumerate() {
                v.store(a.out.add((o * a.pixels_padded + q0 + p) * LANES));
            }
        }
        q0 += PX;
    }
}

/// Portable lanes: the compiler vectorises what it can.
#[derive(Clone, Copy)]
pub(super) struct Portable([f32; LANES]);

impl Block16 for Portable {
    #[inline(always)]
    unsafe fn zero() -> Self {
        Portable([0.0; LANES])
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Portable(std::ptr::read_unaligned(p as *const [f32; LANES]))
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        Portable([v; LANES])
    }
    #[inline(always)]
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
        let mut r = c.0;
        for (l, r) in r.iter_mut().enumerate() {
            *r += a.0[l] * b.0[l];
        }
        Portable(r)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        std::ptr::write_unaligned(p as *mut [f32; LANES], self.0)
    }
    #[inline(always)]
    unsafe fn max(a: Self, b: Self) -> Self {
        let mut r = a.0;
        for (r, b) in r.iter_mut().zip(b.0) {
            *r = r.max(b);
        }
        Portable(r)
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use std::arch::x86_64::*;

    use super::{tiles, Block16, Pool, TileArgs, LANES};

    /// Row `y` of `lanes` plain planes `[lanes, h, w]`, pixels `0..end`
    /// (a multiple of 4), into `row [w][16]`: 4x4 transposes with SSE (in
    /// every x86-64), 4 loads and 4 stores per 16 values instead of one
    /// value at a time.
    ///
    /// # Safety
    /// `planes` holds `lanes * h * w` values, `row` `w * 16`; `lanes` is a
    /// multiple of 4 and at most 16; `end <= w`; `y < h`.
    pub(super) unsafe fn transpose_quads(
        planes: &[f32],
        (h, w, y): (usize, usize, usize),
        lanes: usize,
        end: usize,
        row: &mut [f32],
    ) {
        debug_assert!(planes.len() >= lanes * h * w && row.len() >= w * LANES);
        debug_assert!(
            lanes.is_multiple_of(4) && lanes <= LANES && end <= w && end.is_multiple_of(4)
        );
        let (src, dst) = (planes.as_ptr(), row.as_mut_ptr());
        for x in (0..end).step_by(4) {
            for l in (0..lanes).step_by(4) {
                let load = |i: usize| _mm_loadu_ps(src.add(((l + i) * h + y) * w + x));
                let (r0, r1, r2, r3) = (load(0), load(1), load(2), load(3));
                let (t0, t1) = (_mm_unpacklo_ps(r0, r1), _mm_unpacklo_ps(r2, r3));
                let (t2, t3) = (_mm_unpackhi_ps(r0, r1), _mm_unpackhi_ps(r2, r3));
                // # Shapes: 4 channels x 4 pixels -> 4 pixels x 4 channels
                let columns = [
                    _mm_movelh_ps(t0, t1),
                    _mm_movehl_ps(t1, t0),
                    _mm_movelh_ps(t2, t3),
                    _mm_movehl_ps(t3, t2),
                ];
                for (j, c) in columns.into_iter().enumerate() {
                    _mm_storeu_ps(dst.add((x + j) * LANES + l), c);
                }
            }
        }
    }

    /// One `__m512`.
    #[derive(Clone, Copy)]
    pub(in crate::nn::cpu) struct Z(__m512);

    impl Block16 for Z {
        #[inline(always)]
        unsafe fn zero() -> Self {
            Z(_mm512_setzero_ps())
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Z(_mm512_loadu_ps(p))
        }
        #[inline(always)]
        unsafe fn splat(v: f32) -> Self {
            Z(_mm512_set1_ps(v))
        }
        #[inline(always)]
        unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
            Z(_mm512_fmadd_ps(a.0, b.0, c.0))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm512_storeu_ps(p, self.0)
        }
        #[inline(always)]
        unsafe fn max(a: Self, b: Self) -> Self {
            Z(_mm512_max_ps(a.0, b.0))
        }
        #[inline(always)]
        unsafe fn prefetch(p: *const f32) {
            _mm_prefetch::<_MM_HINT_T1>(p as *const i8)
        }
    }

    /// Two `__m256`.
    #[derive(Clone, Copy)]
    pub(in crate::nn::cpu) struct Y([__m256; 2]);

    impl Block16 for Y {
        #[inline(always)]
        unsafe fn zero() -> Self {
            Y([_mm256_setzero_ps(); 2])
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Y([_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))])
        }
        #[inline(always)]
        unsafe fn splat(v: f32) -> Self {
            Y([_mm256_set1_ps(v); 2])
        }
        #[inline(always)]
        unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
            Y([
                _mm256_fmadd_ps(a.0[0], b.0[0], c.0[0]),
                _mm256_fmadd_ps(a.0[1], b.0[1], c.0[1]),
            ])
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm256_storeu_ps(p, self.0[0]);
            _mm256_storeu_ps(p.add(8), self.0[1]);
        }
        #[inline(always)]
        unsafe fn max(a: Self, b: Self) -> Self {
            Y([_mm256_max_ps(a.0[0], b.0[0]), _mm256_max_ps(a.0[1], b.0[1])])
        }
        #[inline(always)]
        unsafe fn prefetch(p: *const f32) {
            _mm_prefetch::<_MM_HINT_T1>(p as *const i8)
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn avx512<const OB: usize, const PX: usize>(args: &TileArgs) {
        tiles::<Z, OB, PX>(args)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2<const OB: usize, const PX: usize>(args: &TileArgs) {
        tiles::<Y, OB, PX>(args)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn pool_avx512(pool: &Pool, next: &mut [f32]) {
        pool.run(next)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn pool_avx2(pool: &Pool, next: &mut [f32]) {
        pool.run(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::cpu::geometry::{ConvGeometry, Window};
    use crate::nn::cpu::test_util::{naive_forward, pseudo_random};

    /// A plain `[C, H, W]` map into the blocked layout, one element at a
    /// time: the reference for [`fill_blocked`].
    fn blocked(plain: &[f32], shape: &BlockedMaps) -> Vec<f32> {
        let mut out = vec![0.0; shape.alloc_len()];
        for c in 0..shape.channels {
            for y in 0..shape.height {
                for x in 0..shape.width {
                    out[shape.index(c, y, x)] = plain[(c * shape.height + y) * shape.width + x];
                }
            }
        }
        out
    }

    /// Blocks of 4, 16 and other lane counts; widths that end inside a
    /// group of 4 pixels.
    #[test]
    fn fill_blocked_places_every_channel_and_pixel() {
        for (c, h, w, border) in [
            (1, 5, 4, 1),
            (20, 3, 6, 2),
            (48, 4, 4, 0),
            (36, 3, 10, 1),
            (16, 2, 16, 1),
        ] {
            let shape = BlockedMaps {
                channels: c,
                height: h,
                width: w,
                border,
            };
            let plain = pseudo_random(c * h * w, 9);
            let mut got = vec![0.0; shape.alloc_len()];
            fill_blocked(&plain, &shape, &mut got);
            assert_eq!(got, blocked(&plain, &shape), "{shape:?}");
        }
    }

    /// Every instruction set this processor has, every tile shape, channel
    /// counts that fill blocks partly: equal to the direct reference.
    #[test]
    fn direct_conv_matches_reference_on_every_isa() {
        let mut cases = vec![
            (1, 32, 8, 3),
            (32, 64, 6, 3),
            (20, 16, 5, 3),
            (16, 48, 4, 5),
            (64, 128, 4, 3),
            (3, 40, 7, 1),
        ];
        // Every tile width: output blocks 1 to 4, sizes 1 to 20.
        for c_out in [16, 32, 48, 64] {
            cases.extend((1..=20).map(|size| (3, c_out, size, 3)));
        }
        for isa in Isa::available() {
            for &(c_in, c_out, size, k) in &cases {
                let w = pseudo_random(c_out * c_in * k * k, 1);
                let b = pseudo_random(c_out, 2);
                let a = pseudo_random(c_in * size * size, 3);
                let conv = PackedConv::new(&w, &b, c_in, c_out, k, isa);
                let shape = conv.input_shape(size, size);
                let mut out = vec![f32::NAN; conv.scratch_len(&shape)];
                conv.conv_image(&blocked(&a, &shape), &shape, &mut out);
                let z = conv.finish_plain(&out, &shape, 1.0);
                let g = ConvGeometry::conv([1, c_in, size, size], c_out, Window::new(k, 1, k / 2));
                let mut reference = naive_forward(&g, &a, &w);
                for (i, r) in reference.iter_mut().enumerate() {
                    *r += b[i / (size * size)];
                }
                let err = z
                    .iter()
                    .zip(&reference)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0.0f32, f32::max);
                assert!(err < 1e-4, "{isa:?} {c_in}->{c_out} @{size} k{k}: {err}");
            }
        }
    }

    /// The fused epilogue: bias, leaky ReLU, 2x2 average pooling.
    #[test]
    fn pooled_epilogue_matches_plain_one() {
        for isa in Isa::available() {
            let (c_in, c_out, size) = (8, 32, 6);
            let w = pseudo_random(c_out * c_in * 9, 4);
            let b = pseudo_random(c_out, 5);
            let a = pseudo_random(c_in * size * size, 6);
            let conv = PackedConv::new(&w, &b, c_in, c_out, 3, isa);
            let shape = conv.input_shape(size, size);
            let mut out = vec![0.0; conv.scratch_len(&shape)];
            conv.conv_image(&blocked(&a, &shape), &shape, &mut out);
            let plain = conv.finish_plain(&out, &shape, 0.1);
            let next = BlockedMaps {
                channels: c_out,
                height: 3,
                width: 3,
                border: 1,
            };
            let mut pooled = vec![0.0; next.alloc_len()];
            conv.finish_pooled(&out, &shape, 0.1, &mut pooled, &next);
            for c in 0..c_out {
                for y in 0..3 {
                    for x in 0..3 {
                        let at = |dy, dx| plain[(c * size + 2 * y + dy) * size + 2 * x + dx];
                        let want = (at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1)) / 4.0;
                        let got = pooled[next.index(c, y, x)];
                        assert!(
                            (got - want).abs() < 1e-6,
                            "{isa:?} c{c} ({y},{x}): {got} vs {want}"
                        );
                    }
                }
            }
            // The border stays zero for the next convolution.
            assert_eq!(pooled[next.index(0, 0, 0) - LANES], 0.0);
        }
    }
}
