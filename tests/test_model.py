"""The whole VAE: every parameter's gradient against finite differences (eps
frozen), backends agreeing, dtype kept, bad input refused, training working."""
import numpy as np
import pytest

from conftest import BACKENDS, make
from tinyvae import model
from tinyvae.errors import InputError
from tinyvae.gradcheck import check_model_gradients, max_error, rel_error
from tinyvae.model import VAEConfig, init_params, loss_and_grads
from tinyvae.optim import SGD, Adam

ARCHITECTURES = [
    # two encoder/decoder shapes x activations x both likelihoods (learned and fixed variance)
    VAEConfig(input_dim=6, enc_hidden=(5,), dec_hidden=(5,), latent_dim=2, activation="relu"),
    VAEConfig(input_dim=5, enc_hidden=(4, 3), dec_hidden=(3,), latent_dim=3, activation="tanh"),
    VAEConfig(input_dim=6, enc_hidden=(5,), dec_hidden=(4, 4), latent_dim=2,
              activation="softplus", likelihood="gaussian"),
    VAEConfig(input_dim=4, enc_hidden=(3, 3), dec_hidden=(5,), latent_dim=1,
              activation="leaky_relu", likelihood="gaussian", gaussian_logvar=-1.0),
    VAEConfig(input_dim=4, enc_hidden=(), dec_hidden=(3,), latent_dim=2, activation="sigmoid"),
]


def batch(be, config, n=3, seed=0):
    """A batch of pixels in [0, 1] and a frozen eps, drawn on the host and moved over."""
    rng = np.random.default_rng(seed)
    x = be.asarray(rng.uniform(0.0, 1.0, (n, config.input_dim)))
    eps = be.asarray(rng.standard_normal((n, config.latent_dim)))
    return x, eps


def frozen_loss(x, eps, config):
    """loss_fn(params) -> (loss, grads) for check_model_gradients, with eps frozen."""
    def loss_fn(params):
        parts, grads = loss_and_grads(params, x, eps, config)  # the same eps every time
        return parts.loss, grads
    return loss_fn


def random_params(be, config, seed=0):
    """Parameters drawn on the host, so that every backend gets the same numbers."""
    rng = np.random.default_rng(seed)
    shapes = {k: tuple(v.shape) for k, v in init_params(config, be).items()}
    return {k: be.asarray(0.5 * rng.standard_normal(s)) for k, s in shapes.items()}


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("config", ARCHITECTURES, ids=lambda c: f"{c.activation}-{c.likelihood}")
@pytest.mark.parametrize("n", [1, 3])
def test_whole_model_gradient_matches_finite_differences(name, config, n):
    be = make(name)
    params = random_params(be, config)
    x, eps = batch(be, config, n)
    errors = check_model_gradients(frozen_loss(x, eps, config), params)
    assert set(errors) == set(params)
    assert max_error(errors) < 1e-6, errors


def test_gradient_check_catches_a_wrong_sampler(monkeypatch):
    """The bug from public NumPy VAEs: exp(logvar) used as the standard deviation.

    With that forward and the correct backward, the whole-model check must fail.
    """
    be = make("numpy")
    config = ARCHITECTURES[0]
    params, (x, eps) = random_params(be, config), batch(be, config)

    def wrong_forward(mu, logvar, eps):
        std = np.exp(0.5 * logvar)
        return mu + np.exp(logvar) * eps, (std, eps)

    monkeypatch.setattr(model, "reparameterize_forward", wrong_forward)
    errors = check_model_gradients(frozen_loss(x, eps, config), params)
    assert max_error(errors) > 1e-3, errors


def test_gradient_check_catches_a_different_eps_in_backward(monkeypatch):
    """The other public bug: backward uses a fresh eps instead of the forward's."""
    be = make("numpy")
    config = ARCHITECTURES[0]
    params, (x, eps) = random_params(be, config), batch(be, config)
    from tinyvae import distributions

    def fresh_eps_backward(dz, cache):
        std, _ = cache
        return distributions.reparameterize_backward(dz, (std, np.ones_like(std)))

    monkeypatch.setattr(model, "reparameterize_backward", fresh_eps_backward)
    errors = check_model_gradients(frozen_loss(x, eps, config), params)
    assert max_error(errors) > 1e-3, errors


