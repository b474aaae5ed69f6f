"""M2: the whole model's gradient against finite differences (eps frozen), its
forward against a direct computation, and planted bugs each caught; with and
without the class-balance term."""
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from conftest import BACKENDS, make
from tinyvae import api
from tinyvae.core import m2, vae
from tinyvae.errors import InputError
from tinyvae.gradcheck import check_model_gradients, max_error
from tinyvae.core.layers import one_hot

CONFIG = m2.M2Config(input_dim=5, enc_hidden=(4,), dec_hidden=(4,), latent_dim=2, activation="tanh",
                     n_classes=3, cls_hidden=(4,), alpha=0.7)
BALANCED = m2.M2Config(**{**CONFIG.to_dict(), "balance": 0.9})
NL, NU = 2, 3


def random_params(be, config, seed=0):
    rng = np.random.default_rng(seed)
    return {k: be.asarray(0.5 * rng.standard_normal(s)) for k, s in vae.param_shapes(config).items()}


def semi_batch(be, config, seed=0):
    rng = np.random.default_rng(seed)
    x_l = be.asarray(rng.uniform(0, 1, (NL, config.input_dim)))
    y_l = be.asarray(rng.integers(0, config.n_classes, NL))
    x_u = be.asarray(rng.uniform(0, 1, (NU, config.input_dim)))
    eps = be.asarray(rng.standard_normal((NL + NU * config.n_classes, config.latent_dim)))
    return x_l, y_l, x_u, eps


def frozen_m2_loss(module, x_l, y_l, x_u, eps, config, beta):
    def loss_fn(params):
        parts, grads = module.loss_and_grads(params, x_l, y_l, x_u, eps, config, beta=beta)
        return parts.loss, grads
    return loss_fn


def direct_loss(be, params, x_l, y_l, x_u, eps, config, beta):
    """The M2 objective from its definition, class by class, with the model's own pieces."""
    K = config.n_classes
    xp = be.xp
    log_pi = be.to_numpy(m2.classify(params, xp.concat([x_l, x_u], axis=0), config))
    y = be.to_numpy(y_l)
    e = be.to_numpy(eps)
    recon, kl = vae.neg_elbo_terms(params, x_l, be.asarray(e[:NL]), config, one_hot(y_l, K, like=x_l))
    labelled = np.mean(be.to_numpy(recon) + beta * be.to_numpy(kl))
    ce = -np.mean(log_pi[np.arange(NL), y])
    U = np.zeros(NU)
    for u in range(NU):
        xu = x_u[u:u + 1, :]
        for k in range(K):
            yk = one_hot(be.asarray(np.array([k])), K, like=xu)
            r, q = vae.neg_elbo_terms(params, xu, be.asarray(e[NL + u * K + k][None, :]), config, yk)
            pi = np.exp(log_pi[NL + u, k])
            U[u] += pi * (float(r[0]) + beta * float(q[0])) + pi * log_pi[NL + u, k]   # E_q[L] - H
    pibar = np.exp(log_pi[NL:]).mean(axis=0)                                      # (K,)
    class_kl = np.sum(pibar * np.log(pibar * K))                                 # KL(pibar || 1/K)
    return labelled + U.mean() + config.alpha * ce + config.balance * class_kl


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("beta", [1.0, 0.5])
@pytest.mark.parametrize("config", [CONFIG, BALANCED], ids=["m2", "balanced"])
def test_m2_gradient_matches_finite_differences(name, beta, config):
    be = make(name)
    params = random_params(be, config)
    x_l, y_l, x_u, eps = semi_batch(be, config)
    errors = check_model_gradients(frozen_m2_loss(m2, x_l, y_l, x_u, eps, config, beta), params)
    assert set(errors) == set(params) and max_error(errors) < 1e-6, errors


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("config", [CONFIG, BALANCED], ids=["m2", "balanced"])
def test_m2_loss_matches_its_definition(name, config):
    be = make(name)
    params = random_params(be, config, seed=1)
    x_l, y_l, x_u, eps = semi_batch(be, config, seed=1)
    parts, _ = m2.loss_and_grads(params, x_l, y_l, x_u, eps, config, beta=0.5)
    assert abs(float(parts.loss) - direct_loss(be, params, x_l, y_l, x_u, eps, config, 0.5)) < 1e-10


