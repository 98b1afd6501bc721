#!/usr/bin/env python3
"""touchpy: the fingertip touch sensor of examples/custom-modality, as a
serket module in Python and numpy.

    serket module exec --name touchpy -- python3 examples/python-touch/touch.py [--hidden N] [--seed N] [--logvar V]

It reads one file, <data>/touch.dat (serket's --data; written by
`touch prepare`, format in examples/custom-modality/touch/data.go): the 16
values of each item's reading and their normalisation. Never a label.

The networks are mvae's (modules/mvae): an encoder MLP 16 -> hidden ->
hidden -> 2W (mu, then logvar; W = latent + private) and a decoder MLP
W -> hidden x3 -> 16, SiLU after each hidden layer, a Gaussian likelihood
of fixed log-variance on the normalised values, Adam ascending the
objective. Backpropagation is written out by hand in numpy.
"""

import argparse
import json
import math
import os
import stat
import struct
import sys
import zlib

import msgpack
import numpy as np

try:
    import serket_module as sm
except ImportError:  # run from the repository: the SDK is in sdk/python
    sys.path.insert(0, os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sdk", "python")))
    import serket_module as sm

DIM = 16

# FEATURES are the values of a reading, in order, as in touch/data.go:
# (name, unit, log). A log feature is positive and spans orders of
# magnitude, so the model sees its logarithm.
FEATURES = [
    ("hardness", "Shore A", False),
    ("stiffness", "N/mm", True),
    ("thickness", "mm", True),
    ("mass", "g", True),
    ("stretch", "%", True),
    ("friction", "", False),
    ("coolness", "", False),
    ("damping", "", False),
    ("vib-16hz", "dB", False),
    ("vib-32hz", "dB", False),
    ("vib-64hz", "dB", False),
    ("vib-128hz", "dB", False),
    ("vib-256hz", "dB", False),
    ("vib-512hz", "dB", False),
    ("vib-1khz", "dB", False),
    ("vib-2khz", "dB", False),
]
NAMES = [f[0] for f in FEATURES]
IS_LOG = np.array([f[2] for f in FEATURES])

# --- the data file -----------------------------------------------------------

FILE_NAME = "touch.dat"
MAGIC = b"SERKET-TOUCH\n"
VERSION = 1
MAX_FILE_BYTES = 64 << 20
# magic, version and dim (uint32), seed and count (uint64), mean and std.
HEAD = len(MAGIC) + 4 + 4 + 8 + 8 + 2 * DIM * 4


def _number(v):
    """v as Go's %v prints a float: what error messages quote."""
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return str(np.float32(v)).removesuffix(".0")


def transform(raw):
    """The model's view of readings in physical units (n x 16), before
    normalisation: the log of the log features. A value that is not finite,
    or a log feature that is not positive, is a BadReading naming the row
    and the feature."""
    with np.errstate(over="ignore"):
        raw = np.asarray(raw, dtype=np.float64).reshape(-1, DIM).astype(np.float32)
    nonfinite = ~np.isfinite(raw)
    nonpositive = IS_LOG & (raw <= 0)
    bad = nonfinite | nonpositive
    if bad.any():
        i, j = np.argwhere(bad)[0]
        want = "a finite number" if nonfinite[i, j] else "a positive number"
        raise BadReading(int(i), f"{NAMES[j]} is {_number(raw[i, j])}, want {want}")
    out = raw.copy()
    out[:, IS_LOG] = np.log(raw[:, IS_LOG].astype(np.float64)).astype(np.float32)
    return out


class BadReading(ValueError):
    """A reading that is not one: row is its index among those checked."""

    def __init__(self, row, msg):
        super().__init__(msg)
        self.row = row


class TouchData:
    """touch.dat: a reading per sample id (sorted, unique), in physical
    units, and the normalisation the model uses."""

    def __init__(self, seed, ids, readings, mean, std):
        self.seed, self.ids, self.readings, self.mean, self.std = seed, ids, readings, mean, std

    @classmethod
    def read(cls, path):
        """Read and check the file at path (at most 64 MiB, a regular file)."""
        try:
            raw = read_bounded(path, MAX_FILE_BYTES)
        except FileNotFoundError:
            d = os.path.dirname(path) or "."
            raise FileNotFoundError(f"{path}: touch data not prepared: run `touch prepare --data {d}` first") from None
        try:
            return cls.decode(raw)
        except ValueError as e:
            raise ValueError(f"{path}: {e}; prepare it again") from None

    @classmethod
    def decode(cls, raw):
        if len(raw) < HEAD + 4 or not raw.startswith(MAGIC):
            raise ValueError("not a touch data file (bad magic or truncated)")
        body = raw[:-4]
        (checksum,) = struct.unpack("<I", raw[-4:])
        if zlib.crc32(body) != checksum:
            raise ValueError("checksum mismatch: the file is damaged")
        version, dim, seed, count = struct.unpack_from("<IIQQ", body, len(MAGIC))
        if version != VERSION or dim != DIM:
            raise ValueError(f"format {version} with {dim} values per reading; this program reads "
                             f"format {VERSION} with {DIM}")
        want = HEAD + count * (8 + DIM * 4)
        if len(body) != want:
            raise ValueError(f"{len(body)} bytes for {count} readings, want {want}")
        at = HEAD - 2 * DIM * 4
        mean = np.frombuffer(body, "<f4", DIM, at).astype(np.float32)
        std = np.frombuffer(body, "<f4", DIM, at + 4 * DIM).astype(np.float32)
        ids = np.frombuffer(body, "<u8", count, HEAD).astype(np.uint64)
        readings = np.frombuffer(body, "<f4", count * DIM, HEAD + 8 * count).reshape(count, DIM).astype(np.float32)
        for j in range(DIM):
            if not (std[j] > 0) or not np.isfinite(std[j]) or not np.isfinite(mean[j]):
                raise ValueError(f"normalisation of {NAMES[j]}: mean {_number(mean[j])}, std {_number(std[j])}")
        bad = np.flatnonzero(ids[1:] <= ids[:-1])
        if len(bad):
            i = bad[0] + 1
            raise ValueError(f"ids not sorted and unique: {ids[i]} after {ids[i - 1]}")
        try:
            transform(readings)
        except BadReading as e:
            raise ValueError(f"item {ids[e.row]}: {e}") from None
        return cls(seed, ids, readings, mean, std)

    def normalise(self, raw):
        """Readings (n x 16, physical units) as the model sees them."""
        return (transform(raw) - self.mean) / self.std

    def denormalise(self, x):
        """Physical units from the model's values (n x 16)."""
        v = np.asarray(x, dtype=np.float32) * self.std + self.mean
        with np.errstate(over="ignore"):
            v[:, IS_LOG] = np.exp(v[:, IS_LOG].astype(np.float64)).astype(np.float32)
        return v


def read_bounded(path, limit):
    """The bytes of the regular file at path, if it holds at most limit.
    The size is checked before a byte is read, and the file is opened
    non-blocking, so that /dev/zero, a FIFO or a huge file is refused
    rather than read or waited on."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path}: not a regular file: want a touch data file of at most {limit >> 20} MiB")
        if st.st_size > limit:
            raise ValueError(f"{path}: {st.st_size} bytes, more than the {limit >> 20} MiB limit of a touch data file")
        with os.fdopen(os.dup(fd), "rb") as f:
            raw = f.read(limit + 1)
        if len(raw) > limit:
            raise ValueError(f"{path}: grew past the {limit >> 20} MiB limit of a touch data file while it was read")
        return raw
    finally:
        os.close(fd)


# --- parsing and rendering readings --------------------------------------------


def _float(s):
    """A number as Go's strconv.ParseFloat reads one, near enough: Python's
    float without its underscores and surrounding space."""
    if "_" in s or s != s.strip():
        raise ValueError(s)
    return float(s)


def _names():
    return " ".join(NAMES)


def parse_text(s):
    """One reading from text: 16 numbers in FEATURES order (commas,
    semicolons and brackets allowed), or name=value pairs for every feature,
    or a JSON object."""
    s = s.strip()
    if s.startswith("{"):
        return parse_json(s.encode())
    for sep in ",\r\n\t[];":
        s = s.replace(sep, " ")
    fields = s.split(" ")
    fields = [f for f in fields if f]
    if not fields:
        raise ValueError(f"empty reading: want {DIM} numbers or name=value pairs ({_names()})")
    if "=" in fields[0]:
        vals = {}
        for f in fields:
            if "=" not in f:
                raise ValueError(f"{json.dumps(f)}: want name=value")
            k, v = f.split("=", 1)
            try:
                vals[k] = _float(v)
            except ValueError:
                raise ValueError(f"{k}={json.dumps(v)} is not a number") from None
        return from_map(vals)
    if len(fields) != DIM:
        raise ValueError(f"{len(fields)} numbers, want {DIM} ({_names()})")
    out = []
    for j, f in enumerate(fields):
        try:
            out.append(_float(f))
        except ValueError:
            raise ValueError(f"value {j + 1} ({NAMES[j]}) is {json.dumps(f)}, want a number") from None
    return out


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def parse_json(b):
    """One reading from JSON: an array of 16 numbers or an object with a
    number for every feature name."""
    def no_constant(name):
        raise ValueError(f"{name} is not JSON")
    try:
        v = json.loads(b, parse_constant=no_constant)
    except ValueError as e:
        raise ValueError(f"JSON: want an array of {DIM} numbers or an object {{name: number}}: {e}") from None
    if isinstance(v, list) and all(_is_number(x) for x in v):
        if len(v) != DIM:
            raise ValueError(f"a JSON array of {len(v)} numbers, want {DIM} ({_names()})")
        return [float(x) for x in v]
    if isinstance(v, dict) and all(_is_number(x) for x in v.values()):
        return from_map({k: float(x) for k, x in v.items()})
    raise ValueError(f"JSON: want an array of {DIM} numbers or an object {{name: number}}, "
                     f"not {json.dumps(v)[:60]}")


def from_map(vals):
    """A reading from {name: value}, which must name every feature and only
    features."""
    for k in vals:
        if k.strip().lower() not in NAMES:
            raise ValueError(f"unknown feature {json.dumps(k)} (the features are {_names()})")
    out = []
    for name in NAMES:
        if name not in vals:
            raise ValueError(f"no value for {name} (every feature is needed: {_names()})")
        out.append(vals[name])
    return out


def parse_payload(media_type, data):
    """One reading, in physical units, from one observation."""
    typ = media_type.split(";")[0].strip()
    if typ in ("text/plain", ""):
        return parse_text(data.decode("utf-8", errors="replace"))
    if typ == "application/json":
        return parse_json(data)
    raise ValueError(f"content type {json.dumps(media_type)}, want text/plain or application/json")


def format_reading(reading):
    """name=value pairs, 4 significant digits (as Go's touch.Format)."""
    return " ".join(f"{name}={_short(v)}" for name, v in zip(NAMES, reading))


def _short(v):
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return "%.4g" % v


# --- the networks ---------------------------------------------------------------


def _sigmoid(a):
    return 0.5 * (1 + np.tanh(0.5 * a))  # tanh does not overflow


def _silu(a):
    return a * _sigmoid(a)


def _dsilu(a):
    s = _sigmoid(a)
    return s * (1 + a * (1 - s))


LOG_2PI = math.log(2 * math.pi)
CHECKPOINT_FORMAT = "serket-touchpy"


class Net:
    """mvae's networks in numpy: encoder, decoder, Gaussian likelihood and
    Adam. dtype is the compute type (float32; tests use float64).

    Gradients: decode adds sum_i w_i d ll_i / d theta into self.grads;
    backward_encoder adds the encoder's; step takes one Adam step ascending
    them and clears them."""

    def __init__(self, width, hidden=128, seed=1, lr=1e-3, logvar=0.0, dtype=np.float32,
                 enc_layers=2, dec_layers=3, inp=DIM, out=DIM):
        if width < 1 or hidden < 1:
            raise ValueError(f"latent width {width} and hidden size {hidden} must be positive")
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"learning rate {lr}: want a positive number")
        if not math.isfinite(logvar):
            raise ValueError(f"log-variance {logvar}: want a finite number")
        self.width, self.hidden, self.lr, self.logvar = width, hidden, lr, float(logvar)
        self.dtype = np.dtype(dtype)
        self.params = {}  # name -> array, in initialisation order
        rng = np.random.default_rng(seed)
        self.enc = self._mlp("enc", inp, hidden, enc_layers, 2 * width, rng)
        self.dec = self._mlp("dec", width, hidden, dec_layers, out, rng)
        self.grads = {k: np.zeros_like(p) for k, p in self.params.items()}
        self.m = {k: np.zeros_like(p) for k, p in self.params.items()}
        self.v = {k: np.zeros_like(p) for k, p in self.params.items()}
        self.t = 0
        self._enc_cache = None  # the latest encode's activations, for learn

    def _mlp(self, prefix, inp, hidden, layers, out, rng):
        """Linear layers (weight and bias names), SiLU after all but the
        last; weights out x in, uniform in +-1/sqrt(fan_in)."""
        names = []
        sizes = [inp] + [hidden] * layers + [out]
        for i in range(layers + 1):
            fan_in, fan_out = sizes[i], sizes[i + 1]
            bound = 1 / math.sqrt(fan_in)
            w, b = f"{prefix}.{i}.W", f"{prefix}.{i}.b"
            self.params[w] = rng.uniform(-bound, bound, (fan_out, fan_in)).astype(self.dtype)
            self.params[b] = rng.uniform(-bound, bound, fan_out).astype(self.dtype)
            names.append((w, b))
        return names

    # Forward and backward through one MLP.

    def _forward(self, layers, x):
        """The MLP's output at x and, per layer, (its input, its
        pre-activation or None for the last)."""
        h = np.asarray(x, dtype=self.dtype)
        cache = []
        for i, (w, b) in enumerate(layers):
            a = h @ self.params[w].T + self.params[b]
            last = i == len(layers) - 1
            cache.append((h, None if last else a))
            h = a if last else _silu(a)
        return h, cache

    def _backward(self, layers, cache, dout):
        """The gradient of the input and the parameters' gradients (a dict),
        given dout, the gradient of the output."""
        g = np.asarray(dout, dtype=self.dtype)
        grads = {}
        for (w, b), (h, a) in zip(reversed(layers), reversed(cache)):
            if a is not None:
                g = g * _dsilu(a)
            grads[w] = g.T @ h
            grads[b] = g.sum(axis=0)
            g = g @ self.params[w]
        return g, grads

    def _add(self, grads):
        for k, g in grads.items():
            self.grads[k] += g

    # The model's calls.

    def encode(self, x):
        """(mu, logvar), each B x W, of input rows x (B x 16)."""
        out, cache = self._forward(self.enc, x)
        self._enc_cache = cache
        return out[:, :self.width], out[:, self.width:]

    def output(self, z):
        """The decoder's output (the Gaussian's mean) at z (n x W)."""
        return self._forward(self.dec, z)[0]

    def _loglik(self, out, x, w):
        """ll (B, float64) and its gradient with respect to out, weighted by w."""
        d = np.asarray(x, dtype=self.dtype) - out
        prec = math.exp(-self.logvar)
        konst = -0.5 * out.shape[1] * (self.logvar + LOG_2PI)
        sq = np.square(d.astype(np.float64)).sum(axis=1)
        ll = np.where(w != 0, -0.5 * prec * sq + konst, 0.0)
        dout = (np.asarray(w, dtype=self.dtype) * self.dtype.type(prec))[:, None] * d
        return ll, dout

    def decode(self, z, x, w):
        """(ll, dz) for latents z (B x W), rows x and weights w (B), and the
        decoder's gradients added into self.grads."""
        out, cache = self._forward(self.dec, z)
        ll, dout = self._loglik(out, x, w)
        dz, grads = self._backward(self.dec, cache, dout)
        self._add(grads)
        return ll, dz

    def loglik(self, z, x):
        out = self.output(z)
        return self._loglik(out, x, np.ones(len(out)))[0]

    def backward_encoder(self, dmu, dlogvar):
        """Add the encoder's gradients for dmu, dlogvar (of the latest encode)."""
        cache = self._enc_cache
        if cache is None:
            raise RuntimeError("learn before any encode")
        rows = cache[0][0].shape[0]
        if np.shape(dmu) != (rows, self.width) or np.shape(dlogvar) != (rows, self.width):
            raise ValueError(f"learn with gradients of shapes {np.shape(dmu)} and {np.shape(dlogvar)} "
                             f"for an encode of {rows} x {self.width}")
        g = np.concatenate([np.asarray(dmu, self.dtype), np.asarray(dlogvar, self.dtype)], axis=1)
        self._add(self._backward(self.enc, cache, g)[1])

    def step(self):
        """One Adam step ascending the accumulated gradients; clears them."""
        b1, b2, eps = 0.9, 0.999, 1e-8
        self.t += 1
        step = self.lr / (1 - b1 ** self.t)
        rbc2 = 1 / math.sqrt(1 - b2 ** self.t)
        for k, p in self.params.items():
            g, m, v = self.grads[k], self.m[k], self.v[k]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            p += step * m / (np.sqrt(v) * rbc2 + eps)
        self.discard()

    def learn(self, dmu, dlogvar):
        self.backward_encoder(dmu, dlogvar)
        self.step()

    def discard(self):
        for g in self.grads.values():
            g.fill(0)

    # Checkpoints: a msgpack map of the sizes, the step count and every
    # parameter and Adam moment as raw little-endian bytes.

    def save(self):
        dt = self.dtype.newbyteorder("<")
        arrays = lambda d: {k: np.ascontiguousarray(a, dtype=dt).tobytes() for k, a in d.items()}
        return msgpack.packb({
            "format": CHECKPOINT_FORMAT, "version": 1, "dtype": dt.str,
            "hidden": self.hidden, "width": self.width, "t": self.t,
            "params": arrays(self.params), "m": arrays(self.m), "v": arrays(self.v),
        }, use_bin_type=True)

    def restore(self, state):
        """Take back what save wrote; on any error raise ValueError and
        change nothing."""
        try:
            d = msgpack.unpackb(state, raw=False)
        except Exception as e:
            raise ValueError(f"not a touchpy checkpoint ({type(e).__name__}: {e})") from None
        if not isinstance(d, dict) or d.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("not a touchpy checkpoint")
        if d.get("version") != 1 or d.get("dtype") not in ("<f4", "<f8"):
            raise ValueError(f"touchpy checkpoint version {d.get('version')!r} of {d.get('dtype')!r}: "
                             "this program reads version 1 of <f4 or <f8")
        if d.get("hidden") != self.hidden:
            raise ValueError(f"the checkpoint's networks have {d.get('hidden')} hidden units, "
                             f"this module {self.hidden} (--hidden)")
        if d.get("width") != self.width:
            raise ValueError(f"the checkpoint's latent is {d.get('width')} wide, this module's "
                             f"{self.width} (--latent plus --private)")
        t = d.get("t")
        if not isinstance(t, int) or isinstance(t, bool) or t < 0:
            raise ValueError(f"checkpoint step count {t!r}")
        new = {part: self._arrays(d.get(part), part, np.dtype(d["dtype"])) for part in ("params", "m", "v")}
        if any((a < 0).any() for a in new["v"].values()):
            raise ValueError("checkpoint: a negative second moment")
        # Everything checked: now change the model.
        for part in ("params", "m", "v"):
            for k, a in getattr(self, part).items():
                a[...] = new[part][k]
        self.t = t
        self.discard()
        self._enc_cache = None

    def _arrays(self, d, part, dt):
        if not isinstance(d, dict) or set(d) != set(self.params):
            raise ValueError(f"checkpoint's {part}: not the arrays of these networks")
        out = {}
        for k, p in self.params.items():
            b = d[k]
            if not isinstance(b, bytes) or len(b) != p.size * dt.itemsize:
                raise ValueError(f"checkpoint's {part} {k}: {len(b) if isinstance(b, bytes) else type(b).__name__} "
                                 f"bytes, want {p.size * dt.itemsize} (shape {p.shape})")
            a = np.frombuffer(b, dt).reshape(p.shape).astype(self.dtype)
            if not np.isfinite(a).all():
                raise ValueError(f"checkpoint's {part} {k}: a value that is not finite")
            out[k] = a
        return out


# --- the modality --------------------------------------------------------------


class Touch(sm.Modality):
    """The modality. A batch is a numpy array of normalised readings, B x 16
    (so the SDK's default pick and len serve).

    Every call that reaches the networks goes to self.net, made by
    net_class(width, hidden=, seed=, lr=, logvar=, dtype=): touch.Net here;
    a subclass sets its own (touch_torch.py's TorchNet) and the dtype its
    class takes."""

    feature_len = DIM
    net_class = Net

    def __init__(self, config, args, dtype=np.float32):
        self.name = config.get("name") or "touchpy"
        self.latent = int(config.get("latent", 0))
        self.private = int(config.get("private", 0))
        if self.latent < 1:
            raise ValueError(f"latent size {self.latent}: want at least 1")
        data = config.get("data") or ""
        if not data:
            raise ValueError(f"no data directory: touchpy reads {FILE_NAME} from serket's --data")
        self.data = TouchData.read(os.path.join(data, FILE_NAME))
        self.norm = self.data.normalise(self.data.readings)
        lr = float(config.get("lr") or 0) or 1e-3
        self.net = self.net_class(self.latent + self.private, hidden=args.hidden, seed=args.seed, lr=lr,
                                  logvar=args.logvar, dtype=dtype)
        sm.log(f"touchpy: {len(self.data.ids)} readings from {os.path.join(data, FILE_NAME)}, "
               f"hidden {args.hidden}, seed {args.seed}, lr {lr:g}")

    def spec(self, config):
        return {"name": self.name, "latent": self.latent, "likelihood": "gaussian", "private": self.private}

    def encode(self, batch):
        return self.net.encode(batch)

    def decode(self, z, batch, w):
        return self.net.decode(z, batch, w)

    def learn(self, dmu, dlogvar):
        self.net.learn(dmu, dlogvar)

    def discard(self):
        self.net.discard()

    def loglik(self, z, batch):
        return self.net.loglik(z, batch)

    def load(self, ids, keep):
        """The normalised readings of ids; rows keep withholds are zero and
        absent (and not looked at)."""
        known = self.data.ids
        at = np.searchsorted(known, ids)
        found = at < len(known)
        found[found] = known[at[found]] == ids[found]
        if not found.all():
            missing = ids[np.argmin(found)]
            raise LookupError(f"{FILE_NAME} has no item {missing} (was it prepared for this dataset?)")
        batch = np.zeros((len(ids), DIM), dtype=np.float32)
        batch[keep] = self.norm[at[keep]]
        return batch, keep.copy()

    def parse(self, raw):
        batch = np.zeros((len(raw), DIM), dtype=np.float32)
        for i, (media_type, data) in enumerate(raw):
            try:
                batch[i] = self.data.normalise([parse_payload(media_type, data)])[0]
            except ValueError as e:
                raise ValueError(f"observation {i}: {e}") from None
        return batch

    def render(self, z):
        readings = self.data.denormalise(self.net.output(z))
        return [("text/plain; charset=utf-8", format_reading(r).encode()) for r in readings]

    def features(self, batch):
        return batch

    def means(self, z):
        return self.net.output(z)

    def save(self):
        return self.net.save()

    def restore(self, state):
        self.net.restore(state)


def flag_parser(prog="touch.py", description="the touch modality, run by `serket module exec`"):
    """The parser of touch.py's flags (--hidden, --seed, --logvar), for
    parse_flags; a program built on touch.py adds its own flags to it."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--hidden", type=int, default=128, help="units per hidden layer (default 128)")
    p.add_argument("--seed", type=int, default=1, help="initialisation seed (default 1)")
    p.add_argument("--logvar", type=float, default=0.0,
                   help="fixed log-variance of the likelihood on normalised values (default 0)")
    return p


def parse_flags(argv, parser=None):
    """argv parsed by parser (flag_parser()'s by default) and touch.py's
    flags checked; a flag error exits, naming parser's program."""
    p = flag_parser() if parser is None else parser
    args = p.parse_args(argv)
    if args.hidden < 1:
        p.error(f"--hidden {args.hidden}: want at least 1")
    if args.seed < 0:
        p.error(f"--seed {args.seed}: want 0 or more")
    if not math.isfinite(args.logvar):
        p.error(f"--logvar {args.logvar}: want a finite number")
    return args


def main(argv=None):
    args = parse_flags(sys.argv[1:] if argv is None else argv)
    sm.run(lambda config: Touch(config, args))


if __name__ == "__main__":
    main()
