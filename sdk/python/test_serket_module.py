"""Tests of serket_module: a tiny modality run as a real child process,
spoken to in frames as serket speaks to it (docs/foreign.md).

    /usr/bin/python3 -m unittest discover -s sdk/python
"""

import os
import select
import struct
import subprocess
import sys
import tempfile
import textwrap
import unittest

import msgpack
import numpy as np

import serket_module as sm

HERE = os.path.dirname(os.path.abspath(__file__))

# TINY is a modality whose rows are numbers: parse reads whitespace-separated
# numbers per observation; some values make encode misbehave on purpose.
TINY = textwrap.dedent('''
    import os
    import sys
    import numpy as np
    import serket_module as sm

    print("printed at import, before run")  # buffered: run() must send it to the log

    class Tiny(sm.Modality):
        def __init__(self, config):
            if config.get("name") == "fail":
                raise RuntimeError("factory refuses")
            self.config = config
            self.w = config["latent"] + config.get("private", 0)
            self.steps = 0

        def spec(self, config):
            latent = config["latent"] + (1 if config.get("name") == "wrong-latent" else 0)
            return {"name": config["name"], "latent": latent, "likelihood": "gaussian",
                    "private": config.get("private", 0)}

        def parse(self, raw):
            rows = [[float(x) for x in data.decode().split()] for _, data in raw]
            return np.array(rows, dtype=np.float32).reshape(len(raw), -1 if raw else 1)

        def encode(self, batch):
            print("stray print from encode")
            sys.stdout.flush()
            os.write(1, b"stray write to fd 1\\n")  # as a C library might
            if (batch == 666).any():
                raise ValueError("the number of the beast")
            if (batch == 777).any():
                return np.zeros((len(batch), self.w + 1)), np.zeros((len(batch), self.w))
            if (batch == 888).any():
                return np.full((len(batch), self.w), np.nan), np.zeros((len(batch), self.w))
            mu = np.tile(batch.sum(axis=1, keepdims=True), (1, self.w))
            return mu, -mu

        def decode(self, z, batch, w):
            return -(z ** 2).sum(axis=1) * (w != 0), -2 * z * w[:, None]

        def learn(self, dmu, dlogvar):
            self.steps += 1

        def discard(self):
            pass

        def save(self):
            return b"steps=%d" % self.steps

        def restore(self, state):
            if not state.startswith(b"steps="):
                raise ValueError("not a tiny state")
            self.steps = int(state[6:])

    class HalfLearner(Tiny):
        discard = sm.Modality.discard   # learn without discard

    if __name__ == "__main__":
        sm.run(HalfLearner if "--half" in sys.argv else Tiny)
''')


def frame(obj):
    body = msgpack.packb(obj, use_bin_type=True)
    return struct.pack("<I", len(body)) + body


def floats(a):
    return np.asarray(a, dtype="<f4").tobytes()


