#!/usr/bin/env python3
"""The PyTorch reference of serket's Fashion-MNIST-3 model, for speed.

The model and objective are bench/torch_quality.py's (imported from it): per
modality an encoder in→512→512→2·64 and a decoder 64→512→512→512→out (SiLU
between linears); Bernoulli logits for the 784 pixels, a categorical per
token for 8 tokens over 60 ids, a unit-variance Gaussian for the 80×32
log-mel features; the product of experts with the N(0, I) prior; the MVAE
plan (joint, each modality alone, one random pair scoring all);
λ_language = 50, β = 1, Adam lr 1e-3, batch 100.

What it times is what serket's metrics log times (bench/speed.sh reads
serket's samples_per_sec from it): one whole epoch over the first --items
training items, in a shuffled order, every step loading its batch from the
arrays `serket bench export` writes (as serket's modules load theirs from
their shards), from the first step's start to the last step's update. Both
sides read their data into memory and build their networks before the
clock starts; neither warms up, checkpoints or evaluates inside it. Without
--data it trains on random arrays of the same shapes (for --check).

Each modality decodes all the terms it is a target of in one batch (3×100
rows under the MVAE plan) rather than one term at a time: the same sums in
larger products, and a third of the weight-gradient GEMMs (--per-term
decodes one term at a time, as serket's modules do).

Three ways to run it:

  --threads T       one process, the three modalities one after another,
                    T threads for torch's own kernels and for the OpenBLAS
                    its linear layers call (Debian's torch uses the system
                    BLAS, whose thread count torch.set_num_threads does not
                    set: --blas-threads overrides it);
  --procs 3         as serket runs: one process per modality (each with one
                    thread and one BLAS thread, as serket's modules get
                    OPENBLAS_NUM_THREADS=1) and the fusion in this one, the
                    integrator. Per step, as serket's messages go: the
                    parent sends each module the batch's rows and the plan
                    (StepBegin); each loads its rows, encodes and writes
                    its posterior (μ, log σ²) into shared memory
                    (Posterior); the parent fuses each term's experts with
                    the prior, draws z and writes every term's z (Latent);
                    each module decodes the terms it is a target of,
                    writes dL/dz per term and sends its weighted
                    log-likelihood (ZGrad);
                    the parent adds the terms' KL, back-propagates through
                    the fusion and writes each module's dL/dμ, dL/dlog σ²
                    (ExpertGrad); each module back-propagates its encoder
                    and takes its Adam step while the parent already sends
                    the next step. Tensors go through torch shared-memory
                    tensors; the signals (and the rows and plan) through one
                    pipe per module;
  --procs 3 --pin   the same, with each module process pinned to one CPU as
                    serket's placement pins them (package placement): the
                    modalities by their GEMM flops, heaviest first, each on
                    the least loaded CPU (audio alone, vision and language
                    together on two cores); the fusion runs anywhere;
  --check           trains a few steps (--check-steps) from one seed the
                    way the objective reads (one process, each term decoded
                    on its own) and every faster way (batched decodes; three
                    processes, batched and per term), and fails unless the
                    objectives and the parameters' updates agree within
                    float32 tolerance: no mode is faster by computing
                    something else.

Prints one JSON line: samples/s and the settings (and with --procs 3 each
process's share of the epoch spent computing and its peak memory).

  serket bench export --out /tmp/fm3 --limit 10000 --fractions 1
  /usr/bin/python3 bench/torch_mvae.py --data /tmp/fm3 --items 10000 --procs 3
  /usr/bin/python3 bench/torch_mvae.py --check
  /usr/bin/python3 bench/torch_mvae.py --flops
"""
import argparse
import json
import os
import random
import resource
import sys
import time

D, H = 64, 512
NAMES = ("vision", "language", "audio")
TOKENS, VOCAB = 8, 60
SIZES = {"vision": 784, "language": TOKENS * VOCAB, "audio": 80 * 32}
LAMBDA = {"vision": 1.0, "language": 50.0, "audio": 1.0}
BETA = 1.0
LR = 1e-3

