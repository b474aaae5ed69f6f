"""beta != 1 and the conditional VAE: whole-model gradients against finite
differences (eps frozen), the planted bugs they must catch, and the forward pinned."""
import numpy as np
import pytest

from conftest import BACKENDS, make
from tinyvae.core import vae
from tinyvae.errors import InputError
from tinyvae.gradcheck import check_model_gradients, max_error
from tinyvae.core.layers import one_hot
from tinyvae import VAEConfig, loss_and_grads

CVAE = VAEConfig(input_dim=6, enc_hidden=(5,), dec_hidden=(4,), latent_dim=2, activation="tanh", n_classes=3)


def random_params(be, config, seed=0):
    rng = np.random.default_rng(seed)
    return {k: be.asarray(0.5 * rng.standard_normal(s)) for k, s in vae.param_shapes(config).items()}


def labelled_batch(be, config, n=4, seed=0):
    rng = np.random.default_rng(seed)
    x = be.asarray(rng.uniform(0.0, 1.0, (n, config.input_dim)))
    eps = be.asarray(rng.standard_normal((n, config.latent_dim)))
    y = one_hot(be.asarray(rng.integers(0, config.n_classes, n)), config.n_classes, like=x)
    return x, eps, y


def frozen_cvae_loss(x, eps, y, config, beta=1.0):
    def loss_fn(params):
        parts, grads = loss_and_grads(params, x, eps, config, y=y, beta=beta)
        return parts.loss, grads
    return loss_fn


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("beta", [0.0, 0.3, 4.0])
def test_beta_vae_gradient_matches_finite_differences(name, beta):
    be = make(name)
    config = VAEConfig(input_dim=5, enc_hidden=(4,), dec_hidden=(3,), latent_dim=2, activation="softplus")
    params = random_params(be, config, seed=1)
    rng = np.random.default_rng(1)
    x, eps = be.asarray(rng.uniform(0, 1, (3, 5))), be.asarray(rng.standard_normal((3, 2)))

    def loss_fn(p):
        parts, grads = loss_and_grads(p, x, eps, config, beta=beta)
        return parts.loss, grads

    errors = check_model_gradients(loss_fn, params)
    assert max_error(errors) < 1e-6, errors


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("n", [1, 4])
def test_cvae_gradient_matches_finite_differences(name, n):
    be = make(name)
    params = random_params(be, CVAE)
    x, eps, y = labelled_batch(be, CVAE, n)
    errors = check_model_gradients(frozen_cvae_loss(x, eps, y, CVAE, beta=0.7), params)
    assert set(errors) == set(params) and max_error(errors) < 1e-6, errors


def test_cvae_check_catches_label_columns_passed_as_dz(monkeypatch):
    """Planted bug: taking the last L columns of d[z | y] (label columns among them) as dz must fail."""
    be = make("numpy")
    params = random_params(be, CVAE)
    x, eps, y = labelled_batch(be, CVAE)
    real = vae.net_backward

    def wrong(dout, caches, prefix, layers, grads, need_dx=True):
        d = real(dout, caches, prefix, layers, grads, need_dx)
        if prefix == "dec":                               # shift so that dzy[:, :L] picks label columns
            d = be.xp.concat([d[:, CVAE.latent_dim:], d[:, :CVAE.latent_dim]], axis=1)
        return d

    monkeypatch.setattr(vae, "net_backward", wrong)
    errors = check_model_gradients(frozen_cvae_loss(x, eps, y, CVAE), params)
    assert max_error(errors) > 1e-2, errors


def test_beta_check_catches_beta_applied_to_the_reconstruction(monkeypatch):
    """Planted bug: the KL weight used on the reconstruction's gradient must fail the check."""
    be = make("numpy")
    params = random_params(be, CVAE)
    x, eps, y = labelled_batch(be, CVAE)
    real = vae.neg_elbo_backward
    monkeypatch.setattr(vae, "neg_elbo_backward", lambda dr, dk, c, cfg: real(dk, dk, c, cfg))
    errors = check_model_gradients(frozen_cvae_loss(x, eps, y, CVAE, beta=3.0), params)
    assert max_error(errors) > 1e-2, errors


@pytest.mark.parametrize("config", [CVAE, VAEConfig(input_dim=6, enc_hidden=(5,), dec_hidden=(4,), latent_dim=2)],
                         ids=["cvae", "vae"])
def test_backends_agree_to_1e12_with_labels_and_beta(config):
    results = []
    for name in ("numpy", "array_api_strict"):
        be = make(name)
        params = random_params(be, config, seed=3)
        x, eps, y = labelled_batch(be, CVAE, seed=3)
        parts, grads = loss_and_grads(params, x, eps, config, y=y if config.n_classes else None, beta=0.5)
        results.append((float(parts.loss), {k: be.to_numpy(v) for k, v in grads.items()}))
    (la, ga), (lb, gb) = results
    assert abs(la - lb) < 1e-12
    assert all(np.max(np.abs(ga[k] - gb[k])) < 1e-12 for k in ga)


def test_cvae_forward_concatenates_the_label_on_both_sides():
    """Pin the forward: the encoder sees [x | y], the decoder [z | y], in that order."""
    be = make("numpy")
    params = random_params(be, CVAE, seed=5)
    x, eps, y = labelled_batch(be, CVAE, seed=5)
    n = {k: be.to_numpy(v) for k, v in params.items()}
    xy = np.concatenate([x, y], axis=1)
    head = np.tanh(xy @ n["enc.0.W"] + n["enc.0.b"]) @ n["enc.1.W"] + n["enc.1.b"]
    mu, logvar = head[:, :2], head[:, 2:]
    z = mu + np.exp(0.5 * logvar) * eps
    a = np.tanh(np.concatenate([z, y], axis=1) @ n["dec.0.W"] + n["dec.0.b"]) @ n["dec.1.W"] + n["dec.1.b"]
    recon = np.sum(np.logaddexp(0, a) - x * a, axis=1)
    kl = 0.5 * np.sum(mu ** 2 + np.exp(logvar) - 1 - logvar, axis=1)
    got_recon, got_kl = vae.neg_elbo_terms(params, x, eps, CVAE, y)
    np.testing.assert_allclose(got_recon, recon, rtol=1e-10)
    np.testing.assert_allclose(got_kl, kl, rtol=1e-10)


@pytest.mark.parametrize("call,message", [
    (lambda p, x, e, y: loss_and_grads(p, x, e, CVAE), "pass y, the one-hot labels"),
    (lambda p, x, e, y: loss_and_grads(p, x, e, CVAE, y=y[:, :2]), "y has shape (4, 2)"),
    (lambda p, x, e, y: loss_and_grads(p, x, e, CVAE, y=2.0 * y), "not one-hot"),
])
def test_label_misuse_is_one_line(call, message):
    be = make("numpy")
    params = random_params(be, CVAE)
    x, eps, y = labelled_batch(be, CVAE)
    with pytest.raises(InputError) as e:
        call(params, x, eps, y)
    assert message in str(e.value) and "\n" not in str(e.value)
