"""Finite-difference gradient checks: the proof that every backward is right.

The centred difference

    df/dx_i ~= ( f(x + h e_i) - f(x - h e_i) ) / (2 h)

has error O(h^2) from the Taylor series and O(macheps / h) from rounding, so in
float64 (macheps ~ 1e-16) a step near 1e-6 leaves both near 1e-10 to 1e-12. In
float32 (macheps ~ 6e-8) the rounding error alone is ~1e-2: checks run in
float64. How to read the numbers: docs/gradcheck.md.
"""
from __future__ import annotations

import numpy as np

from .backend import device_of, namespace_of, to_numpy
from .errors import InputError


def _float64_only(arrays: dict, caller: str):
    """Refuse non-float64 arrays: in float32 the differences' rounding error is ~1e-2, so no error means anything."""
    odd = [f"{k} is {a.dtype}" for k, a in arrays.items()
           if not hasattr(a, "dtype") or a.dtype != namespace_of(a).float64]
    if odd:
        raise InputError(f"{caller} needs float64 arrays ({', '.join(odd[:3])}): in float32 finite differences "
                         "are off by ~1e-2 and prove nothing; make them with get_backend(name, dtype='float64')")


def numerical_gradient(f, x, h=1e-6):
    """df/dx for a scalar function f of one array x, by centred differences.

    `x` is perturbed one entry at a time, in place, and restored. f must
    return a scalar (a Python float or a 0-d array). Returns a NumPy array
    shaped like x.
    """
    grad = np.zeros(tuple(x.shape))
    for idx in np.ndindex(*x.shape):
        old = float(x[idx])
        x[idx] = old + h
        f_plus = float(f(x))
        x[idx] = old - h
        f_minus = float(f(x))
        x[idx] = old
        grad[idx] = (f_plus - f_minus) / (2.0 * h)
    return grad


def rel_error(analytic, numeric, floor=1e-3) -> float:
    """|a - n| / max(|a| + |n|, floor), with |.| the Euclidean norm over all entries.

    0 means identical; 1e-12 to 1e-8 is what a correct float64 gradient shows;
    above ~1e-6 something is wrong. Norms, not entrywise ratios, so that
    entries that are zero in both (a dead ReLU) do not divide 0 by 0.

    The floor: where the true gradient is exactly 0 (the KL at logvar = 0, say)
    the finite difference still returns rounding noise (~1e-13 to 1e-10), and
    a pure ratio would read 1. Below the floor the error is absolute noise
    divided by the floor, which a gradient that is really wrong by more than
    ~1e-9 still fails. More on reading it: docs/gradcheck.md#reading-rel_error
    """
    a = np.asarray(to_numpy(analytic), dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    if a.shape != n.shape:
        raise ValueError(f"gradient shapes differ: analytic {a.shape}, numeric {n.shape}")
    denom = np.linalg.norm(a) + np.linalg.norm(n)
    return float(np.linalg.norm(a - n) / max(denom, floor))


def check_backward(forward, backward, inputs, dout=None, h=1e-6, rng=None):
    """Check a forward/backward pair on float64 inputs; returns a rel_error per input.

    The scalar checked is f = sum(out * dout) for a fixed random dout, whose
    gradient is exactly what `backward(dout, cache)` must return. `inputs` is a
    list of arrays (the forward's arguments, in order); the result lists the
    relative error of each returned gradient, in the same order.
    """
    _float64_only({f"input {i}": x for i, x in enumerate(inputs)}, "check_backward")
    out, cache = forward(*inputs)
    xp = namespace_of(out)
    if dout is None:
        rng = rng or np.random.default_rng(0)
        dout = xp.asarray(rng.standard_normal(tuple(out.shape)), dtype=out.dtype, device=device_of(out))
    analytic = backward(dout, cache)
    if not isinstance(analytic, tuple):
        analytic = (analytic,)
    errors = []
    for i, (x, dx) in enumerate(zip(inputs, analytic)):
        def f(xi, i=i):
            args = list(inputs)
            args[i] = xi
            return xp.sum(forward(*args)[0] * dout)

        errors.append(rel_error(dx, numerical_gradient(f, x, h)))
    return errors


def check_model_gradients(loss_fn, params: dict, h=1e-6):
    """Relative error of every parameter gradient of a whole model.

    loss_fn(params) -> (loss, grads), with all randomness (eps) frozen inside it.
    Returns {name: rel_error}. Params must be float64.
    """
    _float64_only(params, "check_model_gradients")
    _, grads = loss_fn(params)
    errors = {}
    for name, p in params.items():
        numeric = numerical_gradient(lambda _: loss_fn(params)[0], p, h)
        errors[name] = rel_error(grads[name], numeric)
    return errors


def max_error(errors) -> float:
    """The largest value in a list or dict of errors."""
    values = errors.values() if isinstance(errors, dict) else errors
    return max(values, default=0.0)


__all__ = ["numerical_gradient", "rel_error", "check_backward", "check_model_gradients", "max_error"]
