//! From the grid group's network to C12 and D12 (paper section 2.2):
//! the same p4 network sees the image rotated by 0, -30 and -60 degrees
//! (and, for D12, the mirrored image rotated the same way), and the rows of
//! the results are interleaved so that row `k` belongs to rotation `30 k`.
//!
//! Branch `b = 3 s + i` sees `R(-30 i) M^s x`. Rows:
//! `V[(k, 0)] = V4_{(i,0)}[j]` with `k = 3j + i`, and
//! `V[(k, 1)] = V4_{(i,1)}[j]` with `-k = 3j + i (mod 12)`.
//! Reflecting the input swaps the two mirror branches exactly, and a quarter
//! turn commutes with the bilinear rotations, so every multiple of 90
//! degrees and every reflection stays exact; 30-degree steps are
//! approximate through the interpolation.
//!
//! For C4 and D4 there is one branch and everything here is the identity.
//! Symbols: B batch, nb branches, P = S*S pixels, N = |G|, L columns.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::group::GroupKind;
use crate::nn::transform::bilinear_matrix;

/// Rotated copies in, interleaved rows out, and the inverse for the decoder.
#[derive(Module, Debug)]
pub struct Branches {
    /// Number of branches nb (1, 3 or 6).
    count: usize,
    /// `[P, nb*P]`: every branch's input transform side by side.
    to_branches: Option<Tensor<2>>,
    /// `[nb*P, P]`: every branch's inverse transform stacked, divided by nb.
    from_branches: Option<Tensor<2>>,
    /// Row gather `[N]`: V row r <- branch-major row (b*4 + j).
    rows: Tensor<1, Int>,
    /// Inverse gather `[N]`.
    rows_inv: Tensor<1, Int>,
}

impl Branches {
    /// Build the branch tables for `kind` on `size x size` images.
    pub fn new(kind: GroupKind, size: usize, device: &Device) -> Self {
        let (rotations, mirrors) = match kind {
            GroupKind::C4 | GroupKind::D4 => (1, 1),
            GroupKind::C12 => (3, 1),
            GroupKind::D12 => (3, 2),
        };
        let count = rotations * mirrors;
        let n = kind.group().order();
        let inner = kind.grid_group().order();
        let mut rows = vec![0i64; n];
        if count == 1 {
            rows = (0..n as i64).collect();
        } else {
            for s in 0..mirrors {
                for k in 0..12 {
                    let kk = if s == 0 { k } else { (12 - k) % 12 };
                    let (j, i) = (kk / 3, kk % 3);
                    rows[s * 12 + k] = ((s * 3 + i) * inner + j) as i64;
                }
            }
        }
        let mut rows_inv = vec![0i64; n];
        for (r, &src) in rows.iter().enumerate() {
            rows_inv[src as usize] = r as i64;
        }
        let p = size * size;
        let (to_branches, from_branches) = if count == 1 {
            (None, None)
        } else {
            let mut to = vec![0.0f32; p * count * p];
            let mut from = Vec::with_capacity(count * p * p);
            for s in 0..mirrors {
                for i in 0..rotations {
                    let b = s * rotations + i;
                    let deg = 30.0 * i as f64;
                    // input: mirror (if s), then rotate by -30 i
                    let fwd = bilinear_matrix(size, -deg, s == 1);
                    for row in 0..p {
                        to[row * count * p + b * p..row * count * p + (b + 1) * p]
                            .copy_from_slice(&fwd[row * p..(row + 1) * p]);
                    }
                    // inverse: M^s R(30 i) = R(+/-30 i) M^s
                    let back = bilinear_matrix(size, if s == 1 { -deg } else { deg }, s == 1);
                    from.extend(back.iter().map(|w| w / count as f32));
                }
            }
            (
                Some(Tensor::from_data(
                    TensorData::new(to, [p, count * p]),
                    device,
                )),
                Some(Tensor::from_data(
                    TensorData::new(from, [count * p, p]),
                    device,
                )),
            )
        };
        Branches {
            count,
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

    /// # Shapes
    /// `[B, 1, S, S] -> [B*nb, 1, S, S]` (batch-major, branch minor)
    pub fn split_images(&self, x: Tensor<4>) -> Tensor<4> {
        match &self.to_branches {
            None => x,
            Some(m) => {
                let [b, _, s, _] = x.dims();
                // # Shapes: [B, P] x [P, nb*P] -> [B, nb*P] -> [B*nb, 1, S, S]
                x.reshape([b, s * s])
                    .matmul(m.clone())
                    .reshape([b * self.count, 1, s, s])
            }
        }
    }

    /// # Shapes
    /// `[B*nb, 1, S, S] -> [B, 1, S, S]` (undo each branch's transform, average)
    pub fn merge_images(&self, y: Tensor<4>) -> Tensor<4> {
        match &self.from_branches {
            None => y,
            Some(m) => {
                let [bn, _, s, _] = y.dims();
                let b = bn / self.count;
                // # Shapes: [B, nb*P] x [nb*P, P] -> [B, P] -> [B, 1, S, S]
                y.reshape([b, self.count * s * s])
                    .matmul(m.clone())
                    .reshape([b, 1, s, s])
            }
        }
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
