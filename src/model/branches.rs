//! From the grid group's network to `C_n` and `D_n`, `n = 4 m` (paper
//! section 2.2, for C12 and D12: m = 3): the same p4 network sees the image
//! rotated by `0, -a, ..., -(m-1) a` degrees, `a = 90/m` (and, for `D_n`,
//! the mirrored image rotated the same way), and the rows of the results
//! are interleaved so that row `k` belongs to rotation `a k`.
//!
//! Branch `b = m s + i` sees `R(-a i) M^s x`. Rows:
//! `V[(k, 0)] = V4_{(i,0)}[j]` with `k = m j + i`, and
//! `V[(k, 1)] = V4_{(i,1)}[j]` with `-k = m j + i (mod n)`.
//! Reflecting the input swaps the two mirror branches exactly, and a quarter
//! turn commutes with the bilinear rotations, so every multiple of 90
//! degrees and every reflection stays exact; the finer steps are
//! approximate through the interpolation.
//!
//! For C4 and D4 there is one branch and everything here is the identity.
//!
//! With input smoothing (`model.smoothing`, sigma > 0) every branch,
//! the unturned one and C4/D4's only one included, reads its input by
//! Gaussian resampling ([`gaussian_taps`]) instead: the image smoothed by a
//! Gaussian of width sigma, sampled on the branch's turned grid. Its disc
//! of taps is symmetric, so the exact elements stay exact; and since the
//! smoothing hides the pixel lattice, an image turned by any angle meets
//! the branches almost as its upright self does.
//! Symbols: B batch, nb branches, P = S*S pixels, N = |G|, L columns.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::group::action::bilinear_taps;
use crate::group::resample::gaussian_taps;
use crate::group::GroupKind;
use crate::nn::profile;

/// Rotated copies in, interleaved rows out, and the inverse for the decoder.
///
/// The rotations are sparse bilinear resamplings: every output pixel
/// gathers its four source pixels and weights them (index and weight
/// tables built once here), so memory and work grow with `P`, not `P^2`.
#[derive(Module, Debug)]
pub struct Branches {
    /// Number of branches nb (m, or 2 m for `D_n`, `n > 4`; 1 for D4).
    count: usize,
    /// Taps per output pixel K of the input transforms (4: bilinear).
    taps: usize,
    /// The branches' input transforms: source pixel `[nb*P*K]` (into P)
    /// and weight `[1, nb*P*K]` of each (branch, output pixel, tap).
    to_branches: Option<(Tensor<1, Int>, Tensor<2>)>,
    /// The inverse transforms, averaged: source `[nb*P*4]` (into nb*P,
    /// branch-major) and weight divided by nb `[1, nb*P*4]` of each
    /// (branch, output pixel, tap).
    from_branches: Option<(Tensor<1, Int>, Tensor<2>)>,
    /// Row gather `[N]`: V row r <- branch-major row (b*4 + j).
    rows: Tensor<1, Int>,
    /// Inverse gather `[N]`.
    rows_inv: Tensor<1, Int>,
}

/// Index and weight tensors of sparse taps.
fn taps_tensors(
    sources: Vec<i64>,
    weights: Vec<f32>,
    device: &Device,
) -> (Tensor<1, Int>, Tensor<2>) {
    let n = sources.len();
    (
        Tensor::from_data(TensorData::new(sources, [n]), device),
        Tensor::from_data(TensorData::new(weights, [1, n]), device),
    )
}

/// Row `r` of the stacked branch outputs that holds group element `g`
/// (index `s * n + k` for `R^k M^s`): branch `(s, i)` rotated the input by
/// `-90 i / m` degrees (after a mirror if `s`), and its grid group's row
/// `j` (a quarter turn each) completes the rotation: `k = j m + i`
/// (mirrored: `-k`).
fn branch_rows(kind: GroupKind, rotations: usize, mirrors: usize) -> Vec<i64> {
    let n = kind.group().order();
    if rotations * mirrors == 1 {
        return (0..n as i64).collect();
    }
    let turns = kind.rotations();
    let inner = kind.grid_group().order();
    let mut rows = vec![0i64; n];
    for s in 0..mirrors {
        for k in 0..turns {
            let kk = if s == 0 { k } else { (turns - k) % turns };
            let (j, i) = (kk / rotations, kk % rotations);
            rows[s * turns + k] = ((s * rotations + i) * inner + j) as i64;
        }
    }
    rows
}

