"""The whole VAE: every parameter's gradient against finite differences (eps
frozen), backends agreeing, dtype kept, bad input refused, training working."""
import numpy as np
import pytest

from conftest import BACKENDS, make
from tinyvae.core import vae as model
from tinyvae.errors import InputError
from tinyvae.gradcheck import check_model_gradients, max_error, rel_error
from tinyvae import VAEConfig, init_params, loss_and_grads
from tinyvae import SGD, Adam
from tinyvae.core.nets import Conv, ConvTranspose, Dense, Flatten, Reshape

ARCHITECTURES = [
    # two encoder/decoder shapes x activations x both likelihoods (learned and fixed variance)
    VAEConfig(input_dim=6, enc_hidden=(5,), dec_hidden=(5,), latent_dim=2, activation="relu"),
    VAEConfig(input_dim=5, enc_hidden=(4, 3), dec_hidden=(3,), latent_dim=3, activation="tanh"),
    VAEConfig(input_dim=6, enc_hidden=(5,), dec_hidden=(4, 4), latent_dim=2,
              activation="softplus", likelihood="gaussian"),
    VAEConfig(input_dim=4, enc_hidden=(3, 3), dec_hidden=(5,), latent_dim=1,
              activation="leaky_relu", likelihood="gaussian", gaussian_logvar=-1.0),
    VAEConfig(input_dim=4, enc_hidden=(), dec_hidden=(3,), latent_dim=2, activation="sigmoid"),
    # a small conv VAE on 8x8 images: every layer kind, several activations
    VAEConfig(input_dim=64, latent_dim=2,
              encoder=(Reshape((8, 8, 1)), Conv(2, 3, 2, "relu"), Conv(3, 3, 2, "tanh"), Flatten(),
                       Dense(4, "softplus"), Dense(4)),
              decoder=(Dense(12, "tanh"), Reshape((2, 2, 3)), ConvTranspose(3, 3, 2, "softplus"),
                       ConvTranspose(2, 3, 2, "tanh"), ConvTranspose(1, 3, 1), Flatten())),
]


def arch_id(c):
    return "conv" if c.encoder is not None else f"{c.activation}-{c.likelihood}"


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
@pytest.mark.parametrize("config", ARCHITECTURES, ids=arch_id)
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
    from tinyvae.core import distributions

    def fresh_eps_backward(dz, cache):
        std, _ = cache
        return distributions.reparameterize_backward(dz, (std, np.ones_like(std)))

    monkeypatch.setattr(model, "reparameterize_backward", fresh_eps_backward)
    errors = check_model_gradients(frozen_loss(x, eps, config), params)
    assert max_error(errors) > 1e-3, errors


@pytest.mark.parametrize("config", ARCHITECTURES, ids=arch_id)
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


@pytest.mark.parametrize("name", BACKENDS)
def test_keras_init_is_glorot_uniform_with_keras_fans_and_zero_biases(name):
    """init='keras' on the Keras conv VAE: each W uniform on +-sqrt(6 / (fan_in + fan_out)), Keras's fans."""
    from tinyvae.specs import keras_conv_decoder, keras_conv_encoder
    be = make(name, dtype="float64", seed=3)
    params = init_params(VAEConfig(latent_dim=2, encoder=keras_conv_encoder(2), decoder=keras_conv_decoder(),
                                   init="keras"), be)
    fans = {"enc.1.W": (9 * 1, 9 * 32),     # Conv 32, 3x3, on 1 channel: W (3, 3, 1, 32)
            "enc.2.W": (9 * 32, 9 * 64),
            "enc.4.W": (3136, 16),
            "enc.5.W": (16, 4),             # the two heads as one Dense(2L)
            "dec.0.W": (2, 3136),
            "dec.2.W": (9 * 64, 9 * 64),    # ConvTranspose 64 on 64: W (3, 3, C_out, C_in)
            "dec.3.W": (9 * 32, 9 * 64),    # ConvTranspose 32 on 64: fan_in 9 C_out, fan_out 9 C_in
            "dec.4.W": (9 * 1, 9 * 32)}
    for key, (fan_in, fan_out) in fans.items():
        w = be.to_numpy(params[key])
        limit = np.sqrt(6 / (fan_in + fan_out))
        assert np.all(np.abs(w) <= limit) and np.abs(w).max() > 0.8 * limit, key
        if w.size > 1000:
            assert abs(w.std() - limit / np.sqrt(3)) < 0.05 * limit, key
    assert all(np.all(be.to_numpy(v) == 0) for k, v in params.items() if k.endswith(".b"))


# ---------------------------------------------------------------------------
# The forward pinned against direct computations (a gradient check proves only
# that each backward undoes its forward, not that the forward is right)
# ---------------------------------------------------------------------------


def _np_params(be, params):
    return {k: be.to_numpy(v) for k, v in params.items()}


def _softplus(a):
    return np.maximum(a, 0.0) + np.log1p(np.exp(-np.abs(a)))


