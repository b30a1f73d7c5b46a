//! What a table reproduction has already evaluated, kept on disk per (row,
//! seed) so that an interrupted evaluation resumes where it stopped.
//!
//! A full table (three seeds of nine rows, with the studies of seed 0)
//! takes hours to evaluate on a 2-core machine, so every finished row is written to `<out>/<stem>_rows/<run>_<head>.json`
//! (and, for seed 0, its test features to `.npy` beside it, for the
//! figures). A later `eqae eval --table` with the same model, config, head
//! and studies reads the row back instead of evaluating it again; anything
//! else that differs (new weights, another study) makes a new key and the
//! row is evaluated afresh. Delete the folder to evaluate everything again.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ndarray::Array2;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::eval::features::Head;

/// Bump when a probe, study or feature changes what it computes, so that
/// rows evaluated by an older build are not read back.
const VERSION: u32 = 3;

/// A kept value and the key it was computed under.
#[derive(Serialize, Deserialize)]
struct Keyed<T> {
    key: String,
    value: T,
}

/// A folder of evaluated rows, one `<name>.json` each (and optionally its
/// test features, `<name>.test.npy`).
pub struct RowCache {
    dir: PathBuf,
}

impl RowCache {
    /// The cache of `<out>/<stem>_rows/`.
    pub fn new(out: &Path, stem: &str) -> Self {
        Self {
            dir: out.join(format!("{stem}_rows")),
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn json(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    fn npy(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.test.npy"))
    }

    /// The row `name` evaluated earlier under `key` (None when it is
    /// missing, stale or unreadable: the row is then evaluated again).
    pub fn load<T: DeserializeOwned>(&self, name: &str, key: &str) -> Option<T> {
        let text = std::fs::read_to_string(self.json(name)).ok()?;
        let kept: Keyed<T> = serde_json::from_str(&text).ok()?;
        (kept.key == key).then_some(kept.value)
    }

    /// The test features kept with row `name`.
    pub fn load_features(&self, name: &str) -> Option<Array2<f32>> {
        ndarray_npy::read_npy(self.npy(name)).ok()
    }

    /// Keep an evaluated row (and its test features), each file written
    /// atomically, the features first: a row is never read back without
    /// the features it was stored with.
    pub fn store<T: Serialize>(
        &self,
        name: &str,
        key: &str,
        value: &T,
        f_test: Option<&Array2<f32>>,
    ) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        if let Some(f) = f_test {
            let path = self.npy(name);
            crate::atomic::with_temp(&path, "", |tmp| {
                ndarray_npy::write_npy(tmp, f)
                    .with_context(|| format!("cannot write {}", path.display()))
            })?;
        }
        let kept = Keyed {
            key: key.to_string(),
            value,
        };
        crate::atomic::write(
            &self.json(name),
            serde_json::to_string_pretty(&kept)?.as_bytes(),
        )
    }
}

/// A key for `value` that is the same in every build and on every
/// machine: the SHA-256 of its JSON form (serde writes a struct's fields
/// in declaration order), in hex.
pub fn stable_key<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    let json = serde_json::to_vec(value)?;
    Ok(hex(&Sha256::digest(&json)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What one row's evaluation depends on: the trained weights (their bytes),
/// the config the features are read with, the head, what else the caller
/// evaluates (the [`Extras`](super::pipeline::Extras) of a table row, say),
/// and [`VERSION`].
pub fn row_key<E: Serialize>(
    weights: &Path,
    config: &Config,
    head: Head,
    extras: &E,
) -> Result<String> {
    let bytes =
        std::fs::read(weights).with_context(|| format!("cannot read {}", weights.display()))?;
    #[derive(Serialize)]
    struct RowInputs<'a, E> {
        version: u32,
        weights_sha256: String,
        config: &'a Config,
        head: Head,
        extras: &'a E,
    }
    let key = stable_key(&RowInputs {
        version: VERSION,
        weights_sha256: hex(&Sha256::digest(&bytes)),
        config,
        head,
        extras,
    })?;
    Ok(format!("v{VERSION}-{}", &key[..32]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::probes::ProbeScores;
    use crate::experiment::pipeline::HeadResult;

    #[test]
    fn a_stored_row_comes_back_only_under_its_key() {
        let dir = std::env::temp_dir().join(format!("eqae-row-cache-{}", std::process::id()));
        let cache = RowCache::new(&dir, "table1_quick");
        let row = HeadResult {
            features: 3,
            scores: ProbeScores {
                logistic: 0.5,
                mlp: 0.25,
                knn: 0.75,
                kmeans_accuracy: 0.125,
                nmi: 0.0625,
                cluster_accuracy: 0.5,
                cluster_nmi: 0.25,
                seconds: Default::default(),
            },
            study: None,
            pose: None,
            confusions: None,
        };
        let f = Array2::from_shape_fn((4, 3), |(i, j)| (i * 3 + j) as f32);
        cache
            .store("d4_gram-s0_gram", "k1", &row, Some(&f))
            .unwrap();
        let back: HeadResult = cache.load("d4_gram-s0_gram", "k1").unwrap();
        assert_eq!(back.scores.knn, 0.75);
        assert_eq!(cache.load_features("d4_gram-s0_gram").unwrap(), f);
        assert!(cache.load::<HeadResult>("d4_gram-s0_gram", "k2").is_none());
        assert!(cache
            .load::<HeadResult>("d4_gram-s0_average", "k1")
            .is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The key of a typed value is its JSON's SHA-256, pinned here so that
    /// a change of build, compiler or machine cannot orphan stored rows.
    #[test]
    fn keys_are_stable_hashes_of_typed_values() {
        let studies = crate::experiment::pipeline::Studies {
            labels: vec![100, 0],
            draws: 3,
            rotation_step: Some(15.0),
            rotation_images: 2000,
            rotation_resampling: None,
            pose: false,
        };
        assert_eq!(
            stable_key(&studies).unwrap(),
            "463377317ad6117bfc87566a46b13523d3bd3ec4b40a6449425b1a958d6b8941"
        );
        let other = crate::experiment::pipeline::Studies {
            draws: 5,
            ..studies.clone()
        };
        assert_ne!(stable_key(&other).unwrap(), stable_key(&studies).unwrap());
        let turned = crate::experiment::pipeline::Studies {
            rotation_resampling: Some(crate::group::resample::Resampling::Fourier),
            ..studies.clone()
        };
        assert_ne!(stable_key(&turned).unwrap(), stable_key(&studies).unwrap());
    }
}
