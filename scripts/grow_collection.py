#!/usr/bin/env python3
"""A large collection for scale benchmarks, grown from a real one.

Usage: grow_collection.py SOURCE.npy ROWS OUT.npy [--noise 0.3]
Needs: numpy.

SOURCE.npy is an output of `eqae embed` (with `_labels.npy` and
`_classes.txt` where it has them). OUT.npy gets ROWS rows: row i is source
row i % n plus Gaussian noise of `--noise` times each column's deviation,
so that no two rows are the same; its labels are the source rows'. It is
written with `_files.txt` (`grown/<source row>/<i>`: there are no images
behind these rows, so pictures stay grey), `_labels.npy`, `_classes.txt`
and a `_manifest.json` recording the parts' sizes, as `eqae cluster`,
`eqae map` and `eqae search` require.
"""
import argparse, hashlib, json, os, shutil

import numpy as np


def main():
    p = argparse.ArgumentParser()
    p.add_argument("source")
    p.add_argument("rows", type=int)
    p.add_argument("out")
    p.add_argument("--noise", type=float, default=0.3)
    a = p.parse_args()
    x = np.load(a.source, mmap_mode="r")
    n, width = x.shape
    std = np.asarray(x, dtype=np.float64).std(0).astype(np.float32)
    rng = np.random.default_rng(0)
    out = np.lib.format.open_memmap(a.out, mode="w+", dtype=np.float32, shape=(a.rows, width))
    for start in range(0, a.rows, 50_000):
        idx = np.arange(start, min(a.rows, start + 50_000)) % n
        out[start:start + len(idx)] = x[idx] + a.noise * std * rng.standard_normal((len(idx), width), dtype=np.float32)
    out.flush()
    del out
    stem = a.out[:-4]
    with open(stem + "_files.txt", "w") as f:
        f.write("".join(f"grown/{i % n}/{i}\n" for i in range(a.rows)))
    parts = [a.out, stem + "_files.txt"]
    labels = a.source[:-4] + "_labels.npy"
    if os.path.exists(labels):
        np.save(stem + "_labels.npy", np.load(labels)[np.arange(a.rows) % n])
        shutil.copy(a.source[:-4] + "_classes.txt", stem + "_classes.txt")
        parts += [stem + "_labels.npy", stem + "_classes.txt"]
    manifest = {
        "cols": width, "rows": a.rows,
        "parts": {os.path.basename(p): {"bytes": os.path.getsize(p),
                                         "sha256": hashlib.sha256(open(p, "rb").read()).hexdigest()} for p in parts},
        "source": {"head": None, "images": None, "run": None, "split": None, "grown_from": a.source},
    }
    with open(stem + "_manifest.json", "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"{a.rows} rows of {width} features: {a.out}")


if __name__ == "__main__":
    main()
