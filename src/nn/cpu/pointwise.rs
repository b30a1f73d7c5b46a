//! Element-wise kernels on raw buffers: bias plus leaky ReLU (fused into
//! the convolutions' output), leaky ReLU and its gradient, 2x2 average
//! pooling and its gradient, channel sums. Written for the compiler to
//! vectorise: no data-dependent branches, no zero-fill before a write.

use std::mem::MaybeUninit;

use rayon::prelude::*;

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

/// A vector of `len` floats written in parallel, chunk by chunk, without
/// the zero-fill a `vec![0.0; len]` would spend a pass on: output chunk `i`
/// (`out_chunk` values) is written by `write(i, out, input)` from input
/// chunk `i` (`in_chunk` values of `x`). The one place the kernels build a
/// vector from uninitialised memory.
///
/// # Safety
/// `write` must write every element of the output chunk it is given, and
/// `x` must have at least as many chunks as `len` has output chunks.
unsafe fn write_chunks(
    len: usize,
    out_chunk: usize,
    x: &[f32],
    in_chunk: usize,
    write: impl Fn(usize, &mut [MaybeUninit<f32>], &[f32]) + Sync,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    if len > 0 {
        assert!(x.len().div_ceil(in_chunk) >= len.div_ceil(out_chunk));
        out.spare_capacity_mut()[..len]
            .par_chunks_mut(out_chunk)
            .zip(x.par_chunks(in_chunk))
            .enumerate()
            .for_each(|(i, (o, x))| write(i, o, x));
    }
    // SAFETY: every output chunk was paired with an input chunk (asserted)
    // and written whole (the caller's promise).
    unsafe { out.set_len(len) };
    out
}

/// `f` applied to every element, in parallel.
pub fn par_map(x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    let write = |_, o: &mut [MaybeUninit<f32>], x: &[f32]| {
        o.iter_mut().zip(x).for_each(|(o, &x)| {
            o.write(f(x));
        })
    };
    // SAFETY: equal chunk sizes, one value written per input value.
    unsafe { write_chunks(x.len(), PAR_CHUNK, x, PAR_CHUNK, write) }
}

/// The gradient before a leaky ReLU with `slope` from the gradient after
/// it and its input or output `y` (the same sign, as `slope > 0`).
pub fn leaky_relu_backward(grad: &[f32], y: &[f32], slope: f32) -> Vec<f32> {
    assert_eq!(grad.len(), y.len());
    let write = move |i: usize, o: &mut [MaybeUninit<f32>], g: &[f32]| {
        let y = &y[i * PAR_CHUNK..][..g.len()];
        for ((o, &g), &y) in o.iter_mut().zip(g).zip(y) {
            o.write(leaky_relu_grad(g, y, slope));
        }
    };
    // SAFETY: equal chunk sizes, one value written per gradient value.
    unsafe { write_chunks(grad.len(), PAR_CHUNK, grad, PAR_CHUNK, write) }
}

/// 2x2 average pooling with stride 2 of `planes` planes of `h x w` (even).
///
/// # Shapes
/// `[planes, h, w] -> [planes, h/2, w/2]`
pub fn avg_pool2(x: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
    assert!(
        h.is_multiple_of(2) && w.is_multiple_of(2),
        "2x2 pooling needs even sizes"
    );
    assert_eq!(x.len(), planes * h * w);
    let (ho, wo) = (h / 2, w / 2);
    let write = |_, o: &mut [MaybeUninit<f32>], plane: &[f32]| {
        for (o, rows) in o.chunks_mut(wo).zip(plane.chunks(2 * w)) {
            let (r0, r1) = rows.split_at(w);
            for ((o, a), b) in o.iter_mut().zip(r0.chunks(2)).zip(r1.chunks(2)) {
                o.write(0.25 * (a[0] + a[1] + b[0] + b[1]));
            }
        }
    };
    // SAFETY: each output plane is `ho` rows of `wo` values, each written
    // from one pair of input rows.
    unsafe { write_chunks(planes * ho * wo, (ho * wo).max(1), x, (h * w).max(1), write) }
}

/// Gradient of [`avg_pool2`]: each input pixel gets a quarter of its
/// window's output gradient.
///
/// # Shapes
/// `[planes, ho, wo] -> [planes, 2 ho, 2 wo]`
pub fn avg_pool2_backward(grad: &[f32], planes: usize, ho: usize, wo: usize) -> Vec<f32> {
    assert_eq!(grad.len(), planes * ho * wo);
    let (h, w) = (2 * ho, 2 * wo);
    let write = |_, plane: &mut [MaybeUninit<f32>], g: &[f32]| {
        // both rows of a window pair get the same values
        for (rows, g) in plane.chunks_mut(2 * w).zip(g.chunks(wo)) {
            let (r0, r1) = rows.split_at_mut(w);
            for ((a, b), &g) in r0.chunks_mut(2).zip(r1.chunks_mut(2)).zip(g) {
                let v = 0.25 * g;
                a[0].write(v);
                a[1].write(v);
                b[0].write(v);
                b[1].write(v);
            }
        }
    };
    // SAFETY: each input plane is `ho` pairs of rows of `w` values, each
    // pair written whole from one row of the gradient.
    unsafe {
        write_chunks(
            planes * h * w,
            (h * w).max(1),
            grad,
            (ho * wo).max(1),
            write,
        )
    }
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
pub(super) fn sum(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut blocks = x.chunks_exact(8);
    for block in &mut blocks {
        lanes.iter_mut().zip(block).for_each(|(s, v)| *s += v);
    }
    lanes.iter().sum::<f32>() + blocks.remainder().iter().sum::<f32>()
}
