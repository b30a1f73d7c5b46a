//! Probes on frozen features: multinomial logistic regression
//! (linfa-logistic), a small fully connected network (burn), k-nearest
//! neighbours, and k-means clustering scored by Hungarian-matched accuracy
//! (pathfinding's Kuhn-Munkres) and normalised mutual information.

use anyhow::{Context, Result};
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use linfa::prelude::*;
use linfa_clustering::KMeans;
use linfa_logistic::{MultiFittedLogisticRegression, MultiLogisticRegression};
use ndarray::{Array1, Array2, Axis};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::time::Instant;

/// Scores of every probe, in [0, 1].
#[derive(Clone, Debug, Serialize)]
pub struct ProbeScores {
    /// Test accuracy of multinomial logistic regression.
    pub logistic: f64,
    /// Test accuracy of the small fully connected network.
    pub mlp: f64,
    /// Test accuracy of k-nearest neighbours (k = 5, Euclidean).
    pub knn: f64,
    /// Accuracy of k-means clusters (k = classes) after Hungarian matching.
    pub kmeans_accuracy: f64,
    /// Normalised mutual information of k-means clusters and labels.
    pub nmi: f64,
    /// Seconds each probe took (fit and scoring).
    pub seconds: ProbeSeconds,
}

impl ProbeScores {
    /// One log line: `logistic 95.5%, MLP 95.6%, kNN 88.8%, k-means 39.8%, NMI 0.357`.
    pub fn summary(&self) -> String {
        format!(
            "logistic {:.2}%, MLP {:.2}%, kNN {:.2}%, k-means {:.1}%, NMI {:.3}",
            100.0 * self.logistic,
            100.0 * self.mlp,
            100.0 * self.knn,
            100.0 * self.kmeans_accuracy,
            self.nmi
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
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ProbeSeconds {
    /// Logistic regression.
    pub logistic: f64,
    /// The small fully connected network.
    pub mlp: f64,
    /// 5-nearest neighbours.
    pub knn: f64,
    /// k-means with matching and NMI.
    pub kmeans: f64,
}

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

/// Share of `pred` equal to `truth`.
pub fn accuracy(pred: &[usize], truth: &[usize]) -> f64 {
    pred.iter().zip(truth).filter(|(a, b)| a == b).count() as f64 / truth.len().max(1) as f64
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

/// Settings of the logistic probe.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogisticSettings {
    /// L2 penalty per training row: linfa-logistic minimises the summed
    /// cross-entropy plus `alpha / 2 |W|^2`, with `alpha = l2 * rows`, so the
    /// same setting means the same on 100 labels as on 54,000.
    pub l2: f64,
    /// L-BFGS iterations at most.
    pub max_iterations: u64,
    /// Whiten the features first ([`Whitener`]).
    pub whiten: bool,
}

impl Default for LogisticSettings {
    /// Chosen on a validation split of the training features (not the test
    /// set): `benches/probes.rs`, `docs/probes.md`.
    fn default() -> Self {
        LogisticSettings {
            l2: 2e-3,
            max_iterations: 150,
            whiten: true,
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
        let whitener = settings.whiten.then(|| Whitener::fit(train)).transpose()?;
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

#[derive(Module, Debug)]
struct Mlp {
    hidden: Linear,
    dropout: Dropout,
    out: Linear,
}

/// Rows `idx` of `x` as a float32 tensor.
fn rows(idx: &[usize], x: &Array2<f64>, device: &Device) -> Tensor<2> {
    let f = x.ncols();
    let mut buf = Vec::with_capacity(idx.len() * f);
    for &i in idx {
        buf.extend(x.row(i).iter().map(|&v| v as f32));
    }
    Tensor::<2>::from_data(TensorData::new(buf, [idx.len(), f]), device)
}

/// Settings of the small fully connected network probe.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MlpSettings {
    /// Width of the hidden layer.
    pub hidden: usize,
    /// Dropout after the hidden layer.
    pub dropout: f64,
    /// Rows per Adam step.
    pub batch: usize,
    /// Adam's weight decay.
    pub weight_decay: f64,
    /// Epochs without a better held-out accuracy before stopping.
    pub patience: usize,
}

impl Default for MlpSettings {
    /// See `docs/probes.md` (chosen on a validation split of the training
    /// features, never the test set).
    fn default() -> Self {
        MlpSettings {
            hidden: 256,
            dropout: 0.2,
            // 128 before: the same validation accuracy on the D12 Gram
            // features (95.33% against 95.41%), in 181 s against 116 s
            batch: 512,
            weight_decay: 1e-4,
            patience: 20,
        }
    }
}

/// A fitted small fully connected network (one hidden layer, ReLU,
/// dropout, Adam with weight decay; [`MlpSettings`]). 10% of the training
/// rows are held out to choose the epoch (early stopping), as the paper
/// tuned on a validation set.
pub struct MlpProbe(Mlp);

impl MlpProbe {
    /// Fit on standardised training features with the default settings.
    pub fn fit(train: &Array2<f64>, y_train: &[usize], classes: usize, seed: u64) -> Self {
        Self::fit_with(train, y_train, classes, seed, MlpSettings::default())
    }

    /// Fit on standardised training features.
    pub fn fit_with(
        train: &Array2<f64>,
        y_train: &[usize],
        classes: usize,
        seed: u64,
        settings: MlpSettings,
    ) -> Self {
        let device = Device::flex().autodiff();
        device.seed(seed);
        let f = train.ncols();
        let mut model = Mlp {
            hidden: LinearConfig::new(f, settings.hidden).init(&device),
            dropout: DropoutConfig::new(settings.dropout).init(),
            out: LinearConfig::new(settings.hidden, classes).init(&device),
        };
        let decay = burn::optim::decay::WeightDecayConfig::new(settings.weight_decay as f32);
        let mut optim = AdamConfig::new().with_weight_decay(Some(decay)).init();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut order: Vec<usize> = (0..train.nrows()).collect();
        order.shuffle(&mut rng);
        let held = (train.nrows() / 10).max(1).min(train.nrows() - 1);
        let (val_idx, fit_idx) = order.split_at(held);
        let (val_idx, mut fit_idx) = (val_idx.to_vec(), fit_idx.to_vec());
        let y_val: Vec<usize> = val_idx.iter().map(|&i| y_train[i]).collect();
        let (mut best, mut best_acc, mut since) = (model.clone(), -1.0, 0);
        for _epoch in 0..200 {
            fit_idx.shuffle(&mut rng);
            for idx in fit_idx.chunks(settings.batch.max(1)) {
                let x = rows(idx, train, &device);
                let labels: Vec<i64> = idx.iter().map(|&i| y_train[i] as i64).collect();
                let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [idx.len()]), &device);
                let h = model.dropout.forward(relu(model.hidden.forward(x)));
                let loss = burn::nn::loss::CrossEntropyLossConfig::new()
                    .init(&device)
                    .forward(model.out.forward(h), y);
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(1e-3, model.clone(), grads);
            }
            let acc = accuracy(
                &MlpProbe(model.clone()).predict_rows(train, &val_idx),
                &y_val,
            );
            if acc > best_acc {
                (best, best_acc, since) = (model.clone(), acc, 0);
            } else {
                since += 1;
                if since >= settings.patience {
                    break;
                }
            }
        }
        MlpProbe(best)
    }

    /// Predicted classes of rows `idx` of `x`.
    fn predict_rows(&self, x: &Array2<f64>, idx: &[usize]) -> Vec<usize> {
        let model = self.0.valid();
        let plain = Device::flex();
        let mut pred = Vec::with_capacity(idx.len());
        for chunk in idx.chunks(512) {
            let logits = model
                .out
                .forward(relu(model.hidden.forward(rows(chunk, x, &plain))));
            let am: Vec<i64> = logits
                .argmax(1)
                .into_data()
                .convert::<i64>()
                .try_into_vec()
                .expect("ints");
            pred.extend(am.into_iter().map(|v| v as usize));
        }
        pred
    }

    /// Predicted classes.
    pub fn predict(&self, x: &Array2<f64>) -> Vec<usize> {
        self.predict_rows(x, &(0..x.nrows()).collect::<Vec<_>>())
    }
}

/// Classes predicted by majority of the `k` nearest training rows (Euclidean).
pub fn knn_predict(
    train: &Array2<f64>,
    y_train: &[usize],
    test: &Array2<f64>,
    k: usize,
    classes: usize,
) -> Vec<usize> {
    let tr_sq: Array1<f64> = train.map_axis(Axis(1), |r| r.dot(&r));
    let mut pred = Vec::with_capacity(test.nrows());
    for chunk in 0..test.nrows().div_ceil(256) {
        let rows = test.slice(ndarray::s![
            chunk * 256..((chunk + 1) * 256).min(test.nrows()),
            ..
        ]);
        // squared distances up to the test row's own norm: |b|^2 - 2 a.b
        let d = &tr_sq - &(rows.dot(&train.t()) * 2.0);
        for row in d.rows() {
            let mut idx: Vec<usize> = (0..row.len()).collect();
            let kk = k.min(idx.len());
            idx.select_nth_unstable_by(kk - 1, |&a, &b| row[a].total_cmp(&row[b]));
            let mut votes = vec![0usize; classes];
            for &i in &idx[..kk] {
                votes[y_train[i]] += 1;
            }
            pred.push((0..classes).max_by_key(|&c| votes[c]).unwrap_or(0));
        }
    }
    pred
}

/// Accuracies of the supervised probes on one test set.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct SupervisedScores {
    /// Logistic regression.
    pub logistic: f64,
    /// The small fully connected network.
    pub mlp: f64,
    /// 5-nearest neighbours.
    pub knn: f64,
}

/// The supervised probes fitted once on training features, to score any
/// number of test sets (rotated copies, say) the same way: the training
/// statistics for standardisation, logistic regression, the network, and
/// the training rows that kNN votes with.
pub struct FittedProbes {
    standardizer: Standardizer,
    train: Array2<f64>,
    y_train: Vec<usize>,
    classes: usize,
    logistic: LogisticProbe,
    mlp: MlpProbe,
    /// Seconds each fit took (kNN has nothing to fit).
    fit_seconds: ProbeSeconds,
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
        let t = Instant::now();
        let logistic = LogisticProbe::fit(&tr, y_train)?;
        let logistic_seconds = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mlp = MlpProbe::fit(&tr, y_train, classes, seed);
        let fit_seconds = ProbeSeconds {
            logistic: logistic_seconds,
            mlp: t.elapsed().as_secs_f64(),
            ..ProbeSeconds::default()
        };
        Ok(FittedProbes {
            standardizer,
            train: tr,
            y_train: y_train.to_vec(),
            classes,
            logistic,
            mlp,
            fit_seconds,
        })
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
        let knn = timed(&mut seconds.knn, &|| {
            knn_predict(&self.train, &self.y_train, &te, 5, self.classes)
        });
        (SupervisedScores { logistic, mlp, knn }, seconds)
    }
}

/// k-means with k = `classes`; returns (Hungarian-matched accuracy, NMI).
pub fn kmeans(x: &Array2<f64>, labels: &[usize], classes: usize, seed: u64) -> Result<(f64, f64)> {
    let clusters = kmeans_clusters(x, classes, seed)?;
    Ok((
        matched_accuracy(&clusters, labels, classes),
        nmi(&clusters, labels, classes),
    ))
}

/// The cluster (in `0..classes`) of every row of `x`: seeded k-means, the
/// best of 3 runs.
pub fn kmeans_clusters(x: &Array2<f64>, classes: usize, seed: u64) -> Result<Vec<usize>> {
    let data = linfa::DatasetBase::from(x.clone());
    let model = KMeans::params_with_rng(classes, ChaCha8Rng::seed_from_u64(seed))
        .max_n_iterations(200)
        .n_runs(3)
        .fit(&data)
        .context("k-means did not converge")?;
    Ok(model.predict(x).to_vec())
}

/// The class each cluster stands for under the best one-to-one
/// cluster-to-class map (Kuhn-Munkres on the co-occurrence counts).
pub fn cluster_classes(clusters: &[usize], labels: &[usize], classes: usize) -> Vec<usize> {
    let mut counts = vec![vec![0i64; classes]; classes];
    for (&c, &l) in clusters.iter().zip(labels) {
        counts[c][l] += 1;
    }
    let weights = pathfinding::matrix::Matrix::from_rows(counts).expect("square");
    pathfinding::kuhn_munkres::kuhn_munkres(&weights).1
}

/// Accuracy of clusters after the best one-to-one cluster-to-class map.
pub fn matched_accuracy(clusters: &[usize], labels: &[usize], classes: usize) -> f64 {
    let map = cluster_classes(clusters, labels, classes);
    let classes_of: Vec<usize> = clusters.iter().map(|&c| map[c]).collect();
    accuracy(&classes_of, labels)
}

/// Normalised mutual information `I(C; L) / sqrt(H(C) H(L))`.
pub fn nmi(clusters: &[usize], labels: &[usize], classes: usize) -> f64 {
    let n = labels.len() as f64;
    let mut joint = vec![vec![0f64; classes]; classes];
    let (mut pc, mut pl) = (vec![0f64; classes], vec![0f64; classes]);
    for (&c, &l) in clusters.iter().zip(labels) {
        joint[c][l] += 1.0 / n;
        pc[c] += 1.0 / n;
        pl[l] += 1.0 / n;
    }
    let h = |p: &[f64]| {
        -p.iter()
            .filter(|&&v| v > 0.0)
            .map(|v| v * v.ln())
            .sum::<f64>()
    };
    let mut mi = 0.0;
    for c in 0..classes {
        for l in 0..classes {
            if joint[c][l] > 0.0 {
                mi += joint[c][l] * (joint[c][l] / (pc[c] * pl[l])).ln();
            }
        }
    }
    let denom = (h(&pc) * h(&pl)).sqrt();
    if denom > 0.0 {
        mi / denom
    } else {
        0.0
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