def test_class_kl_is_zero_for_an_even_spread_and_positive_otherwise():
    """KL(pibar || uniform): 0 when the classifier says 1/K for every image, > 0 for a random one."""
    be = make("numpy")
    params = random_params(be, BALANCED, seed=6)
    x_l, y_l, x_u, eps = semi_batch(be, BALANCED, seed=6)
    parts, _ = m2.loss_and_grads(params, x_l, y_l, x_u, eps, BALANCED)
    assert float(parts.class_kl) > 1e-3
    for k in params:
        if k.startswith("cls."):
            params[k] = be.xp.zeros_like(params[k])
    parts, _ = m2.loss_and_grads(params, x_l, y_l, x_u, eps, BALANCED)
    assert abs(float(parts.class_kl)) < 1e-12


def test_labelled_part_is_the_cvae_loss():
    """With alpha = 0 the labelled rows' term is exactly the CVAE's loss on them (same eps)."""
    be = make("numpy")
    config = m2.M2Config(**{**CONFIG.to_dict(), "alpha": 0.0})
    params = random_params(be, config, seed=2)
    x_l, y_l, x_u, eps = semi_batch(be, config, seed=2)
    parts, _ = m2.loss_and_grads(params, x_l, y_l, x_u, eps, config)
    cvae, _ = vae.loss_and_grads(params, x_l, eps[:NL], config, y=one_hot(y_l, 3, like=x_l))
    assert float(parts.labelled) == pytest.approx(float(cvae.loss), abs=1e-12)


def _mutant(old, new):
    """tinyvae.m2 with one line of its source changed: a planted bug."""
    path = Path(m2.__file__)
    source = path.read_text()
    assert source.count(old) == 1, f"the line to mutate is gone: {old!r}"
    module = types.ModuleType("tinyvae.core._m2_mutant")
    module.__package__ = "tinyvae.core"
    sys.modules[module.__name__] = module
    exec(compile(source.replace(old, new), str(path), "exec"), module.__dict__)
    return module


@pytest.mark.parametrize("old,new,config", [
    # the labelled cross-entropy: its gradient divided by the wrong count, or its forward without the labels
    ("dlog_pi_l = -config.alpha * Y_l / Nl", "dlog_pi_l = -config.alpha * Y_l / Nu", CONFIG),
    ("ce = -xp.mean(xp.sum(Y_l * log_pi_l, axis=1))", "ce = -xp.mean(xp.sum(log_pi_l, axis=1))", CONFIG),
    # the entropy dropped, forward and backward alike: only the forward pin sees it
    ("unlabelled = xp.mean(xp.sum(pi_u * (L_u + log_pi_u), axis=1))",
     "unlabelled = xp.mean(xp.sum(pi_u * L_u, axis=1))", CONFIG),
    ("dlog_pi_u = pi_u * (L_u + log_pi_u + 1.0) / Nu", "dlog_pi_u = pi_u * L_u / Nu", CONFIG),
    # pi used where log pi belongs
    ("unlabelled = xp.mean(xp.sum(pi_u * (L_u + log_pi_u), axis=1))",
     "unlabelled = xp.mean(xp.sum(pi_u * (L_u + pi_u), axis=1))", CONFIG),
    # the unlabelled rows not weighted by q(y | x)
    ("xp.reshape(pi_u, (-1,)) / Nu])", "xp.ones((Nu * K,), dtype=x_l.dtype, device=device_of(x_l)) / (Nu * K)])",
     CONFIG),
    # the balance: the mean of log pi where the log of the mean pi belongs
    ("log_pibar = top + xp.log(xp.mean(xp.exp(log_pi_u - top), axis=0))",
     "log_pibar = xp.mean(log_pi_u, axis=0)", BALANCED),
    # the balance's backward without the chain through pi = e^{log pi}
    ("config.balance * pi_u * (log_pibar + 1.0) / Nu", "config.balance * (log_pibar + 1.0) / Nu", BALANCED),
], ids=["ce-backward-count", "ce-forward-no-labels", "entropy-dropped-forward", "entropy-dropped-backward", "pi-for-log-pi", "rows-unweighted",
        "balance-mean-of-log", "balance-chain-dropped"])
