"""Optimizers written by hand. They update parameters in place and keep their
state in plain dicts of arrays, so a checkpoint can save and restore it.

Both take `params` and `grads` as dicts with the same keys (see vae.py).
Derivations and the bias-correction argument: docs/optimizers.md.
"""
from __future__ import annotations

import math

from .backend import namespace_of


class SGD:
    """Stochastic gradient descent with (heavy-ball) momentum.

        v <- momentum * v + g
        p <- p - lr * v

    With momentum = 0 this is plain p <- p - lr * g.
    """

    def __init__(self, params: dict, lr=1e-2, momentum=0.9):
        self.lr, self.momentum = float(lr), float(momentum)
        self.velocity = {k: namespace_of(p).zeros_like(p) for k, p in params.items()}

    def step(self, params: dict, grads: dict):
        for k, p in params.items():
            v = self.velocity[k]
            v *= self.momentum
            v += grads[k]
            p -= self.lr * v

    def state_dict(self) -> dict:
        return {"velocity": self.velocity}

    def load_state_dict(self, state: dict):
        self.velocity = dict(state["velocity"])


class Adam:
    """Adam (Kingma & Ba, 2015, Algorithm 1).

        m <- b1 m + (1 - b1) g                 first moment
        v <- b2 v + (1 - b2) g^2               second moment
        m_hat = m / (1 - b1^t),  v_hat = v / (1 - b2^t)    bias correction
        p <- p - lr * m_hat / (sqrt(v_hat) + eps)

    The update is computed in the form that folds both corrections into two
    scalars, the same numbers to rounding (multiply the top and the bottom of
    the fraction by sqrt(1 - b2^t)); fewer passes over each parameter:

        p <- p - lr_t * m / (sqrt(v) + eps_t),
        lr_t = lr sqrt(1 - b2^t) / (1 - b1^t),   eps_t = eps sqrt(1 - b2^t).
    """

    def __init__(self, params: dict, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        self.lr, self.eps = float(lr), float(eps)
        self.b1, self.b2 = (float(b) for b in betas)
        self.t = 0
        self.m = {k: namespace_of(p).zeros_like(p) for k, p in params.items()}
        self.v = {k: namespace_of(p).zeros_like(p) for k, p in params.items()}

    def step(self, params: dict, grads: dict):
        self.t += 1
        b1, b2 = self.b1, self.b2
        sqrt_c2 = math.sqrt(1.0 - b2 ** self.t)               # sqrt(1 - b2^t)
        lr_t = self.lr * sqrt_c2 / (1.0 - b1 ** self.t)       # lr sqrt(1 - b2^t) / (1 - b1^t)
        eps_t = self.eps * sqrt_c2                            # eps sqrt(1 - b2^t)
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
