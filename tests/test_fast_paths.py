"""The engine's speed-minded lines against the plain versions they replace.

Each line that was rewritten for speed (measured in docs/benchmarks.md) is
checked here against the straightforward formula it replaced, kept in this
file as the oracle.
"""
import math

import numpy as np
import pytest

from conftest import BACKENDS, make
from tinyvae import distributions as dist
from tinyvae import fused, layers
from tinyvae.optim import SGD, Adam


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


def _training_arrays(be, shapes, n_steps, seed=0):
    """Parameters and n_steps of gradients, as NumPy arrays and on `be`."""
    rng = np.random.default_rng(seed)
    p0 = {k: rng.standard_normal(s) for k, s in shapes.items()}
    gs = [{k: rng.standard_normal(s) * 10.0 ** rng.integers(-4, 2) for k, s in shapes.items()}
          for _ in range(n_steps)]
    return p0, [{k: be.asarray(g) for k, g in grads.items()} for grads in gs]


def _fresh(be, p0):
    """A new copy of the parameters on `be` (asarray alone may hand back p0's own arrays)."""
    return {k: be.asarray(np.array(v)) for k, v in p0.items()}


# Sizes on both sides of fused.CHUNK and fused.MIN_PARALLEL, one of them not a
# whole number of chunks, and the small ones that stay on one thread.
SHAPES = {"big.W": (300, 700), "odd": (65537,), "W": (20, 40), "b": (40,), "scalar": ()}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt_cls, kwargs", [
    (Adam, {"lr": 1e-2, "betas": (0.8, 0.95), "eps": 1e-8}),
    (SGD, {"lr": 0.05, "momentum": 0.9}),
])
def test_fused_optimizer_step_equals_the_plain_lines_bit_for_bit(opt_cls, kwargs, dtype):
    """fast=True on NumPy (in place, chunked, threads) gives exactly fast=False's numbers."""
    be = make("numpy", dtype=dtype)
    p0, gs = _training_arrays(be, SHAPES, n_steps=5)
    runs = {}
    for fast in (True, False):
        params = _fresh(be, p0)
        opt = opt_cls(params, fast=fast, **kwargs)
        for g in gs:
            opt.step(params, g)
        runs[fast] = params, opt.state_dict()
    (p_fast, s_fast), (p_plain, s_plain) = runs[True], runs[False]
    for k in p0:
        assert p_fast[k].dtype == p_plain[k].dtype == be.dtype
        np.testing.assert_array_equal(p_fast[k], p_plain[k], err_msg=k)
        assert not np.array_equal(p_fast[k], be.asarray(p0[k])), k  # it did move
    for name, state in s_plain.items():
        if isinstance(state, dict):
            for k in state:
                np.testing.assert_array_equal(s_fast[name][k], state[k], err_msg=f"{name} {k}")


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_fused_adam_on_any_number_of_threads_equals_the_plain_lines(threads):
    """The split between threads changes nothing: every element gets the same operations once."""
    be = make("numpy", dtype="float32")
    p0, gs = _training_arrays(be, SHAPES, n_steps=3, seed=1)
    plain = _fresh(be, p0)
    opt = Adam(plain, lr=1e-3, fast=False)
    fast = _fresh(be, p0)
    m = {k: np.zeros_like(v) for k, v in fast.items()}
    v = {k: np.zeros_like(a) for k, a in fast.items()}
    runner = fused.ChunkRunner(threads=threads)
    for t, g in enumerate(gs, start=1):
        opt.step(plain, g)
        sqrt_c2 = math.sqrt(1.0 - 0.999 ** t)
        fused.fused_adam(runner, fast, g, m, v, 0.9, 0.999, 1e-3 * sqrt_c2 / (1.0 - 0.9 ** t), 1e-8 * sqrt_c2)
    for k in p0:
        np.testing.assert_array_equal(fast[k], plain[k], err_msg=k)
        np.testing.assert_array_equal(m[k], opt.m[k], err_msg=k)
        np.testing.assert_array_equal(v[k], opt.v[k], err_msg=k)


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_chunk_runner_visits_every_element_exactly_once(threads):
    """A kernel that adds 1 to each element it is given: every element must end at exactly 1."""
    arrays = {k: np.zeros(s, dtype=np.float32) for k, s in SHAPES.items()}
    offsets = {k: np.arange(a.size, dtype=np.float32).reshape(a.shape) for k, a in arrays.items()}

    def add_one(a, offset, t, u, scale):
        assert a.ndim == 1 and t.shape == u.shape == a.shape and np.shares_memory(a, arrays_by_id[id(a.base)])
        a += scale
        np.testing.assert_array_equal(offset, offset[0] + np.arange(a.size))  # chunks are contiguous runs

    arrays_by_id = {id(a): a for a in arrays.values()}
    fused.ChunkRunner(threads=threads).run(add_one, [arrays, offsets], 1.0)
    for k, a in arrays.items():
        np.testing.assert_array_equal(a, np.ones(SHAPES[k], dtype=np.float32), err_msg=k)


