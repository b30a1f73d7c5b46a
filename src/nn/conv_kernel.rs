//! 2-D convolution on raw `f32` buffers for the CPU: im2col plus GEMM (the
//! `gemm` crate, which burn's flex backend also uses for matmul), forward
//! and backward, parallel over chunks of the batch.
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

/// Sizes of one convolution (A to Z), all in elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    /// Channels of the wide (conv input) side.
    pub ca: usize,
    pub ha: usize,
    pub wa: usize,
    /// Channels of the narrow (conv output) side.
    pub cz: usize,
    pub hz: usize,
    pub wz: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvGeometry {
    /// Geometry of a conv2d from `[B, Ca, Ha, Wa]` with `Cz` output channels.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        batch: usize,
        ca: usize,
        ha: usize,
        wa: usize,
        cz: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Self {
        let out = |s: usize| (s + 2 * padding - kernel) / stride + 1;
        ConvGeometry {
            batch,
            ca,
            ha,
            wa,
            cz,
            hz: out(ha),
            wz: out(wa),
            kernel,
            stride,
            padding,
        }
    }

    /// Geometry of a transposed conv2d from Z-shaped `[B, Cz, Hz, Wz]` to
    /// `Ca` output channels (no output padding).
    #[allow(clippy::too_many_arguments)]
    pub fn transposed(
        batch: usize,
        cz: usize,
        hz: usize,
        wz: usize,
        ca: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Self {
        let out = |s: usize| (s - 1) * stride + kernel - 2 * padding;
        ConvGeometry {
            batch,
            ca,
            ha: out(hz),
            wa: out(wz),
            cz,
            hz,
            wz,
            kernel,
            stride,
            padding,
        }
    }

    fn a_len(&self) -> usize {
        self.ca * self.ha * self.wa
    }

    fn p(&self) -> usize {
        self.hz * self.wz
    }

    fn k(&self) -> usize {
        self.ca * self.kernel * self.kernel
    }

    /// Images per chunk: enough columns (c * P >= 256) for an efficient
    /// GEMM, few enough that the im2col matrix stays in cache.
    fn chunk(&self) -> usize {
        256usize.div_ceil(self.p()).clamp(1, self.batch.max(1))
    }
}

/// GEMM parallelism: chunks run in parallel when there are enough of them;
/// otherwise the GEMM itself is split.
fn gemm_parallelism(chunks: usize) -> gemm::Parallelism {
    let threads = rayon::current_num_threads();
    if chunks >= threads {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(threads)
    }
}

thread_local! {
    /// Per-thread scratch buffers (im2col matrices, gathered gradients):
    /// reusing them avoids a fresh multi-megabyte allocation, with its page
    /// faults, per chunk.
    static SCRATCH: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A scratch buffer of `len` elements with unspecified contents. Taken out
/// of the thread's pool (not borrowed), so a nested rayon task that runs on
/// this thread while a GEMM waits simply gets another buffer.
fn scratch(len: usize) -> Vec<f32> {
    let mut v = SCRATCH.with(|s| s.borrow_mut().pop()).unwrap_or_default();
    v.resize(len, 0.0);
    v
}

fn release(v: Vec<f32>) {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < 4 {
            s.push(v);
        }
    });
}

/// `dst[m x n] (+)= lhs[m x k] . rhs[k x n]` with explicit strides
/// (row stride, column stride) for each operand; `dst` is row-major.
#[allow(clippy::too_many_arguments)]
fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
    parallelism: gemm::Parallelism,
) {
    let dst_strides = (n, 1);
    matmul_strided(
        (m, n, k),
        dst,
        dst_strides,
        accumulate,
        lhs,
        lhs_strides,
        rhs,
        rhs_strides,
        parallelism,
    )
}

