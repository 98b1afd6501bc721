#!/usr/bin/env python3
"""The gradient cross-check: one serket training step recomputed in PyTorch.

Each DIR is a step bench/torchref.ExportStep wrote (meta.json and NumPy
arrays): the weights every network starts from, each modality's encoder
inputs and present rows, the plan's terms (for a mixture, each stratum's
experts in its "from"), the noise of every term, λ, β and a gated product's
gates, with serket's objective and the gradient of it it left in every
parameter. This script rebuilds the networks in float64, computes the step's
objective from its definition (DESIGN.md section 3; the aggregate and
mixture package docs), differentiates it with autograd and compares:

  * networks (modules/mvae): encoder in→H→H→2D (SiLU between linears;
    output[:, :D] the mean, output[:, D:] the log-variance), decoder
    D→H→H→H→out; the layers as the parameter files list them;
  * likelihoods: Bernoulli logits (vision), a categorical over the
    vocabulary per token position (language, on the token ids), a Gaussian
    of the exported log-variance (audio, 0: unit variance);
  * the objective, the batch mean over rows r and the step's terms i of
        w_i(r) [Σ_{j∈targets} λ_j present_j(r) log p(x_j(r) | z_i(r))
                − β pen_i(r)],
    where, with T_k = exp(-clamp(l_k, ±20)) over the term's present experts:
      poe    z = μ + eps/√T, T = 1 + Σ T_k, μ = Σ T_k μ_k / T, w = 1,
             pen = KL(N(μ, 1/T) ‖ N(0, I)) = ½ Σ_d (1/T + μ² − 1 + log T);
      gpoe   as poe with T_k = exp(-clamp(l_k − θ_k[n(r) − 1], ±20)), n(r)
             the experts the row fuses (at most the gates' rows): the gate
             multiplies the expert's precision by exp θ, and the gated
             precision is bounded as every expert's is, as aggregate.Gated
             defines it;
      moe    the mixture of the term's experts: stratum "from" = {e},
             z = μ_e + exp(l_e/2)·eps where e is present (eps elsewhere),
             w = present_e / M(r), M(r) the row's present experts,
             pen = log q(z) − log N(z; 0, I), q = (1/M) Σ_present N(μ_k, e^l_k);
      mopoe  moe over the products (each with the prior) of every
             non-empty subset of the term's experts, a product present in
             a row when all its experts are; stratum "from" = its subset.

It prints one JSON line per DIR to stdout (the objective, every tensor's
max |g_torch − g_serket| and ‖g_torch − g_serket‖ / ‖g_torch‖, the checks of
the forward values) and a table to stderr; it exits 1 if any comparison is
past its tolerance, 2 if an export cannot be read.

  /usr/bin/python3 bench/torch_check.py DIR...
"""
import argparse
import itertools
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

# Tolerances, relative (‖difference‖ / ‖reference‖ per tensor). serket
# computes in float32 (unit roundoff u = 2^-24 ≈ 6e-8): each gradient is a
# chain of a few GEMMs whose inner sums run over up to 2560 terms (the
# audio features; 784 vision pixels, a 480-wide language one-hot), and an
# objective summed over every term, row and output. Rounding errors of a
# float32 dot product of length n grow like √n·u typically (n·u at worst):
# 1e-6 to 3e-6 here, so 1e-4 leaves a margin of thirty or more for their
# accumulation through the layers and the cancellations of the mixtures'
# score terms, while an error of formula moves a gradient by far more (a
# wrong β: 0.3; the mixtures' row weights 1/|subset| instead of 1/M(r): 1;
# the score part of the penalty dropped: 1.5 to 5; a gradient 0.1% off:
# 1e-3). The forward values (posteriors, latents, the objective) pass
# through fewer float32 operations and are held to 1e-5.
GRAD_TOL = 1e-4
FORWARD_TOL = 1e-5

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class ExportError(Exception):
    pass


# ---------------------------------------------------------------- reading


def load_meta(d):
    path = os.path.join(d, "meta.json")
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ExportError(f"{path}: {e}")
    for key in ("modalities", "batch", "latent", "aggregation", "terms", "plan_terms", "lambda", "beta",
                "likelihoods", "params", "objective", "max_logvar"):
        if key not in meta:
            raise ExportError(f"{path}: no {key!r} field")
    return meta


def npy(d, *parts, shape=None, dtype=np.float64):
    path = os.path.join(d, *parts)
    try:
        a = np.load(path)
    except (OSError, ValueError) as e:
        raise ExportError(f"{path}: {e}")
    if shape is not None:
        if a.size != int(np.prod(shape)):
            raise ExportError(f"{path}: {a.size} values, want {shape}")
        a = a.reshape(shape)
    return a.astype(dtype)


