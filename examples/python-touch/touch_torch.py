#!/usr/bin/env python3
"""touchpy in PyTorch: the module of touch.py with its networks written in
torch and their gradients taken by autograd.

    serket module exec --name touchpy -- /usr/bin/python3 examples/python-touch/touch_torch.py \\
        [--hidden N] [--seed N] [--logvar V] [--threads N]

Everything that is not the networks is touch.py's, imported: reading
<data>/touch.dat and normalising it, loading by id, parsing and rendering
readings, the features, the flags. touch.Touch, the modality, hands every
call that reaches the networks to its `net`; TouchTorch below is
touch.Touch with a TorchNet there instead of touch.Net. TorchNet is the
part to copy for a modality of your own:

- encode runs the encoder with autograd on and keeps the graph (mu,
  logvar) for learn;
- decode makes z a leaf that requires grad and back-propagates
  sum_i w_i ll_i: the decoder's .grad accumulate over the decodes of a
  step, and z.grad is dz;
- learn back-propagates serket's dmu, dlogvar through the kept graph
  (torch.autograd.backward) and takes one Adam step with maximize=True,
  since serket's gradients are of an objective to ascend;
- save and restore are torch.save of the state dicts, read back by
  torch.load(weights_only=True), checked before anything changes.

Needs PyTorch (Debian: python3-torch; written against 1.13), numpy and msgpack.
"""

import io
import math
import os
import sys
import zipfile

import numpy as np

try:
    import serket_module as sm