@pytest.mark.parametrize("config", ARCHITECTURES, ids=lambda c: f"{c.activation}-{c.likelihood}")
def test_backends_agree_to_1e12(config):
    results = {}
    for name in [b if isinstance(b, str) else b.values[0] for b in BACKENDS]:
        try:
            be = make(name)
        except Exception:
            continue  # CuPy absent: the gpu-marked tests say so
        params, (x, eps) = random_params(be, config), batch(be, config, n=4)
        parts, grads = loss_and_grads(params, x, eps, config)
        results[name] = (float(parts.loss), {k: be.to_numpy(g) for k, g in grads.items()})
    ref_loss, ref_grads = results.pop("numpy")
    assert "array_api_strict" in results
    for name, (loss, grads) in results.items():
        assert abs(loss - ref_loss) <= 1e-12 * max(1.0, abs(ref_loss)), name
        for k in ref_grads:
            np.testing.assert_allclose(grads[k], ref_grads[k], rtol=1e-12, atol=1e-12, err_msg=f"{name} {k}")


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("opt_cls", [Adam, SGD])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_float32_stays_float32_through_a_training_step(name, opt_cls, likelihood):
    be = make(name, dtype="float32")
    config = VAEConfig(input_dim=8, enc_hidden=(6,), dec_hidden=(6,), latent_dim=2, likelihood=likelihood)
    params = init_params(config, be)
    opt = opt_cls(params)
    x, eps = be.uniform((5, 8)), be.normal((5, 2))
    parts, grads = loss_and_grads(params, x, eps, config)
    opt.step(params, grads)
    f32 = be.xp.float32
    assert parts.loss.dtype == f32 and parts.recon.dtype == f32 and parts.kl.dtype == f32
    for k in params:
        assert params[k].dtype == f32 and grads[k].dtype == f32, k
    for state in opt.state_dict().values():
        if isinstance(state, dict):
            assert all(a.dtype == f32 for a in state.values())


@pytest.mark.parametrize("name", BACKENDS)
def test_a_few_steps_of_training_lower_the_loss(name):
    """Smoke test on synthetic data: two bright-blob prototypes plus noise."""
    be = make(name, dtype="float32", seed=3)
    rng = np.random.default_rng(0)
    protos = (rng.uniform(size=(2, 16)) > 0.5).astype(np.float32)
    data = np.clip(protos[rng.integers(0, 2, 256)] + 0.1 * rng.standard_normal((256, 16)), 0, 1)
    x = be.asarray(data.astype(np.float32))
    config = VAEConfig(input_dim=16, enc_hidden=(32,), dec_hidden=(32,), latent_dim=2)
    params = init_params(config, be)
    opt = Adam(params, lr=1e-2)
    losses = []
    for step in range(60):
        parts, grads = loss_and_grads(params, x, be.normal((256, 2)), config)
        opt.step(params, grads)
        losses.append(float(parts.loss))
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:5]), losses


# ---- bad input ------------------------------------------------------------------


@pytest.fixture
def small():
    be = make("numpy", dtype="float32")
    config = VAEConfig(input_dim=6, enc_hidden=(4,), dec_hidden=(4,), latent_dim=2)
    return be, config, init_params(config, be)


def _message(excinfo):
    msg = str(excinfo.value)
    assert "\n" not in msg  # one line
    return msg


def test_wrong_shape_is_refused(small):
    be, config, params = small
    with pytest.raises(InputError) as e:
        loss_and_grads(params, be.uniform((3, 5)), be.normal((3, 2)), config)
    assert "shape (3, 5)" in _message(e) and "(N, 6)" in _message(e)
    with pytest.raises(InputError, match="shape"):
        loss_and_grads(params, be.uniform((2, 3, 2)), be.normal((2, 2)), config)


def test_wrong_eps_shape_is_refused(small):
    be, config, params = small
    with pytest.raises(InputError) as e:
        loss_and_grads(params, be.uniform((3, 6)), be.normal((3, 5)), config)
    assert "eps" in _message(e)


def test_wrong_dtype_is_refused(small):
    be, config, params = small
    with pytest.raises(InputError) as e:
        loss_and_grads(params, np.zeros((3, 6), dtype=np.float64), be.normal((3, 2)), config)
    assert "float64" in _message(e) and "float32" in _message(e)
    with pytest.raises(InputError, match="uint8"):
        loss_and_grads(params, np.zeros((3, 6), dtype=np.uint8), be.normal((3, 2)), config)


