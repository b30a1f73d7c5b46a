//! The filter-bank gather: a group layer's full filter bank from its base
//! filters and index table ([`crate::nn::filter_bank`]), and its backward,
//! a scatter-add.

use rayon::prelude::*;

/// `out[co, r, ci, m] = w[co, ci, index[r * M + m]]` for `r < n`,
/// `M = len(index) / n`.
///
/// # Shapes
/// `w [Co, Ci, L]`, `index [n * M]` -> `[Co, n, Ci, M]`
pub fn expand(w: &[f32], co: usize, ci: usize, l: usize, index: &[usize], n: usize) -> Vec<f32> {
    let m = index.len() / n;
    let mut out = vec![0.0f32; co * n * ci * m];
    if !out.is_empty() {
        out.par_chunks_mut(n * ci * m)
            .zip(w.par_chunks(ci * l))
            .for_each(|(out, src)| {
                for (r, rows) in index.chunks(m).enumerate() {
                    for c in 0..ci {
                        let base = &src[c * l..][..l];
                        let dst = &mut out[(r * ci + c) * m..][..m];
                        dst.iter_mut().zip(rows).for_each(|(d, &i)| *d = base[i]);
                    }
                }
            });
    }
    out
}

/// Gradient of [`expand`]: each base weight sums the gradients of its copies.
///
/// # Shapes
/// `grad [Co, n, Ci, M]` -> `[Co, Ci, base_len]`
pub fn expand_backward(
    grad: &[f32],
    [co, n, ci, m]: [usize; 4],
    index: &[usize],
    base_len: usize,
) -> Vec<f32> {
    let mut dw = vec![0.0f32; co * ci * base_len];
    if !dw.is_empty() {
        dw.par_chunks_mut(ci * base_len)
            .zip(grad.par_chunks(n * ci * m))
            .for_each(|(dw, g)| {
                for (r, rows) in index.chunks(m).enumerate() {
                    for c in 0..ci {
                        let base = &mut dw[c * base_len..][..base_len];
                        let src = &g[(r * ci + c) * m..][..m];
                        rows.iter().zip(src).for_each(|(&i, v)| base[i] += v);
                    }
                }
            });
    }
    dw
}
