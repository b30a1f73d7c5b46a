#!/usr/bin/env python3
"""`eqae cluster` on the test features of every row of Table 1 at full
scale (seed 0 by default): the clustering columns beside the paper-style
k-means column.

    scripts/cluster_table1.py [--runs runs/table1-full] [--seed 0]
                              [--configs d4_attention ...]
                              [--out docs/results/table1_full_clusters.csv]

Standard library only. For each row whose model is trained
(`runs/table1-full/<config>-s<seed>/model.bpk`; rows without one are
listed as missing), it runs

    eqae cluster --run RUN --split test --head HEAD --k 10 --seed 0 --out DIR

(10,000 rotated and mirrored test digits; labels only score) and again
without `--k` (k chosen by modularity), and writes one CSV line per row
and k: accuracy (Hungarian-matched), NMI, ARI, the k, seconds and peak
memory as `eqae cluster` reports them. Each row's outputs stay in
reports/table1_full_clusters/. With `--configs`, only those rows' models
are clustered, and their lines replace theirs in an existing CSV.
"""
import argparse
import csv
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (Table 1 row, config, head), in the table's order
ROWS = [
    ("Autoencoder", "baseline", "code"),
    ("Average Pooling D4", "d4_gram", "average"),
    ("Equivariant Attention D4", "d4_attention", "attention"),
    ("Equivariant Attention (Q) D4", "d4_attention", "attention-q"),
    ("Average Pooling D12", "d12_average", "average"),
    ("Equivariant Attention D12", "d12_attention", "attention"),
    ("Equivariant Attention (Q) D12", "d12_attention", "attention-q"),
    ("Gram Pooling D4", "d4_gram", "gram"),
    ("Gram Pooling D12", "d12_gram", "gram"),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default=os.path.join(ROOT, "runs/table1-full"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eqae", default=os.path.join(ROOT, "target/release/eqae"))
    ap.add_argument("--configs", nargs="+", help="only these row configs (others kept from --out)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs/results/table1_full_clusters.csv"))
    a = ap.parse_args()
    reports = os.path.join(ROOT, "reports/table1_full_clusters")
    lines = []
    kept = {}
    if a.configs and os.path.exists(a.out):
        for line in csv.DictReader(open(a.out)):
            kept.setdefault((line["row"], line["k_given"] == "True"), line)
    for label, config, head in ROWS:
        if a.configs and config not in a.configs:
            for k_given in (True, False):
                if (label, k_given) in kept:
                    lines.append(kept[(label, k_given)])
            continue
        run = os.path.join(a.runs, f"{config}-s{a.seed}")
        if not os.path.exists(os.path.join(run, "model.bpk")):
            print(f"{label}: {run} is not trained; left out", file=sys.stderr)
            continue
        for k in ["10", "chosen"]:
            out = os.path.join(reports, f"{config}-s{a.seed}_{head}_k{k}")
            cmd = [a.eqae, "cluster", "--run", run, "--split", "test", "--head", head,
                   "--seed", "0", "--quiet", "--out", out]
            if k == "10":
                cmd += ["--k", "10"]
            subprocess.run(cmd, check=True)
            report = json.load(open(os.path.join(out, "clusters.json")))
            s = report["scores"]
            line = {"row": label, "run": f"{config}-s{a.seed}", "head": head,
                    "k": report["k"], "k_given": k == "10",
                    "accuracy": round(100 * s["accuracy"], 1), "nmi": round(s["nmi"], 3),
                    "ari": round(s["ari"], 3), "seconds": round(report["seconds"], 1),
                    "peak_memory_mib": report["peak_memory_mib"]}
            print(line, flush=True)
            lines.append(line)
    if not lines:
        sys.exit("no trained row found under " + a.runs)
    with open(a.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(lines[0]))
        w.writeheader()
        w.writerows(lines)


if __name__ == "__main__":
    main()
