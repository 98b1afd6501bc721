"""serket_module: write a serket modality in Python.

`serket module exec -- python3 prog.py` runs prog.py as a module: serket
keeps the bus (discovery, security, checkpoints, deadlines) and asks the
program to compute, one call at a time, over its stdin and stdout. This
file speaks that protocol (docs/foreign.md); a program subclasses
`Modality` and hands a factory to `run`:

    import numpy as np
    import serket_module as sm

    class Mine(sm.Modality):
        def __init__(self, config):
            self.width = config["latent"] + config["private"]

        def spec(self, config):
            return {"name": config["name"] or "mine", "latent": config["latent"],
                    "likelihood": "gaussian", "private": config["private"]}

        def encode(self, batch):              # batch: B rows -> mu, logvar (B x W)
            ...
        def decode(self, z, batch, w):        # -> ll (B), dz (B x W)
            ...

    if __name__ == "__main__":
        sm.run(Mine)                          # factory(config) -> Modality

Conventions:

- `run(factory)` calls `factory(config)` on the `hello` request (config is
  its map: name, latent, private, data, lr, train, max_frame) and then
  `instance.spec(config)`. An exception in either is the hello's error.
- Arrays given to methods are read-only float32 numpy arrays of the
  protocol's shapes: z B x W, w (B,), dmu and dlogvar B x W; ids are uint64,
  keep a bool array. W = latent + private. Methods return anything
  `numpy.asarray` turns into an array of exactly the right shape (float32
  or wider); the SDK checks shapes and finiteness and turns a mistake into
  an error reply naming the method, the result and both shapes.
- A batch is any object a method returns (`load`, `parse`, `pick`); the SDK
  keeps it in a table and serket refers to it by an integer handle. Its
  row count is `batch_len(batch)`, by default `len(batch)`: override
  `batch_len` when your batch type has no `len` or it means something else.
  The SDK asks once, when the batch is made, and checks it is the count
  the call implies (B ids, B observations, the rows picked).
- `decode_many(zs, batch, ws)` decodes a training step's K latents in one
  call (capability `decode_many`, which every module offers); by default it
  calls `decode` per latent. Override it to decode them in one pass.
- Optional capabilities are the optional methods a subclass overrides:
  learn+discard (`learn`), load (`load`), loglik (`score`),
  features+means+feature_len (`features`), parse (`parse`), render
  (`render`), save+restore (`save`). `pick` has a default that works for
  numpy-array batches (`batch[rows]`) and lists; override it for another
  batch type, or set `pick = None` in the class to not offer it.
- An exception in a method becomes an error reply (type, message and the
  line of your code that raised it), its traceback goes to stderr, and the
  module serves on. A call that fails must leave the model as it was
  (note that a result the SDK refuses, such as a dz of the wrong shape, is
  refused after your method ran).
- stdout belongs to the protocol: `run` takes it over and points
  `sys.stdout` (and file descriptor 1) at stderr, so `print` goes to the
  log, as does `log(...)`. stdin is taken over likewise. Print nothing
  before `run`: what is still buffered then goes to the log, but under
  PYTHONUNBUFFERED (or after a flush) it has reached serket as a bad
  frame. Do slow or chatty set-up in the factory, which runs after.
- The program exits 0 when serket closes its stdin, and 1 (with a message
  on stderr) when serket breaks the protocol (a frame larger than
  `max_frame`, not one msgpack map, a wrong `seq`).
"""

import math
import os
import struct
import sys
import sysconfig
import time
import traceback

import msgpack
import numpy as np

__all__ = ["Modality", "run", "log", "ProtocolError", "PROTOCOL", "MAX_FRAME"]

PROTOCOL = 1
# MAX_FRAME is serket's default --max-frame: the largest frame either side
# may write.
MAX_FRAME = 256 << 20


def log(*parts):
    """Write one line to the module's log (stderr), which serket forwards."""
    print(*parts, file=sys.stderr, flush=True)


class ProtocolError(Exception):
    """serket broke the protocol: the program cannot go on."""


