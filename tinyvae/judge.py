"""The judge: an MNIST classifier trained by tinyvae itself, and the numbers it gives generated digits.

A generative model's samples are scored against the test images by a network
that has learnt digits (a convolutional classifier, core/classifier.py, about
99% right on the test set):

    frechet_distance      ||mu_1 - mu_2||^2 + tr(S_1 + S_2 - 2 (S_1^1/2 S_2 S_1^1/2)^1/2) between
                          Gaussians fitted to the judge's penultimate features of two image sets
    classifier_score      exp(mean_n KL(p(y | x_n) || p(y))), p(y) = mean_n p(y | x_n): near 10 when
                          every sample is one clear digit and all ten digits come equally often
    label_histogram       the share of samples the judge puts in each class (mode coverage)
    nearest_distances     each sample's Euclidean distance to its nearest training image (copying)
    parzen_log_likelihood a Gaussian kernel density on the samples, evaluated at test images
                          (the estimate Theis et al. 2016 warn about; docs/gan.md#a-cautionary-table)

The judge is trained once and saved as a tinyvae checkpoint (model "judge";
atomic write, the folder held while training) in the cache folder beside MNIST,
then loaded by every later call (`judge`). Every number here is computed in
float64 on the host, except the matrix products, which run on the backend.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import models
from .checkpoint import CHECKPOINT_FILE, METRICS_FILE, hold_folder, prepare_out_dir, save_checkpoint, write_json
from .core import classifier
from .core.classifier import ClassifierConfig
from .core.nets import Conv, Dense, Flatten, Reshape
from .core.optim import Adam
from .core.vae import init_params
from .data import default_cache_dir
from .errors import InputError
from .gan_train import load_saved
from .train import STREAM_TRAIN, Progress, steps

MODEL = "judge"
JUDGE_DIR = "judge"            # under the cache folder: judge/checkpoint.npz, judge/metrics.json
BATCH = 1000                   # images per pass when scoring
EPOCHS, BATCH_SIZE, LR = 3, 128, 2e-3
# 28x28 -> 14x14x16 -> 7x7x32 -> 128 features -> 10 logits
JUDGE = ClassifierConfig(classifier=(Reshape((28, 28, 1)), Conv(16, 3, 2, "relu"), Conv(32, 3, 2, "relu"),
                                     Flatten(), Dense(128, "relu"), Dense(10)), init="keras")


def default_path() -> Path:
    """Where the judge is kept: <cache folder>/judge/checkpoint.npz (beside tinyvae-mnist.npz)."""
    return default_cache_dir() / JUDGE_DIR / CHECKPOINT_FILE


# ---------------------------------------------------------------------------
# Training it once, and loading it
# ---------------------------------------------------------------------------


def _step(params, batch, backend, config, beta=1.0):
    parts, grads = classifier.loss_and_grads(params, batch["x"], batch["y"], config)
    return {"loss": parts.loss, "error": parts.error}, grads


ADAPTER = models.Model(MODEL, _step, None, None)      # what train.steps asks of a model


def accuracy(params, config, x, y, backend) -> float:
    """The share of images x (N, D) host floats whose most probable class is their label y (N,)."""
    p = probabilities(params, config, x, backend)
    return float(np.mean(np.argmax(p, axis=1) == np.asarray(y)))


def train_judge(x_train, y_train, x_test, y_test, backend, out_dir, config=JUDGE, epochs=EPOCHS,
                batch_size=BATCH_SIZE, lr=LR, progress=None):
    """Train the classifier with Adam, then save it once to out_dir/checkpoint.npz: (params, config, meta).

    x_* host float pixels in [0, 1] (N, 784), y_* integer labels. The run's order
    comes from the stream (STREAM_TRAIN, epoch) of the backend's seed. metrics.json
    beside the checkpoint holds each epoch's train loss and the test accuracy.
    """
    out_dir = prepare_out_dir(out_dir, (CHECKPOINT_FILE, METRICS_FILE))
    with hold_folder(out_dir):
        backend.reseed()
        params = init_params(config, backend)
        adam = Adam(params, lr=lr)
        x, y = backend.asarray(x_train), backend.asarray(np.asarray(y_train, dtype=np.int64))
        n, history = x.shape[0], []
        for epoch in range(1, epochs + 1):
            backend.reseed(STREAM_TRAIN, epoch)
            order = backend.asarray(backend.permutation(n))
            total = 0.0
            with Progress(-(-n // batch_size), f"judge epoch {epoch}", "step", progress) as bar:
                for nb, parts in steps(params, adam, ADAPTER, config, backend, x, order, batch_size, y=y):
                    total += float(parts["loss"]) * nb
                    bar.update(1)
            history.append({"epoch": epoch, "train_loss": total / n,
                            "test_accuracy": accuracy(params, config, x_test, y_test, backend)})
        meta = {"model": MODEL, "config": config.to_dict(), "data": {"n_train": n, "n_test": len(y_test)},
                "train_config": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": backend.seed},
                "epoch": epochs, "epochs": history, "backend": backend.name, "dtype": backend.dtype_name,
                "test_accuracy": history[-1]["test_accuracy"]}
        save_checkpoint(out_dir / CHECKPOINT_FILE, params, adam, meta, backend)
        write_json(out_dir / METRICS_FILE, meta)
    return params, config, meta


def load_judge(path, backend):
    """(params, config, meta) of a judge saved by train_judge, every array checked against its config."""
    return load_saved(path, backend, MODEL, ClassifierConfig, "tinyvae's judge",
                      "move it away (the judge is then trained again there), or pass another --judge")


def judge(backend, mnist=None, path=None, progress=None, epochs=None):
    """The judge at `path` (default_path()), trained on `mnist` and saved there first if it is not there.

    mnist: (x_train, y_train, x_test, y_test), host floats in [0, 1] and integer
    labels; needed only when the judge is trained. epochs: how long a judge
    trained here trains (default EPOCHS); a judge loaded from `path` must have
    trained that long when epochs is given. Returns (params, config, meta).
    """
    path = Path(path) if path is not None else default_path()
    if path.is_file():
        loaded = load_judge(path, backend)
        trained = (loaded[2].get("train_config") or {}).get("epochs")
        if epochs is not None and trained != epochs:
            raise InputError(f"the judge at {path} trained for {trained} epochs, not {epochs}: pass another "
                             f"path (a judge is trained there), or {trained} epochs")
        return loaded
    if mnist is None:
        raise InputError(f"no judge at {path}, and no MNIST to train one on")
    return train_judge(*mnist, backend, path.parent, epochs=epochs or EPOCHS, progress=progress)


# ---------------------------------------------------------------------------
# What the judge says about a set of images
# ---------------------------------------------------------------------------


def _passes(f, x, backend, batch=BATCH) -> np.ndarray:
    """f on the backend for every `batch` rows of the host images x (N, D), joined on the host in float64."""
    return np.concatenate([np.asarray(backend.to_numpy(f(backend.asarray(x[s:s + batch]))), dtype=np.float64)
                           for s in range(0, len(x), batch)])


def probabilities(params, config, x, backend) -> np.ndarray:
    """p(y | x) for host images x (N, D): (N, K) float64."""
    return np.exp(_passes(lambda xb: classifier.log_probs(params, xb, config), x, backend))


def features(params, config, x, backend) -> np.ndarray:
    """The judge's penultimate features of host images x (N, D): (N, F) float64."""
    return _passes(lambda xb: classifier.features(params, xb, config), x, backend)


