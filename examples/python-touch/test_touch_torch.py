"""Tests of touch_torch.py, the PyTorch touchpy: autograd's gradients
against finite differences (float64), their accumulation, learning,
checkpoints and their refusal, determinism, the modality, and one
conversation through serket_module in a child process. Skipped when the
Python running them cannot import torch.

    /usr/bin/python3 -m unittest discover -s examples/python-touch
"""

import contextlib
import io
import os
import subprocess
import sys
import unittest
import zipfile

import numpy as np

try:
    import torch
except ImportError as e:
    raise unittest.SkipTest(f"touch_torch.py's tests need PyTorch, which {sys.executable} cannot import ({e}): "
                            "apt-get install python3-torch, or run them with /usr/bin/python3")

import test_touch  # its synthetic touch.dat, config and ELBO step (not its tests: no TestCase is imported by name)
import touch
import touch_torch
from test_touch import DataDir, config, elbo_step, quietly

torch.set_num_threads(1)


def params(net):
    return dict(net.model.named_parameters())


class GradientTest(unittest.TestCase):
    """autograd against central differences, in float64."""

    B, W = 5, 3

    def setUp(self):
        self.rng = np.random.default_rng(3)
        self.net = touch_torch.TorchNet(self.W, hidden=7, seed=2, logvar=0.3, dtype=torch.float64)
        self.x = self.rng.normal(size=(self.B, touch.DIM))
        self.z = self.rng.normal(size=(self.B, self.W))
        self.w = np.array([1.0, 0.0, 2.5, 0.5, 1.0])

    def grads(self):
        return {k: p.grad.clone() for k, p in params(self.net).items()}

    def decode_objective(self, z=None):
        ll, _ = self.net.decode(self.z if z is None else z, self.x, self.w)
        self.net.discard()
        return float((self.w * ll).sum())

    def assertClose(self, got, want, what):
        self.assertLess(abs(got - want), 1e-6 * max(1.0, abs(want)), f"{what}: autograd {got}, differences {want}")

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
        for name, p in params(self.net).items():
            if not name.startswith(prefix):
                continue
            for flat in self.rng.choice(p.numel(), size=min(3, p.numel()), replace=False):
                idx = np.unravel_index(flat, tuple(p.shape))
                keep = p[idx].item()
                with torch.no_grad():
                    p[idx] = keep + h
                up = objective()
                with torch.no_grad():
                    p[idx] = keep - h
                down = objective()
                with torch.no_grad():
                    p[idx] = keep
                self.assertClose(grads[name][idx].item(), (up - down) / (2 * h), f"{name}{idx}")
                checked += 1
        self.assertGreater(checked, 10)

    def test_decoder_gradients(self):
        self.net.decode(self.z, self.x, self.w)
        grads = self.grads()
        self.net.discard()
        for k, g in grads.items():
            if k.startswith("encoder"):
                self.assertFalse(g.any(), f"decode touched {k}")
        self.check_params("decoder", self.decode_objective, grads)

    def test_encoder_gradients(self):
        dmu = self.rng.normal(size=(self.B, self.W))
        dlogvar = self.rng.normal(size=(self.B, self.W))

        def objective():
            mu, logvar = self.net.encode(self.x)
            return float((dmu * mu).sum() + (dlogvar * logvar).sum())

        objective()
        self.net.backward_encoder(dmu, dlogvar)
        grads = self.grads()
        self.net.discard()
        for k, g in grads.items():
            if k.startswith("decoder"):
                self.assertFalse(g.any(), f"learn's backward pass touched {k}")
        self.check_params("encoder", objective, grads)

    def test_decode_accumulates(self):
        self.net.decode(self.z, self.x, self.w)
        once = self.grads()
        self.assertTrue(once["decoder.0.weight"].any())
        with torch.no_grad():  # decode takes its gradients all the same
            self.net.decode(self.z, self.x, self.w)
        for k, g in self.grads().items():
            torch.testing.assert_close(g, 2 * once[k], rtol=1e-12, atol=0, msg=k)
        self.net.discard()
        self.assertFalse(any(g.any() for g in self.grads().values()))

    def test_learn_needs_its_encode(self):
        zero = np.zeros((self.B, self.W))
        with self.assertRaisesRegex(RuntimeError, "learn without an encode"):
            self.net.learn(zero, zero)
        self.net.encode(self.x)
        with self.assertRaisesRegex(ValueError, "for an encode of 5 x 3"):
            self.net.learn(np.zeros((2, self.W)), np.zeros((2, self.W)))
        self.net.learn(zero, zero)  # the failed learn left the encode usable
        with self.assertRaisesRegex(RuntimeError, "learn without an encode"):
            self.net.learn(zero, zero)  # its graph is spent
        self.net.encode(self.x)
        self.net.discard()
        with self.assertRaisesRegex(RuntimeError, "learn without an encode"):
            self.net.learn(zero, zero)  # discard dropped it