class Modality:
    """Base class of a modality. Override spec, encode and decode; the
    optional methods below give capabilities when overridden."""

    # --- required -------------------------------------------------------

    def spec(self, config):
        """Return {"name", "latent", "likelihood", "private"}; latent and
        private must be config["latent"] and config["private"]."""
        raise NotImplementedError("spec")

    def encode(self, batch):
        """Return (mu, logvar), each B x W: the posterior of every row.
        Must be deterministic."""
        raise NotImplementedError("encode")

    def decode(self, z, batch, w):
        """Return (ll, dz): ll (B,) = log p(x_i | z_i), 0 where w[i] == 0;
        dz (B x W) = w[i] * d ll[i] / d z_i. A learning module also adds
        sum_i w[i] d ll[i] / d theta to its accumulated decoder gradients."""
        raise NotImplementedError("decode")

    def batch_len(self, batch):
        """The row count of a batch: len(batch) unless overridden."""
        return len(batch)

    def decode_many(self, zs, batch, ws):
        """Return (ll, dz) for K latents of one batch, zs (K x B x W) with
        weights ws (K x B): ll (K x B) and dz (K x B x W), what K calls of
        decode, in order, return (a learning module adds every term's
        decoder gradients). serket sends a training step's terms in one
        call of this. This one calls decode per term; override it to
        decode them in one pass (bigger products run faster), keeping the
        results decode's, term for term."""
        lls, dzs = [], []
        for z, w in zip(zs, ws):
            ll, dz = _pair(self.decode(z, batch, w), "decode", "ll, dz")
            lls.append(np.asarray(ll, dtype=np.float32))
            dzs.append(np.asarray(dz, dtype=np.float32))
        return np.stack(lls), np.stack(dzs)

    # --- optional: override to offer the capability -----------------------

    def learn(self, dmu, dlogvar):
        """Back-propagate dmu, dlogvar (B x W, for the latest encode) and
        take one optimiser step ascending the objective with the decoder
        gradients accumulated since the last learn or discard; clear them."""
        raise NotImplementedError("learn")

    def discard(self):
        """Clear the accumulated gradients (the step was abandoned)."""
        raise NotImplementedError("discard")

    def load(self, ids, keep):
        """Return (batch, present) for ids (uint64, B); present (B, bool) is
        true only where keep is and the data has the row. Rows keep excludes
        must not be read. An id the data lacks: raise."""
        raise NotImplementedError("load")

    def loglik(self, z, batch):
        """Return ll (n,): decode's log-likelihoods without gradients."""
        raise NotImplementedError("loglik")

    # feature_len: an int attribute (or a method returning one), F.
    feature_len = None

    def features(self, batch):
        """Return x (B x F): the observations as vectors."""
        raise NotImplementedError("features")

    def means(self, z):
        """Return x (n x F): the decoder's mean at each row of z."""
        raise NotImplementedError("means")

    def parse(self, raw):
        """Return a batch of len(raw) rows from raw, a list of
        (media_type: str, data: bytes). Raise, naming which one, on bad input."""
        raise NotImplementedError("parse")

    def render(self, z):
        """Return a list of n (media_type, data: bytes), one per row of z."""
        raise NotImplementedError("render")

    def save(self):
        """Return the parameters and optimiser state as bytes."""
        raise NotImplementedError("save")

    def restore(self, state):
        """Take back what save returned; on any error raise and change nothing."""
        raise NotImplementedError("restore")

    def pick(self, batch, rows):
        """Return a batch of the given rows (an int array; repeats allowed).
        The default indexes a numpy array or a list."""
        if isinstance(batch, np.ndarray):
            return batch[rows]
        if isinstance(batch, list):
            return [batch[i] for i in rows]
        raise TypeError(
            f"the default pick takes rows of a numpy array or a list, and this batch is a "
            f"{type(batch).__name__}: override pick(batch, rows) for it, or set pick = None "
            f"in the class to not offer pick")


