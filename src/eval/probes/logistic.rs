//! The logistic probe: multinomial logistic regression (linfa-logistic's
//! L-BFGS) on whitened standardised features.

use anyhow::{Context, Result};
use linfa::prelude::*;
use linfa_logistic::{MultiFittedLogisticRegression, MultiLogisticRegression};
use ndarray::{Array1, Array2};

use super::space::Whitener;

/// Settings of the logistic probe.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogisticSettings {
    /// L2 penalty per training row: linfa-logistic minimises the summed
    /// cross-entropy plus `alpha / 2 |W|^2`, with `alpha = l2 * rows`, so the
    /// same setting means the same on 100 labels as on 54,000.
    pub l2: f64,
    /// L-BFGS iterations at most.
    pub max_iterations: u64,
    /// The space it fits in.
    pub space: LogisticSpace,
}

/// Where the logistic probe fits: the standardised features, or those
/// whitened along their principal axes ([`super::PrincipalAxes`]), fully
/// or with the covariance shrunk toward a multiple of the identity
/// (Ledoit-Wolf; what few rows can estimate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogisticSpace {
    /// Standardised features.
    Standardised,
    /// Whitened with the shrunk covariance.
    ShrunkWhitened,
    /// Whitened with the sample covariance.
    Whitened,
}

impl LogisticSpace {
    /// A short name for reports: `standardised`, `shrunk`, `whitened`.
    pub fn name(self) -> &'static str {
        match self {
            LogisticSpace::Standardised => "standardised",
            LogisticSpace::ShrunkWhitened => "shrunk",
            LogisticSpace::Whitened => "whitened",
        }
    }

    /// The whitening of this space from `axes` (none for standardised).
    pub fn whitener(self, axes: &super::PrincipalAxes) -> Option<Whitener> {
        match self {
            LogisticSpace::Standardised => None,
            LogisticSpace::ShrunkWhitened => Some(axes.shrunk_whitener()),
            LogisticSpace::Whitened => Some(axes.whitener()),
        }
    }
}

impl Default for LogisticSettings {
    /// Chosen on a validation split of all training features of the
    /// full-scale runs (not the test set): `benches/probes.rs`,
    /// `docs/probes.md`. Used above [`super::select::CV_MAX_ROWS`]
    /// training rows; fewer get cross-validated settings.
    fn default() -> Self {
        LogisticSettings {
            l2: 2e-3,
            max_iterations: 150,
            space: LogisticSpace::Whitened,
        }
    }
}

/// A fitted multinomial logistic regression (linfa-logistic, L-BFGS), by
/// default on whitened standardised features.
pub struct LogisticProbe {
    whitener: Option<Whitener>,
    model: MultiFittedLogisticRegression<f64, usize>,
}

impl LogisticProbe {
    /// Fit on standardised training features with the default settings.
    pub fn fit(train: &Array2<f64>, y_train: &[usize]) -> Result<Self> {
        Self::fit_with(train, y_train, LogisticSettings::default())
    }

    /// Fit on standardised training features.
    pub fn fit_with(
        train: &Array2<f64>,
        y_train: &[usize],
        settings: LogisticSettings,
    ) -> Result<Self> {
        let whitener = match settings.space {
            LogisticSpace::Standardised => None,
            space => space.whitener(&super::PrincipalAxes::fit(train)?),
        };
        Self::fit_whitened(train, y_train, settings, whitener)
    }

    /// Fit on standardised training features with a whitening already
    /// fitted on them (`None`: none; `settings.space` is not read).
    pub fn fit_whitened(
        train: &Array2<f64>,
        y_train: &[usize],
        settings: LogisticSettings,
        whitener: Option<Whitener>,
    ) -> Result<Self> {
        let records = match &whitener {
            Some(w) => w.apply(train),
            None => train.clone(),
        };
        let data = linfa::Dataset::new(records, Array1::from(y_train.to_vec()));
        let model = MultiLogisticRegression::default()
            .alpha(settings.l2 * y_train.len() as f64)
            .max_iterations(settings.max_iterations)
            .fit(&data)
            .context("logistic regression did not fit")?;
        Ok(LogisticProbe { whitener, model })
    }

    /// Predicted classes of standardised features.
    pub fn predict(&self, x: &Array2<f64>) -> Vec<usize> {
        match &self.whitener {
            Some(w) => self.model.predict(&w.apply(x)).to_vec(),
            None => self.model.predict(x).to_vec(),
        }
    }
}
