"""M2, the semi-supervised VAE of Kingma, Rezende, Mohamed & Welling (2014).

Three networks: a classifier q(y | x), an encoder q(z | x, y) and a decoder
p(x | y, z) (the conditional VAE of vae.py, so n_classes = K > 0). With
L(x, y) the conditional negative ELBO, -ELBO(x, y) = recon + KL, per image:

    labelled   (x, y):  L(x, y)
    unlabelled x:       U(x) = sum_y q(y | x) L(x, y) - H(q(y | x))
    loss = mean_l L(x_l, y_l) + mean_u U(x_u) + alpha * mean_l [-log q(y_l | x_l)]
           (+ balance * KL(mean_u q(y | x_u) || uniform), an option; 0 by default)

(p(y) uniform: its constant log K is left out of L, as it has no gradient.)
The unlabelled sum runs over every class by stacking rows: each labelled
image is one row with its label, each unlabelled image K rows, one per class,
so one pass of the shared per-image pair (vae.neg_elbo_forward/backward)
gives every L(x, y), and the rows then get their weights.
Derivation: docs/gradients.md#m2
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

from ..checks import Int, Layers, Real, Sizes
from .layers import log_softmax_backward, log_softmax_forward, one_hot
from .nets import mlp, net_backward, net_forward
from .vae import VAEConfig, neg_elbo_backward, neg_elbo_forward, neg_elbo_terms
from .xp import device_of, namespace_of


@dataclass(frozen=True)
class M2Config(VAEConfig):
    """A conditional VAEConfig (n_classes = K, default 10) plus the classifier q(y | x) and alpha.

    classifier: layer specs mapping (D,) to (K,) logits; None: the MLP of
    cls_hidden with `activation`, ending in Dense(K).
    alpha: weight of the labelled cross-entropy, which multiplies its mean over the
    labelled batch (the paper uses 0.1 N for its summed objective; with means, see
    docs/semi_supervised.md).
    balance: weight of KL(mean_u q(y | x_u) || uniform), which asks the
    classifier to use every class as often over a step's unlabelled images as
    the uniform p(y) says; 0, the default, is the paper's M2
    (docs/semi_supervised.md#class-balance).
    """

    n_classes: int = 10
    cls_hidden: tuple = (500,)
    classifier: tuple | None = None
    alpha: float = 0.1
    balance: float = 0.0

    RULES = {**VAEConfig.RULES, **dict(
        n_classes=Int(2, say="M2 needs n_classes >= 2, got {value!r}"), cls_hidden=Sizes(), classifier=Layers(),
        alpha=Real(0, fix="0.1 weighs the labelled cross-entropy as the paper does"),
        balance=Real(0, fix="0 is the paper's M2"))}

    @cached_property
    def classifier_layers(self) -> tuple:
        return self.classifier if self.classifier is not None else mlp(self.cls_hidden, self.n_classes,
                                                                       self.activation)

    def networks(self) -> dict:
        return {**super().networks(), "cls": (self.classifier_layers, (self.input_dim,), (self.n_classes,))}


@dataclass
class M2Parts:
    """The loss and its parts, nats per image (0-d backend arrays).

    labelled: mean_l L(x_l, y_l); unlabelled: mean_u U(x_u); ce: mean_l -log q(y_l | x_l);
    class_kl: KL(mean_u q(y | x_u) || uniform), how unevenly the step's unlabelled
    images are spread over the classes (computed whatever the balance weight).
    loss = labelled + unlabelled + alpha * ce + balance * class_kl.
    """

    loss: object
    labelled: object
    unlabelled: object
    ce: object
    class_kl: object


def classify(params, x, config: M2Config):
    """log q(y | x), (N, K)."""
    logits, _ = net_forward(params, "cls", config.classifier_layers, x)
    return log_softmax_forward(logits)[0]


def rows(x_l, y_l, x_u, K):
    """The stacked rows: (X, Y), each labelled image with its label, then each unlabelled image K times.

    Shapes: x_l (Nl, D), y_l (Nl,) ints, x_u (Nu, D) -> X (Nl + Nu K, D), Y (Nl + Nu K, K) one-hot.
    Row Nl + u K + k is unlabelled image u with class k.
    """
    xp = namespace_of(x_l)
    Nu = x_u.shape[0]
    eye = one_hot(xp.arange(K, device=device_of(x_l)), K, like=x_l)         # (K, K)
    X = xp.concat([x_l, xp.repeat(x_u, K, axis=0)], axis=0)                  # (R, D)
    Y = xp.concat([one_hot(y_l, K, like=x_l), xp.tile(eye, (Nu, 1))], axis=0)  # (R, K)
    return X, Y


def loss_and_grads(params: dict, x_l, y_l, x_u, eps, config: M2Config, beta=1.0):
    """M2 on a labelled batch (x_l, y_l) and an unlabelled batch x_u, and every parameter gradient.

    loss = mean_l L(x_l, y_l) + mean_u [sum_y pi_uy (L(x_u, y) + log pi_uy)] + alpha mean_l [-log pi_l,y_l]
           + balance sum_y pibar_y (log pibar_y + log K),  pibar = mean_u pi_u,
    pi = q(y | x), L = recon + beta KL. Shapes: x_l (Nl, D), y_l (Nl,) integer
    labels, x_u (Nu, D), eps (Nl + Nu K, L), one row per stacked row (see `rows`).
    Returns (M2Parts, grads). Derivation: docs/gradients.md#m2 and #the-class-balance-term
    """
    xp = namespace_of(x_l)
    K, Nl, Nu = config.n_classes, x_l.shape[0], x_u.shape[0]
    X, Y = rows(x_l, y_l, x_u, K)

    # ---------------- forward, top to bottom ----------------
    # 1. classifier: log q(y | x) on both batches                      (Nl + Nu, K)
    logits, cls_caches = net_forward(params, "cls", config.classifier_layers, xp.concat([x_l, x_u], axis=0))
    log_pi, sm_cache = log_softmax_forward(logits)
    log_pi_l, log_pi_u = log_pi[:Nl, :], log_pi[Nl:, :]                 # (Nl, K), (Nu, K)
    pi_u = xp.exp(log_pi_u)                                              # (Nu, K)
    # 2. every row's conditional -ELBO (rows stacked above), beta-weighted   (R,)
    recon, kl, elbo_cache = neg_elbo_forward(params, X, eps, config, Y)
    L_row = recon + beta * kl
    L_l, L_u = L_row[:Nl], xp.reshape(L_row[Nl:], (Nu, K))              # (Nl,), (Nu, K)
    # 3. the three terms; the entropy from log pi, never 0 * log 0
    labelled = xp.mean(L_l)
    unlabelled = xp.mean(xp.sum(pi_u * (L_u + log_pi_u), axis=1))        # E_q[L] - H(q)
    Y_l = Y[:Nl, :]                                                      # (Nl, K)
    ce = -xp.mean(xp.sum(Y_l * log_pi_l, axis=1))
    # 3b. the class balance over the unlabelled batch: KL(pibar || uniform), log pibar
    #     by log-sum-exp over the images, so a class no image picks gives 0 * (finite)
    top = xp.max(log_pi_u, axis=0)                                       # (K,)
    log_pibar = top + xp.log(xp.mean(xp.exp(log_pi_u - top), axis=0))    # log mean_u pi_u, (K,)
    pibar = xp.exp(log_pibar)                                            # (K,)
    class_kl = xp.sum(pibar * log_pibar) + math.log(K)
    # 4. loss
    loss = labelled + unlabelled + config.alpha * ce + config.balance * class_kl

    # ---------------- backward, bottom to top ----------------
    # undo 4 and 3: each row's weight on its L, and dloss/dlog pi
    #   labelled row: 1/Nl; unlabelled row (u, y): pi_uy / Nu
    w = xp.concat([xp.full((Nl,), 1.0 / Nl, dtype=x_l.dtype, device=device_of(x_l)),
                   xp.reshape(pi_u, (-1,)) / Nu])                        # (R,)
    #   d[pi (L + log pi)]/dlog pi = pi (L + log pi) + pi, as pi = e^{log pi}
    dlog_pi_u = pi_u * (L_u + log_pi_u + 1.0) / Nu                       # (Nu, K)
    #   d class_kl / d pibar_y = log pibar_y + 1, and d pibar_y / d log pi_uy = pi_uy / Nu
    if config.balance:
        dlog_pi_u = dlog_pi_u + config.balance * pi_u * (log_pibar + 1.0) / Nu
    dlog_pi_l = -config.alpha * Y_l / Nl                                 # (Nl, K)
    # undo 2: every row's chain, recon weighted by w and KL by beta w; fills enc.*, dec.*
    grads = neg_elbo_backward(w, w if beta == 1.0 else beta * w, elbo_cache, config)
    # undo 1: the log-softmax, then the classifier; its input is data; fills cls.*
    dlogits = log_softmax_backward(xp.concat([dlog_pi_l, dlog_pi_u], axis=0), sm_cache)
    net_backward(dlogits, cls_caches, "cls", config.classifier_layers, grads, need_dx=False)
    return M2Parts(loss, labelled, unlabelled, ce, class_kl), grads


def unlabelled_neg_elbo(params, x, eps, config: M2Config):
    """-ELBO of x with y a latent variable, p(y) uniform: sum_y pi_y (L(x, y) + log pi_y) + log K, (N,).

    eps (N K, L), one row per (image, class) as in `rows`. Nats per image.
    """
    xp = namespace_of(x)
    K, N = config.n_classes, x.shape[0]
    log_pi = classify(params, x, config)                                      # (N, K)
    X, Y = rows(x[:0, :], xp.zeros((0,), dtype=xp.int64, device=device_of(x)), x, K)
    recon, kl = neg_elbo_terms(params, X, eps, config, Y)
    L_u = xp.reshape(recon + kl, (N, K))
    return xp.sum(xp.exp(log_pi) * (L_u + log_pi), axis=1) + math.log(K)
