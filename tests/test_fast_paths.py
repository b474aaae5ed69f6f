"""The engine's speed-minded lines against the plain versions they replace.

Each line that was rewritten for speed (measured in docs/benchmarks.md) is
checked here against the straightforward formula it replaced, kept in this
file as the oracle.
"""
import math

import numpy as np
import pytest

from conftest import BACKENDS, make
from tinyvae.core import distributions as dist
from tinyvae.core import layers
from tinyvae.fast import optim as fused
from tinyvae import SGD, Adam


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype, atol", [("float32", 1e-6), ("float64", 1e-14)])
def test_bernoulli_backward_matches_sigmoid_minus_x(name, dtype, atol):
    """sigma(a) taken as exp(a - softplus(a)) agrees with layers.sigmoid(a) over all logits.

    The gap is at most half a rounding step of |a| (about 6e-7 near |a| = 8 in
    float32), an absolute error in a gradient whose entries lie in [-1, 1].
    """
    be = make(name, dtype=dtype)
    a = np.concatenate([np.linspace(-40.0, 40.0, 4001), [-1e4, -100.0, 100.0, 1e4]])
    x = np.random.default_rng(0).uniform(0.0, 1.0, a.shape)
    a_, x_ = be.asarray(a[None, :]), be.asarray(x[None, :])
    dnll = be.asarray(np.array([0.5]))
    _, cache = dist.bernoulli_nll_forward(a_, x_)
    fast = be.to_numpy(dist.bernoulli_nll_backward(dnll, cache))
    plain = be.to_numpy((layers.sigmoid(a_) - x_) * 0.5)
    np.testing.assert_allclose(fast, plain, rtol=0, atol=atol)
    exact = 0.5 * (1.0 / (1.0 + np.exp(-np.clip(a, -700, 700))) - x)
    np.testing.assert_allclose(fast[0], exact, rtol=0, atol=atol)


@pytest.mark.parametrize("name", BACKENDS)
def test_relu_backward_equals_the_where_form(name):
    be = make(name, dtype="float32")
    rng = np.random.default_rng(2)
    x = be.asarray(rng.standard_normal((6, 9)) * (rng.uniform(size=(6, 9)) > 0.3))  # exact 0s too
    dy = be.asarray(rng.standard_normal((6, 9)))
    y, cache = layers.relu_forward(x)
    xp = be.xp
    plain = xp.where(y > 0, dy, xp.zeros_like(dy))
    np.testing.assert_array_equal(be.to_numpy(layers.relu_backward(dy, cache)), be.to_numpy(plain))
    assert layers.relu_backward(dy, cache).dtype == dy.dtype


# ---- the optimizers' fast path (tinyvae/fused.py) against their plain lines ----------

needs_numba = pytest.mark.skipif(not fused.available(), reason="the fast path needs Numba: pip install numba")


def _training_arrays(be, shapes, n_steps, seed=0):
    """Parameters (NumPy, float64) and n_steps of gradients on `be`, of every size from 1e-4 to 10."""
    rng = np.random.default_rng(seed)
    p0 = {k: rng.standard_normal(s) for k, s in shapes.items()}
    gs = [{k: be.asarray(rng.standard_normal(s) * 10.0 ** rng.integers(-4, 2, s)) for k, s in shapes.items()}
          for _ in range(n_steps)]
    return p0, gs


def _fresh(be, p0):
    """A new copy of the parameters on `be` (asarray alone may hand back p0's own arrays)."""
    return {k: be.asarray(np.array(v)) for k, v in p0.items()}


def _train(opt_cls, be, p0, gs, **kwargs):
    """Parameters and optimizer state after one step per gradient dict in gs, as NumPy arrays."""
    params = _fresh(be, p0)
    opt = opt_cls(params, **kwargs)
    for g in gs:
        opt.step(params, g)
    state = {f"{name}/{k}": a for name, d in opt.state_dict().items() if isinstance(d, dict) for k, a in d.items()}
    return {k: be.to_numpy(a) for k, a in {**params, **state}.items()}


SHAPES = {"W": (300, 70), "b": (70,), "v": (5,), "s": ()}
OPTIMIZERS = [
    (Adam, {"lr": 1e-2, "betas": (0.8, 0.95), "eps": 1e-8}),
    (Adam, {}),
    (SGD, {"lr": 0.05, "momentum": 0.9}),
    (SGD, {"lr": 0.05, "momentum": 0.0}),
]


