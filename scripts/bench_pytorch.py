#!/usr/bin/env python3
"""Time the D4 (p4m) autoencoder of `eqae bench --model d4` in PyTorch, with
its expanded filter banks as plain convolutions, on the same CPU cores.

    python3 scripts/bench_pytorch.py [--batch 64] [--steps 5] [--threads 2]
    python3 scripts/bench_pytorch.py --compare target/release/eqae --rounds 6

The architecture mirrors src/model/gcnn.rs with channels [4, 8, 16, 16]
per group element (x |D4| = 8 real channels), latent 32, one group-linear
layer, 32x32 inputs: one training step is forward, backward and Adam.

With --compare, the script alternates one PyTorch timing and one
`eqae bench --model d4` run (same batch and steps) for --rounds rounds,
so that both see the same machine load, and prints each pair, the medians
and eqae's throughput relative to PyTorch's.
"""
import argparse
import statistics
import subprocess
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

N = 8  # |D4|


def act(h):
    # The same nonlinearity as eqae's models (src/nn/mod.rs).
    return F.leaky_relu(h, 0.1)


class D4Autoencoder(nn.Module):
    def __init__(self, channels=(4, 8, 16, 16), latent=32, width=32, size=32):
        super().__init__()
        c = [ch * N for ch in channels]
        self.final = size >> len(channels)
        self.enc = nn.ModuleList([nn.Conv2d(1, c[0], 3, padding=1)] +
                                 [nn.Conv2d(a, b, 3, padding=1) for a, b in zip(c, c[1:])])
        self.collapse = nn.Conv2d(c[-1], latent * N, self.final, stride=self.final)
        self.enc_linear = nn.Linear(latent * N, width * N)
        self.dec_linear = nn.Linear(width * N, latent * N)
        self.expand = nn.ConvTranspose2d(latent * N, c[-1], self.final, stride=self.final)
        self.ups = nn.ModuleList([nn.ConvTranspose2d(c[i], c[i], 2, stride=2) for i in reversed(range(len(c)))])
        self.convs = nn.ModuleList([nn.Conv2d(c[i], c[i - 1] if i > 0 else N, 3, padding=1)
                                    for i in reversed(range(len(c)))])

    def forward(self, x):
        h = x
        for conv in self.enc:
            h = F.avg_pool2d(act(conv(h)), 2)
        v = self.collapse(h).flatten(1)
        v = self.enc_linear(v)
        h = act(self.dec_linear(v))
        h = act(self.expand(h.view(h.shape[0], -1, 1, 1)))
        for i, (up, conv) in enumerate(zip(self.ups, self.convs)):
            h = conv(act(up(h)))
            if i + 1 < len(self.convs):
                h = act(h)
        return h.mean(1, keepdim=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--compare", metavar="EQAE", help="eqae binary to time in turn with PyTorch")
    p.add_argument("--rounds", type=int, default=5, help="PyTorch/eqae pairs with --compare")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = D4Autoencoder().to(a.device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(a.batch, 1, 32, 32, device=a.device)
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)

    def step():
        opt.zero_grad()
        loss = ((model(x) - x) ** 2).mean()
        loss.backward()
        opt.step()

    def time_pytorch():
        for _ in range(2):
            step()
        sync()
        t = time.perf_counter()
        for _ in range(a.steps):
            step()
        sync()
        return (time.perf_counter() - t) / a.steps

    params = sum(q.numel() for q in model.parameters())
    where = f"{a.threads} threads" if a.device == "cpu" else a.device
    if not a.compare:
        per = time_pytorch()
        print(f"pytorch {torch.__version__} d4: {params} parameters (expanded), {per * 1e3:.1f} ms/step, "
              f"{a.batch / per:.1f} img/s, {where}")
        return

    # eqae prints a table; the d4 row's third column is ms/step.
    cmd = [a.compare, "bench", "--model", "d4", "--batch", str(a.batch), "--steps", str(a.steps)]
    torch_ms, eqae_ms = [], []
    print(f"pytorch {torch.__version__} ({where}) against {' '.join(cmd)}")
    for r in range(a.rounds):
        torch_ms.append(time_pytorch() * 1e3)
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        row = next(line for line in out.splitlines() if line.startswith("d4 "))
        eqae_ms.append(float(row.split()[2]))
        print(f"round {r + 1}: pytorch {torch_ms[-1]:.1f} ms/step, eqae {eqae_ms[-1]:.1f} ms/step, "
              f"eqae/pytorch throughput {torch_ms[-1] / eqae_ms[-1]:.2f}x")
    tm, em = statistics.median(torch_ms), statistics.median(eqae_ms)
    print(f"median: pytorch {tm:.1f} ms/step ({a.batch / tm * 1e3:.0f} img/s), "
          f"eqae {em:.1f} ms/step ({a.batch / em * 1e3:.0f} img/s), "
          f"eqae/pytorch throughput {tm / em:.2f}x")


if __name__ == "__main__":
    main()
