//! Rotating an image by any angle: the three ways of resampling a turned
//! image that eqae offers, and the Gaussian resampling taps of the models'
//! smoothed input.
//!
//! Every function here uses the convention of [`super::action`]: output
//! pixel `p` (centred coordinates, `v` up) reads the source at
//! `M^s R(-theta) p`, that is the image is mirrored (when asked) and then
//! turned counter-clockwise by `theta` about its centre, onto a canvas
//! centred on the source, with zeros outside the source.
//!
//! - [`Resampling::Bilinear`]: four taps; blurs by up to half a pixel, and
//!   by how much depends on the angle.
//! - [`Resampling::Bicubic`]: Keys' cubic convolution (a = -0.5), 16 taps;
//!   far less blur, slight overshoot at edges.
//! - [`Resampling::Fourier`]: exact quarter turns, then the rest (at most
//!   45 degrees) as three shears, each a sub-pixel shift of every row or
//!   column by a phase ramp of its discrete Fourier transform (Unser,
//!   Thevenaz and Yaroslavsky 1995). Exact for band-limited images and
//!   norm-preserving: a turned image is as sharp as an upright one.

use std::f64::consts::PI;

use rustfft::num_complex::Complex;
use rustfft::FftPlanner;
use serde::{Deserialize, Serialize};

use super::action::{pixel_or_zero, rotate_bilinear, source_point};

/// How an image turned by an angle off the pixel grid is resampled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resampling {
    /// Bilinear interpolation (4 taps).
    #[default]
    Bilinear,
    /// Keys' cubic convolution, a = -0.5 (16 taps).
    Bicubic,
    /// Three shears by Fourier phase shifts: exact for band-limited images.
    Fourier,
}

impl Resampling {
    /// Every method, in the order of the docs.
    pub const ALL: [Resampling; 3] = [
        Resampling::Bilinear,
        Resampling::Bicubic,
        Resampling::Fourier,
    ];

