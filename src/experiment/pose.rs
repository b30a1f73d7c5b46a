//! What equivariant attention does with the pose (`eqae eval --pose`).
//!
//! The attention weights are equivariant, `w(t.x)_g = w(x)_{t^-1 g}`, so
//! their argmax moves with the image: `argmax w(t.x) = t argmax w(x)`. If
//! the attention picks the same element `c_k` for every upright digit of
//! class k (a canonical pose per class), then on an augmented image
//! `x = t.x0` the argmax is `t c_k`, and `argmax w(x) c_k^-1` recovers the
//! transform `t` the augmentation applied. The augmented test set knows
//! every image's angle and reflection, so this is measured directly:
//! `t` is rounded to the nearest group element, the offset
//! `r = t^-1 argmax w` is taken per image, `c_k` is the most common offset
//! of class k, and the agreement is the share of images whose offset is
//! their class's `c_k`. With one-hot weights and a consistent canonical
//! pose the agreement is 1 up to images whose angle lies near the middle
//! between two group elements.

use anyhow::{bail, Result};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::data::augment::{draw, Draw};
use crate::data::Dataset;
use crate::group::{Element, Group, GroupKind};
use crate::model::Autoencoder;
use crate::progress;
use crate::train::batch_tensor;

/// The pose study of one attention model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PoseStudy {
    /// Config name of the run.
    pub config: String,
    /// The attention's group (written in capitals).
    #[serde(with = "super::report::spelled::group_upper")]
    pub group: GroupKind,
    /// Test images measured (mirrored ones are left out for cyclic groups).
    pub images: usize,
    /// Share of images whose argmax is their true transform times their
    /// class's canonical element.
    pub agreement: f64,
    /// The same per class.
    pub per_class: Vec<f64>,
    /// The canonical element `c_k` of each class (most common offset).
    pub canonical: Vec<String>,
    /// Share of images whose recovered reflection is right.
    pub mirror_agreement: f64,
    /// Share of images whose reflection is right and whose recovered
    /// rotation is at most one group step from the truth.
    pub within_one_step: f64,
    /// Mean entropy of the weights in nats (0: one-hot; `ln |G|`: uniform).
    pub mean_entropy: f64,
    /// `ln |G|`, the entropy of uniform weights.
    pub uniform_entropy: f64,
    /// Mean of the largest weight.
    pub mean_max_weight: f64,
    /// `counts[true][recovered]`: images per nearest true element and
    /// recovered element (`argmax w c_k^-1`), in group index order.
    pub counts: Vec<Vec<usize>>,
    /// Element names, in group index order.
    pub elements: Vec<String>,
}

/// The group element nearest to "mirror (if `mirror`), then rotate by
/// `degrees` counter-clockwise", or None when the group has no reflection
/// and the draw mirrors.
pub fn nearest_element(group: &Group, degrees: f64, mirror: bool) -> Option<usize> {
    if mirror && !group.dihedral {
        return None;
    }
    let step = 360.0 / group.n as f64;
    let k = (degrees.rem_euclid(360.0) / step).round() as usize % group.n;
    Some(group.index(Element {
        rotation: k,
        reflection: mirror,
    }))
}

/// Most common value in `0..n` of `values` (the smallest on ties).
fn mode(values: impl Iterator<Item = usize>, n: usize) -> usize {
    let mut counts = vec![0usize; n];
    for v in values {
        counts[v] += 1;
    }
    (0..n).max_by_key(|&i| (counts[i], n - i)).unwrap_or(0)
}

/// Circular distance of two rotation powers modulo `n`.
fn rotation_distance(a: usize, b: usize, n: usize) -> usize {
    let d = (a + n - b) % n;
    d.min(n - d)
}

/// The transforms of an augmented split: image `i` was transformed by
/// `draw(augment_seed, i)`.
pub fn augment_draws(augment_seed: u64, images: usize) -> Vec<Draw> {
    (0..images).map(|i| draw(augment_seed, i)).collect()
}

/// One image's attention weights over the group: the element of the
/// largest weight, that weight, and the weights' entropy.
fn weight_stats(row: &[f32]) -> (usize, f32, f64) {
    let (argmax, top) = row
        .iter()
        .copied()
        .enumerate()
        .fold((0, f32::MIN), |a, (g, v)| if v > a.1 { (g, v) } else { a });
    let entropy = -row
        .iter()
        .filter(|&&p| p > 0.0)
        .map(|&p| f64::from(p) * f64::from(p).ln())
        .sum::<f64>();
    (argmax, top, entropy)
}

/// The attention's argmax per test image: `(class, true element, argmax
/// element)` for each image whose transform is a group element, with the
/// sums of the weights' entropies and largest weights over all images.
type Measured = (Vec<(usize, usize, usize)>, f64, f64);

