//! Probes on frozen features: multinomial logistic regression
//! (linfa-logistic, [`logistic`]), a small fully connected network (burn,
//! [`mlp`]), k-nearest neighbours ([`knn`]), and k-means clustering scored
//! by Hungarian-matched accuracy (pathfinding's Kuhn-Munkres) and
//! normalised mutual information ([`clustering`]); the feature spaces they
//! work in ([`space`]: standardisation, whitening).

pub mod clustering;
pub mod knn;
pub mod logistic;
pub mod mlp;
pub mod select;
pub mod space;

pub use clustering::{cluster_classes, kmeans, kmeans_clusters, matched_accuracy, nmi};
pub use knn::{knn_predict, KnnProbe};
pub use logistic::{LogisticProbe, LogisticSettings, LogisticSpace};
pub use mlp::{MlpProbe, MlpSettings};
pub use space::{standardize, PrincipalAxes, Standardizer, Whitener};

use anyhow::Result;
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Scores of every probe, in [0, 1].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProbeScores {
    /// Test accuracy of multinomial logistic regression.
    pub logistic: f64,
    /// Test accuracy of the small fully connected network.
    pub mlp: f64,
    /// Test accuracy of k-nearest neighbours ([`KnnProbe`]: k chosen for the rows, cosine
    /// in whitened features).
    pub knn: f64,
    /// Accuracy of k-means clusters (k = classes) after Hungarian matching.
    pub kmeans_accuracy: f64,
    /// Normalised mutual information of k-means clusters and labels.
    pub nmi: f64,
    /// Accuracy of `eqae cluster`'s clusters of the test features (k =
    /// classes) after Hungarian matching; NaN where not measured.
    #[serde(default = "not_measured", deserialize_with = "nan_if_null")]
    pub cluster_accuracy: f64,
    /// Normalised mutual information of those clusters and the labels.
    #[serde(default = "not_measured", deserialize_with = "nan_if_null")]
    pub cluster_nmi: f64,
    /// Seconds each probe took (fit and scoring).
    pub seconds: ProbeSeconds,
}

impl ProbeScores {
    /// One log line: `logistic 95.5%, MLP 95.6%, kNN 88.8%, k-means 39.8%,
    /// NMI 0.357, clusters 88.1% / NMI 0.803`.
    pub fn summary(&self) -> String {
        format!(
            "logistic {:.2}%, MLP {:.2}%, kNN {:.2}%, k-means {:.1}%, NMI {:.3}, clusters {:.1}% / NMI {:.3}",
            100.0 * self.logistic,
            100.0 * self.mlp,
            100.0 * self.knn,
            100.0 * self.kmeans_accuracy,
            self.nmi,
            100.0 * self.cluster_accuracy,
            self.cluster_nmi
        )
    }

    /// The supervised probes' accuracies alone.
    pub fn supervised(&self) -> SupervisedScores {
        SupervisedScores {
            logistic: self.logistic,
            mlp: self.mlp,
            knn: self.knn,
        }
    }
}

/// Wall-clock seconds per probe, fit and scoring together.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct ProbeSeconds {
    /// Logistic regression.
    pub logistic: f64,
    /// The small fully connected network.
    pub mlp: f64,
    /// k-nearest neighbours.
    pub knn: f64,
    /// k-means with matching and NMI.
    pub kmeans: f64,
    /// `eqae cluster`'s clustering with matching and NMI.
    #[serde(default)]
    pub clustering: f64,
}

/// A score a report does not hold.
fn not_measured() -> f64 {
    f64::NAN
}

/// serde_json writes NaN as `null`: read it back as NaN (for every report
/// field that may be NaN).
pub fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Share of `pred` equal to `truth`.
pub fn accuracy(pred: &[usize], truth: &[usize]) -> f64 {
    pred.iter().zip(truth).filter(|(a, b)| a == b).count() as f64 / truth.len().max(1) as f64
}

/// Accuracies of the supervised probes on one test set.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct SupervisedScores {
    /// Logistic regression.
    pub logistic: f64,
    /// The small fully connected network.
    pub mlp: f64,
    /// k-nearest neighbours.
    pub knn: f64,
}

/// The supervised probes fitted once on training features, to score any
/// number of test sets (rotated copies, say) the same way: the training
/// statistics for standardisation, logistic regression, the network, and
/// the training rows that kNN votes with.
pub struct FittedProbes {
    standardizer: Standardizer,
    classes: usize,
    logistic: LogisticProbe,
    mlp: MlpProbe,
    knn: KnnProbe,
    /// Seconds each fit took.
    fit_seconds: ProbeSeconds,
    logistic_settings: LogisticSettings,
}