def _sqrtm_psd(a) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix (eigenvalues below 0 taken as 0)."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(f1, f2) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N1, F), (N2, F).

    d^2 = ||mu_1 - mu_2||^2 + tr(S_1 + S_2 - 2 (S_1^1/2 S_2 S_1^1/2)^1/2), computed with symmetric
    square roots (eigh), so no complex parts appear. 0 for identical sets.
    """
    f1, f2 = np.asarray(f1, dtype=np.float64), np.asarray(f2, dtype=np.float64)
    mu1, mu2 = f1.mean(axis=0), f2.mean(axis=0)
    s1, s2 = np.atleast_2d(np.cov(f1, rowvar=False)), np.atleast_2d(np.cov(f2, rowvar=False))   # (F, F)
    r1 = _sqrtm_psd(s1)
    cross = np.trace(_sqrtm_psd(r1 @ s2 @ r1))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * cross)


def classifier_score(p) -> float:
    """exp(mean_n KL(p(y | x_n) || p(y))), p(y) = mean_n p(y | x_n); p (N, K) rows summing to 1.

    Between 1 (every image gets the same p(y | x)) and K (each image one certain class, all
    classes equally often). Salimans et al. (2016)'s Inception score, with this judge.
    """
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-300, None)
    marginal = p.mean(axis=0)
    return float(np.exp(np.mean(np.sum(p * (np.log(p) - np.log(marginal)), axis=1))))


def label_histogram(p) -> dict:
    """How the judge's most probable labels spread over the classes: {'shares' (K,), 'rarest', 'kl_uniform'}.

    shares_k = #(argmax_y p(y | x_n) = k) / N; rarest = min_k shares_k; kl_uniform = sum_k shares_k
    log(K shares_k) (0 when every class is as common as every other; log K when all are one class).
    """
    p = np.asarray(p)
    K = p.shape[1]
    shares = np.bincount(np.argmax(p, axis=1), minlength=K) / len(p)
    kl = float(np.sum(shares[shares > 0] * np.log(K * shares[shares > 0])))
    return {"shares": shares.tolist(), "rarest": float(shares.min()), "kl_uniform": kl}


def _squared_distances(a, b, backend):
    """||a_i - b_j||^2 (Na, Nb) on the backend from ||a||^2 + ||b||^2 - 2 a b^T; a, b backend arrays."""
    xp = backend.xp
    return xp.maximum(xp.sum(a * a, axis=1)[:, None] + xp.sum(b * b, axis=1)[None, :] - 2.0 * (a @ b.T), 0.0)


def nearest_distances(samples, train, backend, batch=BATCH) -> np.ndarray:
    """Each sample's Euclidean distance to its nearest image in `train`: host (N, D), (M, D) -> (N,) float64."""
    xp = backend.xp
    t = backend.asarray(train)
    return np.sqrt(_passes(lambda s: xp.min(_squared_distances(s, t, backend), axis=1), samples, backend, batch))


