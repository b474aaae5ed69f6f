"""The optimizers' fast path: each update as one compiled loop over the elements (NumPy) or one kernel (CuPy).

`Adam.step` and `SGD.step` (core/optim.py) are written formula by formula. On NumPy
each of those lines is a separate pass over a parameter-sized array (Adam's
step makes twelve), and on this project's benchmark the passes, not the
arithmetic, are what cost: about a quarter of a training step. Here the same
lines are written once more as a loop over the elements, which Numba
compiles, so each element is read once, updated in registers and written
once.

The loop performs the same floating-point operations in the same order as
the lines in optim.py, on numbers of the arrays' own dtype (the scalars are
rounded to it first, as NumPy does when it mixes a Python float with a
float32 array), and no compiler licence to reorder them is given (no
`fastmath`, so no fused multiply-adds either). So the parameters and the
optimizer state come out the same bit for bit (tests/test_fast_paths.py).

On CuPy the plain lines cost launches rather than passes: a dozen small
kernels per parameter, each a few microseconds of the host's time. There the
same lines run as one CUDA kernel per parameter (CuPy's ElementwiseKernel),
compiled with `--fmad=false`, so that no product and sum are fused into one
rounding; square roots and quotients are correctly rounded by default. The
same numbers as the plain lines, bit for bit, there too.

Numba is optional (`pip install numba`). Without it on NumPy, or with
`Adam(..., fast=False)`, or on array-api-strict arrays, or on arrays the
loop cannot take (mixed dtypes, strided views, read-only arrays), the
optimizers run their plain lines. The loop runs on the calling thread: no
thread pool, no thread count, no BLAS option and no environment variable is
set. The first fast step of a process compiles the loop (about half a
second). How it works: docs/optimizers.md#the-fast-path-on-numpy;
measurements and what did not pay: docs/benchmarks.md.
"""
from __future__ import annotations

import math

from ..backend import cuda_elementwise_kernel, is_numpy_array, on_gpu

_compiled = {}  # name -> the loop compiled by Numba, or the CUDA kernel built by CuPy, made on first use


# ---------------------------------------------------------------------------
# The loops: one flat parameter, element by element, in place
# ---------------------------------------------------------------------------


def adam_loop(p, g, m, v, b1, c1, b2, c2, lr_t, eps_t):
    """Adam.step's lines for one flat parameter; c1 = 1 - b1, c2 = 1 - b2, all in p's dtype.

    m <- b1 m + (1 - b1) g,  v <- b2 v + (1 - b2) g g,  p <- p - lr_t m / (sqrt(v) + eps_t),
    each product, sum and quotient rounded in the order optim.py computes it.
    Shapes: p, g, m, v (n,), C-contiguous; scalars of their dtype.
    """
    for i in range(p.shape[0]):
        m_i = m[i] * b1 + c1 * g[i]                               # m <- b1 m + (1 - b1) g
        v_i = v[i] * b2 + c2 * g[i] * g[i]                        # v <- b2 v + (1 - b2) g^2
        m[i] = m_i
        v[i] = v_i
        p[i] = p[i] - lr_t * m_i / (math.sqrt(v_i) + eps_t)       # p <- p - lr_t m / (sqrt(v) + eps_t)


def sgd_loop(p, g, vel, lr, momentum):
    """SGD.step's lines for one flat parameter: vel <- momentum vel + g, p <- p - lr vel.

    Shapes: p, g, vel (n,), C-contiguous; lr and momentum of their dtype.
    """
    for i in range(p.shape[0]):
        vel_i = vel[i] * momentum + g[i]                          # vel <- momentum vel + g
        vel[i] = vel_i
        p[i] = p[i] - lr * vel_i                                  # p <- p - lr vel


