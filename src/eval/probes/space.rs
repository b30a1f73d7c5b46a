//! The spaces the probes work in: features standardised with the training
//! statistics, and whitened along their principal axes.

use anyhow::Result;
use ndarray::{Array1, Array2, Axis};

/// Standardisation with a training set's per-feature mean and standard
/// deviation (constant features keep a scale of 1).
pub struct Standardizer {
    mean: Array1<f64>,
    std: Array1<f64>,
}

impl Standardizer {
    /// The statistics of `train` (at least one row).
    pub fn fit(train: &Array2<f32>) -> Self {
        let tr = train.mapv(f64::from);
        Standardizer {
            mean: tr.mean_axis(Axis(0)).expect("non-empty"),
            std: tr
                .std_axis(Axis(0), 0.0)
                .mapv(|s| if s > 1e-8 { s } else { 1.0 }),
        }
    }

    /// `x` standardised with the training statistics.
    pub fn apply(&self, x: &Array2<f32>) -> Array2<f64> {
        (&x.mapv(f64::from) - &self.mean) / &self.std
    }
}

/// Standardise with the training set's mean and standard deviation.
pub fn standardize(train: &Array2<f32>, test: &Array2<f32>) -> (Array2<f64>, Array2<f64>) {
    let s = Standardizer::fit(train);
    (s.apply(train), s.apply(test))
}

/// Decorrelation of standardised features for the logistic probe: the
/// principal axes of the training covariance, each scaled to unit variance;
/// axes with less than 1e-6 of the largest variance (the Gram features are
/// far from full rank) are dropped.
///
/// L-BFGS on correlated features converges slowly: on the D4 Gram features
/// 400 iterations still moved the test accuracy. On whitened features the
/// Hessian starts near a multiple of the identity and 150 iterations reach
/// the optimum (see `benches/probes.rs`). Whitening is an invertible map of
/// the kept axes, so it changes what the L2 penalty prefers, not which
/// classifiers are possible.
pub struct Whitener {
    /// `[features, kept]`: standardised features -> whitened.
    map: Array2<f64>,
}

impl Whitener {
    /// Smallest kept variance, relative to the largest.
    const RELATIVE_FLOOR: f64 = 1e-6;

    /// The whitening map of standardised training features.
    pub fn fit(train: &Array2<f64>) -> Result<Self> {
        use linfa_linalg::eigh::Eigh;
        let n = train.nrows().max(1) as f64;
        let covariance = train.t().dot(train) / n;
        let (variances, axes) = covariance
            .eigh()
            .map_err(|e| anyhow::anyhow!("whitening: eigendecomposition failed: {e}"))?;
        let top = variances.iter().copied().fold(0.0, f64::max);
        let kept: Vec<usize> = (0..variances.len())
            .filter(|&i| variances[i] > top * Self::RELATIVE_FLOOR)
            .collect();
        let mut map = Array2::zeros((train.ncols(), kept.len().max(1)));
        for (j, &i) in kept.iter().enumerate() {
            map.column_mut(j)
                .assign(&(&axes.column(i) / variances[i].sqrt()));
        }
        Ok(Whitener { map })
    }

    /// Number of whitened features.
    pub fn dims(&self) -> usize {
        self.map.ncols()
    }

    /// Whitened `x` (standardised like the training features).
    ///
    /// # Shapes
    /// `[rows, features] -> [rows, kept]`
    pub fn apply(&self, x: &Array2<f64>) -> Array2<f64> {
        x.dot(&self.map)
    }
}