impl Branches {
    /// Build the branch tables for `kind` on `size x size` images, with
    /// Gaussian input smoothing of width `smoothing` pixels (0: none).
    pub fn new(kind: GroupKind, size: usize, smoothing: f64, device: &Device) -> Self {
        // m rotations of 90/m degrees each; D4's mirrors are in its grid
        // group, the larger dihedral groups mirror the input in a branch
        let rotations = kind.rotations() / 4;
        let mirrors = if kind.dihedral() && kind != GroupKind::D4 {
            2
        } else {
            1
        };
        let count = rotations * mirrors;
        let n = kind.group().order();
        let rows = branch_rows(kind, rotations, mirrors);
        let mut rows_inv = vec![0i64; n];
        for (r, &src) in rows.iter().enumerate() {
            rows_inv[src as usize] = r as i64;
        }
        let p = size * size;
        let mut taps = 4;
        let (to_branches, from_branches) = if count == 1 && smoothing == 0.0 {
            (None, None)
        } else if count == 1 {
            let (src, w, k) = gaussian_taps(size, 0.0, false, smoothing);
            taps = k;
            let src = src.iter().map(|&q| q as i64).collect();
            (Some(taps_tensors(src, w, device)), None)
        } else {
            // every branch's table padded to the most taps any one needs
            let tables: Vec<_> = (0..mirrors)
                .flat_map(|s| (0..rotations).map(move |i| (s, i)))
                .map(|(s, i)| {
                    let deg = 90.0 / rotations as f64 * i as f64;
                    // input: mirror (if s), then rotate by -deg
                    if smoothing > 0.0 {
                        gaussian_taps(size, -deg, s == 1, smoothing)
                    } else {
                        let (src, w) = bilinear_taps(size, -deg, s == 1);
                        (src, w, 4)
                    }
                })
                .collect();
            taps = tables.iter().map(|t| t.2).max().unwrap_or(4);
            let (mut to_src, mut to_w) = (Vec::new(), Vec::new());
            let (mut from_src, mut from_w) = (Vec::new(), Vec::new());
            for s in 0..mirrors {
                for i in 0..rotations {
                    let b = s * rotations + i;
                    let deg = 90.0 / rotations as f64 * i as f64;
                    let (src, w, k) = &tables[b];
                    for q in 0..p {
                        for t in 0..taps {
                            let (source, weight) = if t < *k {
                                (src[q * k + t] as i64, w[q * k + t])
                            } else {
                                (0, 0.0)
                            };
                            to_src.push(source);
                            to_w.push(weight);
                        }
                    }
                    // inverse: M^s R(deg) = R(+/-deg) M^s, read from branch b's block
                    let (src, w) = bilinear_taps(size, if s == 1 { -deg } else { deg }, s == 1);
                    from_src.extend(src.iter().map(|&q| (b * p + q) as i64));
                    from_w.extend(w.iter().map(|w| w / count as f32));
                }
            }
            (
                Some(taps_tensors(to_src, to_w, device)),
                Some(taps_tensors(from_src, from_w, device)),
            )
        };
        Branches {
            count,
            taps,
            to_branches,
            from_branches,
            rows: Tensor::from_data(TensorData::new(rows, [n]), device),
            rows_inv: Tensor::from_data(TensorData::new(rows_inv, [n]), device),
        }
    }

    /// Number of branches.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The branches' input resampling as sparse taps: source pixel
    /// `[nb*P*K]` and weight `[1, nb*P*K]` of each (branch, output pixel,
    /// tap), and K; `None` for C4 and D4 without smoothing (one branch,
    /// the image itself).
    pub fn input_taps(&self) -> Option<(Tensor<1, Int>, Tensor<2>, usize)> {
        let (src, w) = self.to_branches.clone()?;
        Some((src, w, self.taps))
    }

