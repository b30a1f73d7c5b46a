//! Index tables that expand a base filter into a group filter bank
//! (GrouPy's `make_c4_p4_indices`, for any group acting exactly on the grid).
//! Plain Rust: the layers only consume these tables.
//!
//! Symbols: `N` = |H| (group acting on the grid), `Nin` = 1 for a lifting
//! layer and `N` for a group-to-group layer, `k` = kernel size.
//!
//! The expanded filter for output element `r` and input element `h` is the
//! base filter slice `r^-1 h`, spatially transformed by `r`:
//! `psi_r(h, y) = psi(r^-1 h, r^-1 y)` (Cohen & Welling 2016).

use crate::group::{action::exact_index_map, Group};

/// Gather table of length `N * Nin * k * k`, ordered `(r, h, p)`: entry
/// `(r, h, p)` is the index into the flattened base filter `(Nin, k, k)`
/// whose value lands at pixel `p` of the filter for output `r`, input `h`.
pub fn filter_bank_indices(group: &Group, lifting: bool, k: usize) -> Vec<i64> {
    let n = group.order();
    let n_in = if lifting { 1 } else { n };
    let kk = k * k;
    let mut idx = Vec::with_capacity(n * n_in * kk);
    for r in 0..n {
        // (r . psi)[p] = psi[map[p]]
        let map = exact_index_map(k, group, r);
        let r_inv = group.inverse(r);
        for h in 0..n_in {
            let slice = if lifting { 0 } else { group.compose(r_inv, h) };
            for &m in &map {
                idx.push((slice * kk + m) as i64);
            }
        }
    }
    idx
}

/// Gather table of length `N * N`, ordered `(h, g)`: the base-weight slice
/// `h^-1 g` of a group-linear layer, `out[g] = sum_h W[h^-1 g] V[h]`.
pub fn group_linear_indices(group: &Group) -> Vec<i64> {
    let n = group.order();
    let mut idx = Vec::with_capacity(n * n);
    for h in 0..n {
        let h_inv = group.inverse(h);
        for g in 0..n {
            idx.push(group.compose(h_inv, g) as i64);
        }
    }
    idx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::GroupKind;

    #[test]
    fn identity_block_is_the_base_filter() {
        let g = GroupKind::D4.group();
        let idx = filter_bank_indices(&g, false, 3);
        // r = e: slice h, untransformed
        let expect: Vec<i64> = (0..8 * 9).collect();
        assert_eq!(&idx[..8 * 9], &expect[..]);
    }

    #[test]
    fn every_output_uses_every_weight_once() {
        for kind in [GroupKind::C4, GroupKind::D4] {
            let g = kind.group();
            for lifting in [true, false] {
                let idx = filter_bank_indices(&g, lifting, 3);
                let n_in = if lifting { 1 } else { g.order() };
                for block in idx.chunks(n_in * 9) {
                    let mut b = block.to_vec();
                    b.sort_unstable();
                    assert_eq!(b, (0..(n_in * 9) as i64).collect::<Vec<_>>());
                }
            }
        }
    }
}
