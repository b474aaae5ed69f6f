"""The score-function and pathwise estimators of the ELBO's gradient (tinyvae/core/estimators.py):
the score of q against finite differences, the score estimate as the exact gradient of its surrogate
(z frozen), the pathwise estimate as the VAE's own gradient, both unbiased against a high-sample
reference, and the classic bugs planted and caught; the shell's checks and measurements."""
import json
import sys

import numpy as np
import pytest

from conftest import BACKENDS, make, one_line, put
from test_planted_bugs import mutant
from tinyvae import estimators as shell
from tinyvae.core import distributions, estimators, vae
from tinyvae.core.ae import AEConfig
from tinyvae.errors import InputError
from tinyvae.gradcheck import check_backward, check_model_gradients, max_error

CONFIG = vae.VAEConfig(input_dim=5, enc_hidden=(4,), dec_hidden=(4,), latent_dim=2, activation="tanh")
N, S = 2, 2
Z_TOLERANCE = 4.5      # every coordinate's mean within 4.5 standard errors of the reference
DRAWS = 600            # estimates averaged per estimator
# The classic bugs, each one line of core/estimators.py changed.
BUGS = {"missing-1/sigma^2": ("dmu = u * inv_std * w", "dmu = u / inv_std * w"),
        "logvar-as-log-sigma": ("inv_std = xp.exp(-0.5 * logvar)", "inv_std = xp.exp(-logvar)"),
        "own-sample-in-its-baseline": ("(xp.sum(f, axis=axis, keepdims=True) - f) / (n - 1)",
                                       "(xp.sum(f, axis=axis, keepdims=True) - 0 * f) / n")}
SPECS = {"pathwise": ("pathwise", "none"), "score-none": ("score", "none"), "score-batch": ("score", "batch"),
         "score-loo": ("score", "loo")}


def setup(be, seed=0):
    """Parameters with sigma = exp(-1) ~ 0.37 in q (so sigma^2, sigma and 1 differ), a batch of N images."""
    rng = np.random.default_rng(seed)
    params = {k: 0.5 * rng.standard_normal(s) for k, s in vae.param_shapes(CONFIG).items()}
    params["enc.1.b"][CONFIG.latent_dim:] = -2.0                       # logvar's bias
    return {k: put(be, v) for k, v in params.items()}, put(be, rng.uniform(0, 1, (N, CONFIG.input_dim)))


def flat(grads, prefix=""):
    return np.concatenate([np.asarray(grads[k]).ravel() for k in sorted(grads) if k.startswith(prefix)])


# ---- the score of q: a forward/backward pair ---------------------------------------------


@pytest.mark.parametrize("name", BACKENDS)
def test_log_q_backward_matches_finite_differences(name):
    be, rng = make(name), np.random.default_rng(1)
    z, mu, logvar = (put(be, rng.standard_normal((3, 2))) for _ in range(3))
    assert max_error(check_backward(estimators.log_q_forward, estimators.log_q_backward, [z, mu, logvar])) < 1e-7


@pytest.mark.parametrize("name", BACKENDS)
def test_log_q_is_the_normal_log_density(name):
    be, rng = make(name), np.random.default_rng(2)
    z, mu, logvar = (put(be, rng.standard_normal((4, 3))) for _ in range(3))
    got = be.to_numpy(estimators.log_q_forward(z, mu, logvar)[0])
    np.testing.assert_allclose(got, be.to_numpy(distributions.normal_logpdf(z, mu, logvar)), rtol=1e-12)


@pytest.mark.parametrize("bug", ["missing-1/sigma^2", "logvar-as-log-sigma"])
def test_the_log_q_check_catches_a_planted_bug(bug):
    be, rng = make("numpy"), np.random.default_rng(1)
    z, mu, logvar = (put(be, rng.standard_normal((3, 2))) for _ in range(3))
    bad = mutant(estimators, *BUGS[bug])
    assert max_error(check_backward(bad.log_q_forward, bad.log_q_backward, [z, mu, logvar])) > 1e-2


# ---- each estimate, exactly, with the noise frozen --------------------------------------


def baselines_by_hand(recon, kind):
    """b[s, n] from its definition, one entry at a time: the mean of the other samples it may see."""
    S_, N_ = recon.shape
    b = np.zeros_like(recon)
    for s in range(S_):
        for n in range(N_):
            if kind == "loo":
                b[s, n] = np.mean([recon[t, n] for t in range(S_) if t != s])
            elif kind == "batch":
                b[s, n] = np.mean([recon[t, m] for t in range(S_) for m in range(N_) if (t, m) != (s, n)])
    return b