# The capabilities and the methods each needs overridden.
_CAPABILITIES = [
    ("learn", ("learn", "discard")),
    ("load", ("load",)),
    ("score", ("loglik",)),
    ("features", ("features", "means")),
    ("parse", ("parse",)),
    ("render", ("render",)),
    ("save", ("save", "restore")),
]


def _overridden(inst, name):
    return getattr(type(inst), name, None) is not getattr(Modality, name)


def capabilities(inst):
    """The capabilities inst offers. Half a pair (learn without discard)
    is an error: it is surely a mistake."""
    caps = []
    for cap, methods in _CAPABILITIES:
        have = [m for m in methods if _overridden(inst, m)]
        if have and len(have) < len(methods):
            missing = [m for m in methods if m not in have]
            raise TypeError(f"{type(inst).__name__} overrides {', '.join(have)} but not "
                            f"{', '.join(missing)}: capability {cap!r} needs all of {', '.join(methods)}")
        if have:
            caps.append(cap)
    if getattr(type(inst), "pick", None) is not None:
        caps.append("pick")
    caps.append("decode_many")  # every module has it: decode per term, by default
    return caps


# --- arrays ------------------------------------------------------------------


class CallError(Exception):
    """A call fails: the message is the error reply."""


def _shape(a):
    return str(a.shape) if isinstance(a, np.ndarray) else type(a).__name__


def _bin(req, key):
    v = req.get(key)
    if v is None:
        # Go's msgpack writes an empty []byte that is nil as nil, not as an
        # empty bin: take it as no bytes (the length check follows).
        return b""
    if not isinstance(v, (bytes, bytearray)):
        raise CallError(f"request without {key!r} as bytes (got {type(v).__name__})")
    return v


def _req_array(req, key, dtype, shape):
    """The bin req[key] as a read-only array of the shape the call implies."""
    b = _bin(req, key)
    size = np.dtype(dtype).itemsize
    count = math.prod(shape)
    if len(b) != size * count:
        dims = "×".join(str(d) for d in shape)
        raise CallError(f"request's {key!r} has {len(b)} bytes, want {size * count} ({dims} of {size} bytes)")
    return np.frombuffer(b, dtype=dtype).reshape(shape)


def _req_uint(req, key):
    v = req.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise CallError(f"request's {key!r} is {v!r}, want an unsigned integer")
    return v


def _result_floats(value, method, what, shape):
    """value as a float32 array of exactly shape, all finite, or CallError."""
    if isinstance(value, np.ndarray) and value.dtype == np.float32:
        a = value  # the common case, without errstate's cost (a third of a call's)
    else:
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below
                a = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise CallError(f"{method}() returned {what} that is not an array of numbers ({type(value).__name__}): {e}")
    if a.shape != tuple(shape):
        raise CallError(f"{method}() returned {what} of shape {_shape(a)}, want {tuple(shape)}")
    if np.isfinite(a).all():
        return a.astype("<f4", order="C", copy=False).tobytes()
    bad = ~np.isfinite(a)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise CallError(f"{method}() returned {what} with {int(bad.sum())} non-finite values "
                        f"(the first at {where}: {a[where]}), want finite numbers")
    return np.ascontiguousarray(a, dtype="<f4").tobytes()


def _pair(result, method, names):
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise CallError(f"{method}() returned a {type(result).__name__}, want a pair ({names})")
    return result


def _payloads(items, method, n):
    """items as a list of {type, data} maps: n (media type, bytes) pairs."""
    if not isinstance(items, (list, tuple)) or len(items) != n:
        got = len(items) if isinstance(items, (list, tuple)) else type(items).__name__
        raise CallError(f"{method}() returned {got} outputs, want a list of {n} (media_type, bytes)")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, dict):
            item = (item.get("type"), item.get("data"))
        if (not isinstance(item, (tuple, list)) or len(item) != 2 or not isinstance(item[0], str)
                or not isinstance(item[1], (bytes, bytearray, memoryview))):
            raise CallError(f"{method}() output {i} is {item!r:.80}, want (media_type: str, data: bytes)")
        out.append({"type": item[0], "data": bytes(item[1])})
    return out


