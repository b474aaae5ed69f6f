"""The sparse autoencoder (tinyvae/core/sparse.py): each penalty's backward and weight decay against finite
differences, the whole model's gradient, its loss against a direct computation, planted bugs each caught,
misuse refused in one line, and a short real-MNIST run in which the KL penalty makes the code sparse."""
import numpy as np
import pytest

from conftest import BACKENDS, make, put
from test_planted_bugs import mutant
from tinyvae import sparse as shell
from tinyvae.core import ae, sparse, vae
from tinyvae.core.nets import Dense
from tinyvae.core.optim import Adam
from tinyvae.core.sparse import SparseAEConfig
from tinyvae.data import load_mnist, to_unit_interval
from tinyvae.errors import InputError
from tinyvae.gradcheck import check_backward, check_model_gradients, max_error
from tinyvae.train import steps

KL = SparseAEConfig(input_dim=6, latent_dim=4, rho=0.1, sparsity_weight=3.0, weight_decay=0.2)
L1 = SparseAEConfig(**{**KL.to_dict(), "sparsity": "l1"})
DEEP = SparseAEConfig(input_dim=6, enc_hidden=(5,), dec_hidden=(3,), latent_dim=4, activation="tanh",
                      rho=0.2, sparsity_weight=1.5, weight_decay=0.1)
CONFIGS = {"kl": KL, "l1": L1, "kl-deep": DEEP}


def random_params(be, config, seed=0):
    rng = np.random.default_rng(seed)
    return {k: put(be, 0.5 * rng.standard_normal(s)) for k, s in vae.param_shapes(config).items()}


def images(be, config, n=3, seed=0):
    return put(be, np.random.default_rng(seed).uniform(0, 1, (n, config.input_dim)))


def frozen(module, x, config):
    def loss_fn(params):
        parts, grads = module.loss_and_grads(params, x, config)
        return parts.loss, grads
    return loss_fn


# ---- the pieces ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("piece", ["kl", "l1", "decay"])
def test_penalty_backward_matches_finite_differences(name, piece):
    be, rng = make(name), np.random.default_rng(1)
    if piece == "kl":                                  # sigmoid activations, away from 0 and 1
        h = put(be, rng.uniform(0.05, 0.95, (4, 3)))
        pair = (lambda a: sparse.kl_sparsity_forward(a, 0.05), sparse.kl_sparsity_backward)
    elif piece == "l1":                                # both signs, away from the kink at 0
        h = put(be, np.sign(rng.standard_normal((4, 3))) * rng.uniform(0.1, 1.0, (4, 3)))
        pair = (sparse.l1_sparsity_forward, sparse.l1_sparsity_backward)
    else:
        h = put(be, rng.standard_normal((4, 3)))
        pair = (sparse.weight_decay_forward, sparse.weight_decay_backward)
    assert max_error(check_backward(*pair, [h])) < 1e-7


@pytest.mark.parametrize("name", BACKENDS)
def test_kl_penalty_is_zero_at_rho_and_positive_elsewhere(name):
    be = make(name)
    at_rho = put(be, np.full((5, 3), 0.05))
    assert abs(float(sparse.kl_sparsity_forward(at_rho, 0.05)[0])) < 1e-12
    mixed = put(be, np.array([[0.01, 0.5], [0.09, 0.3]]))           # means 0.05 and 0.4
    want = 0.05 * np.log(0.05 / 0.4) + 0.95 * np.log(0.95 / 0.6)        # the first unit adds 0
    assert float(sparse.kl_sparsity_forward(mixed, 0.05)[0]) == pytest.approx(want, abs=1e-12)


# ---- the whole model -------------------------------------------------------------------------


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS)
def test_sparse_autoencoder_gradient_matches_finite_differences(name, config):
    be = make(name)
    params = random_params(be, config)
    errors = check_model_gradients(frozen(sparse, images(be, config), config), params)
    assert set(errors) == set(params) and max_error(errors) < 1e-6, errors


