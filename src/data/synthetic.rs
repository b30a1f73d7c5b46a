//! Generated shapes: class `c` is `c + 1` Gaussian blobs evenly spaced on a
//! ring, at a random angle, radius and blob width. The class is invariant
//! to rotations and reflections, so invariant features should separate it.
//! Used by tests and as a data set that needs no download.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Dataset;

/// Number of classes of [`shapes`].
pub const CLASSES: usize = 4;

/// `n` images of `size x size`, classes cycling 0..CLASSES.
pub fn shapes(n: usize, size: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let c = (size as f32 - 1.0) / 2.0;
    let mut images = Vec::with_capacity(n * size * size);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = i % CLASSES;
        let blobs = class + 1;
        let phase: f32 = rng.gen_range(0.0..std::f32::consts::TAU);
        let ring = rng.gen_range(0.18..0.24) * size as f32;
        let width = rng.gen_range(1.5..2.2f32);
        let centres: Vec<(f32, f32)> = (0..blobs)
            .map(|b| {
                let a = phase + b as f32 * std::f32::consts::TAU / blobs as f32;
                let r = if blobs == 1 { 0.0 } else { ring };
                (r * a.cos(), r * a.sin())
            })
            .collect();
        for y in 0..size {
            for x in 0..size {
                let (u, v) = (x as f32 - c, c - y as f32);
                let val: f32 = centres
                    .iter()
                    .map(|(cu, cv)| {
                        (-((u - cu).powi(2) + (v - cv).powi(2)) / (2.0 * width * width)).exp()
                    })
                    .sum();
                images.push(val.min(1.0));
            }
        }
        labels.push(class);
    }
    Dataset {
        pixels: images.into(),
        size,
        labels,
        class_names: (1..=CLASSES).map(|b| format!("{b}-blob")).collect(),
        file_names: None,
    }
}