class Child:
    """The tiny modality as a child process, and serket's side of its pipe."""

    def __init__(self, test, *args):
        prog = os.path.join(test.dir, "tiny.py")
        env = dict(os.environ, PYTHONPATH=HERE, OPENBLAS_NUM_THREADS="1")
        # Buffered, as Python's stdout on a pipe is by default: then what
        # the program prints before run() is still in the buffer for run()
        # to send to the log. (Unbuffered, it would be on stdout already.)
        env.pop("PYTHONUNBUFFERED", None)
        self.proc = subprocess.Popen([sys.executable, prog, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.seq = 0
        test.addCleanup(self.close)

    def send_raw(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def call(self, op, **kw):
        self.seq += 1
        self.send_raw(frame({"op": op, "seq": self.seq, **kw}))
        reply = self.read()
        assert reply["seq"] == self.seq, reply
        return reply

    def hello(self, name="tiny", latent=3, private=0):
        config = {"name": name, "latent": latent, "private": private, "data": "", "lr": 0.0, "train": True}
        return self.call("hello", protocol=1, config=config)

    def _read(self, n, timeout=20):
        buf = b""
        fd = self.proc.stdout.fileno()
        while len(buf) < n:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                raise AssertionError("no reply within %ss" % timeout)
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                raise AssertionError(f"stdout ended; stderr: {self.stderr()}")
            buf += chunk
        return buf

    def read(self):
        (n,) = struct.unpack("<I", self._read(4))
        reply = msgpack.unpackb(self._read(n), raw=False)
        assert isinstance(reply, dict), reply
        return reply

    def finish(self):
        """Close stdin; the exit status and stderr."""
        self.proc.stdin.close()
        code = self.proc.wait(timeout=20)
        return code, self.stderr()

    def stderr(self):
        if self.proc.poll() is None:
            return "(running)"
        return self.proc.stderr.read().decode(errors="replace")

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass


class ChildTest(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = tmp.name
        with open(os.path.join(self.dir, "tiny.py"), "w") as f:
            f.write(TINY)

    def parse(self, child, *rows):
        raw = [{"type": "text/plain", "data": r.encode()} for r in rows]
        reply = child.call("parse", raw=raw)
        self.assertNotIn("error", reply)
        return reply["batch"]

    def test_hello(self):
        c = Child(self)
        r = c.hello(private=2)
        self.assertEqual(r["seq"], 1)
        self.assertEqual(r["protocol"], 1)
        self.assertEqual(r["spec"], {"name": "tiny", "latent": 3, "likelihood": "gaussian", "private": 2})
        self.assertEqual(sorted(r["capabilities"]), ["decode_many", "learn", "parse", "pick", "save"])
        self.assertNotIn("feature_len", r)
        self.assertNotIn("error", r)

    def test_encode_and_stray_print(self):
        c = Child(self)
        c.hello(latent=2, private=1)
        h = self.parse(c, "1 2", "3 4")
        r = c.call("encode", batch=h)
        mu = np.frombuffer(r["mu"], "<f4").reshape(2, 3)
        logvar = np.frombuffer(r["logvar"], "<f4").reshape(2, 3)
        np.testing.assert_array_equal(mu, [[3, 3, 3], [7, 7, 7]])
        np.testing.assert_array_equal(logvar, -mu)
        code, err = c.finish()
        self.assertEqual(code, 0, err)
        self.assertIn("stray print from encode", err)  # on stderr, not in a frame
        self.assertIn("stray write to fd 1", err)
        self.assertIn("printed at import, before run", err)

    def test_decode(self):
        c = Child(self)
        c.hello(latent=2)
        h = self.parse(c, "1", "2")
        z = np.array([[1, 2], [3, 4]], np.float32)
        r = c.call("decode", batch=h, z=floats(z), w=floats([1, 0]))
        np.testing.assert_array_equal(np.frombuffer(r["ll"], "<f4"), [-5, 0])
        np.testing.assert_array_equal(np.frombuffer(r["dz"], "<f4").reshape(2, 2), [[-2, -4], [0, 0]])
        r = c.call("decode", batch=h, z=floats(z[:1]), w=floats([1, 0]))  # z of 1 row for 2
        self.assertIn("'z' has 8 bytes, want 16", r["error"])

    def test_decode_many_is_decode_per_term(self):
        c = Child(self)
        c.hello(latent=2)
        h = self.parse(c, "1", "2")
        zs = np.array([[[1, 2], [3, 4]], [[0.5, -1], [2, 0]], [[0, 0], [-3, 1]]], np.float32)
        ws = np.array([[1, 0], [0.5, 1], [1, 1]], np.float32)
        r = c.call("decode_many", batch=h, z=floats(zs), w=floats(ws), terms=3)
        self.assertNotIn("error", r)
        ll = np.frombuffer(r["ll"], "<f4").reshape(3, 2)
        dz = np.frombuffer(r["dz"], "<f4").reshape(3, 2, 2)
        for k in range(3):
            one = c.call("decode", batch=h, z=floats(zs[k]), w=floats(ws[k]))
            np.testing.assert_array_equal(ll[k], np.frombuffer(one["ll"], "<f4"))
            np.testing.assert_array_equal(dz[k], np.frombuffer(one["dz"], "<f4").reshape(2, 2))
        r = c.call("decode_many", batch=h, z=floats(zs[:2]), w=floats(ws), terms=3)  # two latents for three terms
        self.assertIn("'z' has 32 bytes, want 48", r["error"])
        r = c.call("decode_many", batch=h, z=floats(zs), w=floats(ws), terms=0)
        self.assertIn("'terms' is 0", r["error"])

    def test_user_exception_is_an_error_and_the_loop_goes_on(self):
        c = Child(self)
        c.hello()
        bad = self.parse(c, "666")
        r = c.call("encode", batch=bad)
        self.assertEqual(set(r), {"seq", "error"})
        self.assertIn("ValueError: the number of the beast", r["error"])
        self.assertRegex(r["error"], r"tiny\.py:\d+ in encode")
        good = self.parse(c, "1")
        r = c.call("encode", batch=good)
        self.assertNotIn("error", r)
        code, err = c.finish()
        self.assertEqual(code, 0)
        self.assertIn("Traceback", err)

    def test_shape_violation_is_an_error(self):
        c = Child(self)
        c.hello(latent=3)
        r = c.call("encode", batch=self.parse(c, "777"))
        self.assertIn("encode() returned mu of shape (1, 4), want (1, 3)", r["error"])
        r = c.call("encode", batch=self.parse(c, "888"))
        self.assertIn("encode() returned mu with 3 non-finite values", r["error"])
        self.assertNotIn("error", c.call("encode", batch=self.parse(c, "1")))

    def test_free_drops_handles(self):
        c = Child(self)
        c.hello()
        h1, h2 = self.parse(c, "1"), self.parse(c, "2")
        self.assertNotEqual(h1, h2)
        r = c.call("encode", batch=h1, free=[h1])  # freed before the call
        self.assertIn("batch handle", r["error"])
        self.assertNotIn("error", c.call("encode", batch=h2))
        self.assertIn("error", c.call("encode", batch=12345))

    def test_pick(self):
        c = Child(self)
        c.hello(latent=1)
        h = self.parse(c, "1", "2", "3")
        r = c.call("pick", batch=h, rows=np.array([2, 2, 0], "<u4").tobytes())
        self.assertEqual(r["n"], 3)
        mu = np.frombuffer(c.call("encode", batch=r["batch"])["mu"], "<f4")
        np.testing.assert_array_equal(mu, [3, 3, 1])
        r = c.call("pick", batch=h, rows=np.array([3], "<u4").tobytes())
        self.assertIn("row 3 from a batch of 3 rows", r["error"])

    def test_learn_save_restore(self):
        c = Child(self)
        c.hello(latent=1)
        self.assertIn("learn before any encode", c.call("learn", dmu=b"", dlogvar=b"")["error"])
        c.call("encode", batch=self.parse(c, "1", "2"))
        self.assertIn("'dmu' has 4 bytes, want 8", c.call("learn", dmu=floats([1]), dlogvar=floats([1, 2]))["error"])
        self.assertEqual(set(c.call("learn", dmu=floats([1, 2]), dlogvar=floats([1, 2]))), {"seq", "compute_ns"})
        self.assertEqual(c.call("save")["state"], b"steps=1")
        self.assertIn("not a tiny state", c.call("restore", state=b"junk")["error"])
        self.assertEqual(c.call("save")["state"], b"steps=1")
        self.assertEqual(set(c.call("restore", state=b"steps=5")), {"seq", "compute_ns"})
        self.assertEqual(c.call("save")["state"], b"steps=5")

    def test_empty_batch_and_nil_arrays(self):
        # Go's msgpack writes an empty nil []byte as nil: an empty array.
        c = Child(self)
        c.hello()
        r = c.call("parse", raw=None)
        self.assertEqual(r["n"], 0)
        r = c.call("encode", batch=r["batch"])
        self.assertEqual((r["mu"], r["logvar"]), (b"", b""))
        self.assertEqual(set(c.call("learn", dmu=None, dlogvar=None)), {"seq", "compute_ns"})

    def test_unknown_and_unoffered_calls_are_errors(self):
        c = Child(self)
        c.hello()
        self.assertIn("unknown call 'frobnicate'", c.call("frobnicate")["error"])
        self.assertIn("does not offer capability 'render'", c.call("render", z=b"", n=0)["error"])
        self.assertNotIn("error", c.call("discard"))

    def test_hello_errors(self):
        c = Child(self)
        r = c.hello(name="fail")
        self.assertIn("RuntimeError: factory refuses", r["error"])
        c = Child(self)
        self.assertIn("spec() returned latent 4, but serket asked for 3", c.hello(name="wrong-latent")["error"])
        c = Child(self, "--half")
        self.assertIn("overrides learn but not discard", c.hello()["error"])
        c = Child(self)
        r = c.call("hello", protocol=2, config={"name": "tiny", "latent": 3})
        self.assertIn("protocol 2", r["error"])

    def test_eof_exits_zero(self):
        c = Child(self)
        c.hello()
        code, err = c.finish()
        self.assertEqual(code, 0, err)

    def assertDies(self, c, data, message):
        c.send_raw(data)
        code = c.proc.wait(timeout=20)
        err = c.stderr()
        self.assertNotEqual(code, 0, err)
        self.assertIn(message, err)
        self.assertEqual(c.proc.stdout.read(), b"", "no reply to a bad frame")

    def test_oversized_frame_refused(self):
        c = Child(self)
        c.hello()
        # Only the length: the child must refuse it without waiting for the body.
        self.assertDies(c, struct.pack("<I", (256 << 20) + 1), "larger than the frame limit")

    def test_empty_frame_refused(self):
        self.assertDies(Child(self), struct.pack("<I", 0), "length 0")

    def test_frame_not_a_map_refused(self):
        self.assertDies(Child(self), frame([1, 2, 3]), "want a map")

    def test_frame_not_msgpack_refused(self):
        self.assertDies(Child(self), struct.pack("<I", 2) + b"\xc1\xc1", "not msgpack")

    def test_wrong_seq_refused(self):
        c = Child(self)
        c.hello()
        self.assertDies(c, frame({"op": "discard", "seq": 5}), "seq 5, want 2")

    def test_call_before_hello_refused(self):
        self.assertDies(Child(self), frame({"op": "encode", "seq": 1, "batch": 1}), "before a successful hello")

    def test_truncated_frame_refused(self):
        c = Child(self)
        c.send_raw(struct.pack("<I", 100) + b"\x80")
        c.proc.stdin.close()
        code = c.proc.wait(timeout=20)
        self.assertEqual(code, 1)
        self.assertIn("stdin ended 1 bytes into a frame of 100 bytes", c.stderr())


class UnitTest(unittest.TestCase):
    """Pieces of the SDK without a child process."""

    def test_result_checks(self):
        self.assertEqual(sm._result_floats([[1, 2]], "m", "x", (1, 2)), floats([1, 2]))
        with self.assertRaisesRegex(sm.CallError, r"m\(\) returned x of shape \(2,\), want \(1, 2\)"):
            sm._result_floats([1, 2], "m", "x", (1, 2))
        with self.assertRaisesRegex(sm.CallError, "non-finite"):
            sm._result_floats([1e39], "m", "x", (1,))  # overflows float32
        with self.assertRaisesRegex(sm.CallError, "want a pair"):
            sm._pair(np.zeros(3), "encode", "mu, logvar")

    def test_default_pick(self):
        m = sm.Modality()
        np.testing.assert_array_equal(m.pick(np.arange(4), np.array([3, 1])), [3, 1])
        self.assertEqual(m.pick(["a", "b"], np.array([1, 1])), ["b", "b"])
        with self.assertRaisesRegex(TypeError, "override pick"):
            m.pick({"x": 1}, np.array([0]))

    def test_capabilities(self):
        class Everything(sm.Modality):
            feature_len = 4

            def learn(self, dmu, dlogvar): pass
            def discard(self): pass
            def load(self, ids, keep): pass
            def loglik(self, z, batch): pass
            def features(self, batch): pass
            def means(self, z): pass
            def parse(self, raw): pass
            def render(self, z): pass
            def save(self): pass
            def restore(self, state): pass

        class NoPick(sm.Modality):
            pick = None

        self.assertEqual(sm.capabilities(Everything()),
                         ["learn", "load", "score", "features", "parse", "render", "save", "pick", "decode_many"])
        self.assertEqual(sm.capabilities(NoPick()), ["decode_many"])

    def test_user_line(self):
        def user_code():
            raise KeyError("k")
        try:
            np.zeros(2).reshape(3)  # an error raised inside numpy
        except ValueError as e:
            self.assertEqual(sm._user_line(e.__traceback__).split(":")[0], "test_serket_module.py")
        try:
            user_code()
        except KeyError as e:
            self.assertRegex(sm._user_line(e.__traceback__), r"test_serket_module\.py:\d+ in user_code")


if __name__ == "__main__":
    unittest.main()