def direct_loss(be, params, x, config):
    """The loss from its definition, in NumPy: recon + beta P(sigmoid code) + lambda/2 sum of the squared weights."""
    n = {k: be.to_numpy(v) for k, v in params.items()}
    xn = be.to_numpy(x)
    a = xn
    for i in range(len(config.enc_hidden)):
        a = np.tanh(a @ n[f"enc.{i}.W"] + n[f"enc.{i}.b"])
    last = len(config.enc_hidden)
    h = 1.0 / (1.0 + np.exp(-(a @ n[f"enc.{last}.W"] + n[f"enc.{last}.b"])))
    a = h
    for i in range(len(config.dec_hidden)):
        a = np.tanh(a @ n[f"dec.{i}.W"] + n[f"dec.{i}.b"])
    last = len(config.dec_hidden)
    logits = a @ n[f"dec.{last}.W"] + n[f"dec.{last}.b"]
    recon = np.mean(np.logaddexp(0, logits).sum(axis=1) - (xn * logits).sum(axis=1))
    r, rho_hat = config.rho, h.mean(axis=0)
    penalty = (np.sum(r * np.log(r / rho_hat) + (1 - r) * np.log((1 - r) / (1 - rho_hat)))
               if config.sparsity == "kl" else np.abs(h).sum(axis=1).mean())
    decay = 0.5 * sum(np.sum(v * v) for k, v in n.items() if k.endswith(".W"))
    return recon + config.sparsity_weight * penalty + config.weight_decay * decay


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS)
def test_sparse_loss_matches_its_definition(name, config):
    be = make(name)
    params, x = random_params(be, config, seed=2), images(be, config, seed=2)
    parts, _ = sparse.loss_and_grads(params, x, config)
    assert float(parts.loss) == pytest.approx(direct_loss(be, params, x, config), abs=1e-10)
    assert float(parts.loss) == pytest.approx(float(parts.recon + parts.sparsity + parts.decay), abs=1e-12)


def test_without_penalty_or_decay_it_is_the_plain_autoencoder():
    be = make("numpy")
    config = SparseAEConfig(**{**KL.to_dict(), "sparsity_weight": 0.0, "weight_decay": 0.0})
    params, x = random_params(be, config, seed=3), images(be, config, seed=3)
    parts, grads = sparse.loss_and_grads(params, x, config)
    plain, want = ae.loss_and_grads(params, x, x, config)
    assert float(parts.loss) == float(plain.loss)
    assert all(np.array_equal(grads[k], want[k]) for k in want)


@pytest.mark.parametrize("old,new,config", [
    # the KL's backward without the (1 - rho) / (1 - rho_hat) half
    ("(-rho / rho_hat + (1.0 - rho) / (1.0 - rho_hat))", "(-rho / rho_hat)", KL),
    # the KL's backward not shared out over the N images of the batch
    ("xp.broadcast_to(drho_hat / N, (N, rho_hat.shape[0]))", "xp.broadcast_to(drho_hat, (N, rho_hat.shape[0]))", KL),
    # rho_hat as a sum, not a mean, forward and backward alike: only the forward pin sees it
    ("rho_hat = xp.mean(h, axis=0)", "rho_hat = xp.sum(h, axis=0) / 2.0", KL),
    # L1's gradient h where sign(h) belongs
    ("dp * xp.sign(h) / h.shape[0]", "dp * h / h.shape[0]", L1),
    # weight decay's gradient halved
    ("return dp * cache", "return 0.5 * dp * cache", KL),
    # the biases decayed too, forward and backward alike
    ("params.items() if k.endswith(\".W\")}", "params.items()}", KL),
], ids=["kl-half-dropped", "kl-not-over-N", "rho-hat-not-a-mean", "l1-h-for-sign", "decay-halved", "biases-decayed"])
def test_sparse_checks_catch_a_planted_bug(old, new, config):
    be = make("numpy")
    params, x = random_params(be, config, seed=4), images(be, config, seed=4)
    bad = mutant(sparse, old, new)
    grad_error = max_error(check_model_gradients(frozen(bad, x, config), params))
    forward_error = abs(float(bad.loss_and_grads(params, x, config)[0].loss) - direct_loss(be, params, x, config))
    assert grad_error > 1e-3 or forward_error > 1e-6, (grad_error, forward_error)