    /// The name configs and the command line use.
    pub fn name(self) -> &'static str {
        match self {
            Resampling::Bilinear => "bilinear",
            Resampling::Bicubic => "bicubic",
            Resampling::Fourier => "fourier",
        }
    }

    /// The method of this name (as [`Resampling::name`] writes it).
    pub fn from_name(name: &str) -> Option<Resampling> {
        Resampling::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// `x` (`h x w`) mirrored (when `mirror`), turned counter-clockwise by
/// `degrees` about its centre and resampled by `method` onto an
/// `out_h x out_w` canvas centred on it.
pub fn rotate(
    x: &[f32],
    (h, w): (usize, usize),
    degrees: f64,
    mirror: bool,
    (out_h, out_w): (usize, usize),
    method: Resampling,
) -> Vec<f32> {
    match method {
        Resampling::Bilinear => rotate_bilinear(x, h, w, degrees, mirror, out_h, out_w),
        Resampling::Bicubic => rotate_bicubic(x, (h, w), degrees, mirror, (out_h, out_w)),
        Resampling::Fourier => rotate_fourier(x, (h, w), degrees, mirror, (out_h, out_w)),
    }
}

/// Keys' cubic convolution kernel with a = -0.5 at distance `t`.
fn keys(t: f64) -> f64 {
    let t = t.abs();
    if t < 1.0 {
        (1.5 * t - 2.5) * t * t + 1.0
    } else if t < 2.0 {
        ((-0.5 * t + 2.5) * t - 4.0) * t + 2.0
    } else {
        0.0
    }
}

/// Bicubic (Keys) resampling; see [`rotate`].
fn rotate_bicubic(
    x: &[f32],
    (h, w): (usize, usize),
    degrees: f64,
    mirror: bool,
    (out_h, out_w): (usize, usize),
) -> Vec<f32> {
    assert_eq!(x.len(), h * w, "image is not {h}x{w}");
    let (sin, cos) = degrees.to_radians().sin_cos();
    let centre = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
    let out_centre = ((out_h as f64 - 1.0) / 2.0, (out_w as f64 - 1.0) / 2.0);
    let at = pixel_or_zero(x, h, w);
    let mut out = Vec::with_capacity(out_h * out_w);
    for i in 0..out_h {
        for j in 0..out_w {
            let (i0, j0, di, dj) = source_point((i, j), out_centre, centre, (sin, cos), mirror);
            let mut val = 0.0;
            for a in -1..=2i64 {
                let wi = keys(di - a as f64);
                for b in -1..=2i64 {
                    val += wi * keys(dj - b as f64) * at(i0 + a, j0 + b);
                }
            }
            out.push(val as f32);
        }
    }
    out
}

/// Shift every line of an `n x n` complex canvas along its length by
/// `shift(line)` pixels (towards larger indices), by multiplying its
/// discrete Fourier transform with a phase ramp. Lines are rows when
/// `rows`, else columns.
fn shift_lines(
    canvas: &mut [Complex<f64>],
    n: usize,
    rows: bool,
    planner: &mut FftPlanner<f64>,
    shift: impl Fn(usize) -> f64,
) {
    let (fft, ifft) = (planner.plan_fft_forward(n), planner.plan_fft_inverse(n));
    let mut line = vec![Complex::new(0.0, 0.0); n];
    for l in 0..n {
        let s = shift(l);
        let index = |k: usize| if rows { l * n + k } else { k * n + l };
        for (k, v) in line.iter_mut().enumerate() {
            *v = canvas[index(k)];
        }
        fft.process(&mut line);
        for (k, v) in line.iter_mut().enumerate() {
            // signed frequency; the Nyquist term keeps only its real part
            // (the final real part below), as a real signal needs
            let f = if 2 * k <= n {
                k as f64
            } else {
                k as f64 - n as f64
            };
            *v *= Complex::from_polar(1.0 / n as f64, -2.0 * PI * f * s / n as f64);
        }
        ifft.process(&mut line);
        for (k, v) in line.iter().enumerate() {
            canvas[index(k)] = Complex::new(v.re, 0.0);
        }
    }
}

/// Three-shear Fourier rotation; see [`rotate`].
fn rotate_fourier(
    x: &[f32],
    (h, w): (usize, usize),
    degrees: f64,
    mirror: bool,
    (out_h, out_w): (usize, usize),
) -> Vec<f32> {
    assert_eq!(x.len(), h * w, "image is not {h}x{w}");
    // A square working canvas with room for the turned image and for the
    // shears' overhang (no wrap-around), centred on the source.
    let side = h.max(w).max(out_h).max(out_w);
    let mut n = (side * 3).div_ceil(2) + 2;
    if (n - h) % 2 != 0 {
        n += 1;
    }
    let c = (n as f64 - 1.0) / 2.0;
    let (top, left) = ((n - h) / 2, (n as f64 - w as f64) / 2.0);
    let left0 = left.floor() as usize;
    let mut canvas = vec![Complex::new(0.0, 0.0); n * n];
    for i in 0..h {
        for j in 0..w {
            let jj = if mirror { w - 1 - j } else { j };
            canvas[(top + i) * n + left0 + jj] = Complex::new(x[i * w + j] as f64, 0.0);
        }
    }
    let mut planner = FftPlanner::new();
    // sources whose width differs in parity from the canvas sit half a
    // pixel off the centre: move them there first
    if left != left0 as f64 {
        shift_lines(&mut canvas, n, true, &mut planner, |_| left - left0 as f64);
    }
    // exact quarter turns, then at most 45 degrees by shears
    let quarters = (degrees / 90.0).round();
    let rest = (degrees - 90.0 * quarters).to_radians();
    for _ in 0..(quarters as i64).rem_euclid(4) {
        // counter-clockwise: (i, j) <- (j, n-1-i)
        let turned: Vec<_> = (0..n * n)
            .map(|q| canvas[(q % n) * n + (n - 1 - q / n)])
            .collect();
        canvas = turned;
    }
    if rest != 0.0 {
        // R = Sx(a) Sy(b) Sx(a), a = -tan(rest/2), b = sin(rest); the image
        // under Sx(a) moves row v = c - i by a v to the right, under Sy(b)
        // column u = j - c by b u upwards (towards smaller i)
        let (a, b) = (-(rest / 2.0).tan(), rest.sin());
        shift_lines(&mut canvas, n, true, &mut planner, |i| a * (c - i as f64));
        shift_lines(&mut canvas, n, false, &mut planner, |j| -b * (j as f64 - c));
        shift_lines(&mut canvas, n, true, &mut planner, |i| a * (c - i as f64));
    }
    // crop the output canvas about the centre (half a pixel off when the
    // parities differ: move the content there first)
    let (oc_i, oc_j) = ((out_h as f64 - 1.0) / 2.0, (out_w as f64 - 1.0) / 2.0);
    let (ti, tj) = ((c - oc_i).floor(), (c - oc_j).floor());
    let (fi, fj) = (c - oc_i - ti, c - oc_j - tj);
    if fi != 0.0 {
        shift_lines(&mut canvas, n, false, &mut planner, |_| -fi);
    }
    if fj != 0.0 {
        shift_lines(&mut canvas, n, true, &mut planner, |_| -fj);
    }
    let (ti, tj) = (ti as usize, tj as usize);
    let mut out = Vec::with_capacity(out_h * out_w);
    for i in 0..out_h {
        for j in 0..out_w {
            out.push(canvas[(ti + i) * n + tj + j].re as f32);
        }
    }
    out
}

/// Sparse taps of the Gaussian resampling of a square `size x size` image
/// turned by `degrees` (after the mirror, when `mirror`): output pixel `q`
/// is `sum_t weights[k q + t] * x[sources[k q + t]]`, `k` the third value
/// returned. Each output pixel weighs every source pixel within `3 sigma`
/// of the point it reads by a Gaussian of width `sigma` pixels, divided by
/// the sum of those weights (so flat images stay flat). It is the image
/// smoothed and then sampled at the turned grid: for `sigma` of about a
/// pixel the smoothing hides the pixel lattice, so a turn by any angle
/// reads almost the same values as the smoothed turned image would.
/// The disc of taps is symmetric, so quarter turns and mirrors of the
/// input commute with it exactly. Unused taps have weight 0 (source 0).
pub fn gaussian_taps(
    size: usize,
    degrees: f64,
    mirror: bool,
    sigma: f64,
) -> (Vec<usize>, Vec<f32>, usize) {
    assert!(sigma > 0.0, "the smoothing width must be positive");
    let (sin, cos) = degrees.to_radians().sin_cos();
    let c = (size as f64 - 1.0) / 2.0;
    let radius = 3.0 * sigma;
    let reach = radius.ceil() as i64 + 1;
    let mut per_pixel = Vec::with_capacity(size * size);
    for i in 0..size {
        for j in 0..size {
            let (i0, j0, di, dj) = source_point((i, j), (c, c), (c, c), (sin, cos), mirror);
            let (si, sj) = (i0 as f64 + di, j0 as f64 + dj);
            let mut taps = Vec::new();
            let mut total = 0.0;
            for ti in i0 - reach..=i0 + reach {
                for tj in j0 - reach..=j0 + reach {
                    let d2 = (ti as f64 - si).powi(2) + (tj as f64 - sj).powi(2);
                    if d2 > radius * radius {
                        continue;
                    }
                    let w = (-d2 / (2.0 * sigma * sigma)).exp();
                    total += w;
                    let inside = ti >= 0 && tj >= 0 && ti < size as i64 && tj < size as i64;
                    if inside {
                        taps.push((ti as usize * size + tj as usize, w));
                    }
                }
            }
            per_pixel.push((taps, total));
        }
    }
    let k = per_pixel.iter().map(|(t, _)| t.len()).max().unwrap_or(0);
    let (mut sources, mut weights) = (Vec::with_capacity(k * size * size), Vec::new());
    for (taps, total) in per_pixel {
        for t in 0..k {
            let (s, w) = taps.get(t).copied().unwrap_or((0, 0.0));
            sources.push(s);
            weights.push((w / total) as f32);
        }
    }
    (sources, weights, k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::action::transform_square;
    use crate::group::GroupKind;

    /// A smooth blob: band-limited to well under the grid's Nyquist rate.
    fn blob(size: usize) -> Vec<f32> {
        let c = (size as f64 - 1.0) / 2.0;
        (0..size * size)
            .map(|k| {
                let (i, j) = ((k / size) as f64 - c, (k % size) as f64 - c);
                let (a, b) = (i - 0.2 * c, j + 0.1 * c);
                ((-(a * a + 2.0 * b * b) / 8.0).exp()
                    + 0.5 * (-(i * i + j * j - 3.0 * i) / 18.0).exp()) as f32
            })
            .collect()
    }

    /// `x` read through [`gaussian_taps`] (sigma 1) turned by `deg`.
    fn smoothed(x: &[f32], size: usize, deg: f64) -> Vec<f32> {
        let (src, w, k) = gaussian_taps(size, deg, false, 1.0);
        (0..size * size)
            .map(|q| (0..k).map(|t| w[k * q + t] * x[src[k * q + t]]).sum())
            .collect()
    }

    /// Largest absolute difference.
    fn largest_difference(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max)
    }

    fn relative(a: &[f32], b: &[f32]) -> f64 {
        let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
        let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
        (num / den).sqrt()
    }

    #[test]
    fn every_method_is_exact_at_quarter_turns_and_mirrors() {
        let g = GroupKind::D4.group();
        for size in [9, 12] {
            let x = blob(size);
            for t in 0..g.order() {
                let exact = transform_square(&x, size, &g, t);
                let e = g.element(t);
                for method in Resampling::ALL {
                    let y = rotate(
                        &x,
                        (size, size),
                        g.angle_degrees(t),
                        e.reflection,
                        (size, size),
                        method,
                    );
                    let worst = largest_difference(&exact, &y);
                    assert!(worst < 1e-5, "{method:?} {}: {worst}", g.element_name(t));
                }
            }
        }
    }

    #[test]
    fn fourier_turns_compose_and_undo_where_interpolation_blurs() {
        // twelve turns of 30 degrees are the identity; the Fourier turns
        // nearly undo themselves, bicubic less, bilinear least
        let size = 24;
        let x = blob(size);
        let mut errors = Vec::new();
        for method in Resampling::ALL {
            let mut y = x.clone();
            for _ in 0..12 {
                y = rotate(&y, (size, size), 30.0, false, (size, size), method);
            }
            errors.push(relative(&y, &x));
        }
        let [bilinear, bicubic, fourier] = errors[..] else {
            unreachable!()
        };
        assert!(fourier < 1e-3, "fourier: {fourier}");
        assert!(bicubic < bilinear / 2.0, "{bicubic} vs {bilinear}");
        assert!(fourier < bicubic / 10.0, "{fourier} vs {bicubic}");
    }

    #[test]
    fn fourier_turns_agree_with_the_turned_smooth_image() {
        // the blob evaluated on a turned grid, against each method
        let size = 24;
        let c = (size as f64 - 1.0) / 2.0;
        // the blob of `blob`, at any point (row i, column j)
        let f = |i: f64, j: f64| {
            let (i, j) = (i - c, j - c);
            let (a, b) = (i - 0.2 * c, j + 0.1 * c);
            ((-(a * a + 2.0 * b * b) / 8.0).exp() + 0.5 * (-(i * i + j * j - 3.0 * i) / 18.0).exp())
                as f32
        };
        let x: Vec<f32> = (0..size * size)
            .map(|k| f((k / size) as f64, (k % size) as f64))
            .collect();
        for deg in [17.0f64, 30.0, 73.0, -131.0] {
            let (sin, cos) = deg.to_radians().sin_cos();
            let truth: Vec<f32> = (0..size * size)
                .map(|k| {
                    let (u, v) = ((k % size) as f64 - c, c - (k / size) as f64);
                    let (qu, qv) = (u * cos + v * sin, v * cos - u * sin);
                    f(c - qv, c + qu)
                })
                .collect();
            let fourier = rotate(
                &x,
                (size, size),
                deg,
                false,
                (size, size),
                Resampling::Fourier,
            );
            let bilinear = rotate(
                &x,
                (size, size),
                deg,
                false,
                (size, size),
                Resampling::Bilinear,
            );
            let (ef, eb) = (relative(&fourier, &truth), relative(&bilinear, &truth));
            assert!(
                ef < 2e-3 && ef < eb / 5.0,
                "{deg}: fourier {ef}, bilinear {eb}"
            );
        }
    }

    #[test]
    fn fourier_places_sources_of_other_parity_on_the_centre() {
        // a smooth bump on a 9x9 source, onto 9x9 and onto 12x12 (half a
        // pixel off the grid), turned by 20 degrees, against the bump
        // evaluated at the output pixels' centred coordinates
        let bump = |u: f64, v: f64| (-((u - 0.5).powi(2) + (v + 0.3).powi(2)) / 3.0).exp() as f32;
        let on = |size: usize, deg: f64| {
            let c = (size as f64 - 1.0) / 2.0;
            let (sin, cos) = f64::to_radians(deg).sin_cos();
            (0..size * size)
                .map(|k| {
                    let (u, v) = ((k % size) as f64 - c, c - (k / size) as f64);
                    bump(u * cos + v * sin, v * cos - u * sin)
                })
                .collect::<Vec<f32>>()
        };
        let x = on(9, 0.0);
        for out in [9, 12] {
            let y = rotate(&x, (9, 9), 20.0, false, (out, out), Resampling::Fourier);
            let err = relative(&y, &on(out, 20.0));
            assert!(err < 1e-2, "onto {out}x{out}: {err}");
        }
    }

    #[test]
    fn gaussian_taps_commute_with_quarter_turns_and_mirrors() {
        let d4 = GroupKind::D4.group();
        let size = 10;
        let x = blob(size);
        let apply = |x: &[f32], deg: f64| smoothed(x, size, deg);
        for t in 0..d4.order() {
            let angle = if d4.element(t).reflection {
                30.0
            } else {
                -30.0
            };
            let a = apply(&transform_square(&x, size, &d4, t), -30.0);
            let b = transform_square(&apply(&x, angle), size, &d4, t);
            let worst = largest_difference(&a, &b);
            assert!(worst < 1e-6, "{}: {worst}", d4.element_name(t));
        }
    }

    #[test]
    fn gaussian_taps_keep_flat_images_flat_and_read_any_angle_alike() {
        let size = 16;
        let (src, w, k) = gaussian_taps(size, 23.0, true, 1.0);
        // inside (three sigma from the border) a constant stays constant
        for i in 4..12 {
            for j in 4..12 {
                let q = i * size + j;
                let s: f32 = (0..k).map(|t| w[k * q + t]).sum();
                assert!((s - 1.0).abs() < 1e-5);
                assert!((0..k).all(|t| w[k * q + t] == 0.0 || src[k * q + t] < size * size));
            }
        }
        // smoothing then turning by 30 degrees in one step equals
        // smoothing an image turned by Fourier, up to the lattice's trace
        let x = blob(size);
        let smooth = |x: &[f32], deg: f64| smoothed(x, size, deg);
        let direct = smooth(&x, 30.0);
        let turned = rotate(
            &x,
            (size, size),
            30.0,
            false,
            (size, size),
            Resampling::Fourier,
        );
        let via_fourier = smooth(&turned, 0.0);
        let err = relative(&direct, &via_fourier);
        assert!(err < 1e-2, "{err}");
    }
}