def test_a_rounding_change_in_the_kernel_is_caught(monkeypatch):
    """Planted: (m / d) lr_t instead of (lr_t m) / d, the same formula rounded differently.

    The bit-for-bit comparison above must see it, so it can see any real change.
    """
    def reordered(p, g, m, v, t, u, b1, b2, lr_t, eps_t):
        m *= b1
        m += (1.0 - b1) * g
        v *= b2
        v += (1.0 - b2) * g * g
        p -= m / (np.sqrt(v) + eps_t) * lr_t

    monkeypatch.setattr(fused, "adam_kernel", reordered)
    be = make("numpy", dtype="float32")
    p0, gs = _training_arrays(be, {"W": (50, 40)}, n_steps=3)
    a, b = _fresh(be, p0), _fresh(be, p0)
    fast, plain = Adam(a, lr=1e-2, fast=True), Adam(b, lr=1e-2, fast=False)
    for g in gs:
        fast.step(a, g)
        plain.step(b, g)
    np.testing.assert_allclose(a["W"], b["W"], rtol=1e-5)  # the same formula...
    assert not np.array_equal(a["W"], b["W"])              # ...but not the same bits


@pytest.mark.parametrize("name", BACKENDS)
def test_fast_path_runs_only_on_numpy_and_the_others_keep_the_plain_lines(name, monkeypatch):
    """On array-api-strict and CuPy, fast=True gives the plain lines' numbers, without fused.py."""
    be = make(name, dtype="float32")
    p0, gs = _training_arrays(be, {"W": (20, 30), "b": (30,)}, n_steps=2)
    assert fused.fusable(_fresh(be, p0)) == (name == "numpy")
    if name != "numpy":
        monkeypatch.setattr(fused, "adam_kernel", None)  # any call would fail
    runs = []
    for fast in (True, False):
        params = _fresh(be, p0)
        opt = Adam(params, lr=1e-2, fast=fast)
        for g in gs:
            opt.step(params, g)
        runs.append({k: be.to_numpy(v) for k, v in params.items()})
    for k in p0:
        np.testing.assert_array_equal(runs[0][k], runs[1][k], err_msg=k)


def test_arrays_the_kernels_cannot_take_fall_back_to_the_plain_lines():
    """Mixed dtypes, a strided view or a read-only array: the plain lines, the same numbers."""
    rng = np.random.default_rng(3)
    W, g = rng.standard_normal((8, 6)), rng.standard_normal((8, 6))
    assert fused.fusable({"W": W}, {"W": g})
    assert not fused.fusable({"W": W}, {"W": g.astype(np.float32)})   # mixed dtypes
    assert not fused.fusable({"W": W}, {"W": np.asfortranarray(g)})   # not C-contiguous
    assert not fused.fusable({"W": W.T.copy().T}, {"W": g})
    ro = g.copy()
    ro.flags.writeable = False
    assert not fused.fusable({"W": W}, {"W": ro})
    assert not fused.fusable({"n": np.arange(3)})                      # integers
    a, b = {"W": W.copy()}, {"W": W.copy()}
    fast, plain = Adam(a, fast=True), Adam(b, fast=False)
    fast.step(a, {"W": np.asfortranarray(g)})
    plain.step(b, {"W": g})
    np.testing.assert_array_equal(a["W"], b["W"])