def score_surrogate(be, params0, x, eps, kind):
    """The function whose gradient the score estimate is: z and the weights (recon - b) / (S N) frozen at
    params0, from the distributions' own functions and baselines_by_hand, not from core/estimators.py.

    L(params) = mean_{s,n} recon(z_sn; decoder) + mean_n KL_n + sum_{s,n} w_sn log N(z_sn; mu_n, e^logvar_n)."""
    xp = be.xp
    mu0, logvar0 = vae.encode(params0, x, CONFIG)
    z = [mu0 + xp.exp(0.5 * logvar0) * eps[s, ...] for s in range(S)]                 # S x (N, L), frozen
    recon0 = np.stack([be.to_numpy(vae.recon_nll(params0, vae.decode(params0, zs, CONFIG), x, CONFIG)) for zs in z])
    w = (recon0 - baselines_by_hand(recon0, kind)) / (S * N)                           # (S, N), frozen

    def loss(params):
        mu, logvar = vae.encode(params, x, CONFIG)
        total = xp.mean(distributions.kl_normal_forward(mu, logvar)[0])
        for s in range(S):
            recon = vae.recon_nll(params, vae.decode(params, z[s], CONFIG), x, CONFIG)
            total = total + xp.mean(recon) / S + xp.sum(put(be, w[s]) * distributions.normal_logpdf(z[s], mu, logvar))
        return total
    return loss


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("kind", ["none", "batch", "loo"])
def test_score_estimate_is_the_gradient_of_its_surrogate(name, kind):
    be = make(name)
    params, x = setup(be)
    eps = put(be, np.random.default_rng(3).standard_normal((S, N, 2)))
    surrogate = score_surrogate(be, params, x, eps, kind)
    _, grads = estimators.loss_and_grads(params, x, eps, CONFIG, "score", kind)
    errors = check_model_gradients(lambda p: (surrogate(p), grads), params)
    assert set(errors) == set(params) and max_error(errors) < 1e-6, errors


@pytest.mark.parametrize("bug", BUGS)
def test_the_surrogate_check_catches_a_planted_bug(bug):
    be = make("numpy")
    params, x = setup(be)
    eps = put(be, np.random.default_rng(3).standard_normal((S, N, 2)))
    surrogate = score_surrogate(be, params, x, eps, "loo")
    _, grads = mutant(estimators, *BUGS[bug]).loss_and_grads(params, x, eps, CONFIG, "score", "loo")
    assert max_error(check_model_gradients(lambda p: (surrogate(p), grads), params)) > 1e-2


@pytest.mark.parametrize("name", BACKENDS)
def test_pathwise_estimate_is_the_vae_gradient(name):
    """S = 1: core.vae.loss_and_grads itself; S samples: the VAE's gradient on the batch repeated S times."""
    be = make(name)
    params, x = setup(be)
    for samples in (1, 3):
        eps = put(be, np.random.default_rng(4).standard_normal((samples, N, 2)))
        parts, grads = estimators.loss_and_grads(params, x, eps, CONFIG, "pathwise")
        x_rep = estimators.tile(x, samples)
        want_parts, want = vae.loss_and_grads(params, x_rep, be.xp.reshape(eps, (samples * N, 2)), CONFIG)
        assert abs(float(parts.loss) - float(want_parts.loss)) < 1e-12
        assert max(np.max(np.abs(be.to_numpy(grads[k] - want[k]))) for k in want) < 1e-12


