#!/usr/bin/env python3
"""Time the D4 (p4m) autoencoder of `eqae bench --model d4` in PyTorch, with
its expanded filter banks as plain convolutions, on the same CPU cores.

    python3 scripts/bench_pytorch.py [--batch 64] [--steps 5] [--threads 2]

The architecture mirrors src/model/gcnn.rs with channels [4, 8, 16, 16]
per group element (x |D4| = 8 real channels), latent 32, one group-linear
layer, 32x32 inputs: one training step is forward, backward and Adam.
Run `eqae bench --model d4` right after it to compare throughput.
"""
import argparse
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

    for _ in range(2):
        step()
    sync()
    t = time.perf_counter()
    for _ in range(a.steps):
        step()
    sync()
    per = (time.perf_counter() - t) / a.steps
    params = sum(q.numel() for q in model.parameters())
    print(f"pytorch {torch.__version__} d4: {params} parameters (expanded), {per * 1e3:.1f} ms/step, "
          f"{a.batch / per:.1f} img/s, " + (f"{a.threads} threads" if a.device == "cpu" else a.device))


if __name__ == "__main__":
    main()