# ---- the shell ----------------------------------------------------------------------------------


def test_sparse_config_misuse_is_one_line():
    for kwargs, message in [
        (dict(encoder=(Dense(4),), latent_dim=4, input_dim=6), "last layer has activation 'sigmoid'"),
        (dict(rho=0.0), r"rho must be a finite number in \(0, 1\)"),
        (dict(rho=1.0), r"rho must be a finite number in \(0, 1\)"),
        (dict(sparsity="l2"), "unknown sparsity 'l2'"),
        (dict(sparsity_weight=-1.0), "sparsity_weight must be a finite number >= 0"),
        (dict(weight_decay=float("nan")), "weight_decay must be a finite number >= 0"),
        (dict(corruption="mask", corruption_level=0.3), "not a denoising one"),
    ]:
        with pytest.raises(InputError, match=message) as e:
            SparseAEConfig(**kwargs)
        assert "\n" not in str(e.value)
    be = make("numpy")
    params = random_params(be, KL)
    with pytest.raises(InputError, match="needs a SparseAEConfig"):
        shell.loss_and_grads(params, images(be, KL), ae.AEConfig(input_dim=6, latent_dim=4))
    with pytest.raises(InputError, match="x has shape"):
        shell.loss_and_grads(params, images(be, KL)[:, :3], KL)
    assert SparseAEConfig.from_dict(L1.to_dict()) == L1


def test_near_zero_share_and_feature_images():
    assert shell.near_zero_share(np.array([[0.01, 0.5], [-0.04, 0.06]])) == 0.5
    W = np.array([[2.0, 0.0], [-1.0, 0.5], [0.0, -0.25]])                   # 3 pixels, 2 units
    np.testing.assert_allclose(shell.feature_images(W), [[1.0, 0.25, 0.5], [0.5, 1.0, 0.25]])


def test_kl_penalty_makes_the_code_sparse_on_real_mnist():
    """150 Adam steps of a 784-64-784 autoencoder on real digits, with and without the KL penalty: the plain
    code saturates (units near 1), the penalised one's units move toward rho, and many more of its
    activations are near 0."""
    x = to_unit_interval(load_mnist().x_train[:15000])
    result = {}
    for name, (beta, lam) in {"plain": (0.0, 0.0), "sparse": (3.0, 3e-3)}.items():
        be = make("numpy", dtype="float32", seed=0)
        config = SparseAEConfig(latent_dim=64, rho=0.05, sparsity_weight=beta, weight_decay=lam)
        params = vae.init_params(config, be)
        xb = be.asarray(x)
        opt = Adam(params, lr=3e-3)
        for _ in steps(params, opt, shell.model(), config, be, xb, be.asarray(be.permutation(15000)), 100):
            pass
        h = shell.codes(params, xb[:2000], config, be)
        result[name] = (shell.near_zero_share(h), float(h.mean()))
    (plain_share, plain_mean), (sparse_share, sparse_mean) = result["plain"], result["sparse"]
    assert sparse_share > plain_share + 0.15, result
    assert sparse_mean < 0.4 and plain_mean > 0.6, result


def test_effective_pixels_count_the_pixels_a_feature_spreads_over():
    W = np.zeros((784, 3))
    W[:10, 0] = 0.3                       # ten equal weights
    W[:, 1] = -0.01                       # flat
    W[5, 2] = 2.0                         # one pixel
    np.testing.assert_allclose(shell.effective_pixels(W), [10, 784, 1])