def test_nan_in_the_batch_is_refused(small):
    be, config, params = small
    x = be.uniform((3, 6))
    x[1, 2] = np.nan
    with pytest.raises(InputError) as e:
        loss_and_grads(params, x, be.normal((3, 2)), config)
    assert "NaN" in _message(e)


def test_pixels_outside_unit_interval_are_refused_for_bernoulli(small):
    be, config, params = small
    x = be.uniform((3, 6)) * 255.0
    with pytest.raises(InputError) as e:
        loss_and_grads(params, x, be.normal((3, 2)), config)
    assert "[0, 1]" in _message(e) and "255" in _message(e)
    # The Gaussian likelihood takes any real values.
    gconfig = VAEConfig(input_dim=6, enc_hidden=(4,), dec_hidden=(4,), latent_dim=2, likelihood="gaussian")
    loss_and_grads(init_params(gconfig, be), x, be.normal((3, 2)), gconfig)


def test_bad_config_is_refused():
    with pytest.raises(InputError, match="activation"):
        VAEConfig(activation="gelu")
    with pytest.raises(InputError, match="likelihood"):
        VAEConfig(likelihood="poisson")
    with pytest.raises(InputError, match="positive"):
        VAEConfig(latent_dim=0)


def test_config_round_trips_through_a_dict():
    c = VAEConfig(enc_hidden=(7, 5), dec_hidden=(5,), latent_dim=3)
    d = c.to_dict()
    d["enc_hidden"] = list(d["enc_hidden"])  # as JSON gives it back
    assert VAEConfig.from_dict(d) == c


# ---- evaluation ---------------------------------------------------------------------


def test_importance_weighted_bound_tightens_with_k():
    """log p(x) estimates: K = 1 averages to the ELBO; larger K is higher (tighter)."""
    be = make("numpy", seed=5)
    config = ARCHITECTURES[0]
    params, (x, _) = random_params(be, config), batch(be, config, n=4)
    iw1 = np.mean([model.iw_log_px(params, x, be.normal((1, 4, 2)), config) for _ in range(3000)], axis=0)
    recon, kl = model.neg_elbo_terms(params, x, be.normal((4, 2)), config)
    elbo = np.mean([-sum(model.neg_elbo_terms(params, x, be.normal((4, 2)), config)) for _ in range(3000)], axis=0)
    iw50 = np.mean([model.iw_log_px(params, x, be.normal((50, 4, 2)), config) for _ in range(60)], axis=0)
    # K = 1 uses a sampled KL, the ELBO the closed form: same expectation.
    np.testing.assert_allclose(iw1, elbo, atol=0.15)
    assert np.all(iw50 > elbo + 0.05), (iw50, elbo)
    assert recon.shape == kl.shape == (4,)


def test_rel_error_reads_as_documented():
    assert rel_error(np.ones(3), np.ones(3)) == 0.0
    assert rel_error(np.ones(3), 2 * np.ones(3)) == pytest.approx(1 / 3)
    assert rel_error(np.zeros(3), np.full(3, 1e-13)) < 1e-9  # noise around a true zero
    assert rel_error(np.zeros(3), np.full(3, 1e-2)) == 1.0


@pytest.mark.parametrize("name", BACKENDS)
def test_initial_weights_have_the_documented_spread(name):
    be = make(name, dtype="float32", seed=4)
    he = init_params(VAEConfig(), be)                                  # 784-400-[2x20]-400-784, ReLU
    W0 = be.to_numpy(he["enc.0.W"])
    assert abs(W0.std() - np.sqrt(2 / 784)) < 0.02 * np.sqrt(2 / 784)  # He, ReLU follows
    head = be.to_numpy(he["enc.1.W"])
    assert abs(head.std() - np.sqrt(2 / (400 + 40))) < 0.05 * np.sqrt(2 / 440)  # Glorot, linear head
    assert np.all(be.to_numpy(he["enc.0.b"]) == 0)
    torch_like = init_params(VAEConfig(init="pytorch"), be)
    for key, fan_in in [("enc.0.W", 784), ("enc.0.b", 784), ("dec.1.W", 400)]:
        w = be.to_numpy(torch_like[key])
        bound = 1 / np.sqrt(fan_in)
        assert np.all(np.abs(w) <= bound) and np.abs(w).max() > 0.95 * bound, key
        assert abs(w.std() - bound / np.sqrt(3)) < 0.1 * bound, key   # uniform: bound / sqrt(3)
    with pytest.raises(InputError, match="init"):
        VAEConfig(init="zeros")
