#!/usr/bin/env python3
"""`eqae embed` against ONNX Runtime on the exported model: the same 10,000
MNIST test digits, the same threads, images/s for both.

    target/pyenv/bin/python scripts/bench_onnx.py
        [--models models/mnist_d4_gram models/mnist_d12_gram]
        [--count 10000] [--threads 2] [--rounds 3]
        [--eqae target/release/eqae] [--out docs/results/onnx_speed.csv]

Needs numpy and onnxruntime (scripts/test.sh puts both into target/pyenv).
For each model: `eqae export --head gram`, then rounds that alternate
- eqae: `eqae embed --images` over a folder of the digits as PNGs (the
  whole command: start, loading the model, decoding, the network, writing);
  its fixed cost is measured on 200 of the same images and subtracted, to
  give the network's own rate as well;
- ONNX Runtime: `InferenceSession.run` on the same digits already decoded (grey
  level / 255, centred on the 32x32 canvas), batches of 256 as eqae's.
Best round of each. Also checks that the two agree on every image.
"""
import argparse
import csv
import os
import platform
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from bench_embed import digits, folder  # noqa: E402  (PNG folders shared with that benchmark)


def network_inputs(source, count, size=32):
    """The digits as eqae feeds them: /255, 28x28 centred on size x size."""
    x = np.frombuffer(b"".join(source[i % len(source)] for i in range(count)), dtype=np.uint8)
    x = x.reshape(count, 1, 28, 28).astype(np.float32) / np.float32(255.0)
    pad = (size - 28) // 2
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))


def processor():
    """The CPU's model name and family from /proc/cpuinfo (Zen 4 and Zen 5
    EPYCs share the name "AMD EPYC"), else what Python knows."""
    try:
        pairs = (line.split(":", 1) for line in open("/proc/cpuinfo") if ":" in line)
        info = {k.strip(): v.strip() for k, v in pairs}
        name = " ".join(info["model name"].split())
        return f"{name} (family {info['cpu family']}, {os.cpu_count()} cores)"
    except (OSError, KeyError):
        return platform.processor() or platform.machine()


def eqae_seconds(eqae, run, images, out, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    t = time.perf_counter()
    subprocess.run([eqae, "embed", "--run", run, "--images", images, "--head", "gram",
                    "--out", out, "--quiet"], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def ort_seconds(extractor, x, batch=256):
    t = time.perf_counter()
    rows = [extractor.run(["features"], {"images": x[i:i + batch]})[0]
            for i in range(0, len(x), batch)]
    return time.perf_counter() - t, np.concatenate(rows)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+",
                   default=["models/mnist_d4_gram", "models/mnist_d12_gram"])
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--eqae", default=os.path.join(ROOT, "target/release/eqae"))
    p.add_argument("--out", default=os.path.join(ROOT, "docs/results/onnx_speed.csv"))
    a = p.parse_args()

    source = digits()
    big, small = folder(a.count, source), folder(200, source)
    x = network_inputs(source, a.count)
    work = os.path.join(ROOT, "target/bench-onnx")
    os.makedirs(work, exist_ok=True)
    rows = []
    for run in a.models:
        name = os.path.basename(run.rstrip("/"))
        model = os.path.join(work, name + ".onnx")
        subprocess.run([a.eqae, "export", "--run", run, "--head", "gram", "--out", model],
                       check=True, stdout=subprocess.DEVNULL)
        options = ort.SessionOptions()
        options.intra_op_num_threads = a.threads
        options.inter_op_num_threads = 1
        extractor = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        ort_seconds(extractor, x[:512])  # warm up
        npy = os.path.join(work, name + ".npy")
        eq, fixed, rt = [], [], []
        for _ in range(a.rounds):
            eq.append(eqae_seconds(a.eqae, run, big, npy, a.threads))
            fixed.append(eqae_seconds(a.eqae, run, small, npy + ".small.npy", a.threads))
            seconds, got = ort_seconds(extractor, x)
            rt.append(seconds)
        expected = np.load(npy)
        scale = np.maximum(np.abs(expected).max(axis=1), 1e-12)
        difference = float((np.abs(got - expected).max(axis=1) / scale).max())
        e, f, r = min(eq), min(fixed), min(rt)
        network = (a.count - 200) / max(e - f, 1e-9)
        row = {
            "model": name, "images": a.count, "threads": a.threads,
            "eqae_images_per_s": round(a.count / e),
            "eqae_network_images_per_s": round(network),
            "onnxruntime_images_per_s": round(a.count / r),
            "onnxruntime_over_eqae": round((a.count / r) / (a.count / e), 2),
            "onnxruntime_over_eqae_network": round((a.count / r) / network, 2),
            "largest_row_difference": f"{difference:.2e}",
            "onnxruntime": ort.__version__,
            "machine": processor(),
        }
        print(row, flush=True)
        rows.append(row)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
