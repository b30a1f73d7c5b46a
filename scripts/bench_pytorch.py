#!/usr/bin/env python3
"""Time the D4 (p4m) and D12 autoencoders of `eqae bench --model d4|d12` in
PyTorch, with their expanded filter banks as plain convolutions, on the
same CPU cores.

    python3 scripts/bench_pytorch.py [--model d4] [--batch 64] [--steps 5] [--threads 2]
    python3 scripts/bench_pytorch.py --compare target/release/eqae --model d12 --batch 512 --rounds 6

The architecture mirrors src/model/gcnn.rs with channels [4, 8, 16, 16]
per element of the grid group, latent 32, one group-linear layer (a dense
matrix over all rows), 32x32 inputs: one training step is forward,
backward and Adam.
- d4: the D4 grid network (x |D4| = 8 real channels), one branch.
- d12: the C4 grid network (x 4 channels) on 6 branches (3 turns, each
  also mirrored), each branch's input gathered by 4 bilinear taps per
  pixel and its output gathered back the same way (src/model/branches.rs:
  the taps are random here, which costs the same); 24 rows.

With --compare, the script alternates one PyTorch timing and one
`eqae bench --model MODEL` run (same batch and steps) for --rounds rounds,
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

def act(h):
    # The same nonlinearity as eqae's models (src/nn/mod.rs).
    return F.leaky_relu(h, 0.1)


class Autoencoder(nn.Module):
    """The grid network of order `n` on `branches` copies of each image."""

    def __init__(self, n=8, branches=1, channels=(4, 8, 16, 16), latent=32, width=32, size=32):
        super().__init__()
        c = [ch * n for ch in channels]
        self.n, self.branches, self.size = n, branches, size
        self.final = size >> len(channels)
        rows = n * branches
        self.enc = nn.ModuleList([nn.Conv2d(1, c[0], 3, padding=1)] +
                                 [nn.Conv2d(a, b, 3, padding=1) for a, b in zip(c, c[1:])])
        self.collapse = nn.Conv2d(c[-1], latent * n, self.final, stride=self.final)
        self.enc_linear = nn.Linear(latent * rows, width * rows)
        self.dec_linear = nn.Linear(width * rows, latent * rows)
        self.expand = nn.ConvTranspose2d(latent * n, c[-1], self.final, stride=self.final)
        self.ups = nn.ModuleList([nn.ConvTranspose2d(c[i], c[i], 2, stride=2) for i in reversed(range(len(c)))])
        self.convs = nn.ModuleList([nn.Conv2d(c[i], c[i - 1] if i > 0 else n, 3, padding=1)
                                    for i in reversed(range(len(c)))])
        if branches > 1:
            p = size * size
            g = torch.Generator().manual_seed(0)
            self.register_buffer("src_in", torch.randint(0, p, (branches * p * 4,), generator=g))
            self.register_buffer("w_in", torch.rand(1, branches * p * 4, generator=g))
            self.register_buffer("src_out", torch.randint(0, branches * p, (branches * p * 4,), generator=g))
            self.register_buffer("w_out", torch.rand(1, branches * p * 4, generator=g) / branches)

    def split(self, x):
        if self.branches == 1:
            return x
        b, p = x.shape[0], self.size * self.size
        h = (x.reshape(b, p).index_select(1, self.src_in) * self.w_in).reshape(b, self.branches * p, 4).sum(2)
        return h.reshape(b * self.branches, 1, self.size, self.size)

    def merge(self, y):
        if self.branches == 1:
            return y
        b, p = y.shape[0] // self.branches, self.size * self.size
        h = y.reshape(b, self.branches * p).index_select(1, self.src_out) * self.w_out
        return h.reshape(b, self.branches, p, 4).sum(3).sum(1).reshape(b, 1, self.size, self.size)

    def forward(self, x):
        b = x.shape[0]
        h = self.split(x)
        for conv in self.enc:
            h = F.avg_pool2d(act(conv(h)), 2)
        v = self.collapse(h).reshape(b, -1)
        v = self.enc_linear(v)
        h = act(self.dec_linear(v))
        h = act(self.expand(h.reshape(b * self.branches, -1, 1, 1)))
        for i, (up, conv) in enumerate(zip(self.ups, self.convs)):
            h = conv(act(up(h)))
            if i + 1 < len(self.convs):
                h = act(h)
        return self.merge(h.mean(1, keepdim=True))


MODELS = {"d4": dict(n=8, branches=1), "d12": dict(n=4, branches=6)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=sorted(MODELS), default="d4")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--compare", metavar="EQAE", help="eqae binary to time in turn with PyTorch")
    p.add_argument("--rounds", type=int, default=5, help="PyTorch/eqae pairs with --compare")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = Autoencoder(**MODELS[a.model]).to(a.device)
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
        print(f"pytorch {torch.__version__} {a.model}: {params} parameters (expanded), {per * 1e3:.1f} ms/step, "
              f"{a.batch / per:.1f} img/s, {where}")
        return

    # eqae prints a table; the model's row's third column is ms/step.
    cmd = [a.compare, "bench", "--model", a.model, "--batch", str(a.batch), "--steps", str(a.steps)]
    torch_ms, eqae_ms = [], []
    print(f"pytorch {torch.__version__} ({where}) against {' '.join(cmd)}")
    for r in range(a.rounds):
        torch_ms.append(time_pytorch() * 1e3)
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        row = next(line for line in out.splitlines() if line.startswith(a.model + " "))
        eqae_ms.append(float(row.split()[2]))
        print(f"round {r + 1}: pytorch {torch_ms[-1]:.1f} ms/step, eqae {eqae_ms[-1]:.1f} ms/step, "
              f"eqae/pytorch throughput {torch_ms[-1] / eqae_ms[-1]:.2f}x")
    tm, em = statistics.median(torch_ms), statistics.median(eqae_ms)
    print(f"median: pytorch {tm:.1f} ms/step ({a.batch / tm * 1e3:.0f} img/s), "
          f"eqae {em:.1f} ms/step ({a.batch / em * 1e3:.0f} img/s), "
          f"eqae/pytorch throughput {tm / em:.2f}x")


if __name__ == "__main__":
    main()
