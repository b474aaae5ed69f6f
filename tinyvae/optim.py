"""Optimizers written by hand. They update parameters in place and keep their
state in plain dicts of arrays, so a checkpoint can save and restore it.

Both take `params` and `grads` as dicts with the same keys (see model.py).
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

    The update is computed as lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps),
    the same numbers with no extra array.
    """

    def __init__(self, params: dict, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        self.lr, self.eps = float(lr), float(eps)
        self.b1, self.b2 = (float(b) for b in betas)
        self.t = 0
        self.m = {k: namespace_of(p).zeros_like(p) for k, p in params.items()}
        self.v = {k: namespace_of(p).zeros_like(p) for k, p in params.items()}

    def step(self, params: dict, grads: dict):
        self.t += 1
        step_size = self.lr / (1.0 - self.b1 ** self.t)   # lr / (1 - b1^t)
        sqrt_c2 = math.sqrt(1.0 - self.b2 ** self.t)       # sqrt(1 - b2^t)
        for k, p in params.items():
            xp = namespace_of(p)
            g, m, v = grads[k], self.m[k], self.v[k]
            m *= self.b1
            m += (1.0 - self.b1) * g
            v *= self.b2
            v += (1.0 - self.b2) * (g * g)
            p -= step_size * m / (xp.sqrt(v) / sqrt_c2 + self.eps)

    def state_dict(self) -> dict:
        return {"t": self.t, "m": self.m, "v": self.v}

    def load_state_dict(self, state: dict):
        self.t = int(state["t"])
        self.m, self.v = dict(state["m"]), dict(state["v"])
