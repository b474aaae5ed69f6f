"""The ELBO's probabilistic pieces: backward checks (eps frozen) and properties."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from conftest import BACKENDS, make, put
from test_layers import dims, matrices, values
from tinyvae.core import distributions as dist
from tinyvae.gradcheck import check_backward, max_error

TOL = 1e-6


def unit_matrices(rows, cols):
    """Pixels in [0, 1], with exact 0s and 1s likely."""
    return arrays(np.float64, (rows, cols), elements=st.one_of(
        st.just(0.0), st.just(1.0), st.floats(0.0, 1.0)))


# ---- backward checks ---------------------------------------------------------


@pytest.mark.parametrize("name", BACKENDS)
@given(data=st.data(), n=dims, d=dims)
def test_bernoulli_nll_backward(name, data, n, d):
    be = make(name)
    logits = put(be, data.draw(matrices(n, d, -8.0, 8.0)))
    x = put(be, data.draw(unit_matrices(n, d)))
    # x is data: only the gradient wrt the logits is checked (and returned).
    errors = check_backward(lambda a: dist.bernoulli_nll_forward(a, x),
                            dist.bernoulli_nll_backward, [logits])
    assert max_error(errors) < TOL, errors


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("shared_variance", [False, True])
@given(data=st.data(), n=dims, d=dims)
def test_gaussian_nll_backward(name, shared_variance, data, n, d):
    be = make(name)
    mean = put(be, data.draw(matrices(n, d)))
    logvar_shape = (d,) if shared_variance else (n, d)
    logvar = put(be, data.draw(arrays(np.float64, logvar_shape, elements=values(-2.0, 2.0))))
    x = put(be, data.draw(matrices(n, d)))
    errors = check_backward(lambda m, v: dist.gaussian_nll_forward(m, v, x),
                            dist.gaussian_nll_backward, [mean, logvar])
    assert max_error(errors) < TOL, errors


@pytest.mark.parametrize("name", BACKENDS)
@given(data=st.data(), n=dims, latent=dims)
def test_reparameterize_backward_with_eps_frozen(name, data, n, latent):
    be = make(name)
    mu = put(be, data.draw(matrices(n, latent)))
    logvar = put(be, data.draw(matrices(n, latent)))
    eps = put(be, data.draw(matrices(n, latent)))  # frozen: the same in every evaluation
    errors = check_backward(lambda m, v: dist.reparameterize_forward(m, v, eps),
                            dist.reparameterize_backward, [mu, logvar])
    assert max_error(errors) < TOL, errors


@pytest.mark.parametrize("name", BACKENDS)
@given(data=st.data(), n=dims, latent=dims)
def test_kl_normal_backward(name, data, n, latent):
    be = make(name)
    mu = put(be, data.draw(matrices(n, latent)))
    logvar = put(be, data.draw(matrices(n, latent)))
    errors = check_backward(dist.kl_normal_forward, dist.kl_normal_backward, [mu, logvar])
    assert max_error(errors) < TOL, errors


# ---- properties ----------------------------------------------------------------


@pytest.mark.parametrize("name", BACKENDS)
@given(data=st.data(), n=dims, latent=dims)
def test_kl_is_nonnegative(name, data, n, latent):
    be = make(name)
    mu = put(be, data.draw(matrices(n, latent, -5.0, 5.0)))
    logvar = put(be, data.draw(matrices(n, latent, -5.0, 5.0)))
    kl, _ = dist.kl_normal_forward(mu, logvar)
    assert kl.shape == (n,)
    assert np.all(be.to_numpy(kl) >= 0.0)


@pytest.mark.parametrize("name", BACKENDS)
def test_kl_is_exactly_zero_at_the_prior(name):
    be = make(name)
    zeros = put(be, np.zeros((3, 4)))
    kl, _ = dist.kl_normal_forward(zeros, zeros)
    assert np.all(be.to_numpy(kl) == 0.0)


def test_kl_matches_monte_carlo():
    """E_q[log q(z) - log p(z)] by sampling agrees with the closed form."""
    be = make("numpy", seed=1)
    mu = put(be, [[0.5, -1.0, 2.0]])
    logvar = put(be, [[-1.0, 0.3, 1.2]])
    kl, _ = dist.kl_normal_forward(mu, logvar)
    S = 400_000
    eps = be.normal((S, 3))
    z = mu + np.exp(0.5 * logvar) * eps
    log_q = dist.normal_logpdf(z, mu, logvar)
    log_p = dist.normal_logpdf(z, np.zeros_like(z), np.zeros_like(z))
    samples = log_q - log_p
    stderr = samples.std() / math.sqrt(S)
    assert abs(samples.mean() - kl[0]) < 5 * stderr, (samples.mean(), kl[0], stderr)


def test_reparameterized_samples_have_the_right_mean_and_variance():
    """z = mu + exp(logvar / 2) eps has mean mu and variance exp(logvar) (not exp(logvar)^2)."""
    be = make("numpy", seed=2)
    S = 200_000
    mu_value, logvar_value = np.array([1.5, -0.5]), np.array([0.8, -1.6])
    mu = put(be, np.tile(mu_value, (S, 1)))
    logvar = put(be, np.tile(logvar_value, (S, 1)))
    z, _ = dist.reparameterize_forward(mu, logvar, be.normal((S, 2)))
    var = np.exp(logvar_value)
    # Five standard errors: var / S for the mean, var * sqrt(2 / S) for the variance.
    assert np.all(np.abs(z.mean(axis=0) - mu_value) < 5 * np.sqrt(var / S))
    assert np.all(np.abs(z.var(axis=0) - var) < 5 * var * np.sqrt(2.0 / S))


@pytest.mark.parametrize("name", BACKENDS)
@given(data=st.data(), n=dims, d=dims)
def test_bernoulli_matches_naive_formula_where_finite(name, data, n, d):
    be = make(name)
    a = data.draw(matrices(n, d, -20.0, 20.0))
    x = data.draw(unit_matrices(n, d))
    p = 1.0 / (1.0 + np.exp(-a))
    with np.errstate(divide="ignore", invalid="ignore"):
        naive = -(x * np.log(p) + (1.0 - x) * np.log(1.0 - p)).sum(axis=1)
    nll, _ = dist.bernoulli_nll_forward(put(be, a), put(be, x))
    finite = np.isfinite(naive)
    np.testing.assert_allclose(be.to_numpy(nll)[finite], naive[finite], rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bernoulli_is_finite_where_the_naive_formula_is_not(name, dtype):
    be = make(name, dtype=dtype)
    a = be.asarray(np.array([[1e4, -1e4, 50.0, -50.0]]))
    x = be.asarray(np.array([[0.0, 1.0, 0.0, 1.0]]))
    nll, cache = dist.bernoulli_nll_forward(a, x)
    dlogits = dist.bernoulli_nll_backward(be.asarray(np.ones(1)), cache)
    # -log sigma(-1e4) = 1e4 exactly, and so on: softplus(a) - x a.
    np.testing.assert_allclose(be.to_numpy(nll), [1e4 + 1e4 + 50.0 + 50.0], rtol=1e-6)
    np.testing.assert_allclose(be.to_numpy(dlogits), [[1.0, -1.0, 1.0, -1.0]], rtol=1e-6)


def test_gaussian_nll_matches_the_density():
    mean, logvar, x = np.array([[0.3, -1.0]]), np.array([[0.5, -0.2]]), np.array([[1.0, 0.0]])
    nll, _ = dist.gaussian_nll_forward(mean, logvar, x)
    sd = np.exp(0.5 * logvar)
    density = np.exp(-0.5 * ((x - mean) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(nll, -np.log(density).sum(axis=1), rtol=1e-12)
