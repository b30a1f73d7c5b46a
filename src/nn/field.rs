//! What a tensor is, for the symmetry group: a [`Field`] says how a group
//! element acts on it, and [`check_equivariance`] measures any map between
//! two fields against a set of elements. `eqae check` and the test suites
//! use this one check on the production layers.
//!
//! Symbols: B batch, C channels, N = |H| or |G|, S spatial size.

use burn::tensor::{Int, Tensor, TensorData};

use super::transform::to_vec;
use crate::group::{action, Group};

/// How a group element `t` acts on a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// Images `[B, C, S, S]`: the spatial action on every channel.
    Image,
    /// Feature maps over the grid group H, `[B, C * N, S, S]` with channel
    /// `c * N + h`: `(t . F)(g, y) = F(t^-1 g, t^-1 y)`.
    GroupMaps,
    /// Rows over the group, `[B, N, ...]`: `(lambda(t) V)[g] = V[t^-1 g]`
    /// (also the attention weights `[B, N]`).
    Rows,
    /// Unchanged by every element: invariant features.
    Invariant,
}

impl Field {
    /// Whether the action moves pixels (and is then exact only for the
    /// elements that map the pixel grid onto itself).
    pub fn is_spatial(self) -> bool {
        matches!(self, Field::Image | Field::GroupMaps)
    }

    /// `t . x`.
    ///
    /// # Panics
    /// If `x` does not have this field's shape (a programming error).
    pub fn act<const D: usize>(self, x: &Tensor<D>, group: &Group, t: usize) -> Tensor<D> {
        match self {
            Field::Invariant => x.clone(),
            Field::Rows => {
                let dims = x.dims();
                assert!(
                    D >= 2 && dims[1] == group.order(),
                    "rows over a group of {} elements, got shape {dims:?}",
                    group.order()
                );
                let perm = group.left_regular_perm(t);
                gather(x, 1, perm.into_iter().map(|p| p as i64).collect())
            }
            Field::Image => images(x, group, t),
            Field::GroupMaps => {
                let dims = x.dims();
                let n = group.order();
                assert!(
                    D == 4 && dims[1].is_multiple_of(n),
                    "feature maps over a group of {n} elements, got shape {dims:?}"
                );
                let perm = group.left_regular_perm(t);
                // channel gather: out channel c*N + g <- in channel c*N + t^-1 g
                let chan = (0..dims[1])
                    .map(|k| ((k / n) * n + perm[k % n]) as i64)
                    .collect();
                images(&gather(x, 1, chan), group, t)
            }
        }
    }
}

/// `x.select(axis, index)` with the index built on `x`'s device.
fn gather<const D: usize>(x: &Tensor<D>, axis: usize, index: Vec<i64>) -> Tensor<D> {
    let len = index.len();
    let idx = Tensor::<1, Int>::from_data(TensorData::new(index, [len]), &x.device());
    x.clone().select(axis, idx)
}

/// The spatial action on every `S x S` plane of `[B, C, S, S]`.
fn images<const D: usize>(x: &Tensor<D>, group: &Group, t: usize) -> Tensor<D> {
    let dims = x.dims();
    assert!(
        D == 4 && dims[2] == dims[3],
        "square images [B, C, S, S] expected, got shape {dims:?}"
    );
    let s = dims[3];
    let data = to_vec(x);
    let mut out = Vec::with_capacity(data.len());
    for plane in data.chunks(s * s) {
        out.extend(action::transform_square(plane, s, group, t));
    }
    Tensor::from_data(TensorData::new(out, dims), &x.device())
}

/// One measured element.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    /// The group element.
    pub element: usize,
    /// Relative error `||f(t.x) - t.f(x)|| / ||t.f(x)||` (inside the
    /// centred disk for images when the element is not exact).
    pub error: f64,
    /// Whether the map is exactly equivariant for this element: every
    /// element when neither side moves pixels, else the elements that map
    /// the pixel grid onto itself (multiples of 90 degrees, reflections).
    pub exact: bool,
}

