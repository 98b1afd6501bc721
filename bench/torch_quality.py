#!/usr/bin/env python3
"""The PyTorch reference of serket's three-modality VAE, for quality.

bench/torch_mvae.py times this model (it imports it from here); this script
trains it on real data exported by `serket bench export` and saves its
weights, so the Go side can score them with the same evaluation code as
serket's own model.

It mirrors serket exactly:
  * networks (modules/mvae): per modality an encoder MLP in→H→H→2·D (SiLU
    between linears; output[:, :D] is the mean, output[:, D:] the
    log-variance) and a decoder MLP D→H→H→H→out, H = 512 and D = 64 by
    default (from meta.json);
  * likelihoods: Bernoulli logits for the 784 vision pixels (continuous
    targets in [0, 1]), a categorical over vocab ids per token position for
    language (encoder input: the position-major one-hot), a unit-variance
    Gaussian for the audio log-mel features;
  * fusion (integrator/poe.go): the product of the present experts of a term's
    subset and the N(0, I) prior, T = 1 + Σ exp(-clamp(logvar, -20, 20)),
    mean = Σ T_m mu_m / T, var = 1/T, one reparameterised z per term;
  * objective (integrator/step.go, integrator/plan.go): per step, Σ over the
    plan's terms of the batch mean of Σ_{j∈targets} λ_j present_j ll_j(z)
    − β KL(q‖N(0, I)); plans mvae (joint, each modality alone, k random
    subsets of size 2..n−1 scoring all), cross (every term scores all) and
    joint; λ_language = 50 by default; β annealed linearly from --kl-from to
    --kl-to over --kl-anneal epochs; Adam lr 1e-3 (ascending the objective).

The export directory (--data) holds meta.json (modalities, latent, hidden,
tokens, vocab, sizes, fractions), {train,test}_{vision,language,audio}.npy
(float32 pixels in [0, 1]; int32 token ids, N×tokens; float32 normalised
log-mel; N×size or flat) and train_present_<F>.npy (uint8, N×modalities, the
partial-pairing mask of fraction F, used with --paired-fraction F; absent
modalities neither join the product of experts nor are scored). The arrays are
memory-mapped, so the ~600 MB of train audio is not loaded at once.

After every epoch it scores the plain joint ELBO (λ = β = 1, every modality
present, one z per item with fixed noise) on the first --eval-items test
items. At the end it writes the weights as DIR/<modality>/{enc,dec}.<i>.{W,b}.npy
(float32, W in torch's (out, in) layout, i counting the Linear layers) and
prints one JSON line to stdout; progress goes to stderr.

Run with Debian's python3-torch; OMP_WAIT_POLICY=PASSIVE keeps torch's and
OpenBLAS's thread pools from fighting:

  serket bench export --out /tmp/fm3
  OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/torch_quality.py \\
      --data /tmp/fm3 --epochs 10 --paired-fraction 0.1 --out /tmp/fm3-torch
"""
import argparse
import json
import math
import os
import random
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

KNOWN = ("vision", "language", "audio")
MAX_LOGVAR = 20.0
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
EXPORT_HINT = "write it with `serket bench export --out DIR`"


def fail(msg):
    print(f"torch_quality: {msg}", file=sys.stderr)
    sys.exit(2)


def mlp(dims):
    layers = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class Modality(nn.Module):
    def __init__(self, n_in, n_out, hidden, latent):
        super().__init__()
        self.latent = latent
        self.enc = mlp([n_in, hidden, hidden, 2 * latent])
        self.dec = mlp([latent, hidden, hidden, hidden, n_out])

    def encode(self, x):
        out = self.enc(x)
        return out[:, : self.latent], out[:, self.latent :]

    def named_linears(self):
        for part in ("enc", "dec"):
            linears = [l for l in getattr(self, part) if isinstance(l, nn.Linear)]
            for i, l in enumerate(linears):
                yield f"{part}.{i}", l