def tensor(a, grad=False):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


class Module:
    """One modality: its parameters (leaves), serket's gradients, its batch."""

    def __init__(self, d, name, meta):
        b = meta["batch"]
        self.name = name
        self.params, self.serket = {}, {}
        for p in meta["params"][name]:
            self.params[p["name"]] = tensor(npy(d, name, p["name"] + ".npy", shape=p["shape"]), grad=True)
            self.serket[p["name"]] = npy(d, name, p["name"] + ".grad.npy", shape=p["shape"])
        self.x = tensor(npy(d, name, "x.npy").reshape(b, -1))
        self.present = tensor(npy(d, name, "present.npy", shape=(b,)))
        if not set(np.unique(self.present.numpy())) <= {0.0, 1.0}:
            raise ExportError(f"{d}/{name}/present.npy: values other than 0 and 1")
        self.lik = meta["likelihoods"][name]
        self.ids = None
        if self.lik["name"] == "categorical":
            self.ids = torch.tensor(npy(d, name, "ids.npy", dtype=np.int64).reshape(b, -1))
            # The encoder reads the position-major one-hot of the ids
            # (an absent row's are not read).
            v = self.x.shape[1] // self.ids.shape[1]
            onehot = F.one_hot(self.ids.clamp(min=0), v).to(torch.float64) * (self.ids >= 0)[..., None]
            here = self.present > 0
            if not torch.equal(onehot.reshape(b, -1)[here], self.x[here]):
                raise ExportError(f"{d}/{name}: x.npy is not the one-hot encoding of ids.npy")
        self.serket_mu = npy(d, name, "mu.npy", shape=(b, meta["latent"]))
        self.serket_logvar = npy(d, name, "logvar.npy", shape=(b, meta["latent"]))

    def mlp(self, part, h):
        """The linears part.0, part.1, … with SiLU between them."""
        i = 0
        while f"{part}.{i}.W" in self.params:
            if i > 0:
                h = F.silu(h)
            h = h @ self.params[f"{part}.{i}.W"].T + self.params[f"{part}.{i}.b"]
            i += 1
        if i == 0:
            raise ExportError(f"{self.name}: no {part}.0.W parameter")
        return h

    def encode(self, latent):
        out = self.mlp("enc", self.x)
        return out[:, :latent], out[:, latent:]

    def loglik(self, z):
        """Per-row log p(x | z) under the decoder at z."""
        out = self.mlp("dec", z)
        name = self.lik["name"]
        if name == "bernoulli":
            return (self.x * out - F.softplus(out)).sum(1)
        if name == "categorical":
            logits = out.reshape(out.shape[0], self.ids.shape[1], -1)
            lp = torch.log_softmax(logits, dim=2).gather(2, self.ids.clamp(min=0)[..., None])[..., 0]
            return (lp * (self.ids >= 0)).sum(1)
        if name == "gaussian":
            lv = float(self.lik.get("logvar", 0))
            return (-0.5 * ((self.x - out) ** 2 * math.exp(-lv) + lv) - HALF_LOG_2PI).sum(1)
        raise ExportError(f"{self.name}: likelihood {name!r} unknown here")


# ---------------------------------------------------------------- the math


def log_normal(z, mu, lv):
    """log N(z; μ, e^lv) summed over the last dimension."""
    return (-0.5 * (z - mu) ** 2 * torch.exp(-lv) - 0.5 * lv - HALF_LOG_2PI).sum(-1)


def product(experts, b, d, gate=None, lim=None):
    """The product of (μ, clamped l, present, name, raw l) experts and
    N(0, I): μ, T. gate(name, n) is the log-weight row of an expert in rows
    fusing n; the gated log-variance l − θ is clamped to ±lim."""
    n = sum(e[2] for e in experts) if experts else torch.zeros(b, dtype=torch.float64)
    prec = torch.ones(b, d, dtype=torch.float64)
    num = torch.zeros(b, d, dtype=torch.float64)
    for mu, lv, pres, name, raw in experts:
        if gate is not None:
            lv = (raw - gate(name, n)).clamp(-lim, lim)
        t = torch.exp(-lv) * pres[:, None]
        prec = prec + t
        num = num + t * mu
    return num / prec, prec