/// `f(t . x)` and `t . f(x)` for each element `t`: the two sides of the
/// equivariance equation, for checks that compare them their own way.
pub fn both_sides<const A: usize, const B: usize>(
    f: impl Fn(Tensor<A>) -> Tensor<B>,
    x: &Tensor<A>,
    (input, output): (Field, Field),
    group: &Group,
    elements: &[usize],
) -> Vec<(usize, Tensor<B>, Tensor<B>)> {
    let y = f(x.clone());
    elements
        .iter()
        .map(|&t| (t, f(input.act(x, group, t)), output.act(&y, group, t)))
        .collect()
}

/// Measure the equivariance of `f` from the `input` field to the `output`
/// field on `x`, for each of `elements` of `group`.
pub fn check_equivariance<const A: usize, const B: usize>(
    f: impl Fn(Tensor<A>) -> Tensor<B>,
    x: &Tensor<A>,
    fields: (Field, Field),
    group: &Group,
    elements: &[usize],
) -> Vec<Measured> {
    let spatial = fields.0.is_spatial() || fields.1.is_spatial();
    both_sides(f, x, fields, group, elements)
        .into_iter()
        .map(|(element, lhs, rhs)| {
            let exact = !spatial || group.is_grid_exact(element);
            let error = if exact || !fields.1.is_spatial() {
                relative_error(&lhs, &rhs)
            } else {
                relative_error_in_disk(&lhs, &rhs)
            };
            Measured {
                element,
                error,
                exact,
            }
        })
        .collect()
}

/// Relative error `||a - b|| / ||b||` (Frobenius), computed in f64 on host.
pub fn relative_error<const D: usize>(a: &Tensor<D>, b: &Tensor<D>) -> f64 {
    let (a, b) = (to_vec(a), to_vec(b));
    assert_eq!(a.len(), b.len(), "shapes differ");
    let num: f64 = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

/// Relative error of `[B, C, S, S]` tensors inside the centred disk of
/// radius `S/2 - 1`: rotations by angles other than multiples of 90 degrees
/// move the corners off the canvas, so they are compared inside the disk
/// (as escnn does).
pub fn relative_error_in_disk<const D: usize>(a: &Tensor<D>, b: &Tensor<D>) -> f64 {
    let s = a.dims()[D - 1];
    let c = (s as f64 - 1.0) / 2.0;
    let r2 = (s as f64 / 2.0 - 1.0).powi(2);
    let (a, b) = (to_vec(a), to_vec(b));
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (k, (x, y)) in a.iter().zip(&b).enumerate() {
        let (i, j) = ((k / s) % s, k % s);
        if (i as f64 - c).powi(2) + (j as f64 - c).powi(2) <= r2 {
            num += (*x as f64 - *y as f64).powi(2);
            den += (*y as f64).powi(2);
        }
    }
    (num / den.max(1e-30)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::GroupKind;
    use burn::tensor::Device;

    /// Each field's action is a group action: `(ab) . x = a . (b . x)`.
    #[test]
    fn every_field_action_composes() {
        let device = Device::flex();
        let g = GroupKind::D4.group();
        let n = g.order();
        let pixels: Vec<f32> = (0..2 * 2 * n * 25).map(|i| (i * 7 % 13) as f32).collect();
        let maps = Tensor::<4>::from_data(TensorData::new(pixels, [2, 2 * n, 5, 5]), &device);
        let rows = Tensor::<3>::from_data(
            TensorData::new(
                (0..2 * n * 3).map(|i| i as f32).collect::<Vec<_>>(),
                [2, n, 3],
            ),
            &device,
        );
        for a in 0..n {
            for b in 0..n {
                let ab = g.compose(a, b);
                for field in [Field::Image, Field::GroupMaps] {
                    let lhs = field.act(&maps, &g, ab);
                    let rhs = field.act(&field.act(&maps, &g, b), &g, a);
                    assert_eq!(lhs.into_data(), rhs.into_data(), "{field:?}");
                }
                let lhs = Field::Rows.act(&rows, &g, ab);
                let rhs = Field::Rows.act(&Field::Rows.act(&rows, &g, b), &g, a);
                assert_eq!(lhs.into_data(), rhs.into_data());
            }
        }
    }
}
