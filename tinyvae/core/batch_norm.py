"""Batch normalisation (Ioffe and Szegedy 2015) as a forward/backward pair, and its layer spec.

Per channel c (the last axis), over the M values of the batch (N rows of a dense layer's
output, N * H * W positions of a conv's):

    y = gamma * xhat + beta,   xhat = (x - mu) / sqrt(var + eps),   mu, var the batch's mean and
    biased variance;  dx = inv * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),  dxhat = dy * gamma

The statistics are always this batch's (no running averages), at sampling too; tinyvae allows the
layer only in a GAN's generator (checks.networks_fit). Derivation: docs/gradients.md#batch-normalisation
"""
from __future__ import annotations

from dataclasses import dataclass

from ..checks import Checked, OneOf
from .layers import ACTIVATIONS
from .xp import namespace_of


def batch_norm_forward(x, gamma, beta, eps=1e-5):
    """Batch normalisation (Ioffe and Szegedy 2015), with the statistics of this batch:
    y = gamma * xhat + beta, xhat = (x - mu) / sqrt(var + eps), mu and var (biased) per channel over
    every axis but the last (the batch, and the image's rows and columns for a conv's output).

    Shapes: x (N, C) or (N, H, W, C), gamma (C,), beta (C,) -> y like x.
    Derivation: docs/gradients.md#batch-normalisation
    """
    xp = namespace_of(x)
    axes = tuple(range(x.ndim - 1))                          # all but the channels
    mu = xp.mean(x, axis=axes)                               # (C,)
    xc = x - mu                                              # like x
    inv = 1.0 / xp.sqrt(xp.mean(xc * xc, axis=axes) + eps)   # (C,), 1 / sqrt(var + eps)
    xhat = xc * inv                                          # like x
    return gamma * xhat + beta, (xhat, gamma, inv)


def batch_norm_backward(dy, cache):
    """dxhat = dy gamma;  dx = inv (dxhat - mean(dxhat) - xhat mean(dxhat xhat)),  the means per
    channel as in the forward (mu and var depend on every x of the channel: the last two terms);
    dgamma = sum dy xhat,  dbeta = sum dy.

    Shapes: dy like x -> dx like x, dgamma (C,), dbeta (C,). Derivation: docs/gradients.md#batch-normalisation
    """
    xhat, gamma, inv = cache
    xp = namespace_of(dy)
    axes = tuple(range(dy.ndim - 1))
    dxhat = dy * gamma                                                     # like x
    dx = inv * (dxhat - xp.mean(dxhat, axis=axes) - xhat * xp.mean(dxhat * xhat, axis=axes))
    return dx, xp.sum(dy * xhat, axis=axes), xp.sum(dy, axis=axes)


@dataclass(frozen=True)
class BatchNorm(Checked):
    """x (N, C) or (N, H, W, C) -> act(gamma * (x - mu) / sqrt(var + eps) + beta), the same shape; mu and var
    per channel from this batch, at sampling too (no running averages). Params: gamma (C,) from 1, beta (C,) from 0.

    Put it after a linear Dense or Conv, moving the activation here: Dense(H), BatchNorm("relu").
    """

    activation: str = "linear"
    PARAMS, KIND = ("gamma", "beta"), "batch_norm"
    RULES = dict(activation=OneOf(ACTIVATIONS))
    LABEL = "{cls} {field}"

    def shapes(self, in_shape):
        return {"gamma": (in_shape[-1],), "beta": (in_shape[-1],)}, tuple(in_shape)

    def forward(self, p, x):
        y, bn_cache = batch_norm_forward(x, p["gamma"], p["beta"])
        y, act_cache = ACTIVATIONS[self.activation][0](y)
        return y, (bn_cache, act_cache)

    def backward(self, dy, cache, need_dx=True):
        bn_cache, act_cache = cache
        dy = ACTIVATIONS[self.activation][1](dy, act_cache)
        dx, dgamma, dbeta = batch_norm_backward(dy, bn_cache)
        return dx, {"gamma": dgamma, "beta": dbeta}
