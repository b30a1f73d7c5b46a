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

/// The principal axes and variances of standardised training features:
/// one eigendecomposition of their covariance, shared by the logistic
/// probe's whitening ([`Self::whitener`]) and kNN's shrunk one
/// ([`Self::shrunk_whitener`]). Axes with less than 1e-6 of the largest
/// variance (the Gram features are far from full rank) are dropped by both.
pub struct PrincipalAxes {
    /// `[features, features]`: one axis per column.
    axes: Array2<f64>,
    /// The training variance along each axis.
    variances: Array1<f64>,
    /// Mean variance per feature (the trace over the number of features).
    mean_variance: f64,
    /// Ledoit-Wolf shrinkage intensity in [0, 1].
    shrinkage: f64,
}

impl PrincipalAxes {
    /// Smallest kept variance, relative to the largest.
    const RELATIVE_FLOOR: f64 = 1e-6;

    /// The axes of standardised (so centred) training features, and the
    /// Ledoit-Wolf shrinkage of their covariance towards a multiple of the
    /// identity: the intensity that minimises the expected squared error of
    /// the shrunk estimate (Ledoit & Wolf 2004, "A well-conditioned
    /// estimator for large-dimensional covariance matrices", lemma 3.3 and
    /// section 3.3). It is near 0 with many rows per feature and grows as
    /// they get fewer, which is what a label subset of 100 rows needs.
    ///
    /// # Shapes
    /// `train [rows, features]`
    pub fn fit(train: &Array2<f64>) -> Result<Self> {
        use linfa_linalg::eigh::Eigh;
        let n = train.nrows().max(1) as f64;
        let d = train.ncols().max(1) as f64;
        let covariance = train.t().dot(train) / n;
        let mean_variance = covariance.diag().sum() / d;
        let squared_norm = covariance.iter().map(|v| v * v).sum::<f64>();
        // distance of the covariance from mean_variance * I, and the
        // estimation error of the covariance, both per feature
        let dispersion = squared_norm / d - mean_variance * mean_variance;
        let fourth_moment = train
            .rows()
            .into_iter()
            .map(|r| r.dot(&r).powi(2))
            .sum::<f64>();
        let error = ((fourth_moment / n - squared_norm) / (n * d)).max(0.0);
        let shrinkage = if dispersion > 0.0 {
            error.min(dispersion) / dispersion
        } else {
            1.0
        };
        let (variances, axes) = covariance
            .eigh()
            .map_err(|e| anyhow::anyhow!("whitening: eigendecomposition failed: {e}"))?;
        Ok(PrincipalAxes {
            axes,
            variances,
            mean_variance,
            shrinkage,
        })
    }

    /// The Ledoit-Wolf shrinkage intensity, in [0, 1].
    pub fn shrinkage(&self) -> f64 {
        self.shrinkage
    }

    /// Each kept axis scaled to unit training variance.
    pub fn whitener(&self) -> Whitener {
        self.scaled_by(|v| v)
    }

    /// Each kept axis scaled by the shrunk covariance's variance along it,
    /// `(1 - s) v + s * mean variance`: the sample's noisiest directions
    /// (the small variances of a small sample) are not blown up.
    pub fn shrunk_whitener(&self) -> Whitener {
        let s = self.shrinkage;
        self.scaled_by(|v| (1.0 - s) * v + s * self.mean_variance)
    }

    /// The kept axes, each divided by the square root of `variance(v)`.
    fn scaled_by(&self, variance: impl Fn(f64) -> f64) -> Whitener {
        let v = &self.variances;
        let top = v.iter().copied().fold(0.0, f64::max);
        let kept: Vec<usize> = (0..v.len())
            .filter(|&i| v[i] > top * Self::RELATIVE_FLOOR)
            .collect();
        let mut map = Array2::zeros((self.axes.nrows(), kept.len().max(1)));
        for (j, &i) in kept.iter().enumerate() {
            map.column_mut(j)
                .assign(&(&self.axes.column(i) / variance(v[i]).sqrt()));
        }
        Whitener { map }
    }
}

/// Decorrelation of standardised features for the logistic probe: the
/// principal axes of the training covariance, each scaled to unit variance
/// ([`PrincipalAxes`]).
///
/// L-BFGS on correlated features converges slowly: on the D4 Gram features
/// 400 iterations still moved the test accuracy. On whitened features the
/// Hessian starts near a multiple of the identity and 150 iterations reach
/// the optimum (see `benches/probes.rs`). Whitening is an invertible map of
/// the kept axes, so it changes what the L2 penalty prefers, not which
/// classifiers are possible.
#[derive(Clone)]
pub struct Whitener {
    /// `[features, kept]`: standardised features -> whitened.
    map: Array2<f64>,
}

impl Whitener {
    /// The whitening map of standardised training features.
    pub fn fit(train: &Array2<f64>) -> Result<Self> {
        Ok(PrincipalAxes::fit(train)?.whitener())
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
