"""Every layer's backward against centred finite differences, float64, over
shapes and values drawn by hypothesis (batch size 1 included)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from conftest import BACKENDS, make, put
from tinyvae.core import batch_norm, layers
from tinyvae.gradcheck import check_backward, max_error

TOL = 1e-6


def values(lo=-3.0, hi=3.0):
    """Floats in [lo, hi]; magnitudes below 1e-3 become exactly 0.

    A value like 1e-120 gives a true gradient far below what a finite
    difference can resolve (about macheps * |f| / h), so the check would
    compare 1e-120 with 0 and report a relative error of 1.
    """
    return st.floats(lo, hi, allow_nan=False).map(lambda v: 0.0 if abs(v) < 1e-3 else v)


def matrices(rows, cols, lo=-3.0, hi=3.0, away_from_zero=0.0):
    elements = values(lo, hi)
    if away_from_zero:
        # Keep clear of a kink (ReLU at 0), where a finite difference straddles it.
        elements = elements.filter(lambda v: abs(v) > away_from_zero)
    return arrays(np.float64, (rows, cols), elements=elements)


dims = st.integers(1, 5)


@pytest.mark.parametrize("name", BACKENDS)
@given(data=st.data(), n=dims, d=dims, h=dims)
def test_affine_backward(name, data, n, d, h):
    be = make(name)
    x = put(be, data.draw(matrices(n, d)))
    W = put(be, data.draw(matrices(d, h)))
    b = put(be, data.draw(arrays(np.float64, (h,), elements=values())))
    errors = check_backward(layers.affine_forward, layers.affine_backward, [x, W, b])
    assert max_error(errors) < TOL, errors


@pytest.mark.parametrize("name", BACKENDS)
def test_affine_backward_skips_dx_for_data(name):
    be = make(name)
    x, W, b = put(be, np.ones((2, 3))), put(be, np.ones((3, 4))), put(be, np.zeros(4))
    y, cache = layers.affine_forward(x, W, b)
    dx, dW, db = layers.affine_backward(y, cache, need_dx=False)
    assert dx is None and dW.shape == (3, 4) and db.shape == (4,)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("act", sorted(layers.ACTIVATIONS))
@given(data=st.data(), n=dims, d=dims)
def test_activation_backward(name, act, data, n, d):
    be = make(name)
    kink = 1e-3 if "relu" in act else 0.0
    # On [-4, 4] every slope is >= 1e-3 (tanh'(4) = 1.3e-3), well above the
    # finite difference's rounding floor of about 1e-16 * |f| / h = 1e-10.
    # Saturation far out is checked separately (finite, exact limits).
    x = put(be, data.draw(matrices(n, d, -4.0, 4.0, away_from_zero=kink)))
    forward, backward = layers.ACTIVATIONS[act]
    errors = check_backward(forward, backward, [x])
    assert max_error(errors) < TOL, (act, errors)


@pytest.mark.parametrize("name", BACKENDS)
def test_sigmoid_and_softplus_are_finite_at_extreme_inputs(name):
    be = make(name, dtype="float32")
    a = be.asarray(np.array([-1e4, -100.0, 0.0, 100.0, 1e4], dtype=np.float32))
    s = be.to_numpy(layers.sigmoid(a))
    sp = be.to_numpy(layers.softplus(a))
    assert np.all(np.isfinite(s)) and np.all(np.isfinite(sp))
    np.testing.assert_allclose(s, [0.0, 3.7200760e-44, 0.5, 1.0, 1.0], atol=1e-30)
    np.testing.assert_allclose(sp, [0.0, 3.7200760e-44, np.log(2.0), 100.0, 1e4], rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("name", BACKENDS)
def test_relu_backward_blocks_negative_inputs(name):
    be = make(name)
    x = put(be, [[-1.0, 2.0, -3.0, 4.0]])
    y, cache = layers.relu_forward(x)
    dx = layers.relu_backward(put(be, [[10.0, 20.0, 30.0, 40.0]]), cache)
    np.testing.assert_array_equal(be.to_numpy(dx), [[0.0, 20.0, 0.0, 40.0]])


@pytest.mark.parametrize("name", BACKENDS)
@given(data=st.data(), n=dims, h=st.integers(1, 4), w=st.integers(1, 4), c=st.integers(1, 3))
def test_reshape_backward(name, data, n, h, w, c):
    be = make(name)
    x = put(be, data.draw(matrices(n, h * w * c)))
    errors = check_backward(lambda a: layers.reshape_forward(a, (h, w, c)), layers.reshape_backward, [x])
    assert max_error(errors) < TOL, errors
    y, _ = layers.reshape_forward(x, (h, w, c))   # row-major: HWC, as Keras reads a flat image
    np.testing.assert_array_equal(be.to_numpy(y), be.to_numpy(x).reshape(n, h, w, c))


@pytest.mark.parametrize("name", BACKENDS)
@given(data=st.data(), n=dims, k=st.integers(1, 6))
def test_log_softmax_backward(name, data, n, k):
    be = make(name)
    a = put(be, data.draw(matrices(n, k, -5.0, 5.0)))
    errors = check_backward(layers.log_softmax_forward, layers.log_softmax_backward, [a])
    assert max_error(errors) < TOL, errors
    log_pi, _ = layers.log_softmax_forward(a)        # the forward against the textbook formula
    a_np = be.to_numpy(a)
    expected = a_np - np.log(np.sum(np.exp(a_np), axis=1, keepdims=True))
    np.testing.assert_allclose(be.to_numpy(log_pi), expected, rtol=1e-12, atol=1e-12)


def test_log_softmax_check_catches_a_missing_term():
    """Planted bug: the backward without the -pi * sum(dlog_pi) term must fail the check."""
    be = make("numpy")
    a = put(be, np.random.default_rng(1).standard_normal((3, 4)))
    errors = check_backward(layers.log_softmax_forward, lambda d, pi: d, [a])
    assert max_error(errors) > 1e-2, errors


@pytest.mark.parametrize("name", BACKENDS)
def test_log_softmax_is_finite_at_extreme_logits(name):
    be = make(name, dtype="float32")
    a = be.asarray(np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], dtype=np.float32))
    log_pi, pi = layers.log_softmax_forward(a)
    log_pi, pi = be.to_numpy(log_pi), be.to_numpy(pi)
    assert np.all(np.isfinite(log_pi)) and np.all(np.isfinite(pi))
    np.testing.assert_allclose(log_pi[0], [0.0, -2e4, -1e4], rtol=1e-6)
    np.testing.assert_allclose(log_pi[1], [-np.log(3.0)] * 3, rtol=1e-6)
    np.testing.assert_allclose(pi.sum(axis=1), [1.0, 1.0], rtol=1e-6)


@pytest.mark.parametrize("name", BACKENDS)
def test_one_hot(name):
    be = make(name)
    labels = be.asarray(np.array([2, 0, 1]))
    y = layers.one_hot(labels, 4, like=put(be, np.zeros((1, 1))))
    np.testing.assert_array_equal(be.to_numpy(y), np.eye(4)[[2, 0, 1]])
    assert y.dtype == be.xp.float64


@pytest.mark.parametrize("old,new", [
    # the backward at the default slope whatever the forward used
    ("return xp.where(x > 0, dy, slope * dy)", "return xp.where(x > 0, dy, 0.01 * dy)"),
    # the forward's slope not kept in its cache
    ("return xp.where(x > 0, x, slope * x), (x, slope)", "return xp.where(x > 0, x, slope * x), (x, 0.01)"),
])
def test_the_leaky_slope_check_catches_a_planted_bug(old, new):
    """leaky_relu_0.2 (D's slope in a GAN) passes its check, and fails it with its slope lost on the way back."""
    from test_planted_bugs import mutant
    be = make("numpy")
    x = put(be, np.random.default_rng(0).uniform(-3, 3, (4, 5)))
    forward, backward = layers.ACTIVATIONS["leaky_relu_0.2"]
    assert max_error(check_backward(forward, backward, [x])) < TOL
    bad = mutant(layers, old, new)
    error = max_error(check_backward(bad.ACTIVATIONS["leaky_relu_0.2"][0], bad.ACTIVATIONS["leaky_relu_0.2"][1], [x]))
    assert error > 1e-2, error


def bn_inputs(be, data, shape):
    """x of `shape` (the last axis the channels), gamma and beta (C,), float64."""
    C = shape[-1]
    x = put(be, data.draw(arrays(np.float64, shape, elements=values())))
    gamma = put(be, data.draw(arrays(np.float64, (C,), elements=values())))
    beta = put(be, data.draw(arrays(np.float64, (C,), elements=values())))
    return x, gamma, beta


@pytest.mark.parametrize("name", BACKENDS)
@given(data=st.data(), shape=st.one_of(st.tuples(dims, dims), st.tuples(dims, st.integers(1, 3),
                                                                          st.integers(1, 3), dims)))
def test_batch_norm_backward(name, data, shape):
    be = make(name)
    x, gamma, beta = bn_inputs(be, data, shape)
    errors = check_backward(batch_norm.batch_norm_forward, batch_norm.batch_norm_backward, [x, gamma, beta])
    assert max_error(errors) < TOL, errors


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 2, 5)])
def test_batch_norm_forward_is_its_definition(name, shape):
    """Per channel, over every other axis: gamma * (x - mean) / sqrt(var + 1e-5) + beta, the biased variance."""
    be = make(name)
    rng = np.random.default_rng(2)
    x, gamma, beta = (rng.normal(3.0, 2.0, shape), rng.standard_normal(shape[-1]), rng.standard_normal(shape[-1]))
    y, _ = batch_norm.batch_norm_forward(put(be, x), put(be, gamma), put(be, beta))
    rows = x.reshape(-1, shape[-1])                                      # every value of a channel in a column
    want = gamma * (rows - rows.mean(0)) / np.sqrt(rows.var(0) + 1e-5) + beta
    np.testing.assert_allclose(be.to_numpy(y).reshape(-1, shape[-1]), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("old,new", [
    # mu and var taken as constants on the way back: the two terms through the batch's statistics dropped
    ("dx = inv * (dxhat - xp.mean(dxhat, axis=axes) - xhat * xp.mean(dxhat * xhat, axis=axes))",
     "dx = inv * dxhat"),
    # the variance's term dropped alone (the mean's kept)
    ("dx = inv * (dxhat - xp.mean(dxhat, axis=axes) - xhat * xp.mean(dxhat * xhat, axis=axes))",
     "dx = inv * (dxhat - xp.mean(dxhat, axis=axes))"),
    # dgamma from the raw input rather than the normalised one
    ("return dx, xp.sum(dy * xhat, axis=axes), xp.sum(dy, axis=axes)",
     "return dx, xp.sum(dy * (xhat / inv), axis=axes), xp.sum(dy, axis=axes)"),
])
def test_the_batch_norm_check_catches_a_planted_bug(old, new):
    from test_planted_bugs import mutant
    be = make("numpy")
    rng = np.random.default_rng(3)
    inputs = [put(be, rng.normal(1.0, 2.0, (4, 2, 2, 3))), put(be, rng.standard_normal(3)),
              put(be, rng.standard_normal(3))]
    assert max_error(check_backward(batch_norm.batch_norm_forward, batch_norm.batch_norm_backward, inputs)) < TOL
    bad = mutant(batch_norm, old, new)
    error = max_error(check_backward(bad.batch_norm_forward, bad.batch_norm_backward, inputs))
    assert error > 1e-2, error