    /// Row gather `[N]` of [`Branches::merge_rows`]: row `r` of V is row
    /// `rows[r]` of the branches' rows laid out branch-major.
    pub fn row_order(&self) -> Tensor<1, Int> {
        self.rows.clone()
    }

    /// # Shapes
    /// `[B, 1, S, S] -> [B*nb, 1, S, S]` (batch-major, branch minor)
    pub fn split_images(&self, x: Tensor<4>) -> Tensor<4> {
        let Some((src, w)) = &self.to_branches else {
            return x;
        };
        let (count, taps) = (self.count, self.taps);
        let run = move |x: Tensor<4>, src: Tensor<1, Int>, w: Tensor<2>| {
            let [b, _, s, _] = x.dims();
            let p = s * s;
            // # Shapes: [B, P] -gather-> [B, nb*P*K] -weigh, sum taps-> [B, nb*P, 1]
            x.reshape([b, p])
                .select(1, src)
                .mul(w)
                .reshape([b, count * p, taps])
                .sum_dim(2)
                .reshape([b * count, 1, s, s])
        };
        if profile::recording() {
            let (x0, src0, w0) = (profile::input(&x), src.clone(), w.clone());
            profile::keep(
                format!("branch rotation in {}", profile::shape(&x.dims())),
                move |b| profile::finish(run(x0.clone(), src0.clone(), w0.clone()), b),
            );
        }
        run(x, src.clone(), w.clone())
    }

    /// # Shapes
    /// `[B*nb, 1, S, S] -> [B, 1, S, S]` (undo each branch's transform, average)
    pub fn merge_images(&self, y: Tensor<4>) -> Tensor<4> {
        let Some((src, w)) = &self.from_branches else {
            return y;
        };
        let count = self.count;
        let run = move |y: Tensor<4>, src: Tensor<1, Int>, w: Tensor<2>| {
            let [bn, _, s, _] = y.dims();
            let (b, p) = (bn / count, s * s);
            // # Shapes: [B, nb*P] -gather-> [B, nb*P*4] -> [B, nb, P, 4]
            //   -sum taps, then branches-> [B, 1, P, 1] -> [B, 1, S, S]
            y.reshape([b, count * p])
                .select(1, src)
                .mul(w)
                .reshape([b, count, p, 4])
                .sum_dim(3)
                .sum_dim(1)
                .reshape([b, 1, s, s])
        };
        if profile::recording() {
            let (y0, src0, w0) = (profile::input(&y), src.clone(), w.clone());
            profile::keep(
                format!("branch rotation back {}", profile::shape(&y.dims())),
                move |b| profile::finish(run(y0.clone(), src0.clone(), w0.clone()), b),
            );
        }
        run(y, src.clone(), w.clone())
    }

    /// # Shapes
    /// `[B*nb, n, L] -> [B, N, L]` (interleave the branches' rows)
    pub fn merge_rows(&self, v: Tensor<3>) -> Tensor<3> {
        let [bn, inner, l] = v.dims();
        let b = bn / self.count;
        // # Shapes: [B*nb, n, L] -> [B, nb*n, L] -> [B, N, L]
        v.reshape([b, self.count * inner, l])
            .select(1, self.rows.clone())
    }

    /// # Shapes
    /// `[B, N, L] -> [B*nb, n, L]` (inverse of [`Branches::merge_rows`])
    pub fn split_rows(&self, v: Tensor<3>) -> Tensor<3> {
        let [b, n, l] = v.dims();
        let inner = n / self.count;
        v.select(1, self.rows_inv.clone())
            .reshape([b * self.count, inner, l])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::action::rotate_bilinear;
    use crate::nn::transform::to_vec;

    /// The dense `[P, P]` matrix of one bilinear transform (row = input
    /// pixel), the form the branches used before they became sparse.
    fn dense(size: usize, degrees: f64, mirror: bool) -> Vec<f32> {
        let p = size * size;
        let mut m = vec![0.0f32; p * p];
        let mut basis = vec![0.0f32; p];
        for i in 0..p {
            basis[i] = 1.0;
            let col = rotate_bilinear(&basis, size, size, degrees, mirror, size, size);
            basis[i] = 0.0;
            m[i * p..(i + 1) * p].copy_from_slice(&col);
        }
        m
    }

    fn ramp(n: usize, phase: f32) -> Vec<f32> {
        (0..n).map(|k| (k as f32 * 0.37 + phase).sin()).collect()
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-5, "sparse and dense differ by {worst}");
    }

