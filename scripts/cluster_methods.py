#!/usr/bin/env python3
"""Clustering methods on the same invariant features, with standard tools.

Usage: cluster_methods.py FEATURES.npy [more.npy ...] --out docs/results/cluster_methods.csv
Needs: numpy, scikit-learn, umap-learn, hdbscan (pip install them).

Each FEATURES.npy is an output of `eqae embed` with `_labels.npy` beside
it; labels only score. Every method gets the features standardised and
scaled to unit length, then whitened by PCA (all axes, up to an eighth of
the rows, as `eqae cluster` does) and scaled to unit length again, k = the
number of classes. Prints and writes one row per (features, method):
Hungarian-matched accuracy, NMI, ARI, seconds and the peak memory of this
process so far.
"""
import argparse, csv, resource, sys, time, warnings

import numpy as np

warnings.filterwarnings("ignore")


def accuracy(labels, clusters):
    from scipy.optimize import linear_sum_assignment
    k = max(labels.max(), clusters.max()) + 1
    m = np.zeros((k, k))
    for c, l in zip(clusters, labels):
        m[c, l] += 1
    r, c = linear_sum_assignment(-m)
    return m[r, c].sum() / len(labels)


def whitened(x):
    from sklearn.decomposition import PCA
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    axes = min(x.shape[1], x.shape[0] // 8)
    z = PCA(axes, whiten=True, random_state=0).fit_transform(x)
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def methods(k):
    from sklearn.cluster import AgglomerativeClustering, KMeans, SpectralClustering
    from sklearn.mixture import GaussianMixture

    def umap_then(cut):
        def run(z):
            import umap
            u = umap.UMAP(n_neighbors=15, n_components=10, min_dist=0.0, random_state=0).fit_transform(z)
            return cut(u)
        return run

    def hdbscan_umap(z):
        import hdbscan, umap
        u = umap.UMAP(n_neighbors=15, n_components=10, min_dist=0.0, random_state=0).fit_transform(z)
        c = hdbscan.HDBSCAN(min_cluster_size=max(10, len(z) // 100)).fit_predict(u)
        return c  # -1: noise, scored as its own cluster

    kmeans = lambda x: KMeans(k, n_init=10, random_state=0).fit_predict(x)
    return [
        ("k-means", kmeans),
        ("Gaussian mixture (diagonal)", lambda z: GaussianMixture(k, covariance_type="diag", random_state=0).fit_predict(z)),
        ("agglomerative (Ward)", lambda z: AgglomerativeClustering(k).fit_predict(z)),
        ("spectral, 15-NN graph", lambda z: SpectralClustering(k, affinity="nearest_neighbors", n_neighbors=15, random_state=0).fit_predict(z)),
        ("HDBSCAN on UMAP-10", hdbscan_umap),
        ("UMAP-10 then k-means", umap_then(kmeans)),
        ("UMAP-10 then Gaussian mixture", umap_then(lambda u: GaussianMixture(k, random_state=0).fit_predict(u))),
    ]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("features", nargs="+")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    rows = []
    for path in a.features:
        x = np.load(path).astype(np.float64)
        labels = np.load(path[:-4] + "_labels.npy")
        k = int(labels.max()) + 1
        z = whitened(x)
        for name, run in methods(k):
            t = time.time()
            c = np.asarray(run(z))
            c = c - c.min()
            row = {
                "features": path, "method": name, "clusters": len(set(c.tolist())),
                "accuracy": round(100 * accuracy(labels, c), 1),
                "nmi": round(normalized_mutual_info_score(labels, c), 3),
                "ari": round(adjusted_rand_score(labels, c), 3),
                "seconds": round(time.time() - t, 1),
                "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            }
            print(row, flush=True)
            rows.append(row)
            with open(a.out, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)


if __name__ == "__main__":
    sys.exit(main())
