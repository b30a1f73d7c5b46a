//! The k-nearest-neighbours probe.

use ndarray::{Array1, Array2, Axis};

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