except ImportError:  # run from the repository: the SDK is in sdk/python
    sys.path.insert(0, os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sdk", "python")))
    import serket_module as sm

import touch  # touch.py, beside this file (a script's directory is on sys.path)

try:
    import torch
    from torch import nn
except ImportError as e:
    sys.exit(f"touch_torch.py needs PyTorch, which {sys.executable} cannot import ({e}): "
             "apt-get install python3-torch, or run it with a python3 that has it (Debian's /usr/bin/python3)")

DIM = touch.DIM
CHECKPOINT_FORMAT = "serket-touchpy-torch"


def mlp(inp, hidden, layers, out, dtype):
    """Linear layers inp -> hidden x layers -> out, SiLU after each hidden
    one. nn.Linear's own initialisation: weights and biases uniform in
    +-1/sqrt(fan_in), as touch.py's."""
    sizes = [inp] + [hidden] * layers + [out]
    mods = []
    for i in range(layers + 1):
        mods.append(nn.Linear(sizes[i], sizes[i + 1], dtype=dtype))
        if i < layers:
            mods.append(nn.SiLU())
    return nn.Sequential(*mods)


class TorchNet:
    """mvae's networks in PyTorch, with the interface of touch.Net (what
    touch.Touch calls): encode, decode, learn, discard, loglik, output,
    save, restore. Arrays in and out are numpy; dtype is the compute type
    (torch.float32; tests use torch.float64).

    Gradients: decode adds sum_i w_i d ll_i / d theta into the decoder's
    .grad; backward_encoder adds the encoder's; step takes one Adam step
    ascending them and zeroes them. learn is both."""

    def __init__(self, width, hidden=128, seed=1, lr=1e-3, logvar=0.0, dtype=torch.float32):
        if width < 1 or hidden < 1:
            raise ValueError(f"latent width {width} and hidden size {hidden} must be positive")
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"learning rate {lr}: want a positive number")
        if not math.isfinite(logvar):
            raise ValueError(f"log-variance {logvar}: want a finite number")
        self.width, self.hidden, self.lr, self.logvar, self.dtype = width, hidden, lr, float(logvar), dtype
        # Seeded initialisation that leaves torch's global generator as it
        # was: nn.Linear draws from it.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.encoder = mlp(DIM, hidden, 2, 2 * width, dtype)   # x -> (mu, logvar)
            self.decoder = mlp(width, hidden, 3, DIM, dtype)       # z -> the Gaussian's mean
        self.model = nn.ModuleDict({"encoder": self.encoder, "decoder": self.decoder})
        self.params = list(self.model.parameters())
        # Every parameter has a .grad from the start, zeroed rather than set
        # to None: Adam skips a parameter whose .grad is None, and every step
        # should move all of them (momentum too) as touch.py's Adam does,
        # also in a step with no decode.
        for p in self.params:
            p.grad = torch.zeros_like(p)
        self.opt = torch.optim.Adam(self.params, lr=lr, maximize=True)
        self._encoded = None  # (mu, logvar) of the latest encode, with their graph

    def _tensor(self, a):
        # A copy: the SDK's arrays are read-only views of the request.
        return torch.tensor(np.asarray(a), dtype=self.dtype)

    def _loglik(self, out, x):
        """ll per row of N(x; out, exp(logvar)), a tensor."""
        return -0.5 * (touch.LOG_2PI + self.logvar + (x - out).square() * math.exp(-self.logvar)).sum(dim=1)

    # The model's calls.

    def encode(self, x):
        """(mu, logvar), each B x W, of input rows x (B x 16); the graph is
        kept for learn."""
        with torch.enable_grad():  # even where a caller has turned it off
            mu, logvar = self.encoder(self._tensor(x)).chunk(2, dim=1)
        self._encoded = (mu, logvar)
        return mu.detach().numpy().copy(), logvar.detach().numpy().copy()

    def decode(self, z, x, w):
        """(ll, dz) for latents z (B x W), rows x and weights w (B); adds
        sum_i w_i d ll_i / d theta into the decoder's .grad."""
        z = self._tensor(z).requires_grad_()
        w = self._tensor(w)
        with torch.enable_grad():
            ll = self._loglik(self.decoder(z), self._tensor(x))
            (w * ll).sum().backward()  # accumulates: .grad += ...
        ll = ll.detach().masked_fill(w == 0, 0)
        return ll.numpy(), z.grad.numpy()

    def loglik(self, z, x):
        with torch.no_grad():
            return self._loglik(self.decoder(self._tensor(z)), self._tensor(x)).numpy()

    def output(self, z):
        """The decoder's output (the Gaussian's mean) at z (n x W)."""
        with torch.no_grad():
            return self.decoder(self._tensor(z)).numpy()

    def backward_encoder(self, dmu, dlogvar):
        """Add the encoder's gradients for dmu, dlogvar (of the latest
        encode); the graph is then spent."""
        if self._encoded is None:
            raise RuntimeError("learn without an encode since the last learn or discard")
        mu, logvar = self._encoded
        rows = mu.shape[0]
        if np.shape(dmu) != (rows, self.width) or np.shape(dlogvar) != (rows, self.width):
            raise ValueError(f"learn with gradients of shapes {np.shape(dmu)} and {np.shape(dlogvar)} "
                             f"for an encode of {rows} x {self.width}")
        torch.autograd.backward([mu, logvar], [self._tensor(dmu), self._tensor(dlogvar)])
        self._encoded = None

    def step(self):
        """One Adam step ascending the accumulated gradients; zeroes them."""
        self.opt.step()
        self.opt.zero_grad(set_to_none=False)

    def learn(self, dmu, dlogvar):
        self.backward_encoder(dmu, dlogvar)
        self.step()

    def discard(self):
        self.opt.zero_grad(set_to_none=False)
        self._encoded = None

    # Checkpoints: torch.save of a dict of the sizes, the model's state_dict
    # and Adam's per-parameter state (step, exp_avg, exp_avg_sq). Adam's
    # param_groups (lr, betas, eps) are not saved: they come from the
    # module's flags, and torch 1.13's weights-only unpickler cannot read a
    # Python float anyway.

    def save(self):
        buf = io.BytesIO()
        torch.save({
            "format": CHECKPOINT_FORMAT, "version": 1, "hidden": self.hidden, "width": self.width,
            "model": self.model.state_dict(), "adam": self.opt.state_dict()["state"],
        }, buf)
        return buf.getvalue()

    def restore(self, state):
        """Take back what save wrote; on any error raise ValueError and
        change nothing."""
        d = _unpickle(state)
        if not isinstance(d, dict) or d.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("not a touchpy (PyTorch) checkpoint")
        if d.get("version") != 1:
            raise ValueError(f"touchpy (PyTorch) checkpoint version {d.get('version')!r}: this program reads version 1")
        if d.get("hidden") != self.hidden:
            raise ValueError(f"the checkpoint's networks have {d.get('hidden')} hidden units, "
                             f"this module {self.hidden} (--hidden)")
        if d.get("width") != self.width:
            raise ValueError(f"the checkpoint's latent is {d.get('width')} wide, this module's "
                             f"{self.width} (--latent plus --private)")
        model = self._checked_model(d.get("model"))
        adam = self._checked_adam(d.get("adam"))
        # Everything checked: now change the model. The optimizer keeps its
        # own param_groups (hyperparameters), as the flags say.
        self.opt.load_state_dict({"state": adam, "param_groups": self.opt.state_dict()["param_groups"]})
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                p.copy_(model[name])
        self.discard()

    def _tensor_like(self, t, like, what):
        """t, checked to be a finite float tensor of like's shape, as a new
        tensor of like's dtype."""
        if not isinstance(t, torch.Tensor) or t.layout != torch.strided or not t.is_floating_point():
            kind = f"a {t.dtype} {t.layout} tensor" if isinstance(t, torch.Tensor) else f"a {type(t).__name__}"
            raise ValueError(f"checkpoint's {what}: {kind}, want a dense floating-point tensor")
        if t.shape != like.shape:
            raise ValueError(f"checkpoint's {what}: shape {tuple(t.shape)}, want {tuple(like.shape)}")
        t = t.detach().to(like.dtype, copy=True)
        if not torch.isfinite(t).all():
            raise ValueError(f"checkpoint's {what}: a value that is not finite")
        return t

    def _checked_model(self, sd):
        mine = dict(self.model.named_parameters())
        if not isinstance(sd, dict) or set(sd) != set(mine):
            raise ValueError("checkpoint's model: not the parameters of these networks")
        return {k: self._tensor_like(sd[k], p, f"model {k}") for k, p in mine.items()}

    def _checked_adam(self, st):
        """Adam's state as the optimizer's state_dict()["state"] holds it:
        empty (no step yet) or, for every parameter index, its step count
        and moments."""
        if not isinstance(st, dict):
            raise ValueError("checkpoint's adam: not Adam's state")
        if not st:
            return {}
        if set(st) != set(range(len(self.params))):
            raise ValueError(f"checkpoint's adam: state for parameters {sorted(st, key=str)!r:.80}, "
                             f"want 0 to {len(self.params) - 1}")
        out = {}
        for i, p in enumerate(self.params):
            s = st[i]
            if not isinstance(s, dict) or set(s) != {"step", "exp_avg", "exp_avg_sq"}:
                raise ValueError(f"checkpoint's adam state {i}: want step, exp_avg and exp_avg_sq")
            step = s["step"]
            if isinstance(step, torch.Tensor) and step.numel() == 1 and not step.is_complex():
                step = step.item()
            if (not isinstance(step, (int, float)) or isinstance(step, bool) or not math.isfinite(step)
                    or step < 0 or step != int(step)):
                raise ValueError(f"checkpoint's adam state {i}: step count {step!r}")
            avg = self._tensor_like(s["exp_avg"], p, f"adam exp_avg {i}")
            sq = self._tensor_like(s["exp_avg_sq"], p, f"adam exp_avg_sq {i}")
            if (sq < 0).any():
                raise ValueError(f"checkpoint's adam exp_avg_sq {i}: a negative second moment")
            out[i] = {"step": torch.tensor(float(step)), "exp_avg": avg, "exp_avg_sq": sq}
        return out


