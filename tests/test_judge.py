"""The judge: the classifier's gradient against finite differences and a planted bug caught; every
number it gives (Frechet distance, classifier score, label histogram, nearest-neighbour distance,
Parzen window) against its definition; trained once, saved as tinyvae's own, then loaded."""
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from conftest import BACKENDS, make
from tinyvae import judge as J
from tinyvae.checkpoint import CHECKPOINT_FILE, save_checkpoint
from tinyvae.core import classifier, vae
from tinyvae.core.classifier import ClassifierConfig
from tinyvae.core.nets import Conv, Dense, Flatten, Reshape, net_forward
from tinyvae.core.optim import Adam
from tinyvae.errors import CheckpointError, InputError
from tinyvae.gradcheck import check_model_gradients, max_error

MLP = ClassifierConfig(input_dim=6, n_classes=3, hidden=(5,), activation="tanh")
CONV = ClassifierConfig(input_dim=16, n_classes=3, classifier=(Reshape((4, 4, 1)), Conv(2, 3, 2, "relu"),
                                                              Flatten(), Dense(4, "relu"), Dense(3)))


def random_params(be, config, seed=0):
    rng = np.random.default_rng(seed)
    return {k: be.asarray(0.5 * rng.standard_normal(s)) for k, s in vae.param_shapes(config).items()}


def labelled(be, config, n=4, seed=0):
    rng = np.random.default_rng(seed)
    return be.asarray(rng.uniform(0, 1, (n, config.input_dim))), be.asarray(rng.integers(0, config.n_classes, n))


def frozen(module, x, y, config):
    def loss_fn(params):
        parts, grads = module.loss_and_grads(params, x, y, config)
        return parts.loss, grads
    return loss_fn


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("config", [MLP, CONV], ids=["mlp", "conv"])
def test_classifier_gradient_matches_finite_differences(name, config):
    be = make(name)
    params = random_params(be, config)
    x, y = labelled(be, config)
    errors = check_model_gradients(frozen(classifier, x, y, config), params)
    assert set(errors) == set(params) and max_error(errors) < 1e-6, errors


def test_classifier_loss_is_the_cross_entropy():
    be = make("numpy")
    params = random_params(be, MLP, seed=1)
    x, y = labelled(be, MLP, seed=1)
    parts, _ = classifier.loss_and_grads(params, x, y, MLP)
    logits = be.to_numpy(net_forward(params, "cls", MLP.classifier_layers, x)[0])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert float(parts.loss) == pytest.approx(-np.mean(np.log(p[np.arange(4), y])), abs=1e-12)
    assert float(parts.error) == np.mean(np.argmax(logits, axis=1) != y)


@pytest.mark.parametrize("old,new", [
    ("dlogits = log_softmax_backward(-Y / N, sm_cache)", "dlogits = log_softmax_backward(-Y, sm_cache)"),
    ("dlogits = log_softmax_backward(-Y / N, sm_cache)", "dlogits = -Y / N"),
], ids=["not-averaged", "softmax-skipped"])
def test_classifier_check_catches_a_planted_bug(old, new):
    source = Path(classifier.__file__).read_text()
    assert source.count(old) == 1
    bad = types.ModuleType("tinyvae.core._classifier_mutant")
    bad.__package__ = "tinyvae.core"
    sys.modules[bad.__name__] = bad
    exec(compile(source.replace(old, new), classifier.__file__, "exec"), bad.__dict__)
    be = make("numpy")
    params = random_params(be, MLP, seed=2)
    x, y = labelled(be, MLP, seed=2)
    assert max_error(check_model_gradients(frozen(bad, x, y, MLP), params)) > 1e-3


def test_features_are_the_penultimate_layer():
    be = make("numpy")
    params = random_params(be, CONV, seed=3)
    x, _ = labelled(be, CONV, seed=3)
    f = classifier.features(params, x, CONV)
    assert f.shape == (4, 4) and np.all(f >= 0)                       # Dense(4, 'relu')
    logits = f @ params["cls.4.W"] + params["cls.4.b"]
    np.testing.assert_allclose(np.exp(classifier.log_probs(params, x, CONV)),
                               np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), atol=1e-12)


# ---- the numbers -------------------------------------------------------------------------


def test_frechet_distance_against_its_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 3)) @ rng.standard_normal((3, 3))
    assert abs(J.frechet_distance(a, a)) < 1e-9
    shift = np.array([1.0, -2.0, 0.5])
    assert J.frechet_distance(a, a + shift) == pytest.approx(np.sum(shift ** 2), rel=1e-9)    # same covariance
    b = 3.0 * rng.standard_normal((400, 3)) + 1.0
    assert J.frechet_distance(a, b) == pytest.approx(J.frechet_distance(b, a), rel=1e-9)
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))                                       # a rotation
    assert J.frechet_distance(a @ q, b @ q) == pytest.approx(J.frechet_distance(a, b), rel=1e-9)
    u, v = rng.standard_normal((300, 1)), 2.0 * rng.standard_normal((200, 1)) + 5.0        # 1-D: (m1-m2)^2 + (s1-s2)^2
    want = (u.mean() - v.mean()) ** 2 + (u.std(ddof=1) - v.std(ddof=1)) ** 2
    assert J.frechet_distance(u, v) == pytest.approx(want, rel=1e-9)


