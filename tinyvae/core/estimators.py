"""Two estimators of the ELBO's gradient: the pathwise one (the reparameterization trick) and the score function.

Only the expectation of the reconstruction term is estimated; the KL keeps its
closed form. With S samples per image, eps (S, N, L) passed in, and
z_sn = mu_n + sigma_n eps_sn, recon(z) = -log p(x | z):

    pathwise        d/dphi E_q[recon] ~= 1/S sum_s  d recon(z_sn)/dz  dz_sn/dphi
    score function  d/dphi E_q[recon] ~= 1/S sum_s (recon(z_sn) - b_sn) d/dphi log q(z_sn | x_n),  z_sn held fixed

Both are unbiased; the score function needs no slope of recon, only its values,
and pays for it in variance. b_sn is a baseline that must not depend on z_sn:
'none' (0), 'batch' (the mean of recon over every other sample of the batch) or
'loo' (over the image's other S - 1 samples). The decoder's gradient is the same
for both: mean_s d recon(z_sn)/d theta. The plain VAE with the Bernoulli
likelihood (the shell refuses others).
Derivation: docs/estimators.md#the-score-function-identity
"""
from __future__ import annotations

from dataclasses import dataclass

from .distributions import (LOG_2PI, bernoulli_nll_backward, bernoulli_nll_forward, kl_normal_backward,
                            kl_normal_forward, reparameterize_backward, reparameterize_forward)
from .nets import net_backward, net_forward
from .xp import device_of, namespace_of

ESTIMATORS = ("pathwise", "score")
BASELINES = ("none", "batch", "loo")


def log_q_forward(z, mu, logvar):
    """log q(z) = log N(z; mu, e^logvar), summed over latent dimensions, at a z that is held fixed.

    With u = (z - mu) / sigma, sigma = exp(logvar / 2):  log q = -1/2 sum_j [log 2 pi + logvar_j + u_j^2].
    Shapes: z, mu, logvar (M, L) -> (M,).
    Derivation: docs/estimators.md#the-score-of-a-gaussian
    """
    xp = namespace_of(z)
    inv_std = xp.exp(-0.5 * logvar)                 # 1 / sigma, (M, L)
    u = (z - mu) * inv_std                          # eps itself when z = mu + sigma eps, (M, L)
    return -0.5 * xp.sum(LOG_2PI + logvar + u * u, axis=1), (u, inv_std)


def log_q_backward(dlogq, cache):
    """The score of q: dmu = (z - mu) / sigma^2 = u / sigma;  dlogvar = (u^2 - 1) / 2;  dz = -dmu.

    Each row scaled by its dlogq. Shapes: dlogq (M,) -> dz, dmu, dlogvar (M, L).
    Derivation: docs/estimators.md#the-score-of-a-gaussian
    """
    u, inv_std = cache
    w = dlogq[:, None]                              # (M, 1)
    dmu = u * inv_std * w                           # (z - mu) / sigma^2
    return -dmu, dmu, 0.5 * (u * u - 1.0) * w


def loo_mean(f, axis):
    """Leave-one-out mean along `axis`: each entry gets the mean of the others, b_i = (sum_j f_j - f_i) / (n - 1).

    No entry's own value enters its mean, so b_i is independent of the sample f_i came from.
    Shapes: f (..., n, ...) with n >= 2 -> the same shape.
    """
    xp = namespace_of(f)
    n = f.shape[axis]
    return (xp.sum(f, axis=axis, keepdims=True) - f) / (n - 1)


def baseline_values(recon, kind):
    """b_sn for recon (S, N): 0 ('none'), the mean of every other sample of the batch ('batch'),
    or of the image's other samples ('loo'). Shapes: (S, N) -> (S, N).
    Derivation: docs/estimators.md#baselines
    """
    xp = namespace_of(recon)
    if kind == "loo":
        return loo_mean(recon, axis=0)                                            # over s, per image
    if kind == "batch":
        return xp.reshape(loo_mean(xp.reshape(recon, (1, -1)), axis=1), recon.shape)  # over all S N
    return xp.zeros_like(recon)


def tile(a, S):
    """(N, K) -> (S N, K), sample-major: row s N + n is a[n]."""
    xp = namespace_of(a)
    return xp.reshape(xp.broadcast_to(a[None, ...], (S, *a.shape)), (S * a.shape[0], *a.shape[1:]))


