"""Tests of touch_torch.py, the PyTorch touchpy: autograd's gradients
against finite differences (float64), their accumulation, learning,
checkpoints and their refusal, determinism, the modality, and one
conversation through serket_module in a child process. Skipped when the
Python running them cannot import torch.

    /usr/bin/python3 -m unittest discover -s examples/python-touch
"""

import contextlib
import io
import sys
import unittest
import zipfile
from unittest import mock

import numpy as np

try:
    import torch
except ImportError as e:
    raise unittest.SkipTest(f"touch_torch.py's tests need PyTorch, which {sys.executable} cannot import ({e}): "
                            "apt-get install python3-torch, or run them with /usr/bin/python3")

import test_touch  # its synthetic touch.dat, config, ELBO step and shared checks (not its tests: no TestCase is imported by name)
import touch
import touch_torch
from test_touch import DataDir, config, elbo_step, quietly

torch.set_num_threads(1)


class TorchNetChecks(test_touch.NetChecks):
    """test_touch's gradient and learning checks, reaching a TorchNet."""

    net_class = touch_torch.TorchNet
    FLOAT64 = torch.float64
    ENCODER, DECODER = "encoder.", "decoder."
    GRADIENTS = "autograd"
    NO_ENCODE = "learn without an encode"

    @staticmethod
    def params(net):
        # .numpy() of a CPU tensor shares its memory: writes reach the parameter.
        return {k: p.detach().numpy() for k, p in net.model.named_parameters()}

    @staticmethod
    def grads(net):
        return {k: p.grad.numpy().copy() for k, p in net.model.named_parameters()}

    @staticmethod
    def steps(net):
        return net.opt.state_dict()["state"][0]["step"].item()

    @staticmethod
    def quiet_grad():
        return torch.no_grad()

    def assertSameState(self, a, b):
        """Parameters and Adam's state equal (torch.save's bytes of equal
        state may differ)."""
        (ma, aa), (mb, ab) = state_of(a), state_of(b)
        self.assertEqual(list(ma), list(mb))
        for k in ma:
            self.assertTrue(torch.equal(ma[k], mb[k]), f"parameter {k} differs")
        self.assertEqual(sorted(aa), sorted(ab))
        for i in aa:
            for k in aa[i]:
                self.assertTrue(torch.equal(aa[i][k], ab[i][k]), f"Adam's {k} of parameter {i} differs")


def state_of(net):
    """The parameters and Adam's state, as copies."""
    model = {k: v.clone() for k, v in net.model.state_dict().items()}
    adam = {i: {k: v.clone() for k, v in s.items()} for i, s in net.opt.state_dict()["state"].items()}
    return model, adam


class GradientTest(TorchNetChecks, test_touch.GradientChecks, unittest.TestCase):
    """autograd against central differences, in float64; and learn's use
    of the graph it keeps."""

    def test_learn_spends_its_encode(self):
        zero = np.zeros((self.B, self.W))
        self.net.encode(self.x)
        self.net.learn(zero, zero)
        with self.assertRaisesRegex(RuntimeError, "learn without an encode"):
            self.net.learn(zero, zero)  # its graph is spent
        self.net.encode(self.x)
        self.net.discard()
        with self.assertRaisesRegex(RuntimeError, "learn without an encode"):
            self.net.learn(zero, zero)  # discard dropped it


class LearnTest(TorchNetChecks, test_touch.LearnChecks, unittest.TestCase):
    ASCENT_STEPS = 12

    def bad_states(self, good_bytes):
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
        return [
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

    def test_making_a_net_keeps_torchs_generator(self):
        state = torch.random.get_rng_state()
        self.net(seed=9)
        self.assertTrue(torch.equal(torch.random.get_rng_state(), state), "making a net moved torch's global generator")

    def test_restore_keeps_its_hyperparameters(self):
        # The hyperparameters are the restoring module's, not the checkpoint's.
        state = self.learned(1, steps=3).save()
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
        with mock.patch.object(touch.Net, "__init__", side_effect=AssertionError("TouchTorch made a touch.Net")):
            quietly(touch_torch.TouchTorch, config(self.d.dir), flags())

    def test_flags(self):
        a = flags()
        self.assertEqual((a.hidden, a.seed, a.logvar, a.threads), (128, 1, 0.0, 1))
        a = flags("--hidden", "64", "--threads", "2", "--seed", "3", "--logvar", "-1.5")
        self.assertEqual((a.hidden, a.seed, a.logvar, a.threads), (64, 3, -1.5, 2))
        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), self.assertRaises(SystemExit):
            flags("--threads", "0")
        self.assertIn("touch_torch.py: error: --threads 0: want at least 1", err.getvalue())
        with contextlib.redirect_stdout(out), self.assertRaises(SystemExit):
            flags("--help")
        self.assertRegex(out.getvalue(), r"(?s)^usage: touch_torch.py .*--threads THREADS")
        self.assertIn("torch's intra-op threads", out.getvalue())

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

    PROGRAM = "touch_torch.py"


if __name__ == "__main__":
    unittest.main()
