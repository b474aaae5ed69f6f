"""fit over every model (VAE with beta and warm-up, CVAE, AE/DAE, M2) on small
synthetic data: the numbers it reports mean what they say, and resume is exact."""
import math

import numpy as np
import pytest

from tinyvae import train
from tinyvae.core import ae, m2, vae
from tinyvae.backend import get_backend
from tinyvae.errors import CheckpointError, InputError
from tinyvae.core.layers import one_hot
from tinyvae.train import TrainConfig, fit, kl_weight

D = 12


def synthetic(n, seed):
    """Pixels in [0, 1] from 2 hidden factors, and a label (0..2) from the first factor."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    w = np.random.default_rng(99).standard_normal((2, D)) * 2.0
    x = (1.0 / (1.0 + np.exp(-(z @ w)))).astype(np.float32)
    y = np.digitize(z[:, 0], [-0.5, 0.5]).astype(np.int64)
    return x, y


(X_TRAIN, Y_TRAIN), (X_TEST, Y_TEST) = synthetic(96, 0), synthetic(40, 1)
VAE = vae.VAEConfig(input_dim=D, enc_hidden=(8,), dec_hidden=(8,), latent_dim=2)
CVAE = vae.VAEConfig(input_dim=D, enc_hidden=(8,), dec_hidden=(8,), latent_dim=2, n_classes=3)
AE = ae.AEConfig(input_dim=D, enc_hidden=(8,), dec_hidden=(8,), latent_dim=2, corruption="mask",
                 corruption_level=0.3)
M2 = m2.M2Config(input_dim=D, enc_hidden=(8,), dec_hidden=(8,), latent_dim=2, n_classes=3, cls_hidden=(8,))


def numbers(metrics):
    return [{k: v for k, v in e.items() if "seconds" not in k} for e in metrics["epochs"]]


def test_kl_weight_ramps_linearly_then_holds():
    t = TrainConfig(beta=4.0, warmup_epochs=2)
    assert [kl_weight(s, 10, t) for s in (1, 5, 10, 20, 21, 100)] == [0.2, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert kl_weight(7, 10, TrainConfig(beta=0.5)) == 0.5
    assert isinstance(kl_weight(3, 10, t), float)


def test_beta_trains_the_objective_but_reports_the_elbo(tmp_path):
    """train_loss = recon + beta kl; every *_neg_elbo = recon + kl (beta = 1), whatever beta trained."""
    t = TrainConfig(epochs=2, batch_size=16, iw_k=0, beta=4.0)
    m = fit(X_TRAIN, X_TEST, VAE, t, get_backend("numpy", seed=0), tmp_path, progress=False).metrics
    for e in m["epochs"]:
        assert e["train_loss"] == pytest.approx(e["train_recon"] + 4.0 * e["train_kl"], rel=1e-5)
        assert e["train_neg_elbo"] == pytest.approx(e["train_recon"] + e["train_kl"], rel=1e-6)
        assert e["test_neg_elbo"] == pytest.approx(e["test_recon"] + e["test_kl"], rel=1e-6)
        assert e["beta"] == 4.0


def test_warmup_reports_the_elbo_at_beta_1(tmp_path):
    """Planted-bug guard: the test -ELBO of a warm-up run is the plain -ELBO of its weights,
    recomputed here from the saved parameters with beta = 1 and the evaluation stream."""
    t = TrainConfig(epochs=2, batch_size=16, iw_k=0, beta=1.0, warmup_epochs=3)
    be = get_backend("numpy", seed=0)
    result = fit(X_TRAIN, X_TEST, VAE, t, be, tmp_path, progress=False)
    assert [e["beta"] for e in result.metrics["epochs"]] == pytest.approx([1 / 3, 2 / 3])
    be.reseed(train.STREAM_EVAL)
    x = be.asarray(X_TEST)
    recon, kl = vae.neg_elbo_terms(result.params, x, be.normal((40, 2)), VAE)
    assert result.metrics["test_neg_elbo"] == pytest.approx(float(np.mean(recon + kl)), rel=1e-6)


def test_resume_across_a_warmup_is_bitwise_exact(tmp_path):
    t3 = TrainConfig(epochs=3, batch_size=16, iw_k=0, beta=2.0, warmup_epochs=2)
    whole = fit(X_TRAIN, X_TEST, VAE, t3, get_backend("numpy", seed=0), tmp_path / "a", progress=False)
    fit(X_TRAIN, X_TEST, VAE, TrainConfig(**{**t3.to_dict(), "epochs": 1}), get_backend("numpy", seed=0),
        tmp_path / "b", progress=False)
    resumed = fit(X_TRAIN, X_TEST, VAE, t3, get_backend("numpy", seed=0), tmp_path / "b", resume=True,
                  progress=False)
    assert numbers(resumed.metrics) == numbers(whole.metrics)
    assert all(np.array_equal(whole.params[k], resumed.params[k]) for k in whole.params)
    with pytest.raises(CheckpointError, match="warmup_epochs: 2 in the checkpoint, 5 now"):
        fit(X_TRAIN, X_TEST, VAE, TrainConfig(**{**t3.to_dict(), "epochs": 4, "warmup_epochs": 5}),
            get_backend("numpy", seed=0), tmp_path / "b", resume=True, progress=False)


def test_cvae_trains_on_labels_and_scores_with_them(tmp_path):
    t = TrainConfig(epochs=2, batch_size=16, iw_k=5, iw_images=10)
    be = get_backend("numpy", seed=0)
    result = fit(X_TRAIN, X_TEST, CVAE, t, be, tmp_path, y_train=Y_TRAIN, y_test=Y_TEST, progress=False)
    m = result.metrics
    assert m["model"] == "vae" and math.isfinite(m["test_neg_elbo"]) and math.isfinite(m["test_iw_nll"])
    be.reseed(train.STREAM_EVAL)
    x = be.asarray(X_TEST)
    recon, kl = vae.neg_elbo_terms(result.params, x, be.normal((40, 2)), CVAE, one_hot(be.asarray(Y_TEST), 3, like=x))
    assert m["test_neg_elbo"] == pytest.approx(float(np.mean(recon + kl)), rel=1e-6)
    with pytest.raises(InputError, match="pass y_train and y_test"):
        fit(X_TRAIN, X_TEST, CVAE, t, get_backend("numpy", seed=0), tmp_path / "c", progress=False)
    with pytest.raises(InputError, match="labels must be 0..2"):
        fit(X_TRAIN, X_TEST, CVAE, t, get_backend("numpy", seed=0), tmp_path / "d", y_train=Y_TRAIN + 1,
            y_test=Y_TEST, progress=False)


def test_denoising_autoencoder_trains_and_reports_its_reconstruction(tmp_path):
    t = TrainConfig(epochs=3, batch_size=16)
    result = fit(X_TRAIN, X_TEST, AE, t, get_backend("numpy", seed=0), tmp_path, progress=False)
    m = result.metrics
    assert m["model"] == "ae" and "test_iw_nll" not in m
    recon = [e["test_recon"] for e in m["epochs"]]
    assert recon[-1] < recon[0]
    x = get_backend("numpy").asarray(X_TEST)
    want = float(np.mean(ae.recon_terms(result.params, x, x, AE)))      # clean input, no noise
    assert m["test_recon"] == pytest.approx(want, rel=1e-6)
    with pytest.raises(CheckpointError, match="holds a 'ae' model, not 'vae'"):
        fit(X_TRAIN, X_TEST, VAE, TrainConfig(epochs=4, batch_size=16), get_backend("numpy", seed=0),
            tmp_path, resume=True, progress=False)


def test_m2_trains_and_resumes_exactly(tmp_path):
    labelled = (X_TRAIN[:12], Y_TRAIN[:12])
    t2 = TrainConfig(epochs=2, batch_size=16)
    whole = fit(X_TRAIN[12:], X_TEST, M2, t2, get_backend("numpy", seed=0), tmp_path / "a",
                y_test=Y_TEST, labelled=labelled, progress=False)
    m = whole.metrics
    assert m["model"] == "m2" and m["data"]["n_labelled"] == 12
    assert 0.0 <= m["test_error"] <= 1.0 and math.isfinite(m["test_neg_elbo"])
    e = m["epochs"][-1]
    assert e["train_loss"] == pytest.approx(e["train_labelled"] + e["train_unlabelled"] + 0.1 * e["train_ce"],
                                            rel=1e-5)
    fit(X_TRAIN[12:], X_TEST, M2, TrainConfig(epochs=1, batch_size=16), get_backend("numpy", seed=0),
        tmp_path / "b", y_test=Y_TEST, labelled=labelled, progress=False)
    resumed = fit(X_TRAIN[12:], X_TEST, M2, t2, get_backend("numpy", seed=0), tmp_path / "b", resume=True,
                  y_test=Y_TEST, labelled=labelled, progress=False)
    assert numbers(resumed.metrics) == numbers(m)
    with pytest.raises(InputError, match="labelled=\\(x_labelled, y_labelled\\)"):
        fit(X_TRAIN, X_TEST, M2, t2, get_backend("numpy", seed=0), tmp_path / "c", y_test=Y_TEST)


def test_binarize_reaches_m2s_labelled_images_too(monkeypatch):
    """With binarize, every image M2 trains on is 0/1: the unlabelled batch and the labelled set."""
    seen = []
    real = m2.loss_and_grads

    def spy(params, x_l, y_l, x_u, eps, config, **kw):
        seen.append((np.unique(np.asarray(x_l)), np.unique(np.asarray(x_u))))
        return real(params, x_l, y_l, x_u, eps, config, **kw)

    monkeypatch.setattr(m2, "loss_and_grads", spy)
    be = get_backend("numpy", seed=0)
    params = vae.init_params(M2, be)
    t = TrainConfig(epochs=1, batch_size=32, binarize=True)
    extra = {"x_labelled": be.asarray(X_TRAIN[:12]), "y_labelled": be.asarray(Y_TRAIN[:12])}
    train.train_epoch(params, train.Adam(params), be.asarray(X_TRAIN[12:]), be, M2, t, 1, progress=False,
                      extra=extra)
    assert seen and all(set(a) <= {0.0, 1.0} and set(b) <= {0.0, 1.0} for a, b in seen)
