"""The autoencoder and the denoising autoencoder: whole-model gradients against
finite differences (corruption frozen, like eps), a planted bug, the forward pinned."""
import numpy as np
import pytest

from conftest import BACKENDS, make
from tinyvae import api
from tinyvae.core import ae, vae
from tinyvae.errors import InputError
from tinyvae.gradcheck import check_model_gradients, max_error
from tinyvae.core.nets import Conv, ConvTranspose, Dense, Flatten, Reshape

MLP = ae.AEConfig(input_dim=6, enc_hidden=(5,), dec_hidden=(4,), latent_dim=2, activation="tanh")
CONV = ae.AEConfig(input_dim=16, latent_dim=2,
                   encoder=(Reshape((4, 4, 1)), Conv(2, 3, 2, "relu"), Flatten(), Dense(2)),
                   decoder=(Dense(8, "softplus"), Reshape((2, 2, 2)), ConvTranspose(1, 3, 2), Flatten()))


def random_params(be, config, seed=0):
    rng = np.random.default_rng(seed)
    return {k: be.asarray(0.5 * rng.standard_normal(s)) for k, s in vae.param_shapes(config).items()}


def frozen_ae_loss(x_in, x, config):
    def loss_fn(params):
        parts, grads = ae.loss_and_grads(params, x_in, x, config)   # the same corruption every call
        return parts.loss, grads
    return loss_fn


def corrupted(be, config, kind, n=3, seed=0):
    rng = np.random.default_rng(seed)
    x = be.asarray(rng.uniform(0.0, 1.0, (n, config.input_dim)))
    if kind == "mask":
        return ae.mask_noise(x, be.asarray(rng.uniform(0, 1, (n, config.input_dim))), 0.3), x
    if kind == "gaussian":
        return ae.gaussian_noise(x, be.asarray(rng.standard_normal((n, config.input_dim))), 0.5), x
    return x, x


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("config", [MLP, CONV], ids=["mlp", "conv"])
@pytest.mark.parametrize("kind", ["plain", "mask", "gaussian"])
def test_autoencoder_gradient_matches_finite_differences(name, config, kind):
    be = make(name)
    params = random_params(be, config)
    x_in, x = corrupted(be, config, kind)
    errors = check_model_gradients(frozen_ae_loss(x_in, x, config), params)
    assert set(errors) == set(params) and max_error(errors) < 1e-6, errors


def test_autoencoder_check_catches_the_loss_against_the_corrupted_input(monkeypatch):
    """Planted bug: a backward that compares the output with x_in instead of x must fail."""
    be = make("numpy")
    params = random_params(be, MLP)
    x_in, x = corrupted(be, MLP, "mask")
    real = ae.bernoulli_nll_backward
    monkeypatch.setattr(ae, "bernoulli_nll_backward",
                        lambda d, cache: real(d, (cache[0], x_in, cache[2])))
    errors = check_model_gradients(frozen_ae_loss(x_in, x, MLP), params)
    assert max_error(errors) > 1e-2, errors


@pytest.mark.parametrize("name", BACKENDS)
def test_autoencoder_forward_matches_a_direct_computation(name):
    be = make(name)
    params = random_params(be, MLP, seed=2)
    x_in, x = corrupted(be, MLP, "gaussian", seed=2)
    n = {k: be.to_numpy(v) for k, v in params.items()}
    xi, xn = be.to_numpy(x_in), be.to_numpy(x)
    h = np.tanh(xi @ n["enc.0.W"] + n["enc.0.b"]) @ n["enc.1.W"] + n["enc.1.b"]
    a = np.tanh(h @ n["dec.0.W"] + n["dec.0.b"]) @ n["dec.1.W"] + n["dec.1.b"]
    want = np.logaddexp(0, a).sum(axis=1) - (xn * a).sum(axis=1)
    parts, _ = ae.loss_and_grads(params, x_in, x, MLP)
    np.testing.assert_allclose(float(parts.loss), want.mean(), rtol=1e-10)
    np.testing.assert_allclose(be.to_numpy(ae.recon_terms(params, x_in, x, MLP)), want, rtol=1e-10)


@pytest.mark.parametrize("name", BACKENDS)
def test_corruptions_do_what_they_say(name):
    be = make(name)
    x = be.asarray(np.full((2, 4), 0.8))
    u = be.asarray(np.array([[0.1, 0.5, 0.29, 0.3], [0.9, 0.0, 0.31, 0.7]]))
    np.testing.assert_array_equal(be.to_numpy(ae.mask_noise(x, u, 0.3)), [[0, 0.8, 0, 0.8], [0.8, 0, 0.8, 0.8]])
    e = be.asarray(np.array([[1.0, -3.0, 0.0, 0.2], [-1.0, 0.1, 5.0, -0.2]]))
    np.testing.assert_allclose(be.to_numpy(ae.gaussian_noise(x, e, 0.5)), [[1, 0, 0.8, 0.9], [0.3, 0.85, 1, 0.7]])


def test_autoencoder_config_misuse_is_one_line():
    for kwargs, message in [(dict(n_classes=3), "takes no label"), (dict(likelihood="gaussian"), "Bernoulli"),
                            (dict(encoder=(Dense(4),), latent_dim=2), r"encoder ends in \(4,\) but latent_dim")]:
        with pytest.raises(InputError, match=message):
            ae.AEConfig(**kwargs)
    params = random_params(make("numpy"), MLP)
    x_in, x = corrupted(make("numpy"), MLP, "plain")
    with pytest.raises(InputError, match="x_in has shape"):
        api.ae_loss_and_grads(params, x_in[:, :3], x, MLP)