@pytest.mark.parametrize("estimator,kind", SPECS.values(), ids=SPECS)
def test_dmu_and_dlogvar_are_the_gradients_of_the_encoder_outputs(estimator, kind):
    """With a one-layer encoder, head = x W + b: dL/db = sum_n [dmu | dlogvar] and dL/dW = x^T [dmu | dlogvar]."""
    config = vae.VAEConfig(input_dim=5, enc_hidden=(), dec_hidden=(4,), latent_dim=2, activation="tanh")
    rng = np.random.default_rng(5)
    params = {k: 0.5 * rng.standard_normal(s) for k, s in vae.param_shapes(config).items()}
    x, eps = rng.uniform(0, 1, (N, 5)), rng.standard_normal((S, N, 2))
    parts, grads = estimators.loss_and_grads(params, x, eps, config, estimator, kind)
    dhead = np.concatenate([parts.dmu, parts.dlogvar], axis=1)
    np.testing.assert_allclose(grads["enc.0.b"], dhead.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(grads["enc.0.W"], x.T @ dhead, rtol=1e-12)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("kind", ["none", "batch", "loo"])
def test_baselines_leave_each_sample_out(name, kind):
    be = make(name)
    recon = np.random.default_rng(6).uniform(50, 150, (3, 4))
    got = be.to_numpy(estimators.baseline_values(put(be, recon), kind))
    np.testing.assert_allclose(got, baselines_by_hand(recon, kind), rtol=1e-12)


# ---- unbiasedness, and the bugs it catches --------------------------------------------------


def draws_mean(module, be, params, x, estimator, kind, draws, samples, seed):
    """Mean and standard error, per encoder coordinate, of `draws` estimates with fresh eps (S, N, L).
    (The decoder's estimate is the same for every estimator: only the encoder's differ.)"""
    rng = np.random.default_rng(seed)
    G = np.stack([flat(module.loss_and_grads(params, x, rng.standard_normal((samples, N, 2)), CONFIG,
                                             estimator, kind)[1], "enc.") for _ in range(draws)])
    return G.mean(axis=0), G.std(axis=0, ddof=1) / np.sqrt(draws)


@pytest.fixture(scope="module")
def reference():
    """The expected gradient from 20 pathwise estimates of 10,000 samples per image each (200,000 in all)."""
    be = make("numpy")
    params, x = setup(be)
    return draws_mean(estimators, be, params, x, "pathwise", "none", 20, 10_000, seed=7)


def largest_z(module, estimator, kind, reference):
    be = make("numpy")
    params, x = setup(be)
    mean, se = draws_mean(module, be, params, x, estimator, kind, DRAWS, S, seed=8)
    ref_mean, ref_se = reference
    return float(np.max(np.abs(mean - ref_mean) / np.sqrt(se ** 2 + ref_se ** 2)))


@pytest.mark.parametrize("estimator,kind", SPECS.values(), ids=SPECS)
def test_estimators_are_unbiased(estimator, kind, reference):
    """Averaged over 600 estimates (S = 2 samples per image each), every gradient coordinate lies within
    4.5 standard errors of the reference; the reference's own error is counted in."""
    assert largest_z(estimators, estimator, kind, reference) < Z_TOLERANCE


@pytest.mark.parametrize("bug", BUGS)
def test_the_unbiasedness_check_catches_a_planted_bug(bug, reference):
    assert largest_z(mutant(estimators, *BUGS[bug]), "score", "loo", reference) > Z_TOLERANCE


# ---- the shell: checks and measurements ------------------------------------------------------


def test_estimator_misuse_is_one_line():
    be = make("numpy")
    params, x = setup(be)
    eps = be.normal((S, N, 2))
    for call, message in [
        (lambda: shell.EstimatorSpec("score", "loo", samples=1), "leave-one-out baseline needs samples >= 2"),
        (lambda: shell.EstimatorSpec("pathwise", "batch"), "is for the score estimator"),
        (lambda: shell.EstimatorSpec("reinforce"), "unknown estimator 'reinforce'"),
        (lambda: shell.loss_and_grads(params, x, eps[0], CONFIG), r"expected \(S, 2, 2\)"),
        (lambda: shell.loss_and_grads(params, x, eps[:1], CONFIG, baseline="loo"), "samples >= 2"),
        (lambda: shell.loss_and_grads(params, x[:1], eps[:1, :1], CONFIG, baseline="batch"), "S N >= 2"),
        (lambda: shell.loss_and_grads(params, x, eps, AEConfig(input_dim=5)), "plain VAE"),
        (lambda: shell.check_model(vae.VAEConfig(likelihood="gaussian")), "Bernoulli"),
    ]:
        with pytest.raises(InputError, match=message) as e:
            call()
        assert "\n" not in str(e.value)
    parts, grads = shell.loss_and_grads(params, x, eps, CONFIG, "score", "loo")
    assert set(grads) == set(params) and np.isfinite(float(parts.loss))


def test_gradient_moments_are_the_mean_and_variance_of_the_draws():
    """Welford's running moments against np.mean / np.var of the same draws (the same eps stream)."""
    be = make("numpy", seed=9)
    params, x = setup(be)
    spec = shell.EstimatorSpec("score", "batch", samples=2)
    m = shell.gradient_moments(params, x, CONFIG, be, spec, draws=30, watch=3)
    be9 = make("numpy", seed=9)
    draws = [estimators.loss_and_grads(params, x, be9.normal((2, N, 2)), CONFIG, "score", "batch")
             for _ in range(30)]
    mus = np.stack([d[0].dmu for d in draws])
    Ws = np.stack([d[1]["enc.0.W"] for d in draws])
    np.testing.assert_allclose(m["mu"].mean, mus.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(m["mu"].var, mus.var(axis=0, ddof=1), rtol=1e-8)
    np.testing.assert_allclose(m["W"].var, Ws.var(axis=0, ddof=1), rtol=1e-8)
    np.testing.assert_array_equal(m["watched"], Ws[..., :3])


def test_variance_ratio_quartiles_skip_coordinates_without_variance():
    (q25, q50, q75), n = shell.ratio_quartiles(np.array([1.0, 4.0, 9.0, 7.0, 0.0]),
                                               np.array([1.0, 1.0, 1.0, 0.0, 0.0]))
    assert n == 3 and (q25, q50, q75) == (2.5, 4.0, 6.5)


def test_predicted_ratio_is_f_squared_over_sigma_squared_and_the_pathwise_variance():
    """E[f^2] = 100, sigma^2 = e^-2, a per-sample pathwise variance v = Var(dL/dmu) N^2 S = 0.5: 100 e^2 / 0.5."""
    logvar = np.array([[-2.0], [-2.0]])
    var_mu = np.array([[0.5 / (4 * 3)], [0.0]])          # the second coordinate has no variance: left out
    q = shell.predicted_ratio(np.array([100.0, 100.0]), logvar, var_mu, samples=3)
    np.testing.assert_allclose(q, [200 * np.exp(2.0)] * 3)


# ---- the demo, on fake digits ------------------------------------------------------------------


@pytest.fixture
def demo(monkeypatch):
    """demos/mnist_estimators.py reading 300 + 100 fake digits (a bright block per class on faint noise)."""
    from pathlib import Path

    from conftest import load_script
    from tinyvae.data import MNIST
    module = load_script(Path(__file__).resolve().parents[1] / "demos" / "mnist_estimators.py")

    def fake(n, seed):
        rng = np.random.default_rng(seed)
        labels = np.arange(n) % 10
        images = rng.uniform(0, 20, (n, 28, 28))
        for i, c in enumerate(labels):
            images[i, 2 + 8 * (c // 4):8 + 8 * (c // 4), 2 + 6 * (c % 4):8 + 6 * (c % 4)] = 220
        return images.reshape(n, 784).astype(np.uint8), labels
    data = MNIST(*fake(300, 0), *fake(100, 1))
    monkeypatch.setattr(sys.modules["common"], "load_mnist", lambda data_dir=None, **kw: data)
    return module


SMALL_DEMO = ["--hidden", "16", "--latent-dim", "3", "--epochs", "1", "--batch-size", "50", "--draws", "6",
              "--images", "10", "--steps", "4", "--every", "2"]


def test_estimators_demo_writes_the_table_the_pictures_and_the_curves(demo, tmp_path, capsys):
    out = tmp_path / "run"
    assert demo.main([*SMALL_DEMO, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert (out / "vae" / "checkpoint.npz").is_file()
    assert all((out / p).stat().st_size > 0 for p in demo.PICTURES)
    for model in ("untrained", "trained"):
        rows = {(r["estimator"], r["part"]): r for r in m["tables"][model]}
        assert set(rows) == {(e, p) for e in ("score", "score_batch", "score_loo") for p in ("mu", "logvar", "W")}
        assert all(r["q25"] <= r["median"] <= r["q75"] for r in rows.values())
        # the offset of ~500 nats: without a baseline the variance is thousands of times the leave-one-out one's
        assert rows["score", "mu"]["median"] > 100 * rows["score_loo", "mu"]["median"]
        assert rows["score", "mu"]["coordinates"] == 10 * 3
    assert set(m["curves"]) == {"pathwise", "score, no baseline", "score, batch baseline",
                                "score, leave-one-out baseline"}
    assert all(c["step"] == [0, 2, 4] for c in m["curves"].values())
    assert len({c["test_neg_elbo"][0] for c in m["curves"].values()}) == 1       # one start for every run
    assert "| score, leave-one-out baseline: dL/dmu | 30 |" in printed


def test_estimators_demo_measures_a_saved_run_and_refuses_bad_flags(demo, tmp_path, capsys):
    first = tmp_path / "first"
    assert demo.main([*SMALL_DEMO, "--out", str(first)]) == 0
    again = tmp_path / "again"
    assert demo.main([*SMALL_DEMO, "--from", str(first), "--out", str(again)]) == 0
    assert not (again / "vae").exists()
    assert json.loads((again / "metrics.json").read_text())["source"] == str(first)
    capsys.readouterr()
    assert demo.main([*SMALL_DEMO, "--from", str(first / "vae"), "--out", str(first / "vae")]) == 2
    assert "already holds metrics.json" in one_line(capsys.readouterr().err)       # the run's own files kept
    assert demo.main([*SMALL_DEMO, "--samples", "1", "--out", str(tmp_path / "x")]) == 2
    assert "--samples" in one_line(capsys.readouterr().err)
