#!/usr/bin/env python3
"""Peak memory of `eqae train` on a folder of images (`dataset = "folder"`),
for several folder sizes: does memory stay flat as the folder grows?

    scripts/bench_folder_training.py [--counts 20000 200000] [--size 64]
                                     [--seconds 90] [--eqae target/release/eqae]
                                     [--out docs/results/folder_training_memory.csv]

Standard library only. The folders hold MNIST training digits (cycled),
each doubled to 56x56 and centred on a 64x64 PNG, in class folders
`<digit>/`; they are kept under target/bench-train-images/ for reruns.
Each training (D4 Gram, `configs/d4_gram.toml`'s model, batch 64) runs in
its own process for `--seconds` after its data are ready (the log line
"N training / M validation images") and is then stopped; its peak resident
memory is the child's ru_maxrss, its load time the seconds until that line.
"""
import argparse
import csv
import gzip
import os
import signal
import struct
import subprocess
import sys
import threading
import time

from bench_embed import ROOT, png_bytes  # scripts/ is on the path when run as a script


def read_idx(name):
    path = os.path.join(ROOT, "data/mnist", name)
    return open(path, "rb").read() if os.path.exists(path) else gzip.open(path + ".gz").read()


def digits(side):
    """MNIST training digits doubled to 56x56 on a side x side canvas, with labels."""
    images = read_idx("train-images-idx3-ubyte")
    labels = read_idx("train-labels-idx1-ubyte")
    n = struct.unpack(">I", images[4:8])[0]
    margin = (side - 56) // 2
    out = []
    for i in range(n):
        d = images[16 + i * 784:16 + (i + 1) * 784]
        canvas = bytearray(side * side)
        for y in range(56):
            row = bytes(b for b in d[(y // 2) * 28:(y // 2 + 1) * 28] for _ in (0, 1))
            canvas[(y + margin) * side + margin:(y + margin) * side + margin + 56] = row
        out.append((labels[8 + i], png_bytes(bytes(canvas), side, side)))
    return out


def folder(count, side, source):
    """target/bench-train-images/<side>_<count>/<digit>/<i>.png"""
    top = os.path.join(ROOT, "target/bench-train-images", f"{side}_{count}")
    done = os.path.join(top, ".complete")
    if os.path.exists(done):
        return top
    for d in range(10):
        os.makedirs(os.path.join(top, str(d)), exist_ok=True)
    for i in range(count):
        label, png = source[i % len(source)]
        with open(os.path.join(top, str(label), f"{i:07d}.png"), "wb") as f:
            f.write(png)
    open(done, "w").close()
    return top


CONFIG = """name = "{name}"
[data]
dataset = "folder"
root = "{root}"
image_size = {side}
[model]
kind = "equivariant"
group = "d4"
[train]
epochs = 1
batch_size = 64
"""


def train(eqae, root, side, seconds, work):
    name = os.path.basename(root)
    cfg = os.path.join(work, f"{name}.toml")
    with open(cfg, "w") as f:
        f.write(CONFIG.format(name=name, root=root, side=side))
    runs = os.path.join(work, "runs")
    subprocess.run(["rm", "-rf", os.path.join(runs, name)], check=True)
    started = time.time()
    child = subprocess.Popen([eqae, "train", "--config", cfg, "--runs", runs, "--quiet"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ready = threading.Event()
    log = []

    def watch():
        for line in child.stdout:
            log.append(line.rstrip())
            if "training /" in line:
                ready.set()

    def running():
        # not child.poll(), which would reap the child before wait4 reads its usage
        try:
            with open(f"/proc/{child.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    threading.Thread(target=watch, daemon=True).start()
    while not ready.is_set() and running():
        time.sleep(0.05)
    loaded = time.time() - started
    deadline = time.time() + seconds
    while running() and time.time() < deadline:
        time.sleep(0.2)
    trained = time.time() - started - loaded
    if running():
        child.send_signal(signal.SIGTERM)  # SIGINT is ignored by background jobs
    _, status, usage = os.wait4(child.pid, 0)
    if not ready.is_set():
        sys.exit("training stopped before its data were ready:\n" + "\n".join(log))
    return loaded, trained, usage.ru_maxrss / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", type=int, nargs="+", default=[20000, 200000])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=90)
    ap.add_argument("--eqae", default=os.path.join(ROOT, "target/release/eqae"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs/results/folder_training_memory.csv"))
    a = ap.parse_args()
    work = os.path.join(ROOT, "target/bench-train")
    os.makedirs(work, exist_ok=True)
    source = digits(a.size)
    rows = []
    for count in a.counts:
        root = folder(count, a.size, source)
        loaded, trained, peak = train(a.eqae, root, a.size, a.seconds, work)
        row = {"images": count, "side": a.size, "load_s": round(loaded, 1),
               "trained_s": round(trained, 1), "peak_rss_mib": round(peak, 1)}
        print(row, flush=True)
        rows.append(row)
    with open(a.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    main()
