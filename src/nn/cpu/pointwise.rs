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

/// A vector of `len` floats that `fill` writes in place, without the
/// zero-fill a `vec![0.0; len]` would spend a pass on. The one place the
/// kernels build a vector from uninitialised memory.
///
/// # Safety
/// `fill` must write every one of the `len` elements of the slice it gets.
unsafe fn written(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    fill(&mut out.spare_capacity_mut()[..len]);
    // SAFETY: the caller's `fill` wrote all `len` elements.
    unsafe { out.set_len(len) };
    out
}

/// `f` applied to every element, in parallel.
pub fn par_map(x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    let fill = |out: &mut [MaybeUninit<f32>]| {
        out.par_chunks_mut(PAR_CHUNK)
            .zip(x.par_chunks(PAR_CHUNK))
            .for_each(|(o, x)| {
                o.iter_mut().zip(x).for_each(|(o, &x)| {
                    o.write(f(x));
                })
            });
    };
    // SAFETY: the chunks of `out` and `x` pair up one to one and every
    // element of each output chunk is written.
    unsafe { written(x.len(), fill) }
}

/// The gradient before a leaky ReLU with `slope` from the gradient after
/// it and its input or output `y` (the same sign, as `slope > 0`).
pub fn leaky_relu_backward(grad: &[f32], y: &[f32], slope: f32) -> Vec<f32> {
    assert_eq!(grad.len(), y.len());
    let fill = |out: &mut [MaybeUninit<f32>]| {
        out.par_chunks_mut(PAR_CHUNK)
            .zip(grad.par_chunks(PAR_CHUNK).zip(y.par_chunks(PAR_CHUNK)))
            .for_each(move |(o, (g, y))| {
                for ((o, &g), &y) in o.iter_mut().zip(g).zip(y) {
                    o.write(leaky_relu_grad(g, y, slope));
                }
            });
    };
    // SAFETY: output, gradient and `y` chunks pair up one to one; every
    // output element is written.
    unsafe { written(grad.len(), fill) }
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
    let len = planes * ho * wo;
    if len == 0 {
        return Vec::new();
    }
    let fill = |out: &mut [MaybeUninit<f32>]| {
        out.par_chunks_mut(ho * wo)
            .zip(x.par_chunks(h * w))
            .for_each(|(o, plane)| {
                for (o, rows) in o.chunks_mut(wo).zip(plane.chunks(2 * w)) {
                    let (r0, r1) = rows.split_at(w);
                    for ((o, a), b) in o.iter_mut().zip(r0.chunks(2)).zip(r1.chunks(2)) {
                        o.write(0.25 * (a[0] + a[1] + b[0] + b[1]));
                    }
                }
            });
    };
    // SAFETY: one output plane per input plane, each written row by row:
    // `ho` rows of `wo` values.
    unsafe { written(len, fill) }
}

/// Gradient of [`avg_pool2`]: each input pixel gets a quarter of its
/// window's output gradient.
///
/// # Shapes
/// `[planes, ho, wo] -> [planes, 2 ho, 2 wo]`
pub fn avg_pool2_backward(grad: &[f32], planes: usize, ho: usize, wo: usize) -> Vec<f32> {
    assert_eq!(grad.len(), planes * ho * wo);
    let (h, w) = (2 * ho, 2 * wo);
    let len = planes * h * w;
    if len == 0 {
        return Vec::new();
    }
    let fill = |out: &mut [MaybeUninit<f32>]| {
        out.par_chunks_mut(h * w)
            .zip(grad.par_chunks(ho * wo))
            .for_each(|(plane, g)| {
                // Both rows of a window pair get the same values.
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
            });
    };
    // SAFETY: one input plane per gradient plane; each pair of rows is
    // written whole, two values per window in each.
    unsafe { written(len, fill) }
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