def test_classifier_score_runs_from_one_to_k():
    K = 10
    sure = np.eye(K)[np.arange(1000) % K]                 # every image one certain class, all equally often
    assert J.classifier_score(sure) == pytest.approx(K, rel=1e-9)
    assert J.classifier_score(np.full((50, K), 1.0 / K)) == pytest.approx(1.0)
    assert J.classifier_score(np.eye(K)[np.zeros(100, dtype=int)]) == pytest.approx(1.0)   # one class only
    p = np.random.default_rng(0).dirichlet(np.ones(K), 200)
    pbar = p.mean(axis=0)
    assert J.classifier_score(p) == pytest.approx(np.exp(np.mean(np.sum(p * np.log(p / pbar), axis=1))))


def test_label_histogram_shares_rarest_and_kl():
    p = np.eye(4)[[0, 0, 1, 2, 2, 2, 3, 3]]
    h = J.label_histogram(p)
    assert h["shares"] == [0.25, 0.125, 0.375, 0.25] and h["rarest"] == 0.125
    assert h["kl_uniform"] == pytest.approx(sum(s * math.log(4 * s) for s in h["shares"]))
    assert J.label_histogram(np.eye(4)[[1] * 5])["kl_uniform"] == pytest.approx(math.log(4))


@pytest.mark.parametrize("name", BACKENDS)
def test_nearest_distances_and_parzen_against_brute_force(name):
    be = make(name)
    rng = np.random.default_rng(1)
    s, t, x = rng.uniform(0, 1, (7, 5)), rng.uniform(0, 1, (9, 5)), rng.uniform(0, 1, (6, 5))
    d = np.sqrt(((s[:, None, :] - t[None, :, :]) ** 2).sum(axis=2))
    np.testing.assert_allclose(J.nearest_distances(s, t, be, batch=3), d.min(axis=1), rtol=1e-9)
    sigma = 0.3
    d2 = ((x[:, None, :] - s[None, :, :]) ** 2).sum(axis=2)
    log_k = -d2 / (2 * sigma ** 2) - 2.5 * np.log(2 * np.pi * sigma ** 2)
    want = np.log(np.mean(np.exp(log_k), axis=1))
    np.testing.assert_allclose(J.parzen_log_likelihood(s, x, sigma, be, batch=4), want, rtol=1e-9)


def test_parzen_sigma_is_the_best_of_its_grid():
    be = make("numpy")
    rng = np.random.default_rng(2)
    s, x = rng.normal(0, 0.2, (200, 3)), rng.normal(0, 0.2, (50, 3))
    grid = [0.02, 0.2, 2.0]
    best = J.parzen_sigma(s, x, be, grid)
    assert best == 0.2 and best == max(grid, key=lambda g: J.parzen_log_likelihood(s, x, g, be).mean())


# ---- trained once, saved, loaded -----------------------------------------------------------


def blobs(n, seed):
    """n images of 36 pixels: class c lights pixels 12c..12c+11, on faint noise; pixels in [0, 1]."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.uniform(0, 0.1, (n, 36))
    for i, c in enumerate(y):
        x[i, 12 * c:12 * c + 12] = rng.uniform(0.6, 1.0, 12)
    return x, y


def test_the_judge_is_trained_once_saved_and_loaded(tmp_path, monkeypatch):
    be = make("numpy", dtype="float32")
    data = (*blobs(120, 0), *blobs(60, 1))
    path = tmp_path / "judge" / CHECKPOINT_FILE
    params, config, meta = J.train_judge(*data, be, path.parent, config=ClassifierConfig(
        input_dim=36, n_classes=3, hidden=(8,)), epochs=3, batch_size=20, lr=1e-2, progress=False)
    assert path.is_file() and meta["test_accuracy"] == J.accuracy(params, config, data[2], data[3], be) == 1.0
    assert json.loads((path.parent / "metrics.json").read_text())["model"] == "judge"
    monkeypatch.setattr(J, "train_judge", lambda *a, **k: pytest.fail("trained a second time"))
    again, config2, _ = J.judge(be, data, path)
    assert config2 == config and all(np.array_equal(again[k], params[k]) for k in params)


def test_a_file_that_is_not_the_judge_is_refused_in_one_line(tmp_path):
    be = make("numpy", dtype="float32")
    config = vae.VAEConfig(input_dim=6, enc_hidden=(4,), dec_hidden=(4,), latent_dim=2)
    params = vae.init_params(config, be)
    meta = {"model": "vae", "config": config.to_dict(), "train_config": {}, "data": {}, "epoch": 0, "epochs": []}
    save_checkpoint(tmp_path / CHECKPOINT_FILE, params, Adam(params), meta, be)
    with pytest.raises(CheckpointError, match="holds a 'vae' model, not tinyvae's judge") as e:
        J.judge(be, None, tmp_path / CHECKPOINT_FILE)
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="no judge at"):
        J.judge(be, None, tmp_path / "none" / CHECKPOINT_FILE)


@pytest.mark.slow
def test_the_judge_is_right_on_985_of_the_mnist_test_set(tmp_path):
    """The judge as the demos train it (3 epochs on all of MNIST): at least 98.5% right."""
    from tinyvae.data import load_mnist, to_unit_interval
    d = load_mnist(progress=False)
    data = (to_unit_interval(d.x_train), d.y_train, to_unit_interval(d.x_test), d.y_test)
    _, _, meta = J.train_judge(*data, make("numpy", dtype="float32"), tmp_path, progress=False)
    assert meta["test_accuracy"] >= 0.985