# ---------------------------------------------------------------- data


def load_meta(data):
    path = os.path.join(data, "meta.json")
    if not os.path.isdir(data):
        fail(f"--data {data}: no such directory ({EXPORT_HINT})")
    if not os.path.isfile(path):
        fail(f"{path}: missing ({EXPORT_HINT})")
    with open(path) as f:
        try:
            meta = json.load(f)
        except json.JSONDecodeError as e:
            fail(f"{path}: not valid JSON: {e}")
    for key in ("modalities", "latent", "hidden", "tokens", "vocab", "sizes"):
        if key not in meta:
            fail(f"{path}: no {key!r} field ({EXPORT_HINT})")
    for m in meta["modalities"]:
        if m not in KNOWN:
            fail(f"{path}: modality {m!r} has no likelihood here (want some of {', '.join(KNOWN)})")
        if m not in meta["sizes"]:
            fail(f"{path}: no size for modality {m!r}")
    if "language" in meta["modalities"] and meta["sizes"]["language"] != meta["tokens"] * meta["vocab"]:
        fail(f"{path}: language size {meta['sizes']['language']} is not tokens×vocab = "
             f"{meta['tokens']}×{meta['vocab']}")
    return meta


def load_npy(data, name):
    path = os.path.join(data, name)
    if not os.path.isfile(path):
        fail(f"{path}: missing ({EXPORT_HINT})")
    try:
        return np.load(path, mmap_mode="r")
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same error to the user
        fail(f"{path}: cannot read as .npy: {e}")


def load_split(data, split, meta):
    """The split's arrays (memory-mapped), checked against meta.json."""
    arrays, n = {}, None
    for m in meta["modalities"]:
        name = f"{split}_{m}.npy"
        a = load_npy(data, name)
        want = meta["tokens"] if m == "language" else meta["sizes"][m]
        if a.ndim == 1 and a.size % want == 0:  # written flat: meta.json gives the row size
            a = a.reshape(-1, want)
        if a.ndim != 2 or a.shape[1] != want:
            fail(f"{os.path.join(data, name)}: shape {a.shape}, want (N, {want})")
        if n is not None and a.shape[0] != n:
            fail(f"{os.path.join(data, name)}: {a.shape[0]} rows, but the other {split} files have {n}")
        n = a.shape[0]
        if m == "language":
            if not np.issubdtype(a.dtype, np.integer):
                fail(f"{os.path.join(data, name)}: dtype {a.dtype}, want integer token ids")
            if a.size and (a.min() < 0 or a.max() >= meta["vocab"]):
                fail(f"{os.path.join(data, name)}: token ids outside [0, {meta['vocab']})")
        arrays[m] = a
    if f"{split}_items" in meta and n != meta[f"{split}_items"]:
        fail(f"{data}: {n} {split} rows, but meta.json says {meta[f'{split}_items']} ({EXPORT_HINT})")
    return arrays, n


def load_presence(data, meta, fraction, n):
    """(n, M) float32 presence in meta['modalities'] order, or None for all present."""
    if fraction is None:
        return None
    known = [str(f) for f in meta.get("fractions", [])]
    try:
        if float(fraction) == 1 and fraction not in known:
            return None
    except ValueError:
        fail(f"--paired-fraction {fraction}: not a number")
    if fraction not in known:
        fail(f"--paired-fraction {fraction}: the export has fractions {known} "
             f"(give one exactly as written there, or re-run `serket bench export`)")
    name = f"train_present_{fraction}.npy"
    p = load_npy(data, name)
    if p.ndim == 1 and p.size == n * len(meta["modalities"]):
        p = p.reshape(n, -1)
    if p.shape != (n, len(meta["modalities"])):
        fail(f"{os.path.join(data, name)}: shape {p.shape}, want ({n}, {len(meta['modalities'])})")
    if not np.isin(p, (0, 1)).all():
        fail(f"{os.path.join(data, name)}: values other than 0 and 1")
    return np.asarray(p, dtype=np.float32)