# --check's tolerances. Every mode does the same float32 operations, but not
# in the same order everywhere (autograd sums a latent's gradient from
# three decoders in its own order, the fusing process in another; a batched
# decode sums a weight's gradient over its 300 rows in one product), so
# they differ by rounding. Measured on random and on real data, 5 steps:
# objectives within 2.2e-7 (relative, per step); the first step's gradients
# within 4.3e-7 (‖Δg‖/‖g‖, the worst tensor: the rounding of float32 sums,
# as bench/torch_check.py's GRAD_TOL explains); the parameters' updates
# over the steps within 3.1e-5 (‖Δ‖/‖update‖ over the whole model: Adam's
# first steps move a weight by about ±lr whatever its gradient's size, so
# a gradient near zero that rounds the other way moves it by up to 2·lr,
# which a small tensor's norm shows and the model's does not). Errors of
# formula or setting move them by far more: β halved on the fusing side,
# 2.6e-5, 0.5 and 0.22; audio's λ 0.1% too large in its process, 6.2e-4,
# 1e-3 and 3.2e-3; the modules' learning rate 1% too large, 1.1e-5, —,
# 1e-2.
OBJ_TOL = 1e-5
GRAD_TOL = 1e-4
UPDATE_TOL = 1e-3


def flops_per_sample():
    """GEMM flops per training sample of one step of the MVAE plan, by modality.

    A Linear layer in→out costs 2·in·out flops per sample forward, the same
    again for its weight gradient and again for its input gradient, which
    every layer needs but an encoder's first (its input is data). A step
    encodes each modality once and decodes each modality once per term it
    is a target of: the joint term, its own term, and the random pair's
    term (which scores all three), so 3 decodes. Biases, activations,
    likelihoods, the fusion and Adam are elementwise, O(in + out) per
    sample or O(parameters) per step, and left out (about 1.5% of the
    total here, Adam most of it).
    """
    def layers(dims):
        return list(zip(dims[:-1], dims[1:]))

    decodes = 3  # joint + own + the pair scoring all
    out = {}
    for m, n in SIZES.items():
        enc = layers([n, H, H, 2 * D])
        dec = layers([D, H, H, H, n])
        f_enc = sum(2 * i * o for i, o in enc)
        f_enc_bwd = sum(2 * i * o for i, o in enc) + sum(2 * i * o for i, o in enc[1:])
        f_dec = sum(2 * i * o for i, o in dec)
        out[m] = f_enc + f_enc_bwd + decodes * 3 * f_dec
    return out


def parser():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="a `serket bench export` directory (default: random arrays of the same shapes)")
    ap.add_argument("--items", type=int, default=10000, help="train one epoch on the first N items")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the one-process mode")
    ap.add_argument("--blas-threads", type=int, default=0, help="OpenBLAS threads (default: --threads; 1 with --procs 3)")
    ap.add_argument("--procs", type=int, choices=(1, 3), default=1, help="1: one process; 3: one per modality")
    ap.add_argument("--pin", action="store_true", help="with --procs 3: pin each module process to one CPU by its flops, as serket does")
    ap.add_argument("--per-term", action="store_true",
                    help="decode each term's latent on its own (as serket's modules do), not all of a modality's at once")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--check", action="store_true", help="check every mode against the plain one-process step and exit")
    ap.add_argument("--check-steps", type=int, default=5)
    ap.add_argument("--flops", action="store_true", help="print the GEMM MFLOP per training sample and exit")
    return ap


if __name__ == "__main__":
    ARGS = parser().parse_args()
    if ARGS.flops:
        per = flops_per_sample()
        print(json.dumps({"mflop_per_sample": sum(per.values()) / 1e6,
                          "by_modality": {m: v / 1e6 for m, v in per.items()}, "plan": "mvae"}))
        sys.exit(0)
    # OpenBLAS reads its thread count once, when torch loads it.
    blas = ARGS.blas_threads or (1 if ARGS.procs > 1 or ARGS.check else ARGS.threads)
    os.environ["OPENBLAS_NUM_THREADS"] = str(blas)
    # Keeps torch's OpenMP pool from spinning against OpenBLAS's threads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402 (after the thread settings)