/// [`matmul`] with `dst` strides too. The gemm crate packs the operands
/// that are not laid out for its microkernel; which ones depends on the
/// orientation of `dst` (it transposes the problem when `dst` is
/// row-major), so the caller picks the orientation that leaves its biggest
/// operand unpacked.
#[allow(clippy::too_many_arguments)]
fn matmul_strided(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    (dst_rs, dst_cs): (usize, usize),
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
    parallelism: gemm::Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst.len() > (m - 1) * dst_rs + (n - 1) * dst_cs);
    assert!(k == 0 || lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
    assert!(k == 0 || rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    // SAFETY: the asserts above keep every index the GEMM touches inside the
    // slices; dst does not alias lhs or rhs (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// The output columns `ox` whose input column `ox * s + kx - pad` lies
/// inside `0..wa`, as a range.
fn valid_columns(g: &ConvGeometry, kx: usize) -> std::ops::Range<usize> {
    let (s, pad) = (g.stride as isize, g.padding as isize);
    let first = (pad - kx as isize).max(0);
    let lo = ((first + s - 1) / s) as usize;
    let last = g.wa as isize - 1 + pad - kx as isize;
    let hi = if last < 0 {
        0
    } else {
        ((last / s) as usize + 1).min(g.wz)
    };
    lo.min(hi)..hi
}

/// im2col of `c` images of A into `cols [K, c*P]`; column `j = b*P + p`.
fn im2col(g: &ConvGeometry, a: &[f32], c: usize, cols: &mut [f32]) {
    if is_same_size(g) {
        im2col_same(g, a, c, cols)
    } else {
        im2col_general(g, a, c, cols)
    }
}

/// [`im2col`] row by output row, for any geometry.
fn im2col_general(g: &ConvGeometry, a: &[f32], c: usize, cols: &mut [f32]) {
    let (k, s, pad) = (g.kernel, g.stride, g.padding as isize);
    let (p, n) = (g.p(), c * g.p());
    for ci in 0..g.ca {
        for ky in 0..k {
            for kx in 0..k {
                let valid = valid_columns(g, kx);
                let row = &mut cols[((ci * k + ky) * k + kx) * n..][..n];
                for b in 0..c {
                    let plane = &a[b * g.a_len() + ci * g.ha * g.wa..][..g.ha * g.wa];
                    for oy in 0..g.hz {
                        let out = &mut row[b * p + oy * g.wz..][..g.wz];
                        let iy = (oy * s + ky) as isize - pad;
                        if iy < 0 || iy >= g.ha as isize || valid.is_empty() {
                            out.fill(0.0);
                            continue;
                        }
                        let line = &plane[iy as usize * g.wa..][..g.wa];
                        out[..valid.start].fill(0.0);
                        out[valid.end..].fill(0.0);
                        // First input column of the valid range.
                        let ix0 = (valid.start * s + kx) as isize - pad;
                        let dst = &mut out[valid.clone()];
                        if s == 1 {
                            dst.copy_from_slice(&line[ix0 as usize..][..dst.len()]);
                        } else {
                            for (i, o) in dst.iter_mut().enumerate() {
                                *o = line[ix0 as usize + i * s];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// col2im: scatter-add `cols [K, c*P]` into `c` zeroed images of A. The
/// entries of `cols` that fall outside the images may be overwritten.
fn col2im(g: &ConvGeometry, cols: &mut [f32], c: usize, a: &mut [f32]) {
    if is_same_size(g) {
        col2im_same(g, cols, c, a)
    } else {
        col2im_general(g, cols, c, a)
    }
}

/// [`col2im`] row by output row, for any geometry.
fn col2im_general(g: &ConvGeometry, cols: &[f32], c: usize, a: &mut [f32]) {
    let (k, s, pad) = (g.kernel, g.stride, g.padding as isize);
    let (p, n) = (g.p(), c * g.p());
    for ci in 0..g.ca {
        for ky in 0..k {
            for kx in 0..k {
                let valid = valid_columns(g, kx);
                if valid.is_empty() {
                    continue;
                }
                let ix0 = (valid.start * s + kx) as isize - pad;
                let row = &cols[((ci * k + ky) * k + kx) * n..][..n];
                for b in 0..c {
                    let plane = &mut a[b * g.a_len() + ci * g.ha * g.wa..][..g.ha * g.wa];
                    for oy in 0..g.hz {
                        let iy = (oy * s + ky) as isize - pad;
                        if iy < 0 || iy >= g.ha as isize {
                            continue;
                        }
                        let src = &row[b * p + oy * g.wz..][valid.clone()];
                        let line = &mut plane[iy as usize * g.wa..][..g.wa];
                        if s == 1 {
                            let dst = &mut line[ix0 as usize..][..src.len()];
                            dst.iter_mut().zip(src).for_each(|(d, v)| *d += v);
                        } else {
                            for (i, v) in src.iter().enumerate() {
                                line[ix0 as usize + i * s] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A stride-1 convolution whose output has the input's size ("same"
/// padding, the 3x3 layers). Each im2col row is then the input plane
/// shifted by one offset, so it moves as one block instead of one short
/// image row at a time (4 to 32 floats here, where the per-copy overhead
/// dominated).
fn is_same_size(g: &ConvGeometry) -> bool {
    g.stride == 1 && g.hz == g.ha && g.wz == g.wa && 2 * g.padding + 1 == g.kernel
}

/// For kernel tap `(ky, kx)` of a same-size convolution: the plane offset
/// `d` (output pixel `i` reads input pixel `i + d`), the range `lo..hi` of
/// output pixels whose source lies in the plane, and the output columns
/// whose source column wraps into the neighbouring image row.
struct Shift {
    d: isize,
    lo: usize,
    hi: usize,
    rows: std::ops::Range<usize>,
    wrapped_columns: std::ops::Range<usize>,
}

fn shift(g: &ConvGeometry, ky: usize, kx: usize) -> Shift {
    let (h, w) = (g.ha as isize, g.wa as isize);
    let (dy, dx) = (
        ky as isize - g.padding as isize,
        kx as isize - g.padding as isize,
    );
    let d = dy * w + dx;
    let rows = (-dy).clamp(0, h) as usize..(h - dy).clamp(0, h) as usize;
    let lo = (rows.start * g.wa)
        .max((-d).max(0) as usize)
        .min(g.ha * g.wa);
    let hi = (rows.end * g.wa).min((h * w - d).max(0) as usize).max(lo);
    let wrapped_columns = if dx < 0 {
        0..(-dx).min(w) as usize
    } else {
        (w - dx).max(0) as usize..g.wa
    };
    Shift {
        d,
        lo,
        hi,
        rows,
        wrapped_columns,
    }
}

/// Zero `columns` of each of `rows` in a row-major plane of width `w`: one
/// or two elements per row here, stored directly (a `fill` per row became
/// a `memset` call each).
fn zero_columns(
    plane: &mut [f32],
    w: usize,
    rows: std::ops::Range<usize>,
    columns: std::ops::Range<usize>,
) {
    for oy in rows {
        for x in columns.clone() {
            plane[oy * w + x] = 0.0;
        }
    }
}

/// [`im2col`] for same-size convolutions: one block copy per plane and tap.
fn im2col_same(g: &ConvGeometry, a: &[f32], c: usize, cols: &mut [f32]) {
    let (k, p) = (g.kernel, g.p());
    let n = c * p;
    for ci in 0..g.ca {
        for ky in 0..k {
            for kx in 0..k {
                let s = shift(g, ky, kx);
                let row = &mut cols[((ci * k + ky) * k + kx) * n..][..n];
                for b in 0..c {
                    let plane = &a[b * g.a_len() + ci * p..][..p];
                    let out = &mut row[b * p..][..p];
                    out[..s.lo].fill(0.0);
                    out[s.hi..].fill(0.0);
                    if s.hi > s.lo {
                        let src = (s.lo as isize + s.d) as usize;
                        out[s.lo..s.hi].copy_from_slice(&plane[src..][..s.hi - s.lo]);
                    }
                    zero_columns(out, g.wz, s.rows.clone(), s.wrapped_columns.clone());
                }
            }
        }
    }
}

/// [`col2im`] for same-size convolutions: the entries of `cols` whose
/// source column wraps are zeroed, then each row is added as one block.
fn col2im_same(g: &ConvGeometry, cols: &mut [f32], c: usize, a: &mut [f32]) {
    let (k, p) = (g.kernel, g.p());
    let n = c * p;
    for ci in 0..g.ca {
        for ky in 0..k {
            for kx in 0..k {
                let s = shift(g, ky, kx);
                let row = &mut cols[((ci * k + ky) * k + kx) * n..][..n];
                for b in 0..c {
                    if s.hi == s.lo {
                        continue;
                    }
                    let src = &mut row[b * p..][..p];
                    zero_columns(src, g.wz, s.rows.clone(), s.wrapped_columns.clone());
                    let plane = &mut a[b * g.a_len() + ci * p..][..p];
                    let dst = (s.lo as isize + s.d) as usize;
                    plane[dst..][..s.hi - s.lo]
                        .iter_mut()
                        .zip(&src[s.lo..s.hi])
                        .for_each(|(d, v)| *d += v);
                }
            }
        }
    }
}

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
                matmul((cz, n, kk), z_chunk, false, w, (kk, 1), &cols, (n, 1), par);
            } else {
                // # Shapes: [Cz, c*P] -> [c, Cz, P]
                let mut y = scratch(cz * n);
                matmul((cz, n, kk), &mut y, false, w, (kk, 1), &cols, (n, 1), par);
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

/// Add `bias[c]` to every pixel of channel `c` of `[.., C, plane]` data
/// that starts at a channel-0 plane, then apply leaky ReLU with `slope`
/// (1 = none), in one pass.
pub fn bias_and_activation(x: &mut [f32], bias: Option<&[f32]>, plane: usize, slope: f32) {
    let leaky = move |v: f32| leaky_relu(v, slope);
    match (bias, slope == 1.0) {
        (None, true) => {}
        (None, false) => x.iter_mut().for_each(|e| *e = leaky(*e)),
        (Some(bias), true) => {
            for (values, &b) in x.chunks_mut(plane).zip(bias.iter().cycle()) {
                values.iter_mut().for_each(|e| *e += b);
            }
        }
        (Some(bias), false) => {
            for (values, &b) in x.chunks_mut(plane).zip(bias.iter().cycle()) {
                values.iter_mut().for_each(|e| *e = leaky(*e + b));
            }
        }
    }
}

/// [`bias_and_activation`] over a whole batch `[B, C, plane]`, one image
/// per parallel task.
pub fn bias_and_activation_par(
    x: &mut [f32],
    bias: Option<&[f32]>,
    channels: usize,
    plane: usize,
    slope: f32,
) {
    if bias.is_none() && slope == 1.0 || x.is_empty() {
        return;
    }
    x.par_chunks_mut(channels * plane)
        .for_each(|image| bias_and_activation(image, bias, plane, slope));
}

/// Elements per parallel task of the element-wise kernels.
pub(crate) const PAR_CHUNK: usize = 1 << 15;

/// Leaky ReLU of one value, without a branch: a data-dependent branch
/// mispredicts on about half of the values and keeps the loop scalar.
#[inline(always)]
pub fn leaky_relu(v: f32, slope: f32) -> f32 {
    v.max(0.0) + slope * v.min(0.0)
}

/// The gradient `g` after a leaky ReLU taken back through it, given the
/// sign of its input or output `y` (a select, not a branch). At `y = 0` the
/// slope is 1, as in burn's `leaky_relu` (so both backends train the same
/// function; zeros are common: a zero-bias filter on black background).
#[inline(always)]
pub fn leaky_relu_grad(g: f32, y: f32, slope: f32) -> f32 {
    g * if y < 0.0 { slope } else { 1.0 }
}

/// The gradient before a leaky ReLU with `slope` from the gradient after
/// it and its input or output `y` (the same sign, as `slope > 0`).
pub fn leaky_relu_backward(grad: &[f32], y: &[f32], slope: f32) -> Vec<f32> {
    assert_eq!(grad.len(), y.len());
    let mut out = Vec::with_capacity(grad.len());
    out.spare_capacity_mut()[..grad.len()]
        .par_chunks_mut(PAR_CHUNK)
        .zip(grad.par_chunks(PAR_CHUNK).zip(y.par_chunks(PAR_CHUNK)))
        .for_each(move |(o, (g, y))| {
            for ((o, &g), &y) in o.iter_mut().zip(g).zip(y) {
                o.write(leaky_relu_grad(g, y, slope));
            }
        });
    // SAFETY: the loop above wrote all `grad.len()` elements.
    unsafe { out.set_len(grad.len()) };
    out
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

    // Per-chunk work; returns this chunk's (dW, dbias) contributions.
    let chunk_work = |i: usize, da_chunk: Option<&mut [f32]>| -> (Vec<f32>, Vec<f32>) {
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
                    gathered[o * n + b * p..][..p]
                        .copy_from_slice(&dz_chunk[(b * cz + o) * p..][..p]);
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
            matmul_strided(
                (cz, kk, n),
                &mut dw,
                dw_t,
                false,
                gm,
                (n, 1),
                &cols,
                (1, n),
                par,
            );
            release(cols);
        }
        let mut db = Vec::new();
        if want_bias {
            db = (0..cz).map(|o| sum(&gm[o * n..][..n])).collect();
        }
        if let (Some(w), Some(da_chunk)) = (w, da_chunk) {
            // cols' [K, n] = W^T [K, Cz] . G [Cz, n]
            let mut cols = scratch(kk * n);
            matmul((kk, n, cz), &mut cols, false, w, (1, kk), gm, (n, 1), par);
            col2im(g, &mut cols, c, da_chunk);
            release(cols);
        }
        release(gathered);
        (dw, db)
    };

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
    let r = ConvGeometry::conv(
        g.batch,
        g.cz,
        g.hz,
        g.wz,
        g.ca,
        g.kernel,
        1,
        g.kernel - 1 - g.padding,
    );
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

/// Sum over batch and pixels per channel: the bias gradient of a
/// transposed convolution.
///
/// # Shapes
/// `[B, C, H, W] -> [C]`
pub fn channel_sums(x: &[f32], batch: usize, channels: usize) -> Vec<f32> {
    let mut sums = vec![0.0f32; channels];
    if batch == 0 || channels == 0 {
        return sums;
    }
    let plane = x.len() / (batch * channels);
    for (i, chunk) in x.chunks(plane.max(1)).enumerate() {
        sums[i % channels] += sum(chunk);
    }
    sums
}

/// Sum with eight running partial sums, which the compiler turns into one
/// vector register (a plain `iter().sum()` must add in order, one lane).
fn sum(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut blocks = x.chunks_exact(8);
    for block in &mut blocks {
        lanes.iter_mut().zip(block).for_each(|(s, v)| *s += v);
    }
    lanes.iter().sum::<f32>() + blocks.remainder().iter().sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct convolution, the reference.
    fn naive_forward(g: &ConvGeometry, a: &[f32], w: &[f32]) -> Vec<f32> {
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

    fn pseudo_random(len: usize, seed: u32) -> Vec<f32> {
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

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (*x as f64) * (*y as f64))
            .sum()
    }

    fn geometries() -> Vec<ConvGeometry> {
        vec![
            ConvGeometry::conv(3, 2, 7, 7, 4, 3, 1, 1),
            ConvGeometry::conv(5, 3, 6, 6, 2, 3, 2, 1),
            ConvGeometry::conv(4, 3, 4, 4, 5, 2, 2, 0),
            ConvGeometry::conv(2, 1, 5, 5, 3, 1, 1, 0),
            ConvGeometry::conv(70, 2, 2, 2, 3, 2, 2, 0),
            // Fewer output than input channels: dA through the flipped conv.
            ConvGeometry::conv(3, 6, 9, 9, 2, 5, 1, 2),
            ConvGeometry::conv(2, 5, 8, 7, 3, 3, 1, 0),
            ConvGeometry::conv(2, 2, 10, 10, 3, 3, 3, 1),
        ]
    }

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

    /// The block-copy im2col and col2im of same-size convolutions agree
    /// with the row-by-row ones, including images smaller than the kernel.
    #[test]
    fn same_size_im2col_and_col2im_match_the_general_ones() {
        for (i, g) in [
            ConvGeometry::conv(3, 2, 7, 5, 4, 3, 1, 1),
            ConvGeometry::conv(2, 3, 6, 6, 2, 5, 1, 2),
            ConvGeometry::conv(2, 2, 1, 1, 2, 3, 1, 1),
            ConvGeometry::conv(2, 1, 2, 3, 2, 5, 1, 2),
        ]
        .into_iter()
        .enumerate()
        {
            assert!(is_same_size(&g));
            let a = pseudo_random(g.batch * g.a_len(), i as u32);
            let n = g.k() * g.batch * g.p();
            let (mut fast, mut general) = (vec![f32::NAN; n], vec![f32::NAN; n]);
            im2col_same(&g, &a, g.batch, &mut fast);
            im2col_general(&g, &a, g.batch, &mut general);
            assert_eq!(fast, general, "{g:?}");
            let cols = pseudo_random(n, 50 + i as u32);
            let (mut fast, mut general) = (vec![0.0; a.len()], vec![0.0; a.len()]);
            col2im_same(&g, &mut cols.clone(), g.batch, &mut fast);
            col2im_general(&g, &cols, g.batch, &mut general);
            assert!(max_diff(&fast, &general) < 1e-6, "{g:?}");
        }
    }

    #[test]
    fn transposed_geometry_inverts_the_conv_geometry() {
        let g = ConvGeometry::conv(2, 3, 8, 8, 4, 2, 2, 0);
        let t = ConvGeometry::transposed(2, 4, g.hz, g.wz, 3, 2, 2, 0);
        assert_eq!(g, t);
    }
}