def batch_tensors(arrays, idx, meta):
    """Encoder inputs and targets of rows idx: {m: (x, y)}; y is the token ids for language."""
    out = {}
    for m, a in arrays.items():
        rows = np.ascontiguousarray(a[idx])
        if m == "language":
            y = torch.from_numpy(rows.astype(np.int64))
            x = F.one_hot(y, meta["vocab"]).to(torch.float32).view(len(idx), -1)
            out[m] = (x, y)
        else:
            x = torch.from_numpy(rows.astype(np.float32, copy=False))
            out[m] = (x, x)
    return out


# ---------------------------------------------------------------- model


def loglik(name, out, x, y, vocab):
    """Per-row log-likelihood of the targets under the decoder output."""
    if name == "vision":
        return -F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(1)
    if name == "language":
        logits = out.view(out.shape[0], -1, vocab)
        return -F.cross_entropy(logits.transpose(1, 2), y, reduction="none").sum(1)
    return (-0.5 * (x - out) ** 2 - HALF_LOG_2PI).sum(1)


def poe(experts, like):
    """Fuse (mu, logvar, present-or-None) experts with the N(0, I) prior."""
    prec = torch.ones_like(like)
    num = torch.zeros_like(like)
    for mu, lv, pres in experts:
        t = torch.exp(-lv.clamp(-MAX_LOGVAR, MAX_LOGVAR))
        if pres is not None:
            t = t * pres[:, None]
        prec = prec + t
        num = num + t * mu
    return num / prec, 1 / prec, prec


def kl_std_normal(mu, var, prec):
    # -log var = log T; from T so the prior (T = 1) is exactly 0.
    return 0.5 * (var + mu ** 2 - 1 + prec.log()).sum(1)


def make_plan(kind, names, k, rng):
    all_ = list(names)
    if kind == "joint" or len(names) == 1:
        return [(all_, all_)]
    plan = [(all_, all_)] + [([m], [m]) for m in names]
    n = len(names)
    pool = [[m for i, m in enumerate(names) if mask >> i & 1]
            for mask in range(1, (1 << n) - 1) if bin(mask).count("1") >= 2]
    plan += [(s, all_) for s in rng.sample(pool, min(k, len(pool)))]
    if kind == "cross":
        plan = [(s, all_) for s, _ in plan]
    return plan


# ---------------------------------------------------------------- main


def parse_lambda(specs, names):
    lam = {m: 1.0 for m in names}
    for spec in specs:
        for item in spec.split(","):
            item = item.strip()
            if not item:
                continue
            name, sep, w = item.partition("=")
            if not sep:
                fail(f"--lambda {item}: want MODULE=W")
            if name not in lam:
                fail(f"--lambda {item}: unknown module {name!r} (have {', '.join(names)})")
            try:
                v = float(w)
            except ValueError:
                v = -1
            if not v >= 0 or math.isinf(v):
                fail(f"--lambda {item}: want a non-negative number")
            lam[name] = v
    return lam


def evaluate(mods, names, test, n_eval, meta, seed, chunk=500):
    """The plain joint ELBO (λ = β = 1, all present) per item on the first n_eval test items."""
    gen = torch.Generator().manual_seed(seed)
    tot_ll = {m: 0.0 for m in names}
    tot_kl = 0.0
    with torch.no_grad():
        for lo in range(0, n_eval, chunk):
            idx = np.arange(lo, min(lo + chunk, n_eval))
            batch = batch_tensors(test, idx, meta)
            posts = [(*mods[m].encode(batch[m][0]), None) for m in names]
            mu, var, prec = poe(posts, posts[0][0])
            z = mu + var.sqrt() * torch.randn(mu.shape, generator=gen)
            tot_kl += kl_std_normal(mu, var, prec).sum().item()
            for m in names:
                x, y = batch[m]
                tot_ll[m] += loglik(m, mods[m].dec(z), x, y, meta["vocab"]).sum().item()
    ll = {m: v / n_eval for m, v in tot_ll.items()}
    kl = tot_kl / n_eval
    return sum(ll.values()) - kl, kl, ll


