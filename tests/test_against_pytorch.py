"""Optional: the conv VAE's loss and every gradient against PyTorch's autograd.

PyTorch is not a dependency; where it is installed this is an independent
check of the whole hand-written chain (Keras padding and layouts included),
using the benchmark's PyTorch model of the same function.
"""
from pathlib import Path

import numpy as np
import pytest

from conftest import load_script

torch = pytest.importorskip("torch")

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "conv_vs_pytorch.py"


def test_conv_vae_gradients_match_pytorch_autograd():
    bench = load_script(BENCH)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (16, 784)).astype(np.float32)
    eps = rng.standard_normal((16, 2)).astype(np.float32)
    ours = bench.TinyVAERun(x)
    params = {k: bench.to_numpy(v) for k, v in ours.params.items()}
    theirs = bench.TorchRun(torch, x, init_from=params)
    parts, grads = bench.loss_and_grads(ours.params, ours.be.asarray(x), ours.be.asarray(eps), bench.CONFIG)
    loss = theirs.neg_elbo(torch.from_numpy(x), torch.from_numpy(eps)).mean()
    loss.backward()
    assert float(parts.loss) == pytest.approx(float(loss.detach()), rel=1e-5)
    layers = {"c1": "enc.1", "c2": "enc.2", "d1": "enc.4", "head": "enc.5", "d2": "dec.0",
              "t1": "dec.2", "t2": "dec.3", "t3": "dec.4"}
    for name, key in layers.items():
        layer = getattr(theirs.model, name)
        g = layer.weight.grad.numpy()
        g = g.T if g.ndim == 2 else g.transpose(2, 3, 1, 0)       # back to tinyvae's layouts
        scale = np.abs(grads[f"{key}.W"]).max()
        assert np.abs(g - grads[f"{key}.W"]).max() <= 1e-4 * scale, key
        assert np.abs(layer.bias.grad.numpy() - grads[f"{key}.b"]).max() <= 1e-4 * np.abs(grads[f"{key}.b"]).max() + 1e-7, key
