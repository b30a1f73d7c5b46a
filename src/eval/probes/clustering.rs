//! k-means clustering of features, scored against the labels by
//! Hungarian-matched accuracy and normalised mutual information.

use anyhow::{Context, Result};
use linfa::prelude::*;
use linfa_clustering::KMeans;
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::accuracy;

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