# The backends with a fast path: NumPy's compiled loop (with Numba) and CuPy's CUDA kernel.
FUSED_BACKENDS = [pytest.param("numpy", marks=needs_numba), BACKENDS[-1]]


@pytest.mark.parametrize("name", FUSED_BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt_cls, kwargs", OPTIMIZERS)
def test_fused_optimizer_step_equals_the_plain_lines_bit_for_bit(name, opt_cls, kwargs, dtype):
    """fast=True (the compiled loop on NumPy, the CUDA kernel on CuPy) gives exactly
    fast=False's parameters and state."""
    be = make(name, dtype=dtype)
    p0, gs = _training_arrays(be, SHAPES, n_steps=5)
    assert fused.fusable(_fresh(be, p0), gs[0])  # so the fast path is what runs below
    fast = _train(opt_cls, be, p0, gs, fast=True, **kwargs)
    plain = _train(opt_cls, be, p0, gs, fast=False, **kwargs)
    for k in plain:
        assert fast[k].dtype == plain[k].dtype == be.dtype
        np.testing.assert_array_equal(fast[k], plain[k], err_msg=k)
    for k in p0:
        assert not np.array_equal(fast[k], p0[k].astype(dtype)), k  # the step did move it


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_loop_itself_computes_the_plain_lines(dtype):
    """adam_loop and sgd_loop run by the Python interpreter, no Numba needed, on small arrays.

    Same numbers as the plain lines, bit for bit: this pins the loops' arithmetic
    wherever Numba is missing, and the test above pins Numba's compilation of it.
    """
    be = make("numpy", dtype=np.dtype(dtype).name)
    p0, gs = _training_arrays(be, {"W": (7, 5)}, n_steps=3, seed=4)
    plain_adam = _train(Adam, be, p0, gs, lr=1e-2, fast=False)
    plain_sgd = _train(SGD, be, p0, gs, lr=0.05, fast=False)
    p, m, v = (np.array(p0["W"], dtype).reshape(-1), np.zeros(35, dtype), np.zeros(35, dtype))
    q, vel = np.array(p0["W"], dtype).reshape(-1), np.zeros(35, dtype)
    for t, g in enumerate(gs, start=1):
        g = g["W"].reshape(-1)
        sqrt_c2 = math.sqrt(1.0 - 0.999 ** t)
        lr_t, eps_t = 1e-2 * sqrt_c2 / (1.0 - 0.9 ** t), 1e-8 * sqrt_c2
        d = np.dtype(dtype).type
        fused.adam_loop(p, g, m, v, d(0.9), d(1.0 - 0.9), d(0.999), d(1.0 - 0.999), d(lr_t), d(eps_t))
        fused.sgd_loop(q, g, vel, d(0.05), d(0.9))
    for got, want in [(p, plain_adam["W"]), (m, plain_adam["m/W"]), (v, plain_adam["v/W"]),
                      (q, plain_sgd["W"]), (vel, plain_sgd["velocity/W"])]:
        np.testing.assert_array_equal(got, want.reshape(-1))


@needs_numba
def test_a_rounding_change_in_the_loop_is_caught(monkeypatch):
    """Planted: lr_t (m / d) instead of (lr_t m) / d, the same formula rounded differently.

    The bit-for-bit comparison above must see it, so it can see any real change.
    """
    def reordered(p, g, m, v, b1, c1, b2, c2, lr_t, eps_t):
        for i in range(p.shape[0]):
            m[i] = m[i] * b1 + c1 * g[i]
            v[i] = v[i] * b2 + c2 * g[i] * g[i]
            p[i] = p[i] - lr_t * (m[i] / (math.sqrt(v[i]) + eps_t))

    monkeypatch.setattr(fused, "adam_loop", reordered)
    monkeypatch.setattr(fused, "_compiled", {})  # compile the planted loop
    be = make("numpy", dtype="float32")
    p0, gs = _training_arrays(be, {"W": (50, 40)}, n_steps=3)
    fast = _train(Adam, be, p0, gs, lr=1e-2, fast=True)
    plain = _train(Adam, be, p0, gs, lr=1e-2, fast=False)
    np.testing.assert_allclose(fast["W"], plain["W"], rtol=1e-5)  # the same formula...
    assert not np.array_equal(fast["W"], plain["W"])              # ...but not the same bits


@pytest.mark.parametrize("name", BACKENDS)
def test_fast_path_runs_on_numpy_and_cupy_and_strict_keeps_the_plain_lines(name, monkeypatch):
    """On array-api-strict, fast=True runs the plain lines: fused.py is never called."""
    be = make(name, dtype="float32")
    p0, gs = _training_arrays(be, {"W": (20, 30), "b": (30,)}, n_steps=2)
    expected = {"numpy": fused.available(), "cupy": True, "array_api_strict": False}[name]
    assert fused.fusable(_fresh(be, p0), gs[0]) == expected
    if name == "array_api_strict":
        monkeypatch.setattr(fused, "fused_adam", None)  # any call would fail
        monkeypatch.setattr(fused, "fused_sgd", None)
    for opt_cls in (Adam, SGD):
        fast = _train(opt_cls, be, p0, gs, fast=True)
        plain = _train(opt_cls, be, p0, gs, fast=False)
        for k in plain:
            np.testing.assert_array_equal(fast[k], plain[k], err_msg=k)


def test_without_numba_fast_true_runs_the_plain_lines(monkeypatch):
    """Numba missing: fast=True is not an error; the optimizers run their plain lines."""
    monkeypatch.setitem(fused._compiled, "numba", None)
    assert not fused.available()
    be = make("numpy", dtype="float32")
    p0, gs = _training_arrays(be, {"W": (20, 30)}, n_steps=2)
    assert not fused.fusable(_fresh(be, p0), gs[0])
    monkeypatch.setattr(fused, "fused_adam", None)  # any call would fail
    fast = _train(Adam, be, p0, gs, fast=True)
    plain = _train(Adam, be, p0, gs, fast=False)
    for k in plain:
        np.testing.assert_array_equal(fast[k], plain[k], err_msg=k)


@needs_numba
def test_arrays_the_loop_cannot_take_fall_back_to_the_plain_lines():
    """Mixed dtypes, a strided view, a read-only array, integers: the plain lines, the same numbers."""
    rng = np.random.default_rng(3)
    W, g = rng.standard_normal((8, 6)), rng.standard_normal((8, 6))
    assert fused.fusable({"W": W}, {"W": g})
    assert not fused.fusable({"W": W}, {"W": g.astype(np.float32)})   # mixed dtypes
    assert not fused.fusable({"W": W}, {"W": np.asfortranarray(g)})   # not C-contiguous
    assert not fused.fusable({"W": W[:, ::2]}, {"W": g[:, ::2]})      # a strided view
    read_only = g.copy()
    read_only.flags.writeable = False
    assert not fused.fusable({"W": W}, {"W": read_only})
    assert not fused.fusable({"n": np.arange(3)})                      # integers
    a, b = {"W": W.copy()}, {"W": W.copy()}
    fast, plain = Adam(a, fast=True), Adam(b, fast=False)
    fast.step(a, {"W": np.asfortranarray(g)})
    plain.step(b, {"W": g})
    np.testing.assert_array_equal(a["W"], b["W"])


@pytest.mark.parametrize("name", [BACKENDS[-1]])
def test_fused_multiply_adds_in_the_cuda_kernel_are_caught(name, monkeypatch):
    """Planted: the CUDA kernel compiled without --fmad=false, so that the compiler
    fuses m b1 + c1 g into one rounding. The bit-for-bit comparison must see it."""
    monkeypatch.setattr(fused, "CUDA_OPTIONS", ())
    monkeypatch.setattr(fused, "_compiled", {})  # compile the planted kernel
    be = make(name, dtype="float32")
    p0, gs = _training_arrays(be, {"W": (300, 70)}, n_steps=3)
    fast = _train(Adam, be, p0, gs, lr=1e-2, fast=True)
    plain = _train(Adam, be, p0, gs, lr=1e-2, fast=False)
    np.testing.assert_allclose(fast["W"], plain["W"], rtol=1e-5, atol=1e-6)  # the same formula...
    assert not np.array_equal(fast["m/W"], plain["m/W"])                     # ...but not the same bits
