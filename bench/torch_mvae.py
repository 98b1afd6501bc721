#!/usr/bin/env python3
"""The PyTorch reference of serket's Fashion-MNIST-3 model, for speed.

The same networks (the MVAE paper's MLPs: encoder in→512→512→2·64, decoder
64→512→512→512→out, SiLU), the same likelihoods (Bernoulli logits for the
784 pixels, a categorical per token for 8 tokens over 60 ids, a unit-variance
Gaussian for 80×32 log-mel features), the same product of experts with the
N(0, I) prior, the same MVAE plan (joint, each modality alone, one random
pair scoring all), λ_language = 50, β = 1, Adam lr 1e-3, batch 100 — trained
in one process on random inputs of the right shapes (throughput does not
depend on the data). Prints one JSON line: samples/s and the settings.

Run with Debian's python3-torch: OMP_WAIT_POLICY=PASSIVE keeps torch's and
OpenBLAS's thread pools from fighting (3.5× slower otherwise).
"""
import argparse
import json
import resource
import math
import random
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

D, H = 64, 512
SIZES = {"vision": 784, "language": 8 * 60, "audio": 80 * 32}
LAMBDA = {"vision": 1.0, "language": 50.0, "audio": 1.0}


def mlp(dims):
    layers = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class Modality(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.enc = mlp([n, H, H, 2 * D])
        self.dec = mlp([D, H, H, H, n])

    def encode(self, x):
        out = self.enc(x)
        return out[:, :D], out[:, D:]


def loglik(name, out, x, y):
    if name == "vision":
        return -F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(1)
    if name == "language":
        logits = out.view(-1, 8, 60)
        return -F.cross_entropy(logits.transpose(1, 2), y, reduction="none").sum(1)
    return (-0.5 * (x - out) ** 2 - 0.5 * math.log(2 * math.pi)).sum(1)


def poe(experts):
    prec = torch.ones_like(experts[0][0])
    num = torch.zeros_like(experts[0][0])
    for mu, lv in experts:
        t = torch.exp(-lv.clamp(-20, 20))
        prec = prec + t
        num = num + t * mu
    return num / prec, 1 / prec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    random.seed(1)
    mods = {k: Modality(n) for k, n in SIZES.items()}
    params = [p for m in mods.values() for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    b = args.batch
    x = {
        "vision": torch.rand(b, 784),
        "language": None,
        "audio": torch.randn(b, 2560),
    }
    y = torch.randint(0, 60, (b, 8))
    x["language"] = F.one_hot(y, 60).float().view(b, -1)
    names = list(SIZES)
    pairs = [["vision", "language"], ["vision", "audio"], ["language", "audio"]]

    def step():
        posts = {k: mods[k].encode(x[k]) for k in names}
        plan = [(names, names)] + [([k], [k]) for k in names] + [(random.choice(pairs), names)]
        total = 0
        for subset, targets in plan:
            mu, var = poe([posts[k] for k in subset])
            z = mu + var.sqrt() * torch.randn_like(mu)
            kl = 0.5 * (var + mu ** 2 - 1 - var.log()).sum(1)
            ll = sum(LAMBDA[k] * loglik(k, mods[k].dec(z), x[k], y) for k in targets)
            total = total + (ll - kl).mean()
        opt.zero_grad()
        (-total).backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    dt = time.perf_counter() - t0
    print(json.dumps({"samples_per_sec": args.steps * b / dt, "steps": args.steps, "batch": b,
                      "threads": args.threads, "torch": torch.__version__,
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


if __name__ == "__main__":
    main()