import torch  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_quality as tq  # noqa: E402


# ---------------------------------------------------------------- data


def load(data, items, seed, names):
    """The first `items` train rows of each modality in names, in memory
    (as serket's modules hold their shards): {m: array}, and the row count."""
    if data is None:
        out = {}
        for m in names:
            rng = np.random.default_rng([seed, NAMES.index(m)])
            if m == "vision":
                out[m] = rng.random((items, SIZES[m]), dtype=np.float32)
            elif m == "language":
                out[m] = rng.integers(0, VOCAB, (items, TOKENS), dtype=np.int32)
            else:
                out[m] = rng.standard_normal((items, SIZES[m]), dtype=np.float32)
        return out, items
    meta = tq.load_meta(data)
    if tuple(meta["modalities"]) != NAMES or meta["hidden"] != H or meta["latent"] != D:
        tq.fail(f"{data}: modalities {meta['modalities']}, hidden {meta['hidden']}, latent {meta['latent']}: "
                f"this reference is of {NAMES} at {H} and {D}")
    arrays, n = tq.load_split(data, "train", meta)
    n = min(n, items)
    return {m: np.ascontiguousarray(arrays[m][:n]) for m in names}, n


def batch(arrays, m, idx):
    """Encoder input and target of modality m for rows idx."""
    rows = arrays[m][idx]
    if m == "language":
        y = torch.from_numpy(rows.astype(np.int64))
        return torch.nn.functional.one_hot(y, VOCAB).to(torch.float32).view(len(idx), -1), y
    x = torch.from_numpy(rows)
    return x, x


def build(m, seed):
    """Modality m's networks, initialised from (seed, m) alone, so that every
    mode starts from the same weights."""
    torch.manual_seed(seed * 1000 + NAMES.index(m))
    return tq.Modality(SIZES[m], SIZES[m], H, D)


class Schedule:
    """What the fusing side decides per step: the batch's rows, the plan and
    the noise, drawn from the seed in one order whatever the mode."""

    def __init__(self, n, b, seed):
        self.n, self.b = n, b
        self.order = np.random.default_rng(seed).permutation(n)
        self.plan_rng = random.Random(seed)
        self.noise = torch.Generator().manual_seed(seed)
        self.steps = (n + b - 1) // b

    def step(self, k):
        # Sorted rows read memory in order; the batch is the same set.
        idx = np.sort(self.order[k * self.b:(k + 1) * self.b])
        plan = tq.make_plan("mvae", list(NAMES), 1, self.plan_rng)
        eps = [torch.randn((len(idx), D), generator=self.noise) for _ in plan]
        return idx, plan, eps


def decoded(m, mod, zs, x, y, per_term):
    """λ_m Σ over the latents zs (each B×D) of the batch mean of modality m's
    log-likelihood. per_term decodes each latent on its own, as the
    objective reads (and serket's modules do); otherwise all of them in one
    batch of len(zs)·B rows: the same sums, in fewer and larger products
    (one weight-gradient GEMM per layer instead of one per term)."""
    b = x.shape[0]
    if per_term:
        return sum(LAMBDA[m] * tq.loglik(m, mod.dec(z), x, y, VOCAB).mean() for z in zs)
    k = len(zs)
    ll = tq.loglik(m, mod.dec(torch.cat(zs)), x.repeat(k, 1), y.repeat(k, 1), VOCAB)
    return LAMBDA[m] * ll.sum() / b


# ---------------------------------------------------------------- one process