def state_of(net):
    """The parameters and Adam's state, as copies."""
    model = {k: v.clone() for k, v in net.model.state_dict().items()}
    adam = {i: {k: v.clone() for k, v in s.items()} for i, s in net.opt.state_dict()["state"].items()}
    return model, adam


class LearnTest(unittest.TestCase):
    def setUp(self):
        d = DataDir(self, n=32)
        self.data = touch.TouchData.read(d.path)
        self.x = self.data.normalise(self.data.readings)

    def net(self, seed=1, **kw):
        return touch_torch.TorchNet(4, hidden=16, seed=seed, **kw)

    def assertSameState(self, a, b):
        (ma, aa), (mb, ab) = state_of(a), state_of(b)
        self.assertEqual(list(ma), list(mb))
        for k in ma:
            self.assertTrue(torch.equal(ma[k], mb[k]), f"parameter {k} differs")
        self.assertEqual(sorted(aa), sorted(ab))
        for i in aa:
            for k in aa[i]:
                self.assertTrue(torch.equal(aa[i][k], ab[i][k]), f"Adam's {k} of parameter {i} differs")

    def test_learn_ascends(self):
        net = self.net(lr=3e-3)
        elbo, dmu, dlogvar = elbo_step(net, self.x)
        trace = [elbo]
        for _ in range(12):
            net.learn(dmu, dlogvar)
            elbo, dmu, dlogvar = elbo_step(net, self.x)
            trace.append(elbo)
        net.discard()
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
        state = torch.random.get_rng_state()
        a, b = self.net(seed=9), self.net(seed=9)
        self.assertTrue(torch.equal(torch.random.get_rng_state(), state), "making a net moved torch's global generator")
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

    def test_save_restore(self):
        a = self.net(seed=1)
        for _ in range(3):
            _, dmu, dlogvar = elbo_step(a, self.x)
            a.learn(dmu, dlogvar)
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
        self.assertEqual(a.opt.state_dict()["state"][0]["step"].item(), 4)
        # The hyperparameters are the restoring module's, not the checkpoint's.
        c = self.net(seed=2, lr=0.05)
        c.restore(state)
        self.assertEqual(c.opt.param_groups[0]["lr"], 0.05)
        self.assertTrue(c.opt.param_groups[0]["maximize"])

    def test_restore_before_any_step_and_other_dtype(self):
        fresh = self.net(seed=4)
        b = self.net(seed=5)
        b.restore(fresh.save())
        self.assertSameState(b, fresh)
        wide = touch_torch.TorchNet(4, hidden=16, seed=6, dtype=torch.float64)
        _, dmu, dlogvar = elbo_step(wide, self.x)
        wide.learn(dmu, dlogvar)
        b.restore(wide.save())
        np.testing.assert_allclose(b.encode(self.x)[0], wide.encode(self.x)[0], rtol=1e-4, atol=1e-5)
        self.assertEqual(b.encoder[0].weight.dtype, torch.float32)

    def test_restore_refuses_and_changes_nothing(self):
        net = self.net(seed=1)
        _, dmu, dlogvar = elbo_step(net, self.x)
        net.learn(dmu, dlogvar)
        before = net.save()
        other = self.net(seed=3)
        _, dmu, dlogvar = elbo_step(other, self.x)
        other.learn(dmu, dlogvar)
        good_bytes = other.save()
        good = torch.load(io.BytesIO(good_bytes), weights_only=True)

        def variant(**kw):
            buf = io.BytesIO()
            torch.save({**good, **kw}, buf)
            return buf.getvalue()

        def model(**kw):
            return variant(model={**good["model"], **kw})

        def adam(i, **kw):
            return variant(adam={**good["adam"], i: {**good["adam"][i], **kw}})

        w = good["model"]["decoder.0.weight"]
        deflated = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(good_bytes)) as zin, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as zout:
            for name in zin.namelist():
                zout.writestr(name, zin.read(name))
        cases = [
            (b"garbage", "not a touchpy"),
            (b"", "not a touchpy"),
            (good_bytes[:len(good_bytes) // 2], "not a touchpy"),
            (good_bytes[:-1], "not a touchpy"),
            (touch.Net(4, hidden=16).save(), "not a touchpy"),  # touch.py's msgpack checkpoint
            (deflated.getvalue(), "compressed"),
            (variant(format="serket-touchpy"), "not a touchpy"),
            (variant(version=2), "version 2"),
            (touch_torch.TorchNet(4, hidden=8).save(), "8 hidden units, this module 16"),
            (touch_torch.TorchNet(5, hidden=16).save(), "latent is 5 wide, this module's 4"),
            (model(**{"decoder.0.weight": w[:, :-1]}), r"decoder.0.weight: shape \(16, 3\), want \(16, 4\)"),
            (model(**{"decoder.0.weight": torch.full_like(w, float("nan"))}), "not finite"),
            (model(**{"decoder.0.weight": w.to(torch.int32)}), "want a dense floating-point tensor"),
            (model(**{"decoder.0.weight": w.to_sparse()}), "want a dense floating-point tensor"),
            (model(**{"decoder.0.weight": "weights"}), "a str, want"),
            (variant(model={k: v for k, v in good["model"].items() if k != "encoder.0.bias"}), "not the parameters"),
            (variant(adam={i: s for i, s in good["adam"].items() if i != 3}), "state for parameters"),
            (adam(2, exp_avg_sq=-good["adam"][2]["exp_avg_sq"] - 1), "negative second moment"),
            (adam(2, exp_avg=good["adam"][2]["exp_avg"][:1]), "adam exp_avg 2: shape"),
            (adam(0, step=torch.tensor(-1.0)), "step count"),
            (adam(0, step=torch.tensor(1.5)), "step count"),
            (adam(0, max_exp_avg_sq=good["adam"][0]["exp_avg_sq"]), "want step, exp_avg and exp_avg_sq"),
            (variant(adam=[1, 2]), "not Adam's state"),
        ]
        for state, message in cases:
            with self.subTest(message):
                with self.assertRaisesRegex(ValueError, message):
                    net.restore(state)
                self.assertEqual(net.save(), before, f"restore of a bad state ({message}) changed the model")
        net.restore(good_bytes)  # the unaltered state is taken
        self.assertEqual(net.save(), good_bytes)

    def test_restore_runs_no_code(self):
        net = self.net()
        before = net.save()
        buf = io.BytesIO()
        torch.save({"format": touch_torch.CHECKPOINT_FORMAT, "version": 1, "hidden": 16, "width": 4,
                    "model": Payload(), "adam": {}}, buf)
        evil = buf.getvalue()
        # It is live: an ordinary torch.load runs it.
        torch.load(io.BytesIO(evil))
        self.assertEqual(RAN, ["payload"])
        RAN.clear()
        with self.assertRaisesRegex(ValueError, "not a touchpy .*Unsupported class"):
            net.restore(evil)
        self.assertEqual(RAN, [], "restore ran code from the checkpoint")
        self.assertEqual(net.save(), before)


RAN = []


def _payload(tag):
    RAN.append(tag)
    return {}


class Payload:
    """An object whose unpickling calls _payload: code in a checkpoint."""

    def __reduce__(self):
        return (_payload, ("payload",))


def flags(*argv):
    return touch_torch.parse_flags(list(argv))


class ModalityTest(unittest.TestCase):
    def setUp(self):
        self.d = DataDir(self, n=20)
        self.mod = quietly(touch_torch.TouchTorch, config(self.d.dir, latent=3, private=1, lr=0.01), flags("--hidden", "8"))

    def test_spec_and_net(self):
        self.assertEqual(self.mod.spec({}), {"name": "touchpy", "latent": 3, "likelihood": "gaussian", "private": 1})
        named = quietly(touch_torch.TouchTorch, config(self.d.dir, name="feel"), flags())
        self.assertEqual(named.spec({})["name"], "feel")
        self.assertIsInstance(self.mod.net, touch_torch.TorchNet)
        self.assertEqual((self.mod.net.width, self.mod.net.hidden, self.mod.net.lr), (4, 8, 0.01))
        self.assertEqual(quietly(touch_torch.TouchTorch, config(self.d.dir), flags()).net.lr, 1e-3)
        self.assertEqual(nn_types(self.mod.net.encoder), ["Linear", "SiLU", "Linear", "SiLU", "Linear"])
        self.assertEqual(tuple(self.mod.net.encoder[-1].weight.shape), (8, 8))  # 2W x hidden
        self.assertEqual(len(self.mod.net.decoder), 7)
        with self.assertRaisesRegex(ValueError, "no data directory"):
            touch_torch.TouchTorch(config(""), flags())

    def test_flags(self):
        a = flags()
        self.assertEqual((a.hidden, a.seed, a.logvar, a.threads), (128, 1, 0.0, 1))
        a = flags("--hidden", "64", "--threads", "2", "--seed", "3", "--logvar", "-1.5")
        self.assertEqual((a.hidden, a.seed, a.logvar, a.threads), (64, 3, -1.5, 2))
        with contextlib.redirect_stderr(io.StringIO()):
            with self.assertRaises(SystemExit):
                flags("--threads", "0")

    def test_calls(self):
        batch, present = self.mod.load(self.d.ids[:5], np.array([1, 1, 0, 1, 1], bool))
        mu, logvar = self.mod.encode(batch)
        self.assertEqual(mu.shape, (5, 4))
        ll, dz = self.mod.decode(mu, batch, present.astype(np.float32))
        self.assertEqual((ll.shape, dz.shape, ll[2]), ((5,), (5, 4), 0))
        self.mod.learn(dz, np.zeros_like(dz))
        self.assertFalse(np.array_equal(self.mod.encode(batch)[0], mu))
        self.assertEqual(self.mod.loglik(mu, batch).shape, (5,))
        self.assertEqual(self.mod.means(mu).shape, (5, 16))
        outputs = self.mod.render(mu)
        np.testing.assert_allclose(self.mod.parse(outputs), self.mod.means(mu), atol=2e-2)  # 4 significant digits


def nn_types(seq):
    return [type(m).__name__ for m in seq]


class ExecTest(test_touch.ExecTest):
    """touch_torch.py as serket runs it: test_touch's training step and
    checkpoint, through the SDK in a child process."""

    def setUp(self):
        self.d = DataDir(self, n=20)
        env = dict(os.environ, PYTHONPATH=test_touch.SDK, OPENBLAS_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, os.path.join(test_touch.HERE, "touch_torch.py"),
                                      "--hidden", "8", "--seed", "4"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.addCleanup(self.stop)
        self.seq = 0


if __name__ == "__main__":
    unittest.main()
