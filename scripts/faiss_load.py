#!/usr/bin/env python3
"""Load eqae's embedded shards into FAISS, and search them there.

For collections beyond one machine: `eqae embed --shard I/N` on each node,
then this recipe puts every shard into one FAISS index with the same
distance as `eqae search` (cosine between rows standardised by the whole
collection's column means and deviations), so FAISS returns the same
neighbours. Needs numpy and faiss-cpu (pip install numpy faiss-cpu).

  faiss_load.py build --out DIR [--hnsw M] SHARD.npy [SHARD.npy ...]
  faiss_load.py query --index DIR --file NAME [--k 10]

`build` reads each shard's `.npy`, `_files.txt` and `_manifest.json`
(refusing a shard without its manifest, or whose sizes differ from it, as
eqae does), computes the column means and deviations over all shards (one
pass, in float64), and adds the standardised unit rows shard by shard. It
writes DIR/index.faiss, DIR/files.txt (one name per row, in index order,
prefixed by the shard's name) and DIR/scales.npz. `--hnsw M` builds an
approximate HNSW index (M links) instead of the exact inner-product one.
`query` prints the k nearest rows of a row already in the index, as CSV
(rank, file, distance).
"""
import argparse, json, os, sys

import numpy as np


def side(path, suffix):
    return path[:-4] + suffix


def read_shard(path):
    manifest_path = side(path, "_manifest.json")
    try:
        manifest = json.load(open(manifest_path))
    except OSError:
        sys.exit(f"error: {path} has no manifest ({manifest_path}): not a complete output of eqae embed")
    folder = os.path.dirname(path) or "."
    for name, part in manifest["parts"].items():
        if os.path.getsize(os.path.join(folder, name)) != part["bytes"]:
            sys.exit(f"error: {os.path.join(folder, name)} is not the file its manifest describes")
    x = np.load(path, mmap_mode="r")
    files_path = side(path, "_files.txt")
    if os.path.exists(files_path):
        files = open(files_path, encoding="utf-8").read().splitlines()
    else:
        files = [f"row {i}" for i in range(x.shape[0])]
    if len(files) != x.shape[0]:
        sys.exit(f"error: {path} holds {x.shape[0]} rows but {files_path} lists {len(files)} files")
    return x, files


def scales(shards):
    total = sum(x.shape[0] for x, _ in shards)
    width = shards[0][0].shape[1]
    s, ss = np.zeros(width), np.zeros(width)
    for x, _ in shards:
        for start in range(0, x.shape[0], 65536):
            block = np.asarray(x[start:start + 65536], dtype=np.float64)
            s += block.sum(0)
            ss += (block * block).sum(0)
    mean = s / total
    var = np.maximum(ss / total - mean * mean, 0.0)
    inv = np.where(var > 1e-24, 1.0 / np.sqrt(np.maximum(var, 1e-300)), 1.0)
    return mean.astype(np.float32), inv.astype(np.float32)


def unit(block, mean, inv):
    z = (np.asarray(block, dtype=np.float32) - mean) * inv
    return np.ascontiguousarray(z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12))


def build(args):
    import faiss
    shards = [read_shard(p) for p in args.shards]
    widths = {x.shape[1] for x, _ in shards}
    if len(widths) != 1:
        sys.exit(f"error: the shards have different widths {sorted(widths)}: embed them with one run and head")
    mean, inv = scales(shards)
    width = widths.pop()
    if args.hnsw:
        index = faiss.IndexHNSWFlat(width, args.hnsw, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexFlatIP(width)
    names = []
    for path, (x, files) in zip(args.shards, shards):
        for start in range(0, x.shape[0], 65536):
            index.add(unit(x[start:start + 65536], mean, inv))
        names += [f"{os.path.basename(path)}:{f}" for f in files]
    os.makedirs(args.out, exist_ok=True)
    faiss.write_index(index, os.path.join(args.out, "index.faiss"))
    np.savez(os.path.join(args.out, "scales.npz"), mean=mean, inv_std=inv)
    with open(os.path.join(args.out, "files.txt"), "w", encoding="utf-8") as f:
        f.write("".join(n + "\n" for n in names))
    print(f"{index.ntotal} rows of {width} features in {args.out}/index.faiss")


def query(args):
    import faiss
    index = faiss.read_index(os.path.join(args.index, "index.faiss"))
    names = open(os.path.join(args.index, "files.txt"), encoding="utf-8").read().splitlines()
    matches = [i for i, n in enumerate(names) if n.split(":", 1)[1] == args.file]
    if not matches:
        sys.exit(f"error: {args.file} is not in {args.index}/files.txt")
    q = index.reconstruct(matches[0]).reshape(1, -1)
    sims, rows = index.search(q, args.k)
    print("rank,file,distance")
    for rank, (s, r) in enumerate(zip(sims[0], rows[0]), 1):
        print(f"{rank},{names[r].split(':', 1)[1]},{max(0.0, 1.0 - float(s)):.6f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--out", required=True)
    b.add_argument("--hnsw", type=int, default=0)
    b.add_argument("shards", nargs="+")
    q = sub.add_parser("query")
    q.add_argument("--index", required=True)
    q.add_argument("--file", required=True)
    q.add_argument("--k", type=int, default=10)
    a = p.parse_args()
    build(a) if a.command == "build" else query(a)


if __name__ == "__main__":
    main()
