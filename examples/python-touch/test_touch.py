"""Tests of the touchpy module: its data file, its gradients (finite
differences in float64), learning, checkpoints, parsing and rendering, and
one conversation through serket_module in a child process.

    /usr/bin/python3 -m unittest discover -s examples/python-touch
"""

import contextlib
import io
import json
import os
import select
import struct
import subprocess
import sys
import tempfile
import unittest
import zlib

import msgpack
import numpy as np

import touch

HERE = os.path.dirname(os.path.abspath(__file__))
SDK = os.path.join(HERE, "..", "..", "sdk", "python")


def synthetic(n=40, seed=7, first_id=100):
    """ids, readings (physical units), mean and std of a synthetic touch.dat:
    every value in the range its feature takes."""
    rng = np.random.default_rng(seed)
    readings = np.empty((n, touch.DIM), np.float32)
    for j, (_, _, log) in enumerate(touch.FEATURES):
        readings[:, j] = np.exp(rng.normal(0, 1, n)) if log else rng.uniform(0, 50, n)
    t = readings.astype(np.float64)
    t[:, touch.IS_LOG] = np.log(t[:, touch.IS_LOG])
    ids = np.arange(first_id, first_id + 3 * n, 3, dtype=np.uint64)
    return ids, readings, t.mean(0).astype(np.float32), t.std(0).astype(np.float32)


def dat_bytes(ids, readings, mean, std, version=1, dim=16, seed=5, count=None):
    """A touch.dat, written from the format in touch/data.go."""
    body = b"SERKET-TOUCH\n" + struct.pack("<IIQQ", version, dim, seed, len(ids) if count is None else count)
    body += np.asarray(mean, "<f4").tobytes() + np.asarray(std, "<f4").tobytes()
    body += np.asarray(ids, "<u8").tobytes() + np.asarray(readings, "<f4").tobytes()
    return body + struct.pack("<I", zlib.crc32(body))


class DataDir:
    """A temporary dataset directory with a synthetic touch.dat."""

    def __init__(self, test, **kw):
        tmp = tempfile.TemporaryDirectory()
        test.addCleanup(tmp.cleanup)
        self.dir = tmp.name
        self.ids, self.readings, self.mean, self.std = synthetic(**kw)
        self.path = os.path.join(self.dir, "touch.dat")
        self.write(dat_bytes(self.ids, self.readings, self.mean, self.std))

    def write(self, data):
        with open(self.path, "wb") as f:
            f.write(data)


def flags(*argv):
    return touch.parse_flags(list(argv))


def config(data, latent=4, private=0, lr=0.0, name=""):
    return {"name": name, "latent": latent, "private": private, "data": data, "lr": lr, "train": True}