fn attention_argmax(
    m: &crate::model::EquivariantAutoencoder,
    test: &Dataset,
    draws: &[Draw],
    device: &Device,
    quiet: bool,
) -> Result<Measured> {
    let group = m.group().group();
    let n = group.order();
    let device = device.clone().without_autodiff();
    let bar = progress::bar(test.len() as u64, quiet, "attention pose");
    // (class, true element, argmax element) per measured image
    let mut measured: Vec<(usize, usize, usize)> = Vec::new();
    let (mut entropy, mut max_weight) = (0.0, 0.0);
    let all: Vec<usize> = (0..test.len()).collect();
    for chunk in all.chunks(256) {
        let x = batch_tensor(test, chunk, &device)?;
        let weights = m.encode(x).weights.expect("attention model");
        let w: Vec<f32> = weights
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .map_err(|e| anyhow::anyhow!("attention weights: {e:?}"))?;
        for (row, &i) in w.chunks(n).zip(chunk) {
            let (argmax, top, h) = weight_stats(row);
            entropy += h;
            max_weight += f64::from(top);
            let d = draws[i];
            if let Some(t) = nearest_element(&group, d.degrees, d.mirror) {
                measured.push((test.labels[i], t, argmax));
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok((measured, entropy, max_weight))
}

/// Measure the attention of `model` on `test`, whose image `i` was made
/// from an upright one by `draws[i]`.
pub fn pose_study(
    model: &Autoencoder,
    config: &Config,
    test: &Dataset,
    draws: &[Draw],
    device: &Device,
    quiet: bool,
) -> Result<PoseStudy> {
    anyhow::ensure!(
        draws.len() == test.len(),
        "{} transforms for {} test images",
        draws.len(),
        test.len()
    );
    let Autoencoder::Equivariant(m) = model.for_inference() else {
        bail!("{}: the pose study needs an attention model", config.name);
    };
    if m.attention().is_none() {
        bail!("{}: the pose study needs an attention model", config.name);
    }
    let group = m.group().group();
    let n = group.order();
    let (measured, entropy, max_weight) = attention_argmax(&m, test, draws, device, quiet)?;
    if measured.is_empty() {
        bail!("{}: no test image to measure the pose on", config.name);
    }
    let classes = test.class_names.len();
    let offset = |&(_, t, g): &(usize, usize, usize)| group.compose(group.inverse(t), g);
    let canonical: Vec<usize> = (0..classes)
        .map(|k| mode(measured.iter().filter(|s| s.0 == k).map(offset), n))
        .collect();
    let mut counts = vec![vec![0usize; n]; n];
    let (mut agree, mut mirror_ok, mut near) = (0usize, 0usize, 0usize);
    let mut per_class = vec![(0usize, 0usize); classes];
    for s in &measured {
        let (k, t, g) = *s;
        let recovered = group.compose(g, group.inverse(canonical[k]));
        counts[t][recovered] += 1;
        let hit = offset(s) == canonical[k];
        agree += usize::from(hit);
        per_class[k].0 += usize::from(hit);
        per_class[k].1 += 1;
        let (et, er) = (group.element(t), group.element(recovered));
        if et.reflection == er.reflection {
            mirror_ok += 1;
            near += usize::from(rotation_distance(et.rotation, er.rotation, group.n) <= 1);
        }
    }
    let total = measured.len() as f64;
    Ok(PoseStudy {
        config: config.name.clone(),
        group: config.model.group,
        images: measured.len(),
        agreement: agree as f64 / total,
        per_class: per_class
            .iter()
            .map(|&(h, c)| if c > 0 { h as f64 / c as f64 } else { f64::NAN })
            .collect(),
        canonical: canonical.iter().map(|&c| group.element_name(c)).collect(),
        mirror_agreement: mirror_ok as f64 / total,
        within_one_step: near as f64 / total,
        mean_entropy: entropy / test.len() as f64,
        uniform_entropy: (n as f64).ln(),
        mean_max_weight: max_weight / test.len() as f64,
        counts,
        elements: (0..n).map(|g| group.element_name(g)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_element_rounds_to_the_grid() {
        let d4 = Group::dihedral(4);
        assert_eq!(nearest_element(&d4, 0.0, false), Some(d4.identity()));
        assert_eq!(nearest_element(&d4, 44.0, false), Some(d4.identity()));
        assert_eq!(nearest_element(&d4, 46.0, false), Some(d4.rotation(1)));
        assert_eq!(nearest_element(&d4, 359.0, false), Some(d4.identity()));
        let m = nearest_element(&d4, 180.0, true).unwrap();
        assert_eq!(d4.element(m).rotation, 2);
        assert!(d4.element(m).reflection);
        assert_eq!(nearest_element(&Group::cyclic(4), 10.0, true), None);
    }

    #[test]
    fn rotation_distance_wraps() {
        assert_eq!(rotation_distance(0, 11, 12), 1);
        assert_eq!(rotation_distance(3, 9, 12), 6);
        assert_eq!(rotation_distance(2, 2, 4), 0);
    }
}
