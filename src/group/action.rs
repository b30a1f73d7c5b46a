//! How group elements act on square images and filters.
//!
//! An image is a row-major `size x size` array. Pixel `(i, j)` sits at the
//! centred coordinate `u = j - (size-1)/2` (rightwards), `v = (size-1)/2 - i`
//! (upwards). An element `t` acts by `(t . x)(p) = x(t^-1 p)`: the image is
//! rotated counter-clockwise by `t`'s angle, after mirroring `u -> -u` when
//! `t` holds the reflection. Multiples of 90 degrees (and the mirror) are
//! exact pixel permutations; other angles use bilinear interpolation with
//! zeros outside the image.

use super::Group;

/// Index map of an exact (grid) element: `(t . x)[p] = x[map[p]]`.
///
/// Works with doubled integer coordinates, so odd and even sizes are both
/// exact (even sizes rotate about the centre between four pixels).
///
/// # Panics
/// If `t` is not a multiple of 90 degrees.
pub fn exact_index_map(size: usize, group: &Group, t: usize) -> Vec<usize> {
    assert!(
        group.is_grid_exact(t),
        "element {} is not exact on the grid",
        group.element_name(t)
    );
    let e = group.element(t);
    let quarter_turns = (e.rotation * 4 / group.n) % 4;
    let n1 = size as i64 - 1;
    let mut map = Vec::with_capacity(size * size);
    for i in 0..size as i64 {
        for j in 0..size as i64 {
            // doubled centred coordinates of the output pixel p
            let (mut u, mut v) = (2 * j - n1, n1 - 2 * i);
            // q = t^-1 p = M^s R^-k p: rotate clockwise k quarter turns...
            for _ in 0..quarter_turns {
                (u, v) = (v, -u);
            }
            // ...then mirror.
            if e.reflection {
                u = -u;
            }
            let (si, sj) = ((n1 - v) / 2, (u + n1) / 2);
            map.push((si * size as i64 + sj) as usize);
        }
    }
    map
}

/// `t . x` for a square image: exact for grid elements, bilinear otherwise.
pub fn transform_square(x: &[f32], size: usize, group: &Group, t: usize) -> Vec<f32> {
    assert_eq!(x.len(), size * size, "image is not {size}x{size}");
    if group.is_grid_exact(t) {
        exact_index_map(size, group, t)
            .into_iter()
            .map(|k| x[k])
            .collect()
    } else {
        let e = group.element(t);
        rotate_bilinear(
            x,
            size,
            size,
            group.angle_degrees(t),
            e.reflection,
            size,
            size,
        )
    }
}

/// Mirror then rotate counter-clockwise by `degrees`, about the centre,
/// into an `out_h x out_w` canvas (centred on the source), with bilinear
/// interpolation and zeros outside the source.
///
/// Coordinates are computed in f64 and the same way for every pixel, so the
/// result commutes with exact 90-degree rotations and flips up to float
/// rounding.
pub fn rotate_bilinear(
    x: &[f32],
    h: usize,
    w: usize,
    degrees: f64,
    mirror: bool,
    out_h: usize,
    out_w: usize,
) -> Vec<f32> {
    assert_eq!(x.len(), h * w, "image is not {h}x{w}");
    let (sin, cos) = degrees.to_radians().sin_cos();
    let (ci, cj) = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
    let (oi, oj) = ((out_h as f64 - 1.0) / 2.0, (out_w as f64 - 1.0) / 2.0);
    let at = pixel_or_zero(x, h, w);
    let mut out = Vec::with_capacity(out_h * out_w);
    for i in 0..out_h {
        for j in 0..out_w {
            let (i0, j0, di, dj) = source_point((i, j), (oi, oj), (ci, cj), (sin, cos), mirror);
            let val = (1.0 - di) * ((1.0 - dj) * at(i0, j0) + dj * at(i0, j0 + 1))
                + di * ((1.0 - dj) * at(i0 + 1, j0) + dj * at(i0 + 1, j0 + 1));
            out.push(val as f32);
        }
    }
    out
}

/// Pixel `(i, j)` of the `h x w` image `x`, zero outside it.
pub(crate) fn pixel_or_zero(x: &[f32], h: usize, w: usize) -> impl Fn(i64, i64) -> f64 + '_ {
    move |i, j| {
        if i < 0 || j < 0 || i >= h as i64 || j >= w as i64 {
            0.0
        } else {
            x[i as usize * w + j as usize] as f64
        }
    }
}

/// Where output pixel `(i, j)` reads from under "mirror, then rotate by
/// the angle of `(sin, cos)`" about the centres `out_centre` (output) and
/// `in_centre` (input): the top-left source pixel `(i0, j0)` and the
/// fractions `(di, dj)` towards the next row and column.
pub(crate) fn source_point(
    (i, j): (usize, usize),
    (oi, oj): (f64, f64),
    (ci, cj): (f64, f64),
    (sin, cos): (f64, f64),
    mirror: bool,
) -> (i64, i64, f64, f64) {
    let (u, v) = (j as f64 - oj, oi - i as f64);
    // q = R(-theta) p, then mirror
    let mut qu = u * cos + v * sin;
    let qv = v * cos - u * sin;
    if mirror {
        qu = -qu;
    }
    let (si, sj) = (ci - qv, cj + qu);
    let (fi, fj) = (si.floor(), sj.floor());
    (fi as i64, fj as i64, si - fi, sj - fj)
}