def sum_samples(a, S):
    """(S N, K) -> (N, K): the S rows of each image added up (tile's adjoint)."""
    xp = namespace_of(a)
    return xp.sum(xp.reshape(a, (S, -1, a.shape[1])), axis=0)


@dataclass
class EstimateParts:
    """The S-sample -ELBO and its two terms (0-d, nats per image), and the estimated dL/dmu, dL/dlogvar (N, L)."""

    loss: object
    recon: object
    kl: object
    dmu: object
    dlogvar: object


def loss_and_grads(params, x, eps, config, estimator="score", baseline="none"):
    """The negative ELBO on S samples per image, and every parameter's gradient by one of the two estimators.

    L = mean_{s,n} recon(z_sn) + mean_n KL(q(z | x_n) || N(0, I)),  z_sn = mu_n + sigma_n eps_sn.
    estimator 'pathwise': through z (S = 1 is core.vae.loss_and_grads); 'score': z held fixed,
    each sample's (recon - b) weighting the score of q, with baseline b ('none', 'batch', 'loo').
    Shapes: x (N, D), eps (S, N, L) -> (EstimateParts, grads keyed like params).
    Derivation: docs/estimators.md#the-score-function-identity
    """
    xp, (S, N, L) = namespace_of(x), eps.shape
    # ---------------- forward, top to bottom ----------------
    # 1. encoder: x -> head = [mu | logvar], once per image           (N, 2L)
    head, enc_caches = net_forward(params, "enc", config.encoder_layers, x)
    mu, logvar = head[:, :L], head[:, L:]                              # (N, L) each
    # 2. S samples per image, row s N + n: z = mu_n + sigma_n eps_sn  (S N, L)
    mu_s, logvar_s = tile(mu, S), tile(logvar, S)
    z, z_cache = reparameterize_forward(mu_s, logvar_s, xp.reshape(eps, (S * N, L)))
    # 3. decoder on every sample                                       (S N, D)
    out, dec_caches = net_forward(params, "dec", config.decoder_layers, z)
    # 4. each sample's reconstruction term                             (S N,)
    recon, recon_cache = bernoulli_nll_forward(out, tile(x, S))
    # 5. KL, closed form                                               (N,)
    kl, kl_cache = kl_normal_forward(mu, logvar)
    # 6. loss: recon averaged over samples and images, plus the mean KL    ()
    recon_mean, kl_mean = xp.mean(recon), xp.mean(kl)
    # ---------------- backward, bottom to top ----------------
    grads = {}
    # undo 6: each sample's recon gets 1 / (S N), each image's KL 1 / N
    drecon = xp.full((S * N,), 1.0 / (S * N), dtype=x.dtype, device=device_of(x))
    dkl = xp.full((N,), 1.0 / N, dtype=x.dtype, device=device_of(x))
    # undo 4: -log p(x | out) -> dout                                  (S N, D)
    dout = bernoulli_nll_backward(drecon, recon_cache)
    if estimator == "pathwise":
        # undo 3 down to z, then 2: the chain through the sample        (S N, L)
        dz = net_backward(dout, dec_caches, "dec", config.decoder_layers, grads)
        dmu_s, dlogvar_s = reparameterize_backward(dz, z_cache)
    else:
        # undo 3 for the decoder's weights only: z is a constant to the score estimator
        net_backward(dout, dec_caches, "dec", config.decoder_layers, grads, need_dx=False)
        # the score at the fixed z, each sample weighted by (recon - b) / (S N)   (S N, L)
        b = baseline_values(xp.reshape(recon, (S, N)), baseline)                # (S, N)
        _, q_cache = log_q_forward(z, mu_s, logvar_s)
        _, dmu_s, dlogvar_s = log_q_backward((recon - xp.reshape(b, (S * N,))) * drecon, q_cache)
    # the S samples of an image share its mu and logvar: add their shares   (N, L)
    dmu_r, dlogvar_r = sum_samples(dmu_s, S), sum_samples(dlogvar_s, S)
    # undo 5: the KL's share                                           (N, L)
    dmu_kl, dlogvar_kl = kl_normal_backward(dkl, kl_cache)
    dmu, dlogvar = dmu_r + dmu_kl, dlogvar_r + dlogvar_kl
    # undo 1: the head split, then the encoder layers; fills enc.*
    net_backward(xp.concat([dmu, dlogvar], axis=1), enc_caches, "enc", config.encoder_layers, grads,
                 need_dx=False)
    return EstimateParts(recon_mean + kl_mean, recon_mean, kl_mean, dmu, dlogvar), grads