def mixture_penalty(z, comps, pres):
    """log q(z) − log N(z; 0, I) per row, q the uniform mixture of the
    components (μ_k, l_k) present in the row (pres: K×B). Rows without a
    component get 0 (their weight is 0)."""
    dens = torch.stack([log_normal(z, mu, lv) for mu, lv in comps])  # K×B
    any_ = pres.sum(0) > 0
    dens = torch.where(pres > 0, dens, torch.full_like(dens, torch.finfo(dens.dtype).min / 2))
    m = pres.sum(0).clamp(min=1)
    logq = torch.logsumexp(dens, 0) - torch.log(m)
    pen = logq - log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
    return torch.where(any_, pen, torch.zeros_like(pen))


class Gates:
    def __init__(self, d, meta):
        self.order = meta.get("gate_modules") or []
        self.params, self.serket = {}, {}
        for p, m in zip(meta.get("gates") or [], self.order):
            self.params[m] = tensor(npy(d, "gate", p["name"] + ".npy", shape=p["shape"]), grad=True)
            self.serket[m] = npy(d, "gate", p["name"] + ".grad.npy", shape=p["shape"])

    def row(self, name, n):
        """θ_name[n − 1] per row (n: B, at most the gates' rows); 0 for a
        module the gates do not know or a row fusing none."""
        theta = self.params.get(name)
        if theta is None:
            return torch.zeros(1, dtype=torch.float64)
        idx = (n.clamp(min=1, max=theta.shape[0]) - 1).long()
        return theta[idx] * (n > 0)[:, None]


def strata(agg, subset):
    """The strata of a term over subset, as the sets of experts each is drawn from."""
    if agg in ("poe", "gpoe"):
        return [frozenset()]
    if agg == "moe":
        return [frozenset([m]) for m in subset]
    if agg == "mopoe":
        return [frozenset(c) for k in range(1, len(subset) + 1) for c in itertools.combinations(subset, k)]
    raise ExportError(f"aggregation {agg!r} unknown here")


def check_terms(meta):
    """The exported terms are each plan term once per stratum of the
    aggregation, each stratum once."""
    agg, terms, i = meta["aggregation"], meta["terms"], 0
    for pt in meta["plan_terms"]:
        want = strata(agg, pt["subset"])
        got = []
        for _ in want:
            if i >= len(terms) or terms[i]["subset"] != pt["subset"] or terms[i]["targets"] != pt["targets"]:
                raise ExportError(f"terms: plan term {pt} is not followed by its {len(want)} strata")
            got.append(frozenset(terms[i]["from"]))
            i += 1
        if sorted(map(sorted, got)) != sorted(map(sorted, want)):
            raise ExportError(f"terms: plan term {pt} has strata {got}, want {want}")
    if i != len(terms):
        raise ExportError(f"terms: {len(terms) - i} terms past the plan's strata")


def term_objective(meta, mods, post, gates, i, eps):
    """Term i's Σ_rows w (Σ_j λ_j present_j ll_j − β pen), its z and w."""
    term, agg = meta["terms"][i], meta["aggregation"]
    b, d = meta["batch"], meta["latent"]
    experts = [(post[m][0], post[m][1], mods[m].present, m, post[m][2]) for m in term["subset"]]
    if agg in ("poe", "gpoe"):
        mu, prec = product(experts, b, d, gates.row if agg == "gpoe" else None, meta["max_logvar"])
        z = mu + eps / torch.sqrt(prec)
        w = torch.ones(b, dtype=torch.float64)
        pen = 0.5 * (1 / prec + mu ** 2 - 1 + torch.log(prec)).sum(1)
    else:
        if agg == "moe":
            comps = [(e[0], e[1]) for e in experts]
            pres = torch.stack([e[2] for e in experts])
            keys = [frozenset([e[3]]) for e in experts]
        else:  # mopoe: every non-empty subset's product with the prior
            comps, pres, keys = [], [], []
            for k in range(1, len(experts) + 1):
                for sub in itertools.combinations(experts, k):
                    ones = [(mu, lv, torch.ones(b, dtype=torch.float64), n, raw) for mu, lv, _, n, raw in sub]
                    mu, prec = product(ones, b, d)
                    lv = (-torch.log(prec)).clamp(-meta["max_logvar"], meta["max_logvar"])
                    comps.append((mu, lv))
                    pres.append(torch.stack([s[2] for s in sub]).prod(0))
                    keys.append(frozenset(s[3] for s in sub))
            pres = torch.stack(pres)
        r = keys.index(frozenset(term["from"]))
        mu_r, lv_r = comps[r]
        here = pres[r] > 0
        z = torch.where(here[:, None], mu_r + torch.exp(lv_r / 2) * eps, eps)
        w = pres[r] / pres.sum(0).clamp(min=1)
        pen = mixture_penalty(z, comps, pres)
    ll = torch.zeros(b, dtype=torch.float64)
    for m in term["targets"]:
        ll = ll + meta["lambda"][m] * mods[m].present * mods[m].loglik(z)
    return (w * (ll - meta["beta"] * pen)).sum(), z, w