def save(mods, out, per_epoch):
    """Write the weights, and metrics.jsonl (one line per epoch, as serket
    train writes it; `serket bench import` copies it next to the checkpoints
    so that `serket bench quality` reports the training throughput)."""
    tmp = out.rstrip("/") + ".tmp"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    with open(os.path.join(tmp, "metrics.jsonl"), "w") as f:
        for rec in per_epoch:
            f.write(json.dumps(rec) + "\n")
    for m, mod in mods.items():
        os.makedirs(os.path.join(tmp, m))
        for prefix, lin in mod.named_linears():
            for suffix, p in (("W", lin.weight), ("b", lin.bias)):
                np.save(os.path.join(tmp, m, f"{prefix}.{suffix}.npy"),
                        p.detach().cpu().numpy().astype(np.float32))
    if os.path.exists(out):
        shutil.rmtree(out)
    os.rename(tmp, out)


def main():
    ap = argparse.ArgumentParser(
        description="Train the PyTorch reference of serket's multimodal VAE on a `serket bench export` directory.")
    ap.add_argument("--data", required=True, help="export directory (from `serket bench export`)")
    ap.add_argument("--out", help="write the trained weights to DIR/<modality>/<name>.npy")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--plan", choices=("mvae", "cross", "joint"), default="mvae")
    ap.add_argument("--subsets", type=int, default=1, help="k random subsets of size 2..n-1 per step")
    ap.add_argument("--lambda", dest="lam", action="append", default=None,
                    help="log-likelihood weights MODULE=W[,MODULE=W] (others 1); default language=50")
    ap.add_argument("--kl-from", type=float, default=0.0)
    ap.add_argument("--kl-to", type=float, default=1.0)
    ap.add_argument("--kl-anneal", type=float, default=1.0, help="epochs over which β rises (0: β = kl-to)")
    ap.add_argument("--paired-fraction", help="use train_present_<F>.npy (F as in meta.json); default all present")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N train items")
    ap.add_argument("--eval-items", type=int, default=1000)
    ap.add_argument("--hidden", type=int, help="hidden units (default from meta.json)")
    ap.add_argument("--latent", type=int, help="latent size (default from meta.json)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    for flag in ("epochs", "batch", "threads"):
        if getattr(args, flag) < 1:
            fail(f"--{flag} {getattr(args, flag)}: want at least 1")
    if args.subsets < 0 or args.limit < 0 or args.eval_items < 0 or args.kl_anneal < 0:
        fail("--subsets, --limit, --eval-items and --kl-anneal must not be negative")
    if not args.lr > 0:
        fail(f"--lr {args.lr}: want > 0")

    torch.set_num_threads(args.threads)
    meta = load_meta(args.data)
    names = list(meta["modalities"])
    hidden = args.hidden or meta["hidden"]
    latent = args.latent or meta["latent"]
    lam = parse_lambda(args.lam if args.lam is not None else ["language=50"] if "language" in names else [], names)

    train, n_train = load_split(args.data, "train", meta)
    test, n_test = load_split(args.data, "test", meta)
    present = load_presence(args.data, meta, args.paired_fraction, n_train)
    if args.limit:
        n_train = min(n_train, args.limit)
    n_eval = min(args.eval_items, n_test)
    b = args.batch
    steps_per_epoch = n_train // b
    if steps_per_epoch == 0:
        fail(f"{n_train} train items make no full batch of {b}")
    anneal_steps = int(math.floor(args.kl_anneal * steps_per_epoch + 0.5))

    torch.manual_seed(args.seed)
    plan_rng = random.Random(args.seed)
    order_rng = np.random.default_rng(args.seed)
    noise = torch.Generator().manual_seed(args.seed)
    mods = {m: Modality(meta["sizes"][m], meta["sizes"][m], hidden, latent) for m in names}
    params = [p for m in mods.values() for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=args.lr, eps=1e-8)
    vocab = meta["vocab"]
    col = {m: i for i, m in enumerate(names)}

    def step(idx, beta):
        batch = batch_tensors(train, idx, meta)
        pres = None if present is None else torch.from_numpy(present[idx])
        mask = {m: None if pres is None else pres[:, col[m]] for m in names}
        posts = {m: (*mods[m].encode(batch[m][0]), mask[m]) for m in names}
        total = 0
        for subset, targets in make_plan(args.plan, names, args.subsets, plan_rng):
            mu, var, prec = poe([posts[m] for m in subset], posts[names[0]][0])
            z = mu + var.sqrt() * torch.randn(mu.shape, generator=noise)
            obj = -beta * kl_std_normal(mu, var, prec)
            for m in targets:
                x, y = batch[m]
                ll = loglik(m, mods[m].dec(z), x, y, vocab)
                if mask[m] is not None:
                    ll = ll * mask[m]
                obj = obj + lam[m] * ll
            total = total + obj.mean()
        opt.zero_grad(set_to_none=True)
        (-total).backward()
        opt.step()
        return total.item()

    print(f"torch_quality: {n_train} train items ({steps_per_epoch} steps of {b} per epoch), "
          f"{n_eval} test items, plan {args.plan}, λ {lam}, paired fraction {args.paired_fraction or 'all'}, "
          f"{args.threads} threads", file=sys.stderr)
    per_epoch, train_seconds, s = [], 0.0, 0
    elbo = kl = None
    ll = {}
    for epoch in range(1, args.epochs + 1):
        perm = order_rng.permutation(n_train)
        t0 = time.perf_counter()
        obj_sum = 0.0
        for k in range(steps_per_epoch):
            beta = args.kl_to if anneal_steps == 0 else \
                args.kl_from + (args.kl_to - args.kl_from) * min(1.0, s / anneal_steps)
            # Sorted rows read the memory-mapped files in order; the batch is the same set.
            obj = step(np.sort(perm[k * b:(k + 1) * b]), beta)
            if not math.isfinite(obj):
                fail(f"epoch {epoch} step {s}: the objective is {obj}: training diverged")
            obj_sum += obj
            s += 1
        dt = time.perf_counter() - t0
        train_seconds += dt
        rec = {"epoch": epoch, "train_objective": obj_sum / steps_per_epoch, "seconds": dt,
               "samples_per_sec": steps_per_epoch * b / dt}
        if n_eval:
            elbo, kl, ll = evaluate(mods, names, test, n_eval, meta, args.seed)
            rec["test_elbo"] = elbo
        per_epoch.append(rec)
        lls = " ".join(f"{m} {v:.2f}" for m, v in ll.items())
        print(f"epoch {epoch}: train objective {rec['train_objective']:.2f}, {dt:.1f} s, "
              f"{steps_per_epoch * b / dt:.1f} samples/s"
              + (f"; test ELBO {elbo:.2f} (KL {kl:.2f}; loglik {lls})" if n_eval else ""),
              file=sys.stderr)

    if args.out:
        save(mods, args.out, per_epoch)
        print(f"torch_quality: weights written to {args.out}", file=sys.stderr)
    print(json.dumps({
        "system": "pytorch",
        "samples_per_sec": s * b / train_seconds,
        "epochs": args.epochs,
        "steps": s,
        "batch": b,
        "threads": args.threads,
        "plan": args.plan,
        "subsets": args.subsets,
        "lambda": lam,
        "paired_fraction": args.paired_fraction,
        "train_items": n_train,
        "eval_items": n_eval,
        "test_elbo": elbo,
        "test_kl": kl,
        "test_loglik": ll,
        "per_epoch": per_epoch,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
