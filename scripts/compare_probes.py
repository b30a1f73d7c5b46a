#!/usr/bin/env python3
"""eqae's probes beside scikit-learn's standard ones, on the same features
and the same stratified label draws (a benchmark, not a test).

    eqae embed --run R --split train --head H --out f_train.npy
    eqae embed --run R --split test  --head H --out f_test.npy
    eqae eval  --run R --head H --labels 100 1000 10000 0 --draws 3 --out rep
    target/pyenv/bin/pip install scikit-learn
    target/pyenv/bin/python scripts/compare_probes.py --features f --report rep [--out table.md]

`--features f` reads f_train.npy, f_train_labels.npy, f_test.npy and
f_test_labels.npy; `--report rep` reads eqae's per-draw accuracies
(rep/label_efficiency.csv) and the rows of each draw (rep/label_draws.json).
For every draw, scikit-learn fits on exactly those training rows:
- LogisticRegression (C = 1, and C = 0.1) on features standardised with
  the drawn rows' mean and std (StandardScaler), lbfgs, max_iter 1000;
- KNeighborsClassifier (k = 5, Euclidean) on the same standardised features.
All labels: one fit on every training row (LogisticRegression max_iter 300).
Prints a Markdown table of mean +- std over the draws, eqae's beside.
"""
import argparse
import csv
import json
import os
import time
from collections import defaultdict

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler


def mean_std(values):
    a = 100 * np.asarray(values, dtype=float)
    return f"{a.mean():.1f} ± {a.std():.1f}" if len(a) > 1 else f"{a.mean():.1f}"


def sklearn_scores(x, y, xt, yt, max_iter):
    scaler = StandardScaler().fit(x)
    xs, xts = scaler.transform(x), scaler.transform(xt)
    out = {}
    for c in (1.0, 0.1):
        model = LogisticRegression(C=c, max_iter=max_iter).fit(xs, y)
        out[f"logistic C={c:g}"] = model.score(xts, yt)
    out["kNN k=5"] = KNeighborsClassifier(n_neighbors=5).fit(xs, y).score(xts, yt)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--features", required=True, help="prefix of the embed outputs")
    p.add_argument("--report", required=True, help="folder of `eqae eval --labels`")
    p.add_argument("--key", help="'<run> <head>' in label_draws.json (default: the only one)")
    p.add_argument("--out", help="also write the table here")
    a = p.parse_args()

    x = np.load(a.features + "_train.npy")
    y = np.load(a.features + "_train_labels.npy")
    xt = np.load(a.features + "_test.npy")
    yt = np.load(a.features + "_test_labels.npy")
    draws = json.load(open(os.path.join(a.report, "label_draws.json")))
    key = a.key or next(iter(draws))
    run, head = key.split(" ", 1)
    eqae = defaultdict(lambda: defaultdict(list))
    for row in csv.DictReader(open(os.path.join(a.report, "label_efficiency.csv"))):
        if row["run"] == run and row["head"] == head:
            for probe in ("logistic", "mlp", "knn"):
                eqae[int(row["labels"])][probe].append(float(row[probe]))

    sizes = sorted(int(n) for n in draws[key]) + [len(y)]
    lines = [
        f"Features {a.features} ({x.shape[1]} wide), {key}; mean ± std over draws.",
        "",
        "| labels | eqae logistic | scikit-learn logistic C=1 | C=0.1 | eqae kNN | scikit-learn 5-NN | eqae MLP | seconds (scikit-learn) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        rows_of_draws = draws[key].get(str(n), [list(range(len(y)))])
        theirs = defaultdict(list)
        t = time.time()
        for rows in rows_of_draws:
            rows = np.asarray(rows)
            for name, acc in sklearn_scores(x[rows], y[rows], xt, yt,
                                            300 if n == len(y) else 1000).items():
                theirs[name].append(acc)
        seconds = time.time() - t
        ours = eqae.get(n, {})
        line = (f"| {n:,} | {mean_std(ours.get('logistic', [np.nan]))} "
                f"| {mean_std(theirs['logistic C=1'])} | {mean_std(theirs['logistic C=0.1'])} "
                f"| {mean_std(ours.get('knn', [np.nan]))} | {mean_std(theirs['kNN k=5'])} "
                f"| {mean_std(ours.get('mlp', [np.nan]))} | {seconds:.0f} |")
        print(line, flush=True)
        lines.append(line)
    if a.out:
        with open(a.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