def parzen_log_likelihood(samples, x, sigma, backend, batch=BATCH) -> np.ndarray:
    """log p(x_i) under a Parzen window: the mean of N(x; s_n, sigma^2 I) over the samples s_n.

    log p(x) = logsumexp_n(-||x - s_n||^2 / (2 sigma^2)) - log N - D/2 log(2 pi sigma^2), nats,
    pixels in [0, 1] taken as continuous values. samples (N, D), x (M, D) host -> (M,) float64;
    with a sequence of sigmas, (S, M), one row per sigma, the distances computed once.
    """
    xp = backend.xp
    s = backend.asarray(samples)
    N, D = s.shape
    sigmas = np.atleast_1d(np.asarray(sigma, dtype=np.float64))

    def log_p(xb):                                                          # (S, B)
        d2 = _squared_distances(xb, s, backend)                             # (B, N)
        rows = []
        for g in sigmas:
            e = -d2 / (2.0 * float(g) ** 2)
            m = xp.max(e, axis=1)
            rows.append(m + xp.log(xp.sum(xp.exp(e - m[:, None]), axis=1)))
        return xp.stack(rows, axis=0)
    out = np.concatenate([np.asarray(backend.to_numpy(log_p(backend.asarray(x[i:i + batch]))), dtype=np.float64)
                          for i in range(0, len(x), batch)], axis=1)
    out = out - math.log(N) - 0.5 * D * np.log(2 * math.pi * sigmas ** 2)[:, None]
    return out if np.ndim(sigma) else out[0]


def parzen_sigma(samples, x_val, backend, sigmas=None) -> float:
    """The sigma of the grid (default 0.05 ... 0.5) whose Parzen window gives x_val the highest mean log p."""
    sigmas = np.geomspace(0.05, 0.5, 11) if sigmas is None else np.asarray(sigmas, dtype=np.float64)
    return float(sigmas[np.argmax(parzen_log_likelihood(samples, x_val, sigmas, backend).mean(axis=1))])
