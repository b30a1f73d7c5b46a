//! Augmentation: every image rotated by a uniformly random angle (about the
//! centre, onto a canvas large enough that the content is not cut, resampled
//! as [`Resampling`] says) and mirrored with probability 1/2. Each image's draw comes from its
//! own seeded generator, so the result is the same on every run, machine
//! and thread count.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::group::resample::{rotate, Resampling};

/// The transform drawn for one image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Draw {
    /// Counter-clockwise angle in degrees, in [0, 360).
    pub degrees: f64,
    /// Mirror before rotating.
    pub mirror: bool,
}

/// The draw for image `index` under `seed`.
pub fn draw(seed: u64, index: usize) -> Draw {
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    Draw {
        degrees: rng.gen_range(0.0..360.0),
        mirror: rng.gen_bool(0.5),
    }
}

/// The draw for image `index` when `augment` is set, else the identity
/// (the image only centred on the canvas).
pub fn draw_or_upright(augment: bool, seed: u64, index: usize) -> Draw {
    if augment {
        draw(seed, index)
    } else {
        Draw {
            degrees: 0.0,
            mirror: false,
        }
    }
}

/// Place image `i` of `images` (each `src x src`) on `canvas x canvas`
/// under the transform `draw_for(i)`.
pub fn place(
    images: &[f32],
    (src, canvas): (usize, usize),
    resampling: Resampling,
    draw_for: impl Fn(usize) -> Draw + Sync,
) -> Vec<f32> {
    let per = src * src;
    assert_eq!(
        images.len() % per,
        0,
        "image buffer is not a multiple of {src}x{src}"
    );
    images
        .par_chunks(per)
        .enumerate()
        .flat_map_iter(|(i, img)| {
            let d = draw_for(i);
            rotate(
                img,
                (src, src),
                d.degrees,
                d.mirror,
                (canvas, canvas),
                resampling,
            )
        })
        .collect()
}