    #[test]
    fn sparse_branches_equal_the_dense_matrices_in_value_and_gradient() {
        let device = Device::flex().autodiff();
        let (size, batch) = (7, 2);
        let p = size * size;
        let branches = Branches::new(GroupKind::D12, size, 0.0, &device);
        let nb = branches.count();
        // the dense forms: [P, nb*P] and [nb*P, P] / nb
        let mut to = vec![0.0f32; p * nb * p];
        let mut from = Vec::new();
        for s in 0..2 {
            for i in 0..3 {
                let (b, deg) = (s * 3 + i, 30.0 * i as f64);
                let fwd = dense(size, -deg, s == 1);
                for row in 0..p {
                    to[row * nb * p + b * p..row * nb * p + (b + 1) * p]
                        .copy_from_slice(&fwd[row * p..(row + 1) * p]);
                }
                let back = dense(size, if s == 1 { -deg } else { deg }, s == 1);
                from.extend(back.iter().map(|w| w / nb as f32));
            }
        }
        let to = Tensor::<2>::from_data(TensorData::new(to, [p, nb * p]), &device);
        let from = Tensor::<2>::from_data(TensorData::new(from, [nb * p, p]), &device);

        let x = ramp(batch * p, 0.0);
        let input = || {
            Tensor::<4>::from_data(TensorData::new(x.clone(), [batch, 1, size, size]), &device)
                .require_grad()
        };
        let r = Tensor::<4>::from_data(
            TensorData::new(ramp(batch * nb * p, 1.0), [batch * nb, 1, size, size]),
            &device,
        );
        let (xs, xd) = (input(), input());
        let ys = branches.split_images(xs.clone());
        let yd = xd
            .clone()
            .reshape([batch, p])
            .matmul(to)
            .reshape([batch * nb, 1, size, size]);
        close(&to_vec(&ys), &to_vec(&yd));
        let (gs, gd) = (
            (ys * r.clone()).sum().backward(),
            (yd * r.clone()).sum().backward(),
        );
        close(
            &to_vec(&xs.grad(&gs).unwrap()),
            &to_vec(&xd.grad(&gd).unwrap()),
        );

        let y = ramp(batch * nb * p, 2.0);
        let input = || {
            Tensor::<4>::from_data(
                TensorData::new(y.clone(), [batch * nb, 1, size, size]),
                &device,
            )
            .require_grad()
        };
        let r = Tensor::<4>::from_data(
            TensorData::new(ramp(batch * p, 3.0), [batch, 1, size, size]),
            &device,
        );
        let (ys, yd) = (input(), input());
        let ms = branches.merge_images(ys.clone());
        let md = yd
            .clone()
            .reshape([batch, nb * p])
            .matmul(from)
            .reshape([batch, 1, size, size]);
        close(&to_vec(&ms), &to_vec(&md));
        let (gs, gd) = ((ms * r.clone()).sum().backward(), (md * r).sum().backward());
        close(
            &to_vec(&ys.grad(&gs).unwrap()),
            &to_vec(&yd.grad(&gd).unwrap()),
        );
    }

    #[test]
    fn large_images_need_memory_linear_in_the_pixels() {
        // 256x256 D12 was a 103 GB dense table; the taps are 6 * 65536 * 4
        // indices and weights
        let branches = Branches::new(GroupKind::D12, 256, 0.0, &Device::flex());
        let (src, w) = branches.to_branches.as_ref().unwrap();
        assert_eq!(src.dims(), [6 * 256 * 256 * 4]);
        assert_eq!(w.dims(), [1, 6 * 256 * 256 * 4]);
    }
}
