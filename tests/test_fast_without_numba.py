"""Numba is optional: without it the fast switch is on and the plain path runs (tinyvae/fast/step.py).

The check runs in a fresh interpreter in which `import numba` fails, as on a machine without it,
so that nothing imported earlier in the test session can stand in for it.
"""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
sys.modules["numba"] = None          # `import numba` raises ImportError from here on
import numpy as np
from tinyvae import models
from tinyvae.backend import get_backend
from tinyvae.core.optim import Adam
from tinyvae.core.vae import VAEConfig, init_params
from tinyvae.fast import step

config = VAEConfig(input_dim=12, enc_hidden=(5,), dec_hidden=(4,), latent_dim=2, init="pytorch")
batch = {"x": np.random.default_rng(0).uniform(size=(6, 12)).astype(np.float32), "y": None}
runs = []
for fast in (True, False):
    be = get_backend("numpy", seed=1)
    params = init_params(config, be)
    model, opt = models.for_config(config, fast=fast), Adam(params, lr=1e-2, fast=fast)
    for _ in range(3):
        parts, grads = model.train_step(params, batch, be, config)
        opt.step(params, grads)
    runs.append((model, params, float(parts["loss"])))
(fast_model, fast_params, fast_loss), (_, params, loss) = runs
assert isinstance(fast_model.train_step, step.FastVAEStep)
assert fast_model.train_step.workspace.nbytes() == 0, "the fast step ran without Numba"
assert fast_loss == loss and all(np.array_equal(fast_params[k], params[k]) for k in params)
print("plain path")
"""


def test_without_numba_the_fast_switch_runs_the_plain_path():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "plain path"
