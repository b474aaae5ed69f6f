"""Optimizers written by hand. They update parameters in place and keep their
state in plain dicts of arrays, so a checkpoint can save and restore it.

Both take `params` and `grads` as dicts with the same keys (see vae.py).
Derivations and the bias-correction argument: docs/optimizers.md.

`step` reads as the formulas, one line each, and that is what runs on
array-api-strict. With `fast=True` (the default) the same arithmetic runs as
one compiled loop over the elements on NumPy when Numba is installed, and as
one CUDA kernel per parameter on CuPy (fused.py): the same numbers, bit for
bit. `fast=False` runs the lines below everywhere.
"""
from __future__ import annotations

import math
import numbers

from .backend import namespace_of
from .errors import InputError
from .fused import fusable, fused_adam, fused_sgd


def _number(value, name, low, high, low_open=False, fix=""):
    """`value` as a float, or one InputError if it is no real number in [low, high) (or (low, high))."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and value < high
    if not ok:
        if math.isinf(high):
            where = f"a finite number {'>' if low_open else '>='} {low:g}"
        else:
            where = f"a number in {'(' if low_open else '['}{low:g}, {high:g})"
        raise InputError(f"{name} must be {where}, got {value!r}: {fix}")
    return float(value)


class SGD:
    """Stochastic gradient descent with (heavy-ball) momentum.

        v <- momentum * v + g
        p <- p - lr * v

    With momentum = 0 this is plain p <- p - lr * g. lr > 0, 0 <= momentum < 1.
    fast: run these lines as one compiled loop (NumPy with Numba installed) or
    one CUDA kernel (CuPy), fused.py, the same numbers bit for bit; False runs
    the lines below.
    """

    def __init__(self, params: dict, lr=1e-2, momentum=0.9, fast=True):
        self.lr = _number(lr, "SGD lr", 0.0, math.inf, low_open=True, fix="pass e.g. lr=0.01")
        self.momentum = _number(momentum, "SGD momentum", 0.0, 1.0, fix="pass e.g. momentum=0.9, or 0 for none")
        self.velocity = {k: namespace_of(p).zeros_like(p) for k, p in params.items()}
        self.fast = bool(fast)

    def step(self, params: dict, grads: dict):
        if self.fast and fusable(params, grads, self.velocity):
            fused_sgd(params, grads, self.velocity, self.lr, self.momentum)  # the lines below, compiled
            return
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

    lr > 0, both betas in [0, 1), eps > 0. fast: run these lines as one
    compiled loop (NumPy with Numba installed) or one CUDA kernel (CuPy),
    fused.py, the same numbers bit for bit; False runs the lines below.
    docs/optimizers.md#the-fast-path-on-numpy
    """

    def __init__(self, params: dict, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, fast=True):
        self.lr = _number(lr, "Adam lr", 0.0, math.inf, low_open=True, fix="pass e.g. lr=1e-3")
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise InputError(f"Adam betas must be a pair (b1, b2), got {betas!r}: "
                             "pass e.g. betas=(0.9, 0.999)") from None
        self.b1 = _number(b1, "Adam betas[0]", 0.0, 1.0, fix="pass e.g. betas=(0.9, 0.999)")
        self.b2 = _number(b2, "Adam betas[1]", 0.0, 1.0, fix="pass e.g. betas=(0.9, 0.999)")
        self.eps = _number(eps, "Adam eps", 0.0, math.inf, low_open=True, fix="pass e.g. eps=1e-8")
        self.t = 0
        self.m = {k: namespace_of(p).zeros_like(p) for k, p in params.items()}
        self.v = {k: namespace_of(p).zeros_like(p) for k, p in params.items()}
        self.fast = bool(fast)

    def step(self, params: dict, grads: dict):
        self.t += 1
        b1, b2 = self.b1, self.b2
        sqrt_c2 = math.sqrt(1.0 - b2 ** self.t)               # sqrt(1 - b2^t)
        lr_t = self.lr * sqrt_c2 / (1.0 - b1 ** self.t)       # lr sqrt(1 - b2^t) / (1 - b1^t)
        eps_t = self.eps * sqrt_c2                            # eps sqrt(1 - b2^t)
        if self.fast and fusable(params, grads, self.m, self.v):
            fused_adam(params, grads, self.m, self.v, b1, b2, lr_t, eps_t)  # the lines below, compiled
            return
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
