//! How well clusters agree with labels (used only to score, never to
//! cluster): Hungarian-matched accuracy, normalised mutual information
//! and the adjusted Rand index, for any number of clusters and classes.

use serde::Serialize;

/// The scores of one clustering against the labels.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Scores {
    /// Share of rows whose cluster maps to their class under the best
    /// one-to-one map of clusters to classes (clusters left without a
    /// class count as wrong).
    pub accuracy: f64,
    /// Normalised mutual information, `I(C; L) / sqrt(H(C) H(L))`.
    pub nmi: f64,
    /// Adjusted Rand index (0 for chance, 1 for the same partition).
    pub ari: f64,
}

/// `counts[c][l]`: rows of cluster `c` and class `l`.
pub fn contingency(
    clusters: &[usize],
    labels: &[usize],
    k: usize,
    classes: usize,
) -> Vec<Vec<usize>> {
    let mut counts = vec![vec![0usize; classes]; k];
    for (&c, &l) in clusters.iter().zip(labels) {
        counts[c][l] += 1;
    }
    counts
}

/// Scores of `clusters` (in `0..k`) against `labels` (in `0..classes`).
pub fn scores(clusters: &[usize], labels: &[usize], k: usize, classes: usize) -> Scores {
    let counts = contingency(clusters, labels, k, classes);
    Scores {
        accuracy: matched(&counts) as f64 / labels.len().max(1) as f64,
        nmi: nmi(&counts),
        ari: ari(&counts),
    }
}

/// The class each cluster stands for under the best one-to-one map
/// (None for clusters left over when there are more clusters than classes).
pub fn cluster_classes(counts: &[Vec<usize>]) -> Vec<Option<usize>> {
    let (k, classes) = (counts.len(), counts.first().map_or(0, Vec::len));
    let m = k.max(classes);
    if m == 0 {
        return Vec::new();
    }
    // square, padded with zeros: Kuhn-Munkres needs rows <= columns
    let weights = pathfinding::matrix::Matrix::from_fn(m, m, |(c, l)| {
        if c < k && l < classes {
            counts[c][l] as i64
        } else {
            0
        }
    });
    let (_, map) = pathfinding::kuhn_munkres::kuhn_munkres(&weights);
    map.into_iter()
        .take(k)
        .map(|l| (l < classes).then_some(l))
        .collect()
}

/// Rows on the diagonal of the best one-to-one map.
fn matched(counts: &[Vec<usize>]) -> usize {
    cluster_classes(counts)
        .iter()
        .enumerate()
        .filter_map(|(c, l)| l.map(|l| counts[c][l]))
        .sum()
}

fn nmi(counts: &[Vec<usize>]) -> f64 {
    let n: usize = counts.iter().flatten().sum();
    if n == 0 {
        return 0.0;
    }
    let n = n as f64;
    let rows: Vec<f64> = counts
        .iter()
        .map(|r| r.iter().sum::<usize>() as f64)
        .collect();
    let cols: Vec<f64> = (0..counts[0].len())
        .map(|l| counts.iter().map(|r| r[l]).sum::<usize>() as f64)
        .collect();
    let entropy = |p: &[f64]| -> f64 {
        p.iter()
            .filter(|&&v| v > 0.0)
            .map(|&v| -(v / n) * (v / n).ln())
            .sum()
    };
    let mut mi = 0.0;
    for (c, row) in counts.iter().enumerate() {
        for (l, &v) in row.iter().enumerate() {
            if v > 0 {
                let v = v as f64;
                mi += v / n * (v * n / (rows[c] * cols[l])).ln();
            }
        }
    }
    let denom = (entropy(&rows) * entropy(&cols)).sqrt();
    if denom > 0.0 {
        (mi / denom).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

fn ari(counts: &[Vec<usize>]) -> f64 {
    let pairs = |v: usize| (v as f64) * (v as f64 - 1.0) / 2.0;
    let n: usize = counts.iter().flatten().sum();
    let index: f64 = counts.iter().flatten().map(|&v| pairs(v)).sum();
    let rows: f64 = counts.iter().map(|r| pairs(r.iter().sum())).sum();
    let cols: f64 = (0..counts.first().map_or(0, Vec::len))
        .map(|l| pairs(counts.iter().map(|r| r[l]).sum()))
        .sum();
    let expected = rows * cols / pairs(n).max(1.0);
    let top = (rows + cols) / 2.0;
    if (top - expected).abs() < 1e-12 {
        return if (index - expected).abs() < 1e-12 {
            1.0
        } else {
            0.0
        };
    }
    (index - expected) / (top - expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_partition_under_other_names_scores_one() {
        let labels = [0, 0, 1, 1, 2, 2, 2];
        let clusters = [2, 2, 0, 0, 1, 1, 1];
        let s = scores(&clusters, &labels, 3, 3);
        assert_eq!(s.accuracy, 1.0);
        assert!((s.nmi - 1.0).abs() < 1e-12 && (s.ari - 1.0).abs() < 1e-12);
    }

    #[test]
    fn more_clusters_than_classes_leave_some_unmatched() {
        // class 0 split in two: 4 of 6 rows can be matched
        let labels = [0, 0, 0, 0, 1, 1];
        let clusters = [0, 0, 1, 1, 2, 2];
        let s = scores(&clusters, &labels, 3, 2);
        assert!((s.accuracy - 4.0 / 6.0).abs() < 1e-12);
        assert!(s.ari > 0.0 && s.ari < 1.0);
    }

    #[test]
    fn ari_matches_a_worked_example() {
        // sklearn.metrics.adjusted_rand_score([0,0,1,1],[0,0,1,2]) = 0.5714285714
        let s = scores(&[0, 0, 1, 2], &[0, 0, 1, 1], 3, 2);
        assert!((s.ari - 0.571_428_571_4).abs() < 1e-9, "{}", s.ari);
    }
}