def _unpickle(state):
    """The object torch.save wrote into state, read without running code:
    torch.load(weights_only=True) builds only tensors, dicts, lists,
    strings and numbers. The zip must hold only stored (uncompressed)
    entries, as torch.save writes, so that a small state cannot inflate
    into a huge one."""
    try:
        with zipfile.ZipFile(io.BytesIO(state)) as z:
            for info in z.infolist():
                if info.compress_type != zipfile.ZIP_STORED or info.file_size > len(state):
                    raise ValueError(f"entry {info.filename!r} is compressed or larger than the state")
        return torch.load(io.BytesIO(state), map_location="cpu", weights_only=True)
    except Exception as e:  # zipfile, torch and its unpickler raise several types
        msg = str(e).split("WeightsUnpickler error: ")[-1]  # not torch's advice to load it unsafely
        raise ValueError(f"not a touchpy (PyTorch) checkpoint ({type(e).__name__}: {msg:.300})") from None


# --- the modality --------------------------------------------------------------


class TouchTorch(touch.Touch):
    """touch.Touch (data, load, parse, render, features, spec) with a
    TorchNet as its networks."""

    net_class = TorchNet  # touch.Touch makes it, with the sizes, learning rate and log-variance of config and flags

    def __init__(self, config, args, dtype=torch.float32):
        super().__init__(config, args, dtype=dtype)
        sm.log(f"touchpy: PyTorch {torch.__version__}, {torch.get_num_threads()} threads")


def flag_parser(prog="touch_torch.py"):
    """touch.py's flags (--hidden, --seed, --logvar) and --threads, torch's
    intra-op threads (default 1)."""
    p = touch.flag_parser(prog, description="the touch modality in PyTorch, run by `serket module exec`")
    p.add_argument("--threads", type=int, default=1, help="torch's intra-op threads (default 1)")
    return p


def parse_flags(argv):
    p = flag_parser()
    args = touch.parse_flags(argv, p)
    if args.threads < 1:
        p.error(f"--threads {args.threads}: want at least 1")
    return args


def main(argv=None):
    args = parse_flags(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    sm.run(lambda config: TouchTorch(config, args))


if __name__ == "__main__":
    main()