def _direct_terms(n, x, eps):
    """784-style MLP with one ReLU hidden layer each side, written out in NumPy: (recon, kl, mu, logvar)."""
    h = np.maximum(x @ n["enc.0.W"] + n["enc.0.b"], 0.0)
    head = h @ n["enc.1.W"] + n["enc.1.b"]
    L = eps.shape[1]
    mu, logvar = head[:, :L], head[:, L:]
    z = mu + np.exp(0.5 * logvar) * eps
    a = np.maximum(z @ n["dec.0.W"] + n["dec.0.b"], 0.0) @ n["dec.1.W"] + n["dec.1.b"]
    recon = np.sum(-(x * np.log(1 / (1 + np.exp(-a))) + (1 - x) * np.log(1 - 1 / (1 + np.exp(-a)))), axis=1)
    kl = 0.5 * np.sum(mu ** 2 + np.exp(logvar) - 1.0 - logvar, axis=1)
    return recon, kl, mu, logvar


@pytest.mark.parametrize("name", BACKENDS)
def test_neg_elbo_terms_match_a_direct_computation(name):
    be = make(name)
    config = ARCHITECTURES[0]
    params = random_params(be, config, seed=4)
    x, eps = batch(be, config, n=5, seed=4)
    recon, kl = model.neg_elbo_terms(params, x, eps, config)
    want_recon, want_kl, _, _ = _direct_terms(_np_params(be, params), be.to_numpy(x), be.to_numpy(eps))
    np.testing.assert_allclose(be.to_numpy(recon), want_recon, rtol=1e-10)
    np.testing.assert_allclose(be.to_numpy(kl), want_kl, rtol=1e-10)


@pytest.mark.parametrize("name", BACKENDS)
def test_loss_parts_match_the_distribution_functions(name):
    be = make(name)
    config = ARCHITECTURES[0]
    params = random_params(be, config, seed=5)
    x, eps = batch(be, config, n=4, seed=5)
    parts, _ = loss_and_grads(params, x, eps, config, beta=0.25)
    want_recon, want_kl, _, _ = _direct_terms(_np_params(be, params), be.to_numpy(x), be.to_numpy(eps))
    np.testing.assert_allclose(float(parts.recon), want_recon.mean(), rtol=1e-10)
    np.testing.assert_allclose(float(parts.kl), want_kl.mean(), rtol=1e-10)
    np.testing.assert_allclose(float(parts.loss), want_recon.mean() + 0.25 * want_kl.mean(), rtol=1e-10)


@pytest.mark.parametrize("name", BACKENDS)
def test_iw_log_px_matches_a_direct_log_mean_exp(name):
    be = make(name)
    config = ARCHITECTURES[0]
    params = random_params(be, config, seed=6)
    x, _ = batch(be, config, n=3, seed=6)
    rng = np.random.default_rng(6)
    eps = rng.standard_normal((7, 3, config.latent_dim)) * np.array([1.0, 30.0, 1.0])[None, :, None]
    got = be.to_numpy(model.iw_log_px(params, x, be.asarray(eps), config))
    n, xn = _np_params(be, params), be.to_numpy(x)
    log_w = []
    for k in range(7):
        recon, _, mu, logvar = _direct_terms(n, xn, eps[k])
        z = mu + np.exp(0.5 * logvar) * eps[k]
        log_pz = np.sum(-0.5 * np.log(2 * np.pi) - 0.5 * z ** 2, axis=1)
        log_qz = np.sum(-0.5 * np.log(2 * np.pi) - 0.5 * logvar - 0.5 * (z - mu) ** 2 / np.exp(logvar), axis=1)
        log_w.append(-recon + log_pz - log_qz)
    log_w = np.array(log_w)                               # (K, N); row 1 has weights hundreds of nats apart
    assert np.ptp(log_w[:, 1]) > 100
    m = log_w.max(axis=0)
    want = m + np.log(np.mean(np.exp(log_w - m), axis=0))
    np.testing.assert_allclose(got, want, rtol=1e-9)
    # k = 1: log w itself, which is -(recon + kl) only in expectation; with the same eps it is exact here:
    one = be.to_numpy(model.iw_log_px(params, x, be.asarray(eps[:1]), config))
    np.testing.assert_allclose(one, log_w[0], rtol=1e-10)


@pytest.mark.parametrize("name", BACKENDS)
def test_iw_log_px_is_finite_for_tiny_variances(name):
    """log q(z|x) from eps directly: no (z - mu)^2 e^{-logvar} to overflow at logvar << -709."""
    be = make(name)
    config = VAEConfig(input_dim=4, enc_hidden=(), dec_hidden=(3,), latent_dim=2)
    params = random_params(be, config, seed=7)
    params["enc.0.b"] = be.asarray(np.array([0.0, 0.0, -800.0, -800.0]))
    params["enc.0.W"] = be.asarray(np.zeros((4, 4)))
    x, _ = batch(be, config, n=2, seed=7)
    out = be.to_numpy(model.iw_log_px(params, x, be.asarray(np.ones((3, 2, 2))), config))
    assert np.all(np.isfinite(out))


