#!/usr/bin/env python3
"""Peak memory and speed of `eqae embed --images` over folders of generated
PNGs (MNIST test digits, cycled, each 28x28), for several folder sizes.

    scripts/bench_embed.py [--counts 10000 100000 500000]
                           [--models models/mnist_d4_gram models/mnist_d12_gram]
                           [--eqae target/release/eqae] [--out docs/results/embed_scale.csv]

Standard library only (the PNGs are written with zlib). Each embed runs in
its own process; its peak resident memory is the child's ru_maxrss. The
image folders are kept under target/bench-images/ for reruns.
"""
import argparse
import gzip
import os
import struct
import subprocess
import sys
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def png_bytes(pixels, w, h):
    raw = b"".join(b"\x00" + pixels[y * w:(y + 1) * w] for y in range(h))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def digits():
    path = os.path.join(ROOT, "data/mnist/t10k-images-idx3-ubyte")
    data = open(path, "rb").read() if os.path.exists(path) else gzip.open(path + ".gz").read()
    n = struct.unpack(">I", data[4:8])[0]
    return [data[16 + i * 784:16 + (i + 1) * 784] for i in range(n)]


def folder(count, source):
    """target/bench-images/<count>/<class>/<i>.png, 1,000 images a folder."""
    top = os.path.join(ROOT, "target/bench-images", str(count))
    done = os.path.join(top, ".complete")
    if os.path.exists(done):
        return top
    encoded = [png_bytes(d, 28, 28) for d in source]
    for i in range(count):
        sub = os.path.join(top, f"{i // 1000:04d}")
        if i % 1000 == 0:
            os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, f"{i:07d}.png"), "wb") as f:
            f.write(encoded[i % len(encoded)])
    open(done, "w").close()
    return top


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--counts", type=int, nargs="+", default=[10000, 100000, 500000])
    p.add_argument("--models", nargs="+",
                   default=["models/mnist_d4_gram", "models/mnist_d12_gram"])
    p.add_argument("--eqae", default=os.path.join(ROOT, "target/release/eqae"))
    p.add_argument("--out", default=None, help="CSV of the results")
    args = p.parse_args()
    source = digits()
    rows = ["model,images,seconds,images_per_second,peak_rss_mib"]
    print(f"{'model':<24} {'images':>8} {'seconds':>8} {'images/s':>9} {'peak MiB':>9}")
    for count in args.counts:
        t = time.time()
        top = folder(count, source)
        print(f"# {count} images in {top} ({time.time() - t:.0f} s to make)", file=sys.stderr)
        for model in args.models:
            out = os.path.join(ROOT, "target/bench-embed.npy")
            cmd = [args.eqae, "embed", "--run", os.path.join(ROOT, model), "--images", top,
                   "--head", "gram", "--out", out, "--quiet"]
            t = time.time()
            child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
            _, status, usage = os.wait4(child.pid, 0)  # this child's own peak
            seconds = time.time() - t
            if status != 0:
                sys.exit(f"{' '.join(cmd)} failed ({status})")
            peak_mib = usage.ru_maxrss / 1024
            name = os.path.basename(model)
            print(f"{name:<24} {count:>8} {seconds:>8.1f} {count / seconds:>9.0f} {peak_mib:>9.0f}")
            rows.append(f"{name},{count},{seconds:.2f},{count / seconds:.1f},{peak_mib:.0f}")
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
