"""One table of the models `fit` trains: each model's adapter, so the loop has no per-model branch.

An adapter says how one model meets the loop:

- train_step(params, batch, backend, config, beta) -> ({name: 0-d array}, grads):
  one minibatch's objective and gradients, its noise drawn here from the backend;
- eval_terms(params, batch, backend, config) -> {name: (B,) array}: each test image's numbers;
- inputs(config, y_train, y_test, labelled) -> {name: count}: refuses, in one line,
  a call that lacks what the model trains on;
- extra_images: the names of the arrays every step sees whole that are images
  (binarized with the batches), e.g. M2's labelled set;
- iw: whether the final importance-weighted -log p(x) applies.

batch: {'x': (B, D) images, 'y': (B,) integer labels or None, plus the extra arrays}.
"""
from __future__ import annotations

from dataclasses import dataclass

from .core import ae, m2, vae
from .core.ae import AEConfig
from .core.layers import one_hot
from .core.m2 import M2Config
from .core.sparse import SparseAEConfig
from .core.vae import VAEConfig
from .core.xp import namespace_of
from .errors import InputError
from .sparse import train_step as sparse_ae_step
from .fast.step import fast_model

LABELLED_BATCH = 100   # M2: labelled images per step, drawn afresh from the labelled set each step


# ---------------------------------------------------------------------------
# The VAE and the conditional VAE
# ---------------------------------------------------------------------------


def _labels(batch, config, like):
    """One-hot y (B, K) for the conditional VAE, else None."""
    return one_hot(batch["y"], config.n_classes, like=like) if config.n_classes else None


def vae_step(params, batch, backend, config, beta=1.0):
    """({'loss', 'recon', 'kl'}, grads): 'loss' = recon + beta kl is minimised; recon + kl is the -ELBO."""
    x = batch["x"]
    eps = backend.normal((x.shape[0], config.latent_dim))                      # (B, L)
    parts, grads = vae.loss_and_grads(params, x, eps, config, _labels(batch, config, x), beta)
    return {"loss": parts.loss, "recon": parts.recon, "kl": parts.kl}, grads


def vae_terms(params, batch, backend, config):
    """Each image's -ELBO and its parts, z sampled: {'neg_elbo', 'recon', 'kl'} (B,)."""
    x = batch["x"]
    eps = backend.normal((x.shape[0], config.latent_dim))
    recon, kl = vae.neg_elbo_terms(params, x, eps, config, _labels(batch, config, x))
    return {"neg_elbo": recon + kl, "recon": recon, "kl": kl}


def vae_inputs(config, y_train, y_test, labelled):
    if config.n_classes and (y_train is None or y_test is None):
        raise InputError(f"a conditional VAE (n_classes={config.n_classes}) trains on labels: "
                         "pass y_train and y_test")
    return {}


# ---------------------------------------------------------------------------
# The (denoising) autoencoder
# ---------------------------------------------------------------------------


def corrupt(x, backend, config):
    """x as the denoising autoencoder sees it, the noise drawn here; x itself for 'none'."""
    if config.corruption == "mask":
        return ae.mask_noise(x, backend.uniform(tuple(x.shape)), config.corruption_level)
    if config.corruption == "gaussian":
        return ae.gaussian_noise(x, backend.normal(tuple(x.shape)), config.corruption_level)
    return x


def ae_step(params, batch, backend, config, beta=1.0):
    """({'loss', 'recon'}, grads), the corruption drawn here; beta is unused."""
    x = batch["x"]
    parts, grads = ae.loss_and_grads(params, corrupt(x, backend, config), x, config)
    return {"loss": parts.loss, "recon": parts.recon}, grads


def ae_terms(params, batch, backend, config):
    """Each test image's reconstruction term from its clean input: {'recon'} (B,), nats."""
    x = batch["x"]
    return {"recon": ae.recon_terms(params, x, x, config)}


# ---------------------------------------------------------------------------
# M2
# ---------------------------------------------------------------------------


def m2_step(params, batch, backend, config, beta=1.0):
    """One step: the unlabelled minibatch batch['x'] beside min(LABELLED_BATCH, n) labelled images
    drawn here afresh from the whole labelled set (batch['x_labelled'], batch['y_labelled']), and eps.

    Returns ({'loss', 'labelled', 'unlabelled', 'ce', 'class_kl'}, grads).
    """
    x_u, x_all, y_all = batch["x"], batch["x_labelled"], batch["y_labelled"]
    xp = namespace_of(x_u)
    n = x_all.shape[0]
    pick = backend.asarray(backend.permutation(n)[:min(LABELLED_BATCH, n)])   # (Nl,)
    x_l, y_l = xp.take(x_all, pick, axis=0), xp.take(y_all, pick, axis=0)
    eps = backend.normal((x_l.shape[0] + x_u.shape[0] * config.n_classes, config.latent_dim))
    parts, grads = m2.loss_and_grads(params, x_l, y_l, x_u, eps, config, beta=beta)
    return {"loss": parts.loss, "labelled": parts.labelled, "unlabelled": parts.unlabelled,
            "ce": parts.ce, "class_kl": parts.class_kl}, grads


def m2_terms(params, batch, backend, config):
    """Each test image's classification error (0/1) and -ELBO with y unobserved: {'error', 'neg_elbo'} (B,)."""
    x, y = batch["x"], batch["y"]
    xp = namespace_of(x)
    predicted = xp.argmax(m2.classify(params, x, config), axis=1)
    error = xp.astype(predicted != xp.astype(y, predicted.dtype), x.dtype)
    eps = backend.normal((x.shape[0] * config.n_classes, config.latent_dim))
    return {"error": error, "neg_elbo": m2.unlabelled_neg_elbo(params, x, eps, config)}


def m2_inputs(config, y_train, y_test, labelled):
    if labelled is None or len(labelled) != 2:
        raise InputError("M2 needs a labelled set: pass labelled=(x_labelled, y_labelled)")
    if y_test is None:
        raise InputError("M2 is scored by its test classification error: pass y_test")
    return {"n_labelled": labelled[0]}


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    name: str              # as metrics.json and the checkpoint record name it
    train_step: object
    eval_terms: object
    inputs: object
    extra_images: tuple = ()
    iw: bool = False


MODELS = {VAEConfig: Model("vae", vae_step, vae_terms, vae_inputs, iw=True),
          AEConfig: Model("ae", ae_step, ae_terms, lambda *a: {}),
          M2Config: Model("m2", m2_step, m2_terms, m2_inputs, extra_images=("x_labelled",)),
          SparseAEConfig: Model("sparse_ae", sparse_ae_step, ae_terms, lambda *a: {})}


def for_config(config, fast=True) -> Model:
    """The adapter of config's class: VAEConfig (the VAE, or with n_classes the CVAE), AEConfig, M2Config;
    fast: the VAE's step on the fast path where it applies, with a workspace of its own (tinyvae/fast/step.py)."""
    model = MODELS.get(type(config))
    if model is None:
        raise InputError(f"fit trains a VAEConfig, AEConfig, SparseAEConfig or M2Config, got {type(config).__name__}")
    return fast_model(model, vae_step) if fast else model
