"""The random cases an exercise is checked on: each one the arguments of the learner's function,
the names of what it returns, and the finite-difference gradient those outputs must equal.

Every case is float64 NumPy, drawn from a seeded generator; the noise (eps) is one of the
forward's inputs, drawn once and left out of the differentiation: frozen.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..gradcheck import numerical_gradient


@dataclass
class Trial:
    """One case: fn(*args) must return the outputs `names`.

    numeric() -> the finite-difference value of each output (None where there is none, as for
    Adam's update). baseline: {output index: array} subtracted from that output before comparing
    (Adam's p, so that the step p_new - p is what is measured). forward_args: the given forward's
    arguments, to run the stub's copy of it.
    """

    args: tuple
    names: tuple
    numeric: Callable | None
    size: str
    forward_args: tuple = ()
    baseline: dict = field(default_factory=dict)


def normal(rng, *shape, scale=1.0):
    return scale * rng.standard_normal(shape)


def pair_trial(forward, inputs, wrt, names, rng, size, extra=(), spread=False):
    """A case of a forward/backward pair: out, cache = forward(*inputs, *extra); the learner gets (dout, cache).

    f = sum(out * dout) for a random dout: its gradient with respect to input i (i in `wrt`) is
    what the backward must return, in that order. spread: call with (dout, *cache) instead.
    """
    out, cache = forward(*inputs, *extra)
    dout = np.asarray(rng.standard_normal(np.shape(out)))

    def numeric():
        grads = []
        for i in wrt:
            def f(xi, i=i):
                args = list(inputs)
                args[i] = xi
                return np.sum(forward(*args, *extra)[0] * dout)
            grads.append(numerical_gradient(f, np.array(inputs[i], copy=True)))
        return grads

    return Trial((dout, *cache) if spread else (dout, cache), tuple(names), numeric, size, (*inputs, *extra))


def chain_trial(forward, params, data, rng, size):
    """A case of the whole chain: recon, kl, cache = forward(params, *data); the learner gets
    (drecon, dkl, cache, config) and returns {name: gradient} for every parameter."""
    recon, kl, cache = forward(params, *data)
    drecon, dkl = rng.standard_normal(recon.shape), rng.standard_normal(kl.shape)
    names = tuple(params)

    def numeric():
        q = {k: np.array(v, copy=True) for k, v in params.items()}

        def f(_):
            r, k, _ = forward(q, *data)
            return np.sum(r * drecon) + np.sum(k * dkl)
        return [numerical_gradient(f, q[name]) for name in names]

    config = data[2]
    return Trial((drecon, dkl, cache, config), names, numeric, size, (params, *data))