class DataTest(unittest.TestCase):
    def test_read_and_normalise(self):
        d = DataDir(self)
        data = touch.TouchData.read(d.path)
        self.assertEqual(data.seed, 5)
        np.testing.assert_array_equal(data.ids, d.ids)
        np.testing.assert_array_equal(data.readings, d.readings)
        want = d.readings.astype(np.float64)
        want[:, touch.IS_LOG] = np.log(want[:, touch.IS_LOG])
        want = (want - d.mean) / d.std
        np.testing.assert_allclose(data.normalise(data.readings), want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(data.denormalise(data.normalise(data.readings)), d.readings, rtol=1e-5)

    def refused(self, d, data, message):
        d.write(data)
        with self.assertRaises((ValueError, OSError)) as cm:
            touch.TouchData.read(d.path)
        self.assertIn(message, str(cm.exception))
        self.assertIn(d.path, str(cm.exception))

    def test_damaged_files(self):
        d = DataDir(self)
        good = dat_bytes(d.ids, d.readings, d.mean, d.std)
        self.refused(d, b"NOT-TOUCH" + good[9:], "bad magic")
        self.refused(d, good[:50], "truncated")
        flipped = bytearray(good)
        flipped[200] ^= 1
        self.refused(d, bytes(flipped), "checksum mismatch")
        self.refused(d, dat_bytes(d.ids, d.readings, d.mean, d.std, version=2), "format 2 with 16 values")
        self.refused(d, dat_bytes(d.ids, d.readings, d.mean, d.std, dim=8), "format 1 with 8 values")
        self.refused(d, dat_bytes(d.ids, d.readings, d.mean, d.std, count=41), "bytes for 41 readings")
        std = d.std.copy()
        std[2] = 0
        self.refused(d, dat_bytes(d.ids, d.readings, d.mean, std), "normalisation of thickness")
        self.refused(d, dat_bytes(d.ids[::-1], d.readings, d.mean, d.std), "ids not sorted and unique")
        r = d.readings.copy()
        r[3, 3] = -2
        self.refused(d, dat_bytes(d.ids, r, d.mean, d.std), f"item {d.ids[3]}: mass is -2, want a positive number")
        r[3, 3] = np.nan
        self.refused(d, dat_bytes(d.ids, r, d.mean, d.std), "mass is NaN, want a finite number")

    def test_not_prepared(self):
        with self.assertRaisesRegex(FileNotFoundError, "touch data not prepared: run `touch prepare --data /nonexistent`"):
            touch.TouchData.read("/nonexistent/touch.dat")

    def test_refused_before_reading(self):
        with self.assertRaisesRegex(ValueError, "/dev/zero: not a regular file"):
            touch.TouchData.read("/dev/zero")
        d = DataDir(self)
        with open(d.path, "r+b") as f:
            f.truncate((64 << 20) + 1)  # sparse: costs nothing
        with self.assertRaisesRegex(ValueError, "more than the 64 MiB limit"):
            touch.TouchData.read(d.path)
        fifo = os.path.join(d.dir, "fifo")
        os.mkfifo(fifo)
        with self.assertRaisesRegex(ValueError, "not a regular file"):
            touch.TouchData.read(fifo)  # refused, not waited on


class NetChecks:
    """How the shared gradient and learning checks below reach a network:
    touch.Net's way. test_touch_torch.py overrides these for its TorchNet.
    Not a TestCase: a TestCase subclasses it with one of the checks."""

    net_class = touch.Net  # called as touch.Net is: (width, hidden=, seed=, lr=, logvar=, dtype=)
    FLOAT64 = np.float64  # the dtype the gradient checks compute in
    ENCODER, DECODER = "enc.", "dec."  # what the parameters' names start with
    GRADIENTS = "backprop"  # where the gradients come from, for messages
    NO_ENCODE = "learn before any encode"  # the error of a learn with no encode to learn from

    @staticmethod
    def params(net):
        """name -> the parameter as a numpy array that writes through to it."""
        return net.params

    @staticmethod
    def grads(net):
        """name -> a copy of the gradient accumulated for the parameter."""
        return {k: g.copy() for k, g in net.grads.items()}

    @staticmethod
    def steps(net):
        """How many Adam steps the net has taken."""
        return net.t

    @staticmethod
    def quiet_grad():
        """A context in which decode must take its gradients all the same."""
        return contextlib.nullcontext()

    def assertSameState(self, a, b):
        """a and b have the same parameters and Adam state."""
        self.assertEqual(a.save(), b.save())


class GradientChecks(NetChecks):
    """Gradients against central differences, in float64."""

    B, W = 5, 3

    def setUp(self):
        self.rng = np.random.default_rng(3)
        self.net = self.net_class(self.W, hidden=7, seed=2, logvar=0.3, dtype=self.FLOAT64)
        self.x = self.rng.normal(size=(self.B, touch.DIM))
        self.z = self.rng.normal(size=(self.B, self.W))
        self.w = np.array([1.0, 0.0, 2.5, 0.5, 1.0])

    def decode_objective(self, z=None):
        ll, _ = self.net.decode(self.z if z is None else z, self.x, self.w)
        self.net.discard()
        return float((self.w * ll).sum())

    def assertClose(self, got, want, what):
        self.assertLess(abs(got - want), 1e-6 * max(1.0, abs(want)),
                        f"{what}: {self.GRADIENTS} {got}, differences {want}")

    def test_loglik_formula(self):
        ll, dz = self.net.decode(self.z, self.x, self.w)
        out = self.net.output(self.z)
        want = -0.5 * (np.log(2 * np.pi) + 0.3 + (self.x - out) ** 2 / np.exp(0.3)).sum(axis=1)
        np.testing.assert_allclose(ll, np.where(self.w != 0, want, 0), rtol=1e-12)
        self.assertEqual(ll[1], 0)
        np.testing.assert_array_equal(dz[1], 0)  # w = 0: zero row
        np.testing.assert_allclose(self.net.loglik(self.z, self.x), want, rtol=1e-12)

    def test_dz(self):
        _, dz = self.net.decode(self.z, self.x, self.w)
        self.net.discard()
        h = 1e-6
        for i in range(self.B):
            for k in range(self.W):
                zp, zm = self.z.copy(), self.z.copy()
                zp[i, k] += h
                zm[i, k] -= h
                # dz[i] = w_i d ll_i/d z_i, and ll_i depends on z_i alone.
                fd = (self.decode_objective(zp) - self.decode_objective(zm)) / (2 * h)
                self.assertClose(dz[i, k], fd, f"dz[{i},{k}]")

    def check_params(self, prefix, objective, grads):
        h = 1e-6
        checked = 0
        for name, p in self.params(self.net).items():
            if not name.startswith(prefix):
                continue
            for flat in self.rng.choice(p.size, size=min(4, p.size), replace=False):
                idx = np.unravel_index(flat, p.shape)
                keep = p[idx]
                p[idx] = keep + h
                up = objective()
                p[idx] = keep - h
                down = objective()
                p[idx] = keep
                self.assertClose(grads[name][idx], (up - down) / (2 * h), f"{name}{idx}")
                checked += 1
        self.assertGreater(checked, 10)

    def assertUntouched(self, grads, prefix, what):
        for k, g in grads.items():
            if k.startswith(prefix):
                self.assertFalse(g.any(), f"{what} touched {k}")

    def test_decoder_gradients(self):
        self.net.decode(self.z, self.x, self.w)
        grads = self.grads(self.net)
        self.net.discard()
        self.assertUntouched(grads, self.ENCODER, "decode")
        self.check_params(self.DECODER, self.decode_objective, grads)

    def test_encoder_gradients(self):
        dmu = self.rng.normal(size=(self.B, self.W))
        dlogvar = self.rng.normal(size=(self.B, self.W))

        def objective():
            mu, logvar = self.net.encode(self.x)
            return float((dmu * mu).sum() + (dlogvar * logvar).sum())

        objective()
        self.net.backward_encoder(dmu, dlogvar)
        grads = self.grads(self.net)
        self.net.discard()
        self.assertUntouched(grads, self.DECODER, "learn's backward pass")
        self.check_params(self.ENCODER, objective, grads)

    def test_decode_accumulates(self):
        self.net.decode(self.z, self.x, self.w)
        once = self.grads(self.net)
        for k, g in once.items():
            if k.startswith(self.DECODER):
                self.assertTrue(g.any(), f"decode left {k} no gradient")
        with self.quiet_grad():
            self.net.decode(self.z, self.x, self.w)
        for k, g in self.grads(self.net).items():
            np.testing.assert_allclose(g, 2 * once[k], rtol=1e-12, err_msg=k)
        self.net.discard()
        self.assertFalse(any(g.any() for g in self.grads(self.net).values()))

    def test_learn_needs_encode_of_the_same_rows(self):
        zero = np.zeros((self.B, self.W))
        with self.assertRaisesRegex(RuntimeError, self.NO_ENCODE):
            self.net.learn(zero, zero)
        self.net.encode(self.x)
        with self.assertRaisesRegex(ValueError, "for an encode of 5 x 3"):
            self.net.learn(np.zeros((2, self.W)), np.zeros((2, self.W)))
        self.net.learn(zero, zero)  # the failed learn left the encode usable


class GradientTest(GradientChecks, unittest.TestCase):
    """touch.Net's backpropagation against central differences."""


def elbo_step(net, x):
    """The ELBO of x at z = mu (no sampling) and its gradients: what an
    integrator would send for a one-modality model."""
    mu, logvar = net.encode(x)
    ll, dz = net.decode(mu, x, np.ones(len(x), np.float32))
    kl = 0.5 * (np.exp(logvar) + mu ** 2 - 1 - logvar).sum(axis=1)
    dmu = dz - mu
    dlogvar = -0.5 * (np.exp(logvar) - 1)
    return float((ll - kl).sum()), dmu, dlogvar


class LearnChecks(NetChecks):
    """Learning, determinism and checkpoints. A subclass names the states
    its restore must refuse (bad_states)."""

    ASCENT_STEPS = 30  # steps of test_learn_ascends

    def setUp(self):
        d = DataDir(self, n=32)
        self.data = touch.TouchData.read(d.path)
        self.x = self.data.normalise(self.data.readings)

    def net(self, seed=1, **kw):
        return self.net_class(4, hidden=16, seed=seed, **kw)

    def learned(self, seed, steps=1):
        """A net that has taken steps ELBO steps."""
        net = self.net(seed=seed)
        for _ in range(steps):
            _, dmu, dlogvar = elbo_step(net, self.x)
            net.learn(dmu, dlogvar)
        return net

    def bad_states(self, good):
        """(state, the message refusing it) pairs; good is a saved state of
        a 4-wide, 16-hidden net."""
        raise NotImplementedError

    def test_learn_ascends(self):
        net = self.net(lr=3e-3)
        elbo, dmu, dlogvar = elbo_step(net, self.x)
        trace = [elbo]
        for _ in range(self.ASCENT_STEPS):
            net.learn(dmu, dlogvar)
            elbo, dmu, dlogvar = elbo_step(net, self.x)
            trace.append(elbo)
        net.discard()
        # Each small step ascends; together they gain a clear amount.
        self.assertTrue(all(b > a for a, b in zip(trace, trace[1:])), f"ELBO {trace}")
        self.assertGreater(trace[-1], trace[0] + 5, f"ELBO {trace}")

    def test_learn_ascends_decoder(self):
        # Decoder gradients alone (dmu = dlogvar = 0), as serket's
        # conformance suite checks them: sum ll at fixed z rises.
        net = self.net()
        z = np.random.default_rng(5).normal(size=(len(self.x), 4)).astype(np.float32)
        w = np.ones(len(self.x), np.float32)
        zero = np.zeros((len(self.x), 4), np.float32)
        before = net.loglik(z, self.x).sum()
        for _ in range(5):
            net.encode(self.x)
            net.decode(z, self.x, w)
            net.learn(zero, zero)
        self.assertGreater(net.loglik(z, self.x).sum(), before)

    def test_deterministic(self):
        a, b = self.net(seed=9), self.net(seed=9)
        ma, la = a.encode(self.x)
        self.assertEqual(ma.dtype, np.float32)
        again = a.encode(self.x)
        self.assertEqual(ma.tobytes() + la.tobytes(), again[0].tobytes() + again[1].tobytes())
        for net in (a, b):
            _, dmu, dlogvar = elbo_step(net, self.x)
            net.learn(dmu, dlogvar)
        ma, la = a.encode(self.x)
        mb, lb = b.encode(self.x)
        self.assertEqual(ma.tobytes() + la.tobytes(), mb.tobytes() + lb.tobytes())
        self.assertEqual(a.save(), b.save())
        self.assertNotEqual(self.net(seed=10).encode(self.x)[0].tobytes(), self.net(seed=9).encode(self.x)[0].tobytes())
        self.assertNotEqual(self.net(seed=10).save(), self.net(seed=9).save())

    def test_save_restore(self):
        a = self.learned(1, steps=3)
        state = a.save()
        b = self.net(seed=2)
        self.assertNotEqual(a.encode(self.x)[0].tobytes(), b.encode(self.x)[0].tobytes())
        b.restore(state)
        self.assertEqual(a.encode(self.x)[0].tobytes() + a.encode(self.x)[1].tobytes(),
                         b.encode(self.x)[0].tobytes() + b.encode(self.x)[1].tobytes())
        self.assertEqual(b.save(), state)
        # Adam's state came along: one more step keeps them equal.
        for net in (a, b):
            _, dmu, dlogvar = elbo_step(net, self.x)
            net.learn(dmu, dlogvar)
        self.assertSameState(a, b)
        self.assertEqual(self.steps(b), 4)

    def test_restore_refuses_and_changes_nothing(self):
        net = self.learned(1)
        before = net.save()
        good = self.learned(3).save()
        for state, message in self.bad_states(good):
            with self.subTest(message):
                with self.assertRaisesRegex(ValueError, message):
                    net.restore(state)
                self.assertEqual(net.save(), before, f"restore of a bad state ({message}) changed the model")
        net.restore(good)  # the unaltered state is taken
        self.assertEqual(net.save(), good)


class LearnTest(LearnChecks, unittest.TestCase):
    def bad_states(self, good_bytes):
        good = msgpack.unpackb(good_bytes, raw=False)

        def variant(**kw):
            return msgpack.packb({**good, **kw}, use_bin_type=True)

        short = dict(good["params"])
        short["dec.0.W"] = short["dec.0.W"][:-4]
        nan = dict(good["m"])
        nan["enc.0.b"] = np.full(16, np.nan, "<f4").tobytes()
        return [
            (b"garbage", "not a touchpy checkpoint"),
            (b"", "not a touchpy checkpoint"),
            (msgpack.packb([1, 2]), "not a touchpy checkpoint"),
            (touch.Net(4, hidden=8, seed=3).save(), "8 hidden units, this module 16"),
            (touch.Net(5, hidden=16, seed=3).save(), "latent is 5 wide, this module's 4"),
            (variant(params=short), "dec.0.W"),
            (variant(m=nan), "not finite"),
            (variant(t=-1), "step count"),
            (variant(version=2), "version 2"),
        ]


def quietly(fn, *args):
    """fn(*args) without its log line on the test's stderr."""
    with contextlib.redirect_stderr(io.StringIO()):
        return fn(*args)


class ModalityTest(unittest.TestCase):
    def setUp(self):
        self.d = DataDir(self, n=20)
        self.mod = quietly(touch.Touch, config(self.d.dir, latent=3, private=1), flags("--hidden", "8"))

    def test_spec(self):
        self.assertEqual(self.mod.spec({}), {"name": "touchpy", "latent": 3, "likelihood": "gaussian", "private": 1})
        named = quietly(touch.Touch, config(self.d.dir, name="feel"), flags())
        self.assertEqual(named.spec({})["name"], "feel")
        with self.assertRaisesRegex(ValueError, "no data directory"):
            touch.Touch(config(""), flags())

    def test_flags(self):
        a = flags()
        self.assertEqual((a.hidden, a.seed, a.logvar), (128, 1, 0.0))
        a = flags("--hidden", "64", "--seed", "3", "--logvar", "-1.5")
        self.assertEqual((a.hidden, a.seed, a.logvar), (64, 3, -1.5))

    def test_load(self):
        ids = self.d.ids[[4, 0, 4]]
        batch, present = self.mod.load(ids, np.array([True, False, True]))
        np.testing.assert_array_equal(present, [True, False, True])
        norm = self.mod.data.normalise(self.d.readings)
        np.testing.assert_array_equal(batch, [norm[4], np.zeros(16), norm[4]])
        with self.assertRaisesRegex(LookupError, "touch.dat has no item 101 "):
            self.mod.load(np.array([self.d.ids[0], 101, 10 ** 9], np.uint64), np.ones(3, bool))

    def test_parse(self):
        r = self.d.readings[2]
        text = " ".join(str(float(v)) for v in r)
        pairs = touch.format_reading(r)
        obj = json.dumps(dict(zip(touch.NAMES, map(float, r))))
        raw = [("text/plain", text.encode()), ("text/plain; charset=utf-8", pairs.encode()),
               ("application/json", json.dumps(list(map(float, r))).encode()), ("application/json", obj.encode()),
               ("", ("[" + text.replace(" ", ", ") + "]").encode()), ("text/plain", obj.encode())]
        batch = self.mod.parse(raw)
        want = self.mod.data.normalise([r])[0]
        for i in range(len(raw)):
            tol = 1e-3 if i == 1 else 1e-5  # name=value pairs have 4 digits
            np.testing.assert_allclose(self.mod.data.denormalise(batch[i:i + 1])[0], r, rtol=tol, err_msg=raw[i][1])
        np.testing.assert_allclose(batch[0], want, rtol=1e-5, atol=1e-6)

    def test_parse_errors(self):
        good = ("text/plain", b" ".join(b"1" for _ in range(16)))
        cases = [
            (("text/plain", b"1 2 3"), "observation 1: 3 numbers, want 16"),
            (("text/plain", b""), "observation 1: empty reading"),
            (("text/plain", b"1 2 x" + b" 1" * 13), "value 3 (thickness) is \"x\", want a number"),
            (("text/plain", b"hardness=1 stiffness"), "\"stiffness\": want name=value"),
            (("text/plain", b"hardness=soft"), "hardness=\"soft\" is not a number"),
            (("text/plain", b"hardness=1"), "no value for stiffness"),
            (("text/plain", b"hardness=1 colour=2"), "unknown feature \"colour\""),
            (("application/json", b"[1, 2]"), "a JSON array of 2 numbers, want 16"),
            (("application/json", b"{\"hardness\": 1"), "observation 1: JSON"),
            (("application/json", b"[NaN" + b", 1" * 15 + b"]"), "observation 1: JSON"),
            (("image/png", b"\x89PNG"), "content type \"image/png\""),
            (("text/plain", b"1 -1" + b" 1" * 14), "stiffness is -1, want a positive number"),
            (("text/plain", b"1e39" + b" 1" * 15), "hardness is +Inf, want a finite number"),
        ]
        for bad, message in cases:
            with self.assertRaises(ValueError) as cm:
                self.mod.parse([good, bad])
            self.assertIn(message, str(cm.exception))

    def test_render_parses_back(self):
        z = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
        outputs = self.mod.render(z)
        self.assertEqual([t for t, _ in outputs], ["text/plain; charset=utf-8"] * 3)
        text = outputs[0][1].decode()
        self.assertRegex(text, r"^hardness=\S+ stiffness=\S+ .* vib-2khz=\S+$")
        back = self.mod.parse(outputs)
        np.testing.assert_allclose(back, self.mod.means(z), atol=2e-2)  # 4 significant digits

    def test_format(self):
        self.assertEqual(touch.format_reading([40.126, 6.9, 12345, 1e5, 0.00012345, 0.5] + [1] * 10)[:72],
                         "hardness=40.13 stiffness=6.9 thickness=1.234e+04 mass=1e+05 stretch=0.00")

    def test_features(self):
        batch, _ = self.mod.load(self.d.ids[:2], np.ones(2, bool))
        np.testing.assert_array_equal(self.mod.features(batch), batch)
        self.assertEqual(self.mod.feature_len, 16)
        self.assertEqual(self.mod.means(np.zeros((2, 4), np.float32)).shape, (2, 16))


def frame(obj):
    body = msgpack.packb(obj, use_bin_type=True)
    return struct.pack("<I", len(body)) + body


class ExecTest(unittest.TestCase):
    """touch.py as serket runs it: a child process speaking frames. A
    subclass runs another PROGRAM (beside this file) the same way."""

    PROGRAM = "touch.py"
    ARGS = ("--hidden", "8", "--seed", "4")

    def setUp(self):
        self.d = DataDir(self, n=20)
        env = dict(os.environ, PYTHONPATH=SDK, OPENBLAS_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, self.PROGRAM), *self.ARGS],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.addCleanup(self.stop)
        self.seq = 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            f.close()

    def read(self, n):
        buf = b""
        while len(buf) < n:
            if not select.select([self.proc.stdout], [], [], 30)[0]:
                raise AssertionError("no reply within 30 s")
            chunk = os.read(self.proc.stdout.fileno(), n - len(buf))
            if not chunk:
                raise AssertionError(f"{self.PROGRAM} exited: " + self.proc.stderr.read().decode())
            buf += chunk
        return buf

    def call(self, op, **kw):
        self.seq += 1
        self.proc.stdin.write(frame({"op": op, "seq": self.seq, **kw}))
        self.proc.stdin.flush()
        reply = msgpack.unpackb(self.read(struct.unpack("<I", self.read(4))[0]), raw=False)
        self.assertEqual(reply["seq"], self.seq)
        self.assertNotIn("error", reply, f"{op}: {reply.get('error')}")
        return reply

    def test_training_step_and_checkpoint(self):
        r = self.call("hello", protocol=1, config=config(self.d.dir, latent=3, private=1, lr=0.01, name="touchpy"))
        self.assertEqual(r["spec"], {"name": "touchpy", "latent": 3, "likelihood": "gaussian", "private": 1})
        self.assertEqual(sorted(r["capabilities"]),
                         ["decode_many", "features", "learn", "load", "parse", "pick", "render", "save", "score"])
        self.assertEqual(r["feature_len"], 16)
        ids = self.d.ids[:6]
        r = self.call("load", ids=ids.astype("<u8").tobytes(), keep=bytes([1, 1, 0, 1, 1, 1]))
        self.assertEqual(r["n"], 6)
        self.assertEqual(r["present"], bytes([1, 1, 0, 1, 1, 1]))
        h = r["batch"]
        enc = self.call("encode", batch=h)
        mu = np.frombuffer(enc["mu"], "<f4").reshape(6, 4)
        self.assertEqual(self.call("encode", batch=h)["mu"], enc["mu"])  # deterministic
        w = np.array([1, 1, 0, 1, 1, 1], "<f4")
        dec = self.call("decode", batch=h, z=mu.tobytes(), w=w.tobytes())
        ll = np.frombuffer(dec["ll"], "<f4")
        self.assertEqual(ll[2], 0)
        self.assertTrue((ll[w > 0] < 0).all())
        many = self.call("decode_many", batch=h, z=mu.tobytes() * 2, w=w.tobytes() * 2, terms=2)
        self.assertEqual(many["ll"], dec["ll"] * 2)  # two terms, each what decode gives (the weights unchanged until learn)
        self.assertEqual(many["dz"], dec["dz"] * 2)
        self.call("learn", dmu=dec["dz"], dlogvar=np.zeros((6, 4), "<f4").tobytes())
        self.assertNotEqual(self.call("encode", batch=h)["mu"], enc["mu"])  # it learned
        state = self.call("save")["state"]
        self.call("restore", state=state)
        p = self.call("pick", batch=h, rows=np.array([5, 0], "<u4").tobytes())
        self.assertEqual(p["n"], 2)
        x = np.frombuffer(self.call("features", batch=p["batch"], free=[h])["x"], "<f4").reshape(2, 16)
        self.assertTrue(x.any())
        out = self.call("render", z=mu[:2].tobytes(), n=2)["outputs"]
        self.assertEqual(len(out), 2)
        back = self.call("parse", raw=out)
        self.assertEqual(back["n"], 2)
        self.assertEqual(len(self.call("loglik", batch=back["batch"], z=mu[:2].tobytes())["ll"]), 8)
        self.proc.stdin.close()
        self.assertEqual(self.proc.wait(timeout=30), 0)
        self.assertIn("touchpy: 20 readings", self.proc.stderr.read().decode())


if __name__ == "__main__":
    unittest.main()
