"""Optimizers written by hand: SGD with momentum and Adam, their state in plain dicts of arrays.

`step` updates `params` in place from `grads`, one line per formula; with fast=True the same
arithmetic runs as one compiled loop or CUDA kernel (tinyvae/fast/optim.py), bit for bit.
Derivations and the bias-correction argument: docs/optimizers.md.
"""
from __future__ import annotations

import math

from ..checks import Pair, Real, run_rules
from ..fast.optim import fusable, fused_adam, fused_sgd
from .xp import namespace_of


class SGD:
    """Stochastic gradient descent with (heavy-ball) momentum; lr > 0, 0 <= momentum < 1.

        v <- momentum * v + g
        p <- p - lr * v
    """

    RULES = dict(lr=Real(0, low_open=True, fix="pass e.g. lr=0.01"),
                 momentum=Real(0, 1, high_open=True, fix="pass e.g. momentum=0.9, or 0 for none"))
    LABEL = "{cls} {field}"

    def __init__(self, params: dict, lr=1e-2, momentum=0.9, fast=True):
        self.lr, self.momentum, self.fast = lr, momentum, bool(fast)
        run_rules(self)
        self.velocity = {k: namespace_of(p).zeros_like(p) for k, p in params.items()}

    def step(self, params: dict, grads: dict):
        if self.fast and fusable(params, grads, self.velocity):
            return fused_sgd(params, grads, self.velocity, self.lr, self.momentum)  # the lines below, compiled
        for k, p in params.items():
            v = self.velocity[k]
            v *= self.momentum
            v += grads[k]                             # v <- momentum v + g
            p -= self.lr * v                          # p <- p - lr v

    def state_dict(self) -> dict:
        return {"velocity": self.velocity}

    def load_state_dict(self, state: dict):
        self.velocity = dict(state["velocity"])


class Adam:
    """Adam (Kingma & Ba, 2015, Algorithm 1); lr > 0, both betas in [0, 1), eps > 0.

        m <- b1 m + (1 - b1) g                 first moment
        v <- b2 v + (1 - b2) g^2               second moment
        m_hat = m / (1 - b1^t),  v_hat = v / (1 - b2^t)    bias correction
        p <- p - lr * m_hat / (sqrt(v_hat) + eps)

    computed with both corrections folded into two scalars (docs/optimizers.md#adam):
        p <- p - lr_t * m / (sqrt(v) + eps_t),  lr_t = lr sqrt(1 - b2^t) / (1 - b1^t),  eps_t = eps sqrt(1 - b2^t).
    """

    RULES = dict(lr=Real(0, low_open=True, fix="pass e.g. lr=1e-3"),
                 betas=Pair(Real(0, 1, high_open=True, fix="pass e.g. betas=(0.9, 0.999)")),
                 eps=Real(0, low_open=True, fix="pass e.g. eps=1e-8"))
    LABEL = "{cls} {field}"

    def __init__(self, params: dict, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, fast=True):
        self.lr, self.betas, self.eps, self.fast = lr, betas, eps, bool(fast)
        run_rules(self)
        self.b1, self.b2 = self.betas
        self.t = 0
        self.m = {k: namespace_of(p).zeros_like(p) for k, p in params.items()}
        self.v = {k: namespace_of(p).zeros_like(p) for k, p in params.items()}

    def step(self, params: dict, grads: dict):
        self.t += 1
        b1, b2 = self.b1, self.b2
        sqrt_c2 = math.sqrt(1.0 - b2 ** self.t)               # sqrt(1 - b2^t)
        lr_t = self.lr * sqrt_c2 / (1.0 - b1 ** self.t)       # lr sqrt(1 - b2^t) / (1 - b1^t)
        eps_t = self.eps * sqrt_c2                            # eps sqrt(1 - b2^t)
        if self.fast and fusable(params, grads, self.m, self.v):
            return fused_adam(params, grads, self.m, self.v, b1, b2, lr_t, eps_t)  # the lines below, compiled
        for k, p in params.items():
            xp = namespace_of(p)
            g, m, v = grads[k], self.m[k], self.v[k]
            m *= b1
            m += (1.0 - b1) * g                       # m <- b1 m + (1 - b1) g
            v *= b2
            v += (1.0 - b2) * g * g                   # v <- b2 v + (1 - b2) g^2
            p -= lr_t * m / (xp.sqrt(v) + eps_t)      # p <- p - lr m_hat / (sqrt(v_hat) + eps)

    def state_dict(self) -> dict:
        return {"t": self.t, "m": self.m, "v": self.v}

    def load_state_dict(self, state: dict):
        self.t = int(state["t"])
        self.m, self.v = dict(state["m"]), dict(state["v"])
