"""The engine's speed-minded lines against the plain versions they replace.

Each line that was rewritten for speed (measured in docs/benchmarks.md) is
checked here against the straightforward formula it replaced, kept in this
file as the oracle.
"""
import numpy as np
import pytest

from conftest import BACKENDS, make
from tinyvae import distributions as dist
from tinyvae import layers


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
