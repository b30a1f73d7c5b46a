//! im2col and col2im: the rearrangements that turn a convolution into one
//! matrix product per chunk of images, and back. Same-size stride-1
//! convolutions (the 3x3 layers) move whole planes per kernel tap; 2x2
//! stride-2 windows (the collapse and the upsampling) split each input row
//! into its even and odd columns; every other geometry goes output row by
//! output row.

use super::geometry::ConvGeometry;

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
pub(super) fn im2col(g: &ConvGeometry, a: &[f32], c: usize, cols: &mut [f32]) {
    if is_same_size(g) {
        im2col_same(g, a, c, cols)
    } else if is_pairs(g) {
        im2col_pairs(g, a, c, cols)
    } else {
        im2col_general(g, a, c, cols)
    }
}

/// [`im2col`] row by output row, for any geometry.
pub(super) fn im2col_general(g: &ConvGeometry, a: &[f32], c: usize, cols: &mut [f32]) {
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
pub(super) fn col2im(g: &ConvGeometry, cols: &mut [f32], c: usize, a: &mut [f32]) {
    if is_same_size(g) {
        col2im_same(g, cols, c, a)
    } else if is_pairs(g) {
        col2im_pairs(g, cols, c, a)
    } else {
        col2im_general(g, cols, c, a)
    }
}

/// [`col2im`] row by output row, for any geometry.
pub(super) fn col2im_general(g: &ConvGeometry, cols: &[f32], c: usize, a: &mut [f32]) {
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

/// A 2x2 convolution with stride 2 and no padding on even sizes (the
/// collapse, and the decoder's upsampling as its transpose): the windows
/// tile the input, so each input row splits into two im2col rows, its
/// even and its odd columns, with no border and no overlap.
pub(super) fn is_pairs(g: &ConvGeometry) -> bool {
    g.kernel == 2 && g.stride == 2 && g.padding == 0 && g.ha == 2 * g.hz && g.wa == 2 * g.wz
}

/// [`im2col`] for [`is_pairs`]: each input row is read once and split
/// into the rows of taps `(ky, 0)` and `(ky, 1)` (a loop the compiler
/// vectorises; the strided gather of [`im2col_general`] it replaces went
/// one value at a time).
pub(super) fn im2col_pairs(g: &ConvGeometry, a: &[f32], c: usize, cols: &mut [f32]) {
    let (p, n, wz) = (g.p(), c * g.p(), g.wz);
    for ci in 0..g.ca {
        for ky in 0..2 {
            let (even, odd) = cols[(ci * 4 + ky * 2) * n..][..2 * n].split_at_mut(n);
            for b in 0..c {
                let plane = &a[b * g.a_len() + ci * g.ha * g.wa..][..g.ha * g.wa];
                for oy in 0..g.hz {
                    let line = &plane[(2 * oy + ky) * g.wa..][..g.wa];
                    let at = b * p + oy * wz;
                    let (even, odd) = (&mut even[at..][..wz], &mut odd[at..][..wz]);
                    for ((e, o), pair) in even
                        .iter_mut()
                        .zip(odd.iter_mut())
                        .zip(line.chunks_exact(2))
                    {
                        *e = pair[0];
                        *o = pair[1];
                    }
                }
            }
        }
    }
}

/// [`col2im`] for [`is_pairs`]: the rows of taps `(ky, 0)` and `(ky, 1)`
/// interleaved back into input row `2 oy + ky`, added to it.
pub(super) fn col2im_pairs(g: &ConvGeometry, cols: &[f32], c: usize, a: &mut [f32]) {
    let (p, n, wz) = (g.p(), c * g.p(), g.wz);
    for ci in 0..g.ca {
        for ky in 0..2 {
            let (even, odd) = cols[(ci * 4 + ky * 2) * n..][..2 * n].split_at(n);
            for b in 0..c {
                let plane = &mut a[b * g.a_len() + ci * g.ha * g.wa..][..g.ha * g.wa];
                for oy in 0..g.hz {
                    let line = &mut plane[(2 * oy + ky) * g.wa..][..g.wa];
                    let at = b * p + oy * wz;
                    let (even, odd) = (&even[at..][..wz], &odd[at..][..wz]);
                    for ((pair, e), o) in line.chunks_exact_mut(2).zip(even).zip(odd) {
                        pair[0] += e;
                        pair[1] += o;
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
pub(super) fn is_same_size(g: &ConvGeometry) -> bool {
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
pub(super) fn im2col_same(g: &ConvGeometry, a: &[f32], c: usize, cols: &mut [f32]) {
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
pub(super) fn col2im_same(g: &ConvGeometry, cols: &mut [f32], c: usize, a: &mut [f32]) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::cpu::test_util::{max_diff, pseudo_random};
    use crate::nn::cpu::Window;

    /// The block-copy im2col and col2im of same-size convolutions agree
    /// with the row-by-row ones, including images smaller than the kernel.
    #[test]
    fn same_size_im2col_and_col2im_match_the_general_ones() {
        for (i, g) in [
            ConvGeometry::conv([3, 2, 7, 5], 4, Window::new(3, 1, 1)),
            ConvGeometry::conv([2, 3, 6, 6], 2, Window::new(5, 1, 2)),
            ConvGeometry::conv([2, 2, 1, 1], 2, Window::new(3, 1, 1)),
            ConvGeometry::conv([2, 1, 2, 3], 2, Window::new(5, 1, 2)),
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

    /// The even/odd split of 2x2 stride-2 windows equals the row-by-row
    /// im2col and col2im, with several images and channels, and maps one
    /// window wide.
    #[test]
    fn pair_im2col_and_col2im_match_the_general_ones() {
        for (i, g) in [
            ConvGeometry::conv([3, 2, 8, 6], 4, Window::new(2, 2, 0)),
            ConvGeometry::conv([2, 3, 2, 2], 2, Window::new(2, 2, 0)),
            ConvGeometry::conv([1, 1, 4, 34], 1, Window::new(2, 2, 0)),
        ]
        .into_iter()
        .enumerate()
        {
            assert!(is_pairs(&g) && !is_same_size(&g));
            let a = pseudo_random(g.batch * g.a_len(), 10 + i as u32);
            let n = g.k() * g.batch * g.p();
            let (mut fast, mut general) = (vec![f32::NAN; n], vec![f32::NAN; n]);
            im2col_pairs(&g, &a, g.batch, &mut fast);
            im2col_general(&g, &a, g.batch, &mut general);
            assert_eq!(fast, general, "{g:?}");
            let cols = pseudo_random(n, 60 + i as u32);
            let start = pseudo_random(a.len(), 70 + i as u32);
            let (mut fast, mut general) = (start.clone(), start);
            col2im_pairs(&g, &cols, g.batch, &mut fast);
            col2im_general(&g, &cols, g.batch, &mut general);
            assert_eq!(fast, general, "{g:?}");
        }
    }
}