/// The same resampling as [`rotate_bilinear`] on a square `S x S` image,
/// as taps: output pixel `q` is `sum_t weights[4q + t] * x[sources[4q + t]]`.
/// Taps that fall outside the image have weight 0 (and source 0). Four
/// taps per pixel instead of a dense `[S*S, S*S]` matrix: memory and work
/// grow with the pixels, not with their square.
pub fn bilinear_taps(size: usize, degrees: f64, mirror: bool) -> (Vec<usize>, Vec<f32>) {
    let (sin, cos) = degrees.to_radians().sin_cos();
    let c = (size as f64 - 1.0) / 2.0;
    let p = size * size;
    let (mut sources, mut weights) = (Vec::with_capacity(4 * p), Vec::with_capacity(4 * p));
    for i in 0..size {
        for j in 0..size {
            let (i0, j0, di, dj) = source_point((i, j), (c, c), (c, c), (sin, cos), mirror);
            for (ti, tj, w) in [
                (i0, j0, (1.0 - di) * (1.0 - dj)),
                (i0, j0 + 1, (1.0 - di) * dj),
                (i0 + 1, j0, di * (1.0 - dj)),
                (i0 + 1, j0 + 1, di * dj),
            ] {
                let inside = ti >= 0 && tj >= 0 && ti < size as i64 && tj < size as i64;
                if inside {
                    sources.push(ti as usize * size + tj as usize);
                    weights.push(w as f32);
                } else {
                    sources.push(0);
                    weights.push(0.0);
                }
            }
        }
    }
    (sources, weights)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::GroupKind;

    fn ramp(size: usize) -> Vec<f32> {
        (0..size * size).map(|k| (k as f32 * 0.37).sin()).collect()
    }

    #[test]
    fn bilinear_taps_resample_as_rotate_bilinear() {
        for size in [5, 8, 9] {
            let x = ramp(size);
            for (deg, mirror) in [(0.0, false), (30.0, false), (-60.0, true), (123.4, true)] {
                let dense = rotate_bilinear(&x, size, size, deg, mirror, size, size);
                let (src, w) = bilinear_taps(size, deg, mirror);
                for q in 0..size * size {
                    let v: f32 = (0..4).map(|t| w[4 * q + t] * x[src[4 * q + t]]).sum();
                    assert!((v - dense[q]).abs() < 1e-6, "{size} {deg} {mirror} {q}");
                }
            }
        }
    }

    #[test]
    fn grid_action_is_a_group_action() {
        // (a b) . x == a . (b . x), exactly, on odd and even sizes.
        for g in [GroupKind::C4.group(), GroupKind::D4.group()] {
            for size in [3, 4, 5, 8] {
                let x = ramp(size);
                for a in 0..g.order() {
                    for b in 0..g.order() {
                        let lhs = transform_square(&x, size, &g, g.compose(a, b));
                        let rhs = transform_square(&transform_square(&x, size, &g, b), size, &g, a);
                        assert_eq!(lhs, rhs, "size {size}, a={a}, b={b}");
                    }
                }
            }
        }
    }

    #[test]
    fn quarter_turn_moves_top_left_to_bottom_left() {
        // counter-clockwise: the top-left pixel goes to the bottom-left corner
        let g = GroupKind::C4.group();
        let x: Vec<f32> = (0..9).map(|k| k as f32).collect();
        let y = transform_square(&x, 3, &g, 1);
        assert_eq!(y, vec![2., 5., 8., 1., 4., 7., 0., 3., 6.]);
        let d = GroupKind::D4.group();
        let m = transform_square(&x, 3, &d, d.mirror().unwrap());
        assert_eq!(m, vec![2., 1., 0., 5., 4., 3., 8., 7., 6.]);
    }

    #[test]
    fn bilinear_agrees_with_exact_at_right_angles() {
        let g = GroupKind::D12.group();
        let x = ramp(6);
        for t in 0..g.order() {
            if !g.is_grid_exact(t) {
                continue;
            }
            let e = g.element(t);
            let exact = transform_square(&x, 6, &g, t);
            let bil = rotate_bilinear(&x, 6, 6, g.angle_degrees(t), e.reflection, 6, 6);
            for (a, b) in exact.iter().zip(&bil) {
                assert!((a - b).abs() < 1e-5, "{}: {a} vs {b}", g.element_name(t));
            }
        }
    }

    #[test]
    fn bilinear_rotation_commutes_with_quarter_turns_and_flips() {
        let d4 = GroupKind::D4.group();
        let x = ramp(10);
        for t in 0..d4.order() {
            let a = rotate_bilinear(
                &transform_square(&x, 10, &d4, t),
                10,
                10,
                -30.0,
                false,
                10,
                10,
            );
            // t . R(-30) . x == R(-30)' . t . x where conjugation flips the angle for mirrors
            let angle = if d4.element(t).reflection {
                30.0
            } else {
                -30.0
            };
            let b = transform_square(
                &rotate_bilinear(&x, 10, 10, angle, false, 10, 10),
                10,
                &d4,
                t,
            );
            let err = a
                .iter()
                .zip(&b)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0f32, f32::max);
            assert!(
                err < 1e-6,
                "element {}: max error {err}",
                d4.element_name(t)
            );
        }
    }
}