def _user_line(tb):
    """ "file:line in func" of the deepest frame of the program's own code
    in traceback tb: not this file, the standard library or a package."""
    skip = [os.path.abspath(__file__)]
    for k in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(k)
        if p:
            skip.append(p)
    frames = traceback.extract_tb(tb)
    mine = [f for f in frames
            if not any(os.path.abspath(f.filename).startswith(s) for s in skip)
            and "-packages" + os.sep not in f.filename]
    if not mine:
        return ""
    f = mine[-1]
    return f"{os.path.basename(f.filename)}:{f.lineno} in {f.name}"


class _Timed:
    """The module, each of its methods timed: ns adds up the nanoseconds
    spent in them, which a reply reports as compute_ns, so that serket can
    tell the program's computing from the protocol's cost."""

    def __init__(self, mod):
        self._mod = mod
        self.ns = 0

    def __getattr__(self, name):
        fn = getattr(self._mod, name)

        def timed(*args):
            t0 = time.perf_counter_ns()
            try:
                return fn(*args)
            finally:
                self.ns += time.perf_counter_ns() - t0
        return timed


# --- the server -----------------------------------------------------------


class Server:
    """One conversation with serket over the binary files rfile and wfile.
    run() sets it up on stdin and stdout; tests may drive one directly."""

    def __init__(self, factory, rfile, wfile, max_frame=MAX_FRAME):
        self.factory = factory
        self.rfile, self.wfile = rfile, wfile
        self.max_frame = max_frame
        self.mod = None            # the Modality, after hello
        self.user = None           # the same, its calls timed (compute_ns)
        self.caps = []
        self.width = 0             # W = latent + private
        self.flen = 0              # F
        self.handles = {}          # handle -> (batch, rows)
        self.next_handle = 1
        self.encoded_rows = None   # rows of the latest encode, for learn
        self.seq = 0

    # Framing.

    def _read_exact(self, n, what):
        buf = self.rfile.read(n)
        if buf is None or len(buf) != n:
            got = 0 if buf is None else len(buf)
            raise ProtocolError(f"stdin ended {got} bytes into {what} of {n} bytes")
        return buf

    def read_frame(self):
        """The next request, or None at the end of stdin."""
        head = self.rfile.read(4)
        if not head:
            return None
        if len(head) < 4:
            raise ProtocolError(f"stdin ended {len(head)} bytes into a frame's length")
        (n,) = struct.unpack("<I", head)
        if n == 0:
            raise ProtocolError("a frame of length 0 (want at least 1 byte)")
        if n > self.max_frame:
            raise ProtocolError(f"a frame of {n} bytes, larger than the frame limit of {self.max_frame} bytes "
                                f"({self.max_frame >> 20} MiB)")
        body = self._read_exact(n, "a frame")
        try:
            req = msgpack.unpackb(body, raw=False, strict_map_key=True)
        except Exception as e:  # msgpack raises several types; each means a bad frame
            raise ProtocolError(f"a frame of {n} bytes that is not msgpack: {type(e).__name__}: {e}")
        if not isinstance(req, dict):
            raise ProtocolError(f"a frame that is a msgpack {type(req).__name__}, want a map")
        return req

    def write_frame(self, reply):
        body = msgpack.packb(reply, use_bin_type=True)
        if len(body) > self.max_frame:
            msg = f"the reply is {len(body)} bytes, more than the frame limit of {self.max_frame} bytes"
            log(msg)
            body = msgpack.packb({"seq": reply["seq"], "error": msg}, use_bin_type=True)
        self.wfile.write(struct.pack("<I", len(body)) + body)
        self.wfile.flush()

    # The loop.

    def serve(self):
        """Serve until stdin ends (return 0); a protocol violation raises
        ProtocolError."""
        while True:
            req = self.read_frame()
            if req is None:
                return 0
            self.write_frame(self.handle(req))

    def handle(self, req):
        """The reply to one request."""
        seq, op = req.get("seq"), req.get("op")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq != self.seq + 1:
            raise ProtocolError(f"request with seq {seq!r}, want {self.seq + 1}")
        self.seq = seq
        if not isinstance(op, str):
            raise ProtocolError(f"request {seq} without an op (got {op!r})")
        if self.mod is None and op != "hello":
            raise ProtocolError(f"request {seq} is {op!r} before a successful hello")
        try:
            self._free(req.get("free"))
            if self.user is not None:
                self.user.ns = 0
            reply = {"seq": seq, **self._dispatch(op, req)}
            if self.user is not None:
                reply["compute_ns"] = self.user.ns
            return reply
        except CallError as e:
            log(f"{op}: {e}")
            return {"seq": seq, "error": str(e)}
        except Exception as e:
            return {"seq": seq, "error": self._user_error(op, e)}

    def _user_error(self, op, e):
        """The error reply for an exception raised by the program's code,
        whose traceback goes to the log in full."""
        log(f"{op} failed:\n" + "".join(traceback.format_exception(type(e), e, e.__traceback__)).rstrip())
        where = _user_line(e.__traceback__)
        msg = f"{type(e).__name__}: {e}"
        if len(msg) > 2000:  # the full text is in the log
            msg = msg[:2000] + " …"
        return f"{msg} (at {where})" if where else msg

    def _free(self, free):
        if free is None:
            return
        if not isinstance(free, list):
            raise CallError(f"request's 'free' is a {type(free).__name__}, want an array of handles")
        for h in free:
            if not isinstance(h, int) or isinstance(h, bool):
                raise CallError(f"request's 'free' holds {h!r}, want handles (unsigned integers)")
            if self.handles.pop(h, None) is None:
                log(f"serket freed handle {h!r}, which is not held (ignored)")

    def _dispatch(self, op, req):
        if op == "hello":
            if self.mod is not None:
                raise CallError("a second hello")
            return self._hello(req)
        fn = getattr(self, "_op_" + op, None)
        if fn is None:
            raise CallError(f"unknown call {op!r} (this module speaks protocol {PROTOCOL})")
        need = _OP_CAPABILITY.get(op)
        if need and need not in self.caps:
            raise CallError(f"{op}: this module does not offer capability {need!r}")
        return fn(req)

    # Batches.

    def _batch(self, req):
        h = req.get("batch")
        if not isinstance(h, int) or isinstance(h, bool) or h not in self.handles:
            raise CallError(f"batch handle {h!r} is not one this module gave out (or it was freed)")
        return self.handles[h]

    def _keep(self, batch, method, want):
        n = self.user.batch_len(batch)
        if n != want:
            raise CallError(f"{method}() returned a batch of {n} rows (batch_len), want {want}")
        h = self.next_handle
        self.next_handle += 1
        self.handles[h] = (batch, n)
        return {"batch": h, "n": n}

    def _z(self, req, n):
        return _req_array(req, "z", "<f4", (n, self.width))

    # Calls.

    def _hello(self, req):
        if req.get("protocol") != PROTOCOL:
            raise CallError(f"protocol {req.get('protocol')!r}: this SDK speaks protocol {PROTOCOL}")
        config = req.get("config")
        if not isinstance(config, dict):
            raise CallError("hello without a config map")
        limit = config.get("max_frame")
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            self.max_frame = limit  # serket's --max-frame, so both sides bound frames alike
        mod = self.factory(config)
        if not isinstance(mod, Modality):
            raise CallError(f"the factory returned a {type(mod).__name__}, want a serket_module.Modality")
        spec = _check_spec(mod.spec(config), config)
        caps = capabilities(mod)
        reply = {"protocol": PROTOCOL, "spec": spec, "capabilities": caps}
        if "features" in caps:
            flen = mod.feature_len() if callable(mod.feature_len) else mod.feature_len
            if not isinstance(flen, int) or isinstance(flen, bool) or flen < 1:
                raise CallError(f"feature_len is {flen!r}: a module with features needs a positive int")
            reply["feature_len"] = self.flen = flen
        self.mod, self.caps = mod, caps
        self.user = _Timed(mod)
        self.width = spec["latent"] + spec["private"]
        log(f"serving {spec['name']} (latent {spec['latent']}, private {spec['private']}, "
            f"{spec['likelihood']}) with {', '.join(caps) or 'no optional calls'}")
        return reply

    def _op_load(self, req):
        b = _bin(req, "ids")
        if len(b) % 8:
            raise CallError(f"request's 'ids' has {len(b)} bytes, not a whole number of uint64")
        ids = np.frombuffer(b, dtype="<u8")
        n = len(ids)
        flags = _req_array(req, "keep", "u1", (n,))
        if (flags > 1).any():
            raise CallError("request's 'keep' holds a value other than 0 or 1")
        keep = flags.astype(bool)
        batch, present = _pair(self.user.load(ids, keep), "load", "batch, present")
        present = np.asarray(present)
        if present.shape != (n,):
            raise CallError(f"load() returned present of shape {_shape(present)}, want {(n,)}")
        present = present.astype(bool)
        if (present & ~keep).any():
            i = int(np.argmax(present & ~keep))
            raise CallError(f"load() returned row {i} (id {ids[i]}) present, which keep withholds")
        reply = self._keep(batch, "load", n)
        reply["present"] = present.astype("u1").tobytes()
        return reply

    def _op_parse(self, req):
        raw = req.get("raw")
        if raw is None:  # nil: none (see _bin)
            raw = []
        if not isinstance(raw, list):
            raise CallError("request without 'raw' as an array")
        items = []
        for i, p in enumerate(raw):
            if (not isinstance(p, dict) or not isinstance(p.get("type"), str)
                    or not isinstance(p.get("data"), (bytes, bytearray))):
                raise CallError(f"request's raw[{i}] is not a map {{type: string, data: bin}}")
            items.append((p["type"], bytes(p["data"])))
        return self._keep(self.user.parse(items), "parse", len(items))

    def _op_pick(self, req):
        batch, n = self._batch(req)
        b = _bin(req, "rows")
        if len(b) % 4:
            raise CallError(f"request's 'rows' has {len(b)} bytes, not a whole number of uint32")
        rows = np.frombuffer(b, dtype="<u4").astype(np.intp)
        if len(rows) and rows.max() >= n:
            raise CallError(f"pick of row {rows.max()} from a batch of {n} rows")
        return self._keep(self.user.pick(batch, rows), "pick", len(rows))

    def _op_encode(self, req):
        batch, n = self._batch(req)
        mu, logvar = _pair(self.user.encode(batch), "encode", "mu, logvar")
        shape = (n, self.width)
        reply = {"mu": _result_floats(mu, "encode", "mu", shape),
                 "logvar": _result_floats(logvar, "encode", "logvar", shape)}
        self.encoded_rows = n
        return reply

    def _op_decode(self, req):
        batch, n = self._batch(req)
        z = self._z(req, n)
        w = _req_array(req, "w", "<f4", (n,))
        ll, dz = _pair(self.user.decode(z, batch, w), "decode", "ll, dz")
        ll = _result_floats(ll, "decode", "ll", (n,))
        dz = _result_floats(dz, "decode", "dz", (n, self.width))
        return {"ll": ll, "dz": dz}

    def _op_decode_many(self, req):
        batch, n = self._batch(req)
        k = _req_uint(req, "terms")
        if k < 1:
            raise CallError("request's 'terms' is 0, want at least one latent")
        zs = _req_array(req, "z", "<f4", (k, n, self.width))
        ws = _req_array(req, "w", "<f4", (k, n))
        ll, dz = _pair(self.user.decode_many(zs, batch, ws), "decode_many", "ll, dz")
        ll = _result_floats(ll, "decode_many", "ll", (k, n))
        dz = _result_floats(dz, "decode_many", "dz", (k, n, self.width))
        return {"ll": ll, "dz": dz}

    def _op_learn(self, req):
        if self.encoded_rows is None:
            raise CallError("learn before any encode")
        shape = (self.encoded_rows, self.width)
        dmu = _req_array(req, "dmu", "<f4", shape)
        dlogvar = _req_array(req, "dlogvar", "<f4", shape)
        self.user.learn(dmu, dlogvar)
        return {}

    def _op_discard(self, req):
        self.user.discard()
        return {}

    def _op_loglik(self, req):
        batch, n = self._batch(req)
        ll = self.user.loglik(self._z(req, n), batch)
        return {"ll": _result_floats(ll, "loglik", "ll", (n,))}

    def _op_features(self, req):
        batch, n = self._batch(req)
        return {"x": _result_floats(self.user.features(batch), "features", "x", (n, self.flen))}

    def _op_means(self, req):
        n = _req_uint(req, "n")
        x = self.user.means(self._z(req, n))
        return {"x": _result_floats(x, "means", "x", (n, self.flen))}

    def _op_render(self, req):
        n = _req_uint(req, "n")
        return {"outputs": _payloads(self.user.render(self._z(req, n)), "render", n)}

    def _op_save(self, req):
        state = self.user.save()
        if not isinstance(state, (bytes, bytearray, memoryview)):
            raise CallError(f"save() returned a {type(state).__name__}, want bytes")
        return {"state": bytes(state)}

    def _op_restore(self, req):
        self.user.restore(bytes(_bin(req, "state")))
        return {}