def test_normal_logpdf_matches_the_closed_form():
    from tinyvae.core.distributions import normal_logpdf
    be = make("numpy")
    z, mu, logvar = np.array([[0.3, -1.2]]), np.array([[0.1, 0.5]]), np.array([[-0.7, 0.4]])
    want = sum(-0.5 * np.log(2 * np.pi * np.exp(v)) - (a - m) ** 2 / (2 * np.exp(v))
               for a, m, v in zip(z[0], mu[0], logvar[0]))
    got = be.to_numpy(normal_logpdf(be.asarray(z), be.asarray(mu), be.asarray(logvar)))
    np.testing.assert_allclose(got, [want], rtol=1e-12)


def test_init_shapes_follow_the_layers_and_pytorch_init_is_not_transposed():
    config = VAEConfig(input_dim=784, enc_hidden=(400,), dec_hidden=(300,), latent_dim=20, init="pytorch")
    params = init_params(config, make("numpy", dtype="float32"))
    assert {k: tuple(v.shape) for k, v in params.items()} == {
        "enc.0.W": (784, 400), "enc.0.b": (400,), "enc.1.W": (400, 40), "enc.1.b": (40,),
        "dec.0.W": (20, 300), "dec.0.b": (300,), "dec.1.W": (300, 784), "dec.1.b": (784,)}
    # uniform on +-1/sqrt(fan_in), fan_in = rows of W: 784 for enc.0.W (not 400)
    assert np.abs(params["enc.0.W"]).max() <= 1 / np.sqrt(784) and np.abs(params["enc.0.W"]).max() > 0.9 / np.sqrt(784)
    assert np.abs(params["dec.1.b"]).max() <= 1 / np.sqrt(300) and np.abs(params["dec.1.b"]).max() > 0.9 / np.sqrt(300)


@pytest.mark.parametrize("kwargs,message", [
    (dict(latent_dim="20"), "latent_dim must be a positive integer"),
    (dict(latent_dim=2.5), "latent_dim must be a positive integer"),
    (dict(enc_hidden=400), "enc_hidden must be a tuple of layer sizes"),
    (dict(enc_hidden="400"), "enc_hidden must be a tuple of layer sizes"),
    (dict(dec_hidden=(400, 0)), "each size in dec_hidden must be a positive integer"),
    (dict(n_classes=-1), "n_classes must be an integer >= 0"),
    (dict(gaussian_logvar=float("nan"), likelihood="gaussian"), "gaussian_logvar must be a finite number"),
    (dict(encoder=(Dense(3),)), "encoder ends in (3,) but 2 * latent_dim"),
    (dict(input_dim=36, latent_dim=2, encoder=(Reshape((6, 6, 1)), Conv(2, 3, 2), Conv(2, 3, 2), Flatten(), Dense(4)),
          decoder=(Dense(8), Reshape((2, 2, 2)), ConvTranspose(2, 3, 2), ConvTranspose(1, 3, 2), Flatten())),
     "decoder ends in (64,) but input_dim is 36"),
])
def test_config_misuse_is_one_line(kwargs, message):
    with pytest.raises(InputError) as e:
        VAEConfig(**kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("call,message", [
    (lambda p, x, e, c: loss_and_grads(p, x, None, c), "eps is a NoneType, not an array"),
    (lambda p, x, e, c: loss_and_grads(p, [[0.5] * 6], e, c), "x is a list, not an array"),
    (lambda p, x, e, c: loss_and_grads({k: v for k, v in p.items() if k != "dec.1.b"}, x, e, c),
     "params do not fit the config (missing dec.1.b)"),
    (lambda p, x, e, c: loss_and_grads(p, x, e * np.nan, c), "eps contains NaN"),
    (lambda p, x, e, c: loss_and_grads(p, x, e, c, beta=float("nan")), "beta must be a finite number"),
])
def test_api_misuse_is_one_line(call, message):
    be = make("numpy")
    config = ARCHITECTURES[0]
    params = random_params(be, config)
    x, eps = batch(be, config)
    with pytest.raises(InputError) as e:
        call(params, x, eps, config)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_old_config_records_load_as_the_same_mlp():
    """A checkpoint's config from before the layer stack (no encoder/decoder/n_classes) is the same model."""
    old = {"input_dim": 784, "enc_hidden": [400], "dec_hidden": [400], "latent_dim": 20,
           "activation": "relu", "likelihood": "bernoulli", "gaussian_logvar": None, "init": "pytorch"}
    config = VAEConfig.from_dict(old)
    assert config == VAEConfig(init="pytorch")
    assert config.encoder_layers == (Dense(400, "relu"), Dense(40))
    conv = VAEConfig(latent_dim=2, encoder=nets_keras_encoder(), decoder=nets_keras_decoder())
    assert VAEConfig.from_dict(conv.to_dict()) == conv


def nets_keras_encoder():
    from tinyvae.specs import keras_conv_encoder
    return keras_conv_encoder(2)


def nets_keras_decoder():
    from tinyvae.specs import keras_conv_decoder
    return keras_conv_decoder()
