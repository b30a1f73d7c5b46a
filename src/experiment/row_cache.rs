//! What a table reproduction has already evaluated, kept on disk per (row,
//! seed) so that an interrupted evaluation resumes where it stopped.
//!
//! A full table on this project's 2-core host takes longer to evaluate than
//! one session lasts (three seeds of nine rows, with the studies of seed 0),
//! so every finished row is written to `<out>/<stem>_rows/<run>_<head>.json`
//! (and, for seed 0, its test features to `.npy` beside it, for the
//! figures). A later `eqae eval --table` with the same model, config, head
//! and studies reads the row back instead of evaluating it again; anything
//! else that differs (new weights, another study) makes a new key and the
//! row is evaluated afresh. Delete the folder to evaluate everything again.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::evaluate::{Confusions, Studies, StudyResult};
use super::pose::PoseStudy;
use crate::config::Config;
use crate::eval::features::Head;
use crate::eval::probes::ProbeScores;
use crate::train::RunDir;

/// Bump when a probe, study or feature changes what it computes, so that
/// rows evaluated by an older build are not read back.
const VERSION: u32 = 1;

/// One evaluated (row, seed): what the report and the studies need.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CachedRow {
    /// What was evaluated ([`row_key`]); a row is reused only on a match.
    pub key: String,
    /// Number of features.
    pub features: usize,
    /// The probes' test scores.
    pub scores: ProbeScores,
    /// Seed 0's label-efficiency and rotation studies, when asked for.
    pub study: Option<StudyResult>,
    /// Seed 0's pose study of an attention head, when asked for.
    pub pose: Option<PoseStudy>,
    /// Seed 0's confusion matrices, when studies were asked for.
    pub confusions: Option<Confusions>,
}

/// The cache folder of one table reproduction.
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

    fn json(&self, config: &Config, head: Head) -> PathBuf {
        self.dir
            .join(format!("{}_{}.json", config.name, head.name()))
    }

    fn npy(&self, config: &Config, head: Head) -> PathBuf {
        self.dir
            .join(format!("{}_{}.test.npy", config.name, head.name()))
    }

    /// The row evaluated earlier under `key`, with its test features when
    /// `with_features` (None when either is missing, stale or unreadable:
    /// the row is then evaluated again).
    pub fn load(
        &self,
        config: &Config,
        head: Head,
        key: &str,
        with_features: bool,
    ) -> Option<(CachedRow, Option<Array2<f32>>)> {
        let text = std::fs::read_to_string(self.json(config, head)).ok()?;
        let row: CachedRow = serde_json::from_str(&text).ok()?;
        if row.key != key {
            return None;
        }
        let features = if with_features {
            let f: Array2<f32> = ndarray_npy::read_npy(self.npy(config, head)).ok()?;
            Some(f)
        } else {
            None
        };
        Some((row, features))
    }

    /// Keep an evaluated row (and seed 0's test features), each file
    /// written atomically, features first: a row file never names
    /// features that are not there.
    pub fn store(
        &self,
        config: &Config,
        head: Head,
        row: &CachedRow,
        f_test: Option<&Array2<f32>>,
    ) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        if let Some(f) = f_test {
            let path = self.npy(config, head);
            let tmp = path.with_extension("npy.tmp");
            ndarray_npy::write_npy(&tmp, f)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        RunDir::write_atomic(
            &self.json(config, head),
            serde_json::to_string_pretty(row)?.as_bytes(),
        )
    }
}

/// What one row's evaluation depends on: the trained weights (their bytes),
/// the run's config, the head, the studies when they run (seed 0), and
/// [`VERSION`].
pub fn row_key(
    run: &RunDir,
    config: &Config,
    head: Head,
    studies: Option<&Studies>,
) -> Result<String> {
    let weights = std::fs::read(run.model())
        .with_context(|| format!("cannot read {}", run.model().display()))?;
    let mut h = DefaultHasher::new();
    VERSION.hash(&mut h);
    weights.hash(&mut h);
    toml::to_string(config)?.hash(&mut h);
    head.name().hash(&mut h);
    format!("{studies:?}").hash(&mut h);
    Ok(format!("v{VERSION}-{:016x}", h.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_row_comes_back_only_under_its_key() {
        let dir = std::env::temp_dir().join(format!("eqae-row-cache-{}", std::process::id()));
        let cache = RowCache::new(&dir, "table1_quick");
        let config = Config {
            name: "d4_gram-s0".into(),
            ..Config::default()
        };
        let row = CachedRow {
            key: "k1".into(),
            features: 3,
            scores: ProbeScores {
                logistic: 0.5,
                mlp: 0.25,
                knn: 0.75,
                kmeans_accuracy: 0.125,
                nmi: 0.0625,
                seconds: Default::default(),
            },
            study: None,
            pose: None,
            confusions: None,
        };
        let f = Array2::from_shape_fn((4, 3), |(i, j)| (i * 3 + j) as f32);
        cache.store(&config, Head::Gram, &row, Some(&f)).unwrap();
        let (back, features) = cache.load(&config, Head::Gram, "k1", true).unwrap();
        assert_eq!(back.scores.knn, 0.75);
        assert_eq!(features.unwrap(), f);
        assert!(cache.load(&config, Head::Gram, "k2", false).is_none());
        assert!(cache.load(&config, Head::Average, "k1", false).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