impl FittedProbes {
    /// Fit every supervised probe on `train` (raw features) and its labels.
    pub fn fit(train: &Array2<f32>, y_train: &[usize], classes: usize, seed: u64) -> Result<Self> {
        anyhow::ensure!(
            train.nrows() >= 2,
            "probes need at least 2 training rows, got {}",
            train.nrows()
        );
        let standardizer = Standardizer::fit(train);
        let tr = standardizer.apply(train);
        // one eigendecomposition for the logistic probe's whitening and kNN's
        let t = Instant::now();
        let axes = PrincipalAxes::fit(&tr)?;
        // settings for these rows: cross-validated on them (few rows), or
        // those validated at full scale (many)
        let settings = select::choose_logistic(&tr, y_train, seed)?.best;
        let whitener = settings.space.whitener(&axes);
        let logistic = LogisticProbe::fit_whitened(&tr, y_train, settings, whitener)?;
        let logistic_seconds = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let knn = KnnProbe::with_whitener(axes.shrunk_whitener(), &tr, y_train, classes);
        let knn = select::with_chosen_k(knn, seed);
        let knn_seconds = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mlp_settings = select::choose_mlp(&tr, y_train, classes, seed).best;
        let mlp = MlpProbe::fit_with(&tr, y_train, classes, seed, mlp_settings);
        let fit_seconds = ProbeSeconds {
            logistic: logistic_seconds,
            mlp: t.elapsed().as_secs_f64(),
            knn: knn_seconds,
            kmeans: 0.0,
            clustering: 0.0,
        };
        Ok(FittedProbes {
            standardizer,
            classes,
            logistic,
            mlp,
            knn,
            fit_seconds,
            logistic_settings: settings,
        })
    }

    /// The logistic probe's settings, as chosen for the training rows.
    pub fn logistic_settings(&self) -> LogisticSettings {
        self.logistic_settings
    }

    /// `x` standardised with the training statistics.
    pub fn standardize(&self, x: &Array2<f32>) -> Array2<f64> {
        self.standardizer.apply(x)
    }

    /// Every supervised probe's accuracy on `test` (raw features).
    pub fn score(&self, test: &Array2<f32>, y_test: &[usize]) -> SupervisedScores {
        self.score_timed(test, y_test).0
    }

    /// Every probe's score on `test`: the supervised ones, and k-means on the
    /// standardised test features (NaN when there are fewer test rows than
    /// classes). Also returns the k-means cluster of every test row (None
    /// then), for confusion matrices without clustering again.
    pub fn score_all(
        &self,
        test: &Array2<f32>,
        y_test: &[usize],
        seed: u64,
    ) -> Result<(ProbeScores, Option<Vec<usize>>)> {
        anyhow::ensure!(test.nrows() >= 1, "probes need at least 1 test row");
        let (supervised, mut seconds) = self.score_timed(test, y_test);
        let t = Instant::now();
        let clusters = if test.nrows() >= self.classes {
            Some(kmeans_clusters(
                &self.standardize(test),
                self.classes,
                seed,
            )?)
        } else {
            None
        };
        let (kmeans_accuracy, nmi) = match &clusters {
            Some(c) => (
                matched_accuracy(c, y_test, self.classes),
                nmi(c, y_test, self.classes),
            ),
            None => (f64::NAN, f64::NAN),
        };
        seconds.kmeans = t.elapsed().as_secs_f64();
        let scores = ProbeScores {
            logistic: supervised.logistic,
            mlp: supervised.mlp,
            knn: supervised.knn,
            kmeans_accuracy,
            nmi,
            cluster_accuracy: f64::NAN,
            cluster_nmi: f64::NAN,
            seconds,
        };
        Ok((scores, clusters))
    }

    /// The logistic probe's predicted classes of `test` (raw features).
    pub fn predict_logistic(&self, test: &Array2<f32>) -> Vec<usize> {
        self.logistic.predict(&self.standardize(test))
    }

    /// [`Self::score`], and each probe's seconds, fit and scoring together.
    pub fn score_timed(
        &self,
        test: &Array2<f32>,
        y_test: &[usize],
    ) -> (SupervisedScores, ProbeSeconds) {
        let te = self.standardize(test);
        let mut seconds = self.fit_seconds;
        let timed = |slot: &mut f64, predict: &dyn Fn() -> Vec<usize>| {
            let t = Instant::now();
            let acc = accuracy(&predict(), y_test);
            *slot += t.elapsed().as_secs_f64();
            acc
        };
        let logistic = timed(&mut seconds.logistic, &|| self.logistic.predict(&te));
        let mlp = timed(&mut seconds.mlp, &|| self.mlp.predict(&te));
        let knn = timed(&mut seconds.knn, &|| self.knn.predict(&te));
        (SupervisedScores { logistic, mlp, knn }, seconds)
    }
}

/// Every probe: train on `train`, score on `test` (features standardised
/// with the training statistics; clustering runs on the test features).
pub fn run_all(
    train: &Array2<f32>,
    y_train: &[usize],
    test: &Array2<f32>,
    y_test: &[usize],
    classes: usize,
    seed: u64,
) -> Result<ProbeScores> {
    anyhow::ensure!(
        train.nrows() >= 2 && test.nrows() >= 1,
        "probes need at least 2 training rows and 1 test row, got {} and {}",
        train.nrows(),
        test.nrows()
    );
    let probes = FittedProbes::fit(train, y_train, classes, seed)?;
    Ok(probes.score_all(test, y_test, seed)?.0)
}

/// `counts[true][predicted]` of `classes` classes.
pub fn confusion_matrix(pred: &[usize], truth: &[usize], classes: usize) -> Vec<Vec<usize>> {
    let mut counts = vec![vec![0usize; classes]; classes];
    for (&p, &t) in pred.iter().zip(truth) {
        if p < classes && t < classes {
            counts[t][p] += 1;
        }
    }
    counts
}