# ---------------------------------------------------------------- comparing


def rel(ref, got):
    """‖ref − got‖ / ‖ref‖ and max |ref − got|; inf if ref is 0 and got is not."""
    ref, got = np.asarray(ref, dtype=np.float64), np.asarray(got, dtype=np.float64)
    diff = np.linalg.norm(ref - got)
    norm = np.linalg.norm(ref)
    r = diff / norm if norm > 0 else (0.0 if diff == 0 else math.inf)
    return float(r), float(np.max(np.abs(ref - got))) if ref.size else 0.0, float(norm)


def check(d):
    meta = load_meta(d)
    check_terms(meta)
    b, dl, lim = meta["batch"], meta["latent"], meta["max_logvar"]
    mods = {m: Module(d, m, meta) for m in meta["modalities"]}
    gates = Gates(d, meta)
    out = {"dir": d, "aggregation": meta["aggregation"], "plan": meta["plan"], "terms": len(meta["terms"]),
           "forward": [], "tensors": []}
    failures = []  # (relative difference, message)

    def compare(kind, name, ref, got, tol):
        r, mx, norm = rel(ref, got)
        entry = {"name": name, "rel": r, "max_abs": mx, "norm": norm}
        out[kind].append(entry)
        if not r <= tol:
            failures.append((r, f"{name}: relative difference {r:.3g} > {tol:g} (max abs {mx:.3g})"))
        elif kind == "tensors" and norm == 0:
            failures.append((math.inf, f"{name}: no gradient in either: the comparison proves nothing"))

    post = {}
    for m, mod in mods.items():
        mu, lv = mod.encode(dl)
        compare("forward", f"{m}/mu", mu.detach().numpy(), mod.serket_mu, FORWARD_TOL)
        compare("forward", f"{m}/logvar", lv.detach().numpy(), mod.serket_logvar, FORWARD_TOL)
        post[m] = (mu, lv.clamp(-lim, lim), lv)
    total = torch.zeros((), dtype=torch.float64)
    for i in range(len(meta["terms"])):
        eps = tensor(npy(d, f"term{i}.eps.npy", shape=(b, dl)))
        obj, z, w = term_objective(meta, mods, post, gates, i, eps)
        total = total + obj
        compare("forward", f"term{i}/z", z.detach().numpy(), npy(d, f"term{i}.z.npy", shape=(b, dl)), FORWARD_TOL)
        if os.path.exists(os.path.join(d, f"term{i}.w.npy")):
            compare("forward", f"term{i}/w", w.detach().numpy(), npy(d, f"term{i}.w.npy", shape=(b,)), FORWARD_TOL)
    total = total / b
    out["objective"] = {"torch": total.item(), "serket": meta["objective"]}
    compare("forward", "objective", [total.item()], [meta["objective"]], FORWARD_TOL)
    total.backward()

    def grad(p):  # None: the objective does not depend on p
        return p.grad.numpy() if p.grad is not None else np.zeros(tuple(p.shape))

    for m, mod in mods.items():
        for name, p in mod.params.items():
            compare("tensors", f"{m}/{name}", grad(p), mod.serket[name], GRAD_TOL)
    for m, theta in gates.params.items():
        compare("tensors", f"gate.{m}", grad(theta), gates.serket[m], GRAD_TOL)
    out["worst"] = max(out["tensors"], key=lambda e: e["rel"])
    out["failures"] = [msg for _, msg in sorted(failures, key=lambda f: -f[0])]  # worst first
    out["ok"] = not failures
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dirs", nargs="+", help="steps bench/torchref.ExportStep wrote")
    args = ap.parse_args()
    torch.set_num_threads(1)  # a few small matrices: threads cost more than they give
    ok = True
    for d in args.dirs:
        try:
            res = check(d)
        except ExportError as e:
            print(f"torch_check: {e}", file=sys.stderr)
            sys.exit(2)
        ok = ok and res["ok"]
        print(json.dumps(res), flush=True)
        w = res["worst"]
        print(f"{os.path.basename(os.path.normpath(d)):>18}: {res['terms']:2d} terms, objective {res['objective']['torch']:.6g} "
              f"(serket {res['objective']['serket']:.6g}), worst gradient {w['name']} {w['rel']:.2g}"
              + ("" if res["ok"] else "  FAILED: " + "; ".join(res["failures"])), file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