def train_one(data, items, b, seed, threads, per_term=False, steps=None, keep=False):
    torch.set_num_threads(threads)
    arrays, n = load(data, items, seed, NAMES)
    mods = {m: build(m, seed) for m in NAMES}
    params = [p for m in NAMES for p in mods[m].parameters()]
    opt = torch.optim.Adam(params, lr=LR)
    sched = Schedule(n, b, seed)
    steps = sched.steps if steps is None else min(steps, sched.steps)
    objs, grads = [], None
    t0 = time.perf_counter()
    for k in range(steps):
        idx, plan, eps = sched.step(k)
        bt = {m: batch(arrays, m, idx) for m in NAMES}
        posts = {m: (*mods[m].encode(bt[m][0]), None) for m in NAMES}
        total, zs = 0, {m: [] for m in NAMES}
        for i, (subset, targets) in enumerate(plan):
            mu, var, prec = tq.poe([posts[m] for m in subset], posts[NAMES[0]][0])
            z = mu + var.sqrt() * eps[i]
            total = total - BETA * tq.kl_std_normal(mu, var, prec).mean()
            for m in targets:
                zs[m].append(z)
        for m in NAMES:
            total = total + decoded(m, mods[m], zs[m], *bt[m], per_term)
        opt.zero_grad(set_to_none=True)
        (-total).backward()
        if keep and k == 0:
            grads = {f"{m}.{name}": p.grad.clone() for m in NAMES for name, p in mods[m].named_parameters()}
        opt.step()
        objs.append(total.item())
    dt = time.perf_counter() - t0
    params = {f"{m}.{name}": p.detach().clone() for m in NAMES for name, p in mods[m].named_parameters()} if keep else None
    return {"seconds": dt, "items": min(n, steps * b), "objectives": objs, "params": params, "grads": grads,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


# ---------------------------------------------------------------- one process per modality


def pinning():
    """Each modality's CPU as serket's placement would choose it (LPT on flops)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(NAMES) <= len(cpus):
        return {}
    f = flops_per_sample()
    load = {c: 0.0 for c in cpus}
    out = {}
    for m in sorted(NAMES, key=lambda m: (-f[m], m)):
        c = min(cpus, key=lambda c: (load[c], c))
        load[c] += f[m]
        out[m] = c
    return out


def module_main(k, m, conn, data, items, seed, per_term, keep, post, zbuf, dz, grad, cpu=None):
    """A modality's process: serket's module side of a training step."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    torch.set_num_threads(1)
    arrays, _ = load(data, items, seed, (m,))
    mod = build(m, seed)
    opt = torch.optim.Adam(mod.parameters(), lr=LR)
    conn.send("ready")
    compute, start, grads = 0.0, None, None
    enc_out = x = y = plan = None
    while True:
        msg = conn.recv()
        t = time.perf_counter()
        kind = msg[0]
        if kind == "step":  # StepBegin → Posterior
            if start is None:
                start = t
            _, idx, plan = msg
            x, y = batch(arrays, m, idx)
            bb = len(idx)
            enc_out = mod.enc(x)
            post[k, :bb].copy_(enc_out.detach())
            compute += time.perf_counter() - t
            conn.send("post")
        elif kind == "z":  # Latent → ZGrad
            mine = [i for i, (_, targets) in enumerate(plan) if m in targets]
            zs = [zbuf[i, :bb].clone().requires_grad_() for i in mine]
            obj = decoded(m, mod, zs, x, y, per_term)
            (-obj).backward()
            for i, z in zip(mine, zs):
                dz[k, i, :bb].copy_(z.grad)
            compute += time.perf_counter() - t
            conn.send(obj.item())
        elif kind == "grad":  # ExpertGrad → learn
            enc_out.backward(grad[k, :bb])
            if keep and grads is None:
                grads = {f"{m}.{n}": p.grad.clone() for n, p in mod.named_parameters()}
            opt.step()
            opt.zero_grad(set_to_none=True)
            enc_out = None
            compute += time.perf_counter() - t
            if msg[1]:  # the epoch's last step: report
                conn.send({"compute": compute, "seconds": time.perf_counter() - start,
                           "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024})
        elif kind == "params":  # for --check: the weights now, the first step's gradients
            conn.send(({f"{m}.{n}": p.detach().clone() for n, p in mod.named_parameters()}, grads))
        elif kind == "stop":
            return


def train_procs(data, items, b, seed, per_term=False, steps=None, keep=False, pin=False):
    """One process per modality and the fusion in this one (see the doc)."""
    torch.set_num_threads(1)
    n = items
    if data is not None:
        n = min(items, tq.load_split(data, "train", tq.load_meta(data))[1])
    sched = Schedule(n, b, seed)
    steps = sched.steps if steps is None else min(steps, sched.steps)
    max_terms = 1 + len(NAMES) + 1
    post = torch.zeros(len(NAMES), b, 2 * D).share_memory_()
    grad = torch.zeros(len(NAMES), b, 2 * D).share_memory_()
    zbuf = torch.zeros(max_terms, b, D).share_memory_()
    dz = torch.zeros(len(NAMES), max_terms, b, D).share_memory_()
    ctx = mp.get_context("spawn")
    conns, procs = [], []
    cpus = pinning() if pin else {}
    for k, m in enumerate(NAMES):
        mine, theirs = ctx.Pipe()
        p = ctx.Process(target=module_main, args=(k, m, theirs, data, items, seed, per_term, keep, post, zbuf, dz, grad, cpus.get(m)), daemon=True)
        p.start()
        conns.append(mine)
        procs.append(p)
    for c in conns:
        if c.recv() != "ready":
            raise RuntimeError("a module process did not start")
    objs, fuse = [], 0.0
    t0 = time.perf_counter()
    for s in range(steps):
        idx, plan, eps = sched.step(s)
        bb = len(idx)
        for c in conns:
            c.send(("step", idx, plan))
        for c in conns:
            c.recv()
        t = time.perf_counter()
        experts = {}
        for k, m in enumerate(NAMES):
            mu = post[k, :bb, :D].clone().requires_grad_()
            lv = post[k, :bb, D:].clone().requires_grad_()
            experts[m] = (mu, lv, None)
        zs, kl = [], 0
        for i, (subset, _) in enumerate(plan):
            mu, var, prec = tq.poe([experts[m] for m in subset], experts[NAMES[0]][0])
            z = mu + var.sqrt() * eps[i]
            zbuf[i, :bb].copy_(z.detach())
            zs.append(z)
            kl = kl + tq.kl_std_normal(mu, var, prec).mean()
        fuse += time.perf_counter() - t
        for c in conns:
            c.send(("z",))
        ll = sum(c.recv() for c in conns)
        t = time.perf_counter()
        # dL/dz of the terms' log-likelihoods, summed over their targets,
        # joins the KL's gradient here; autograd carries both to μ, log σ².
        loss = BETA * kl
        for i, (_, targets) in enumerate(plan):
            g = sum(dz[NAMES.index(m), i, :bb] for m in targets)
            loss = loss + (zs[i] * g).sum()
        loss.backward()
        for k, m in enumerate(NAMES):
            mu, lv, _ = experts[m]
            grad[k, :bb, :D].copy_(mu.grad)
            grad[k, :bb, D:].copy_(lv.grad)
        fuse += time.perf_counter() - t
        last = s == steps - 1
        for c in conns:
            c.send(("grad", last))
        objs.append(ll - BETA * kl.item())
    reports = [c.recv() for c in conns]
    dt = time.perf_counter() - t0
    params = grads = None
    if keep:
        params, grads = {}, {}
        for c in conns:
            c.send(("params",))
            p, g = c.recv()
            params.update(p)
            grads.update(g)
    for c in conns:
        c.send(("stop",))
    for p in procs:
        p.join(timeout=10)
    processes = {"integrator": {"compute": fuse / dt, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}}
    for m, r in zip(NAMES, reports):
        processes[m] = {"compute": r["compute"] / dt, "peak_rss_bytes": r["peak_rss_bytes"]}
    return {"seconds": dt, "items": min(n, steps * b), "objectives": objs, "params": params, "grads": grads, "processes": processes,
            "peak_rss_bytes": sum(p["peak_rss_bytes"] for p in processes.values())}


# ---------------------------------------------------------------- the check


def check(args):
    """The reference computes the step as its objective reads: one process,
    each term decoded on its own. Every faster way (decodes batched, one
    process per modality) must train from the same seed to the same
    objectives, take the same first step, and make the same updates, all
    within rounding."""
    init = {f"{m}.{n}": p.detach().clone() for m in NAMES for n, p in build(m, args.seed).named_parameters()}
    items, b, seed, steps = min(args.items, args.check_steps * args.batch), args.batch, args.seed, args.check_steps
    ref = train_one(args.data, items, b, seed, 1, per_term=True, steps=steps, keep=True)
    runs = {
        "one process, batched decodes": train_one(args.data, items, b, seed, 1, steps=steps, keep=True),
        "three processes, batched decodes": train_procs(args.data, items, b, seed, steps=steps, keep=True),
        "three processes, per-term decodes": train_procs(args.data, items, b, seed, per_term=True, steps=steps, keep=True),
    }

    def rel(got, want):
        return ((got - want).norm() / want.norm()).item()

    out, ok = {}, True
    for name, r in runs.items():
        obj = max(abs(a - c) / abs(a) for a, c in zip(ref["objectives"], r["objectives"]))
        grad, worst = max((rel(r["grads"][p], g), p) for p, g in ref["grads"].items())
        step = rel(torch.cat([(r["params"][p] - p0).flatten() for p, p0 in init.items()]),
                   torch.cat([(ref["params"][p] - p0).flatten() for p, p0 in init.items()]))
        good = obj <= OBJ_TOL and grad <= GRAD_TOL and step <= UPDATE_TOL
        ok = ok and good
        out[name] = {"objective_rel_diff": obj, "grad_rel_diff": grad, "worst_grad": worst, "update_rel_diff": step, "ok": good}
        print(f"{name}: objectives within {obj:.1e}, first gradients within {grad:.1e} ({worst}), "
              f"updates within {step:.1e}: {'ok' if good else 'FAILED'}", file=sys.stderr)
    print(json.dumps({"check": "ok" if ok else "FAILED", "steps": len(ref["objectives"]), "data": args.data or "random",
                      "reference": "one process, per-term decodes",
                      "tolerances": {"objective": OBJ_TOL, "grad": GRAD_TOL, "update": UPDATE_TOL}, "modes": out}))
    return 0 if ok else 1


def main():
    args = ARGS
    for flag in ("items", "batch", "threads", "check_steps"):
        if getattr(args, flag) < 1:
            tq.fail(f"--{flag.replace('_', '-')} {getattr(args, flag)}: want at least 1")
    if args.pin and args.procs == 1:
        tq.fail("--pin: only with --procs 3 (one process has nothing to place)")
    if args.check:
        sys.exit(check(args))
    torch.manual_seed(args.seed)
    if args.procs == 1:
        r = train_one(args.data, args.items, args.batch, args.seed, args.threads, per_term=args.per_term)
    else:
        r = train_procs(args.data, args.items, args.batch, args.seed, per_term=args.per_term, pin=args.pin)
    out = {"samples_per_sec": r["items"] / r["seconds"], "seconds": r["seconds"], "items": r["items"],
           "steps": len(r["objectives"]), "batch": args.batch, "procs": args.procs,
           "threads": 1 if args.procs > 1 else args.threads, "blas_threads": int(os.environ["OPENBLAS_NUM_THREADS"]),
           "decodes": "per term" if args.per_term else "batched", "pinned": pinning() if args.pin and args.procs > 1 else {}, "data": args.data or "random", "objective_last": r["objectives"][-1], "torch": torch.__version__,
           "peak_rss_bytes": r["peak_rss_bytes"]}
    if "processes" in r:
        out["processes"] = r["processes"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