def test_m2_checks_catch_a_planted_bug(old, new, config):
    be = make("numpy")
    params = random_params(be, config, seed=3)
    x_l, y_l, x_u, eps = semi_batch(be, config, seed=3)
    bad = _mutant(old, new)
    grad_error = max_error(check_model_gradients(frozen_m2_loss(bad, x_l, y_l, x_u, eps, config, 1.0), params))
    parts, _ = bad.loss_and_grads(params, x_l, y_l, x_u, eps, config)
    forward_error = abs(float(parts.loss) - direct_loss(be, params, x_l, y_l, x_u, eps, config, 1.0))
    assert grad_error > 1e-3 or forward_error > 1e-6, (grad_error, forward_error)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("config", [CONFIG, BALANCED], ids=["m2", "balanced"])
def test_m2_entropy_is_finite_for_confident_classifiers(name, config):
    """pi log pi from log pi: exp(-1e4) * (-1e4) is 0, where log(softmax) would give 0 * -inf = NaN;
    and the balance's log pibar from log-sum-exp, finite for a class that no image picks."""
    be = make(name)
    params = random_params(be, config, seed=4)
    params["cls.1.b"] = be.asarray(np.array([1e4, -1e4, 0.0]))
    x_l, y_l, x_u, eps = semi_batch(be, config, seed=4)
    parts, grads = m2.loss_and_grads(params, x_l, y_l, x_u, eps, config)
    assert np.isfinite(float(parts.loss))
    assert all(np.all(np.isfinite(be.to_numpy(g))) for g in grads.values())


def test_m2_misuse_is_one_line():
    be = make("numpy")
    params = random_params(be, CONFIG)
    x_l, y_l, x_u, eps = semi_batch(be, CONFIG)
    with pytest.raises(InputError, match="eps has shape"):
        api.m2_loss_and_grads(params, x_l, y_l, x_u, eps[:4], CONFIG)
    with pytest.raises(InputError, match="M2 needs n_classes >= 2"):
        m2.M2Config(n_classes=1)
    with pytest.raises(InputError, match="balance must be a finite number >= 0"):
        m2.M2Config(balance=-1.0)


def test_unlabelled_neg_elbo_is_the_bound_with_y_latent():
    """U(x) + log K: the -ELBO of x alone under a uniform p(y), against the definition."""
    be = make("numpy")
    params = random_params(be, CONFIG, seed=5)
    rng = np.random.default_rng(5)
    x = be.asarray(rng.uniform(0, 1, (2, CONFIG.input_dim)))
    eps = be.asarray(rng.standard_normal((2 * CONFIG.n_classes, CONFIG.latent_dim)))
    got = be.to_numpy(m2.unlabelled_neg_elbo(params, x, eps, CONFIG))
    log_pi = be.to_numpy(m2.classify(params, x, CONFIG))
    for n in range(2):
        want = np.log(CONFIG.n_classes)
        for k in range(CONFIG.n_classes):
            y = one_hot(be.asarray(np.array([k])), CONFIG.n_classes, like=x)
            r, q = vae.neg_elbo_terms(params, x[n:n + 1], eps[n * CONFIG.n_classes + k][None], CONFIG, y)
            want += np.exp(log_pi[n, k]) * (float(r[0] + q[0]) + log_pi[n, k])
        assert got[n] == pytest.approx(want, abs=1e-10)