# The capability each optional call needs.
_OP_CAPABILITY = {
    "learn": "learn", "discard": "learn", "load": "load", "loglik": "score",
    "features": "features", "means": "features", "parse": "parse",
    "render": "render", "save": "save", "restore": "save", "pick": "pick",
}


def _check_spec(spec, config):
    """spec as the hello reply's map, or CallError saying what is wrong."""
    if not isinstance(spec, dict):
        raise CallError(f"spec() returned a {type(spec).__name__}, want a dict")
    spec = dict(spec)
    spec.setdefault("private", 0)
    for key, kind in (("name", str), ("latent", int), ("likelihood", str), ("private", int)):
        if not isinstance(spec.get(key), kind) or isinstance(spec.get(key), bool):
            raise CallError(f"spec() returned {key} {spec.get(key)!r}, want a {kind.__name__}")
    if not spec["name"] or not spec["likelihood"]:
        raise CallError(f"spec() returned name {spec['name']!r} and likelihood {spec['likelihood']!r}: both are needed")
    for key in ("latent", "private"):
        if key in config and spec[key] != config[key]:
            raise CallError(f"spec() returned {key} {spec[key]}, but serket asked for {config[key]} (config[{key!r}])")
    return {k: spec[k] for k in ("name", "latent", "likelihood", "private")}


def run(factory, max_frame=MAX_FRAME):
    """Serve serket on stdin and stdout with the Modality factory(config)
    makes at hello (a subclass itself will do); never returns. Exits 0 when
    stdin ends, 1 when serket breaks the protocol."""
    rfd, wfd = os.dup(0), os.dup(1)
    # From here, fd 1 (and sys.stdout) is the log, and fd 0 is empty: a
    # stray print, or a library writing to fd 1, cannot corrupt a frame,
    # and nothing but the SDK reads a request. What the program printed
    # before run() and sys.stdout still buffers goes to the log too.
    os.dup2(2, 1)
    sys.stdout.flush()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdout = sys.stderr
    sys.stdin = open(os.devnull)
    rfile = os.fdopen(rfd, "rb")
    wfile = os.fdopen(wfd, "wb")
    try:
        code = Server(factory, rfile, wfile, max_frame).serve()
    except ProtocolError as e:
        log(f"serket_module: protocol error: {e}; exiting")
        code = 1
    except BrokenPipeError:
        log("serket_module: stdout closed while replying; exiting")
        code = 1
    except KeyboardInterrupt:
        log("serket_module: interrupted")
        code = 130
    sys.stderr.flush()
    sys.exit(code)