# The loops above as CUDA C for CuPy's ElementwiseKernel, g and the scalars in,
# p and the state updated in place; T is the arrays' dtype.
ADAM_CUDA = """
    T m_i = m * b1 + c1 * g;                    // m <- b1 m + (1 - b1) g
    T v_i = v * b2 + c2 * g * g;                // v <- b2 v + (1 - b2) g^2
    m = m_i;
    v = v_i;
    p = p - lr_t * m_i / (sqrt(v_i) + eps_t);   // p <- p - lr_t m / (sqrt(v) + eps_t)
"""
SGD_CUDA = """
    T vel_i = vel * momentum + g;               // vel <- momentum vel + g
    vel = vel_i;
    p = p - lr * vel_i;                         // p <- p - lr vel
"""
CUDA_KERNELS = {
    "adam": ("T g, T b1, T c1, T b2, T c2, T lr_t, T eps_t", "T p, T m, T v", ADAM_CUDA),
    "sgd": ("T g, T lr, T momentum", "T p, T vel", SGD_CUDA),
}
CUDA_OPTIONS = ("--fmad=false",)  # no fused multiply-adds: each product and sum rounded on its own


def _numba():
    """The numba module, or None when it is not installed (imported on first use: it is slow to import)."""
    if "numba" not in _compiled:
        try:
            import numba
        except ImportError:
            numba = None
        _compiled["numba"] = numba
    return _compiled["numba"]


def _compiled_loop(name):
    """The loop called `name` (adam_loop, sgd_loop) compiled by Numba; it compiles on its first call."""
    if name not in _compiled:
        # error_model="numpy": no Python-style check before each division, which
        # would keep the compiler from running the loop on SIMD registers.
        _compiled[name] = _numba().njit(error_model="numpy")(globals()[name])
    return _compiled[name]


def _cuda_kernel(name):
    """The CUDA kernel called `name` ('adam', 'sgd') as a CuPy ElementwiseKernel; it compiles on its first call."""
    key = f"cuda_{name}"
    if key not in _compiled:
        in_params, out_params, body = CUDA_KERNELS[name]
        _compiled[key] = cuda_elementwise_kernel(in_params, out_params, body, f"tinyvae_{name}",
                                                 options=CUDA_OPTIONS)
    return _compiled[key]


# ---------------------------------------------------------------------------
# When the fast path applies, and the two updates
# ---------------------------------------------------------------------------


def available() -> bool:
    """True when Numba can be imported, so the fast path can run at all."""
    return _numba() is not None


def fusable(*dicts) -> bool:
    """True when every array in the dicts has one float dtype and either all are
    CuPy arrays (the CUDA kernels), or Numba is there and all are writable,
    C-contiguous NumPy arrays (the compiled loops)."""
    arrays = [a for d in dicts for a in d.values()]
    if arrays and all(on_gpu(a) for a in arrays):
        return all(a.dtype.kind == "f" and a.dtype == arrays[0].dtype for a in arrays)
    if not available():
        return False
    dtype = None
    for d in dicts:
        for a in d.values():
            if not (is_numpy_array(a) and a.dtype.kind == "f" and a.flags.c_contiguous and a.flags.writeable):
                return False
            if dtype is None:
                dtype = a.dtype
            elif a.dtype != dtype:
                return False
    return dtype is not None


def fused_adam(params, grads, m, v, b1, b2, lr_t, eps_t):
    """Adam's update of every parameter through `adam_loop` or ADAM_CUDA (formula: Adam.step)."""
    for k, p in params.items():
        d = p.dtype.type  # the scalars rounded to the arrays' dtype, as NumPy and CuPy round them
        scalars = (d(b1), d(1.0 - b1), d(b2), d(1.0 - b2), d(lr_t), d(eps_t))
        if on_gpu(p):
            _cuda_kernel("adam")(grads[k], *scalars, p, m[k], v[k])
        else:
            _compiled_loop("adam_loop")(p.reshape(-1), grads[k].reshape(-1), m[k].reshape(-1),
                                        v[k].reshape(-1), *scalars)


def fused_sgd(params, grads, velocity, lr, momentum):
    """SGD's update of every parameter through `sgd_loop` or SGD_CUDA (formula: SGD.step)."""
    for k, p in params.items():
        d = p.dtype.type
        if on_gpu(p):
            _cuda_kernel("sgd")(grads[k], d(lr), d(momentum), p, velocity[k])
        else:
            _compiled_loop("sgd_loop")(p.reshape(-1), grads[k].reshape(-1), velocity[k].reshape(-1),
                                       d(lr), d(momentum))
