"""The probabilistic pieces of the ELBO, as forward/backward pairs.

Conventions, once for the whole package: ``logvar`` is log sigma^2, always. The
likelihood terms are *negative* log-likelihoods summed over each image's pixels, and
the KL is summed over latent dimensions: shape (N,), nats per image. Randomness is an
argument: the sampler takes ``eps``, so forward and backward see the same noise.
Derivations: docs/gradients.md.
"""
from __future__ import annotations

import math

from .xp import namespace_of
from .layers import softplus

LOG_2PI = math.log(2.0 * math.pi)


def bernoulli_nll_forward(logits, x):
    """Bernoulli negative log-likelihood from logits, summed over pixels.

    With p = sigma(a):  -log p(x | a) = -[x log p + (1 - x) log(1 - p)]
                                      = softplus(a) - x a,
    which is finite for every logit a (no log(0), no overflow at |a| = 1e4).
    x may be any value in [0, 1] (continuous pixels) or {0, 1} (binarized).

    Shapes: logits (N, D), x (N, D) -> nll (N,).
    Derivation: docs/gradients.md#bernoulli
    """
    xp = namespace_of(logits)
    softplus_a = softplus(logits)                      # (N, D), kept for the backward
    nll = xp.sum(softplus_a - x * logits, axis=1)      # (N,)
    return nll, (logits, x, softplus_a)


def bernoulli_nll_backward(dnll, cache):
    """d nll / d a = sigma(a) - x, per pixel, scaled by each image's dnll.

    Shapes: dnll (N,) -> dlogits (N, D).
    Derivation: docs/gradients.md#bernoulli
    """
    logits, x, softplus_a = cache
    xp = namespace_of(logits)
    # sigma(a) = exp(a - softplus(a)), as log sigma(a) = a - softplus(a); the exponent is <= 0,
    # and the forward's softplus is reused (docs/benchmarks.md#what-was-tried).
    p = xp.exp(logits - softplus_a)  # sigma(a), (N, D)
    return (p - x) * dnll[:, None]  # (N, D)


def gaussian_nll_forward(mean, logvar, x):
    """Gaussian negative log-likelihood, summed over pixels.

    -log N(x; m, e^v) = 1/2 [ log 2 pi + v + (x - m)^2 e^-v ]   per pixel.

    `logvar` (v) may be per pixel and per image (N, D), or one value per pixel
    shared by all images (D,), learned or fixed.
    Shapes: mean (N, D), logvar (N, D) or (D,), x (N, D) -> nll (N,).
    Derivation: docs/gradients.md#gaussian
    """
    xp = namespace_of(mean)
    inv_var = xp.exp(-logvar)          # e^-v, shape of logvar
    r = x - mean                       # (N, D) residual
    nll = 0.5 * xp.sum(LOG_2PI + logvar + r * r * inv_var, axis=1)  # (N,)
    return nll, (r, inv_var, logvar.ndim)


def gaussian_nll_backward(dnll, cache):
    """dmean = -(x - m) e^-v;  dlogvar = 1/2 [1 - (x - m)^2 e^-v].

    Shapes: dnll (N,) -> dmean (N, D), dlogvar (N, D) or (D,) (summed over
    images when the variance is shared).
    Derivation: docs/gradients.md#gaussian
    """
    r, inv_var, logvar_ndim = cache
    xp = namespace_of(r)
    w = dnll[:, None]                              # (N, 1)
    dmean = -r * inv_var * w                       # (N, D)
    dlogvar = 0.5 * (1.0 - r * r * inv_var) * w    # (N, D)
    if logvar_ndim == 1:
        dlogvar = xp.sum(dlogvar, axis=0)          # (D,) shared over images
    return dmean, dlogvar


def reparameterize_forward(mu, logvar, eps):
    """The reparameterized sample z = mu + exp(logvar / 2) * eps.

    exp(logvar / 2) is sigma, the standard deviation (logvar is log sigma^2).
    eps ~ N(0, I) is drawn by the caller and passed in.
    Shapes: mu, logvar, eps (N, L) -> z (N, L).
    Derivation: docs/gradients.md#reparameterization
    """
    xp = namespace_of(mu)
    std = xp.exp(0.5 * logvar)  # sigma, (N, L)
    return mu + std * eps, (std, eps)


def reparameterize_backward(dz, cache):
    """dmu = dz;  dlogvar = dz * eps * sigma / 2  (d sigma / d logvar = sigma / 2).

    Shapes: dz (N, L) -> dmu (N, L), dlogvar (N, L).
    Derivation: docs/gradients.md#reparameterization
    """
    std, eps = cache
    return dz, 0.5 * dz * eps * std


def kl_normal_forward(mu, logvar):
    """Closed-form KL( N(mu, e^logvar) || N(0, I) ), summed over latent dimensions.

    KL = 1/2 sum_j ( mu_j^2 + e^{logvar_j} - 1 - logvar_j )  >= 0,
    and exactly 0 at mu = 0, logvar = 0.
    Shapes: mu, logvar (N, L) -> kl (N,).
    Derivation: docs/gradients.md#kl
    """
    xp = namespace_of(mu)
    var = xp.exp(logvar)
    kl = 0.5 * xp.sum(mu * mu + var - 1.0 - logvar, axis=1)  # (N,)
    return kl, (mu, var)


def kl_normal_backward(dkl, cache):
    """dmu = mu;  dlogvar = (e^logvar - 1) / 2;  each scaled by its image's dkl.

    Shapes: dkl (N,) -> dmu (N, L), dlogvar (N, L).
    Derivation: docs/gradients.md#kl
    """
    mu, var = cache
    w = dkl[:, None]  # (N, 1)
    return mu * w, 0.5 * (var - 1.0) * w


def normal_logpdf(z, mu, logvar):
    """log N(z; mu, e^logvar), summed over the last axis. Shapes: (..., L) -> (...).

    Used by the importance-weighted bound, for log p(z) (no gradient needed).
    """
    xp = namespace_of(z)
    r = z - mu
    return -0.5 * xp.sum(LOG_2PI + logvar + r * r * xp.exp(-logvar), axis=-1)
