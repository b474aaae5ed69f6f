"""The array backend: the one module that knows which array library is in use.

Engine code never imports NumPy or CuPy. It finds the namespace from its
arrays, ``xp = namespace_of(x)``, and uses only names from the Python array API
standard, so the same lines run on NumPy (CPU), CuPy (GPU) and array-api-strict
(the strict test backend). What the standard does not cover lives here:

- making arrays on the right device in the right dtype (`Backend.asarray`);
- the random generator (the standard has none), seeded and owned by the backend;
- the single way back to NumPy, for plots and files (`to_numpy`).

See docs/backend.md for the pitfalls (silent float64, host synchronisation,
random streams that differ across backends).
"""
from __future__ import annotations

import numbers

import numpy as np
from array_api_compat import is_cupy_array
from array_api_compat import is_numpy_array  # noqa: F401  re-exported: gates NumPy-only fast paths (fast/optim.py)

from .core.xp import device_of, namespace_of  # noqa: F401  re-exported: the seam as the math sees it
from .errors import BackendError

BACKENDS = ("numpy", "cupy", "array_api_strict")

# array-api-strict is run on a non-default device, so that any array silently
# made on the default device (a host round-trip) cannot be combined with ours.
_STRICT_DEVICE = "device1"


def on_gpu(x) -> bool:
    """Whether `x` lives on a GPU (a CuPy array). Engine code asks this where the
    fastest form differs by device, not by library: on a GPU every extra small
    operation is a kernel launch, on a CPU the cache sizes matter (fast/conv.py's passes)."""
    return is_cupy_array(x)


def cuda_elementwise_kernel(in_params, out_params, body, name, options=()):
    """A CuPy ElementwiseKernel: `body`, CUDA C, run once per element (fast/optim.py's
    optimizer kernels). Built here, where CuPy is imported; it compiles on its first call."""
    import cupy

    return cupy.ElementwiseKernel(in_params, out_params, body, name, options=options)


def _import_cupy():
    """Import CuPy and prove a CUDA device works, or raise one clear BackendError."""
    try:
        import cupy
    except ImportError:
        raise BackendError(
            "backend 'cupy' needs CuPy: install it with "
            "`pip install cupy-cuda12x` (CUDA 12) or `pip install cupy-cuda13x` (CUDA 13), "
            "or use --backend numpy"
        ) from None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no device")
        (cupy.ones(1, dtype=cupy.float32) + 1).get()  # a kernel actually runs
    except Exception as e:  # CUDA driver/runtime errors have many types
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BackendError(
            f"backend 'cupy' found no usable CUDA device ({reason}); "
            "check the NVIDIA driver with `nvidia-smi`, or use --backend numpy"
        ) from None
    return cupy


class Backend:
    """An array library, a float dtype and a seeded random generator.

    >>> be = Backend("numpy", seed=0)            # float32 by default
    >>> x = be.asarray(np.zeros((2, 3)))         # (2, 3) float32, on the backend
    >>> eps = be.normal((2, 3))                  # standard normal draws, float32
    >>> be.to_numpy(x).dtype
    dtype('float32')
    """

    def __init__(self, name: str = "numpy", seed: int = 0, dtype: str = "float32"):
        if name not in BACKENDS:
            raise BackendError(
                f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}"
            )
        if dtype not in ("float32", "float64"):
            raise BackendError(f"unknown dtype {dtype!r}: choose 'float32' or 'float64'")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**63:
            raise BackendError(f"seed must be an integer >= 0, got {seed!r}: pass e.g. seed=0")
        self.name = name
        self.seed = int(seed)
        self.device = None
        if name == "numpy":
            import array_api_compat.numpy as xp

            self._lib = np
        elif name == "cupy":
            cupy = _import_cupy()
            import array_api_compat.cupy as xp

            self._lib = cupy
        else:
            try:
                import array_api_strict as xp
            except ImportError:
                raise BackendError(
                    "backend 'array_api_strict' needs `pip install array-api-strict`"
                ) from None
            self._lib = xp
            self.device = xp.Device(_STRICT_DEVICE)
        self.xp = xp
        self.dtype = getattr(xp, dtype)
        self.reseed()

    def __repr__(self):
        return f"Backend({self.name!r}, seed={self.seed}, dtype={self.dtype_name!r})"

    @property
    def dtype_name(self) -> str:
        return "float64" if self.dtype == self.xp.float64 else "float32"

    # ---- arrays in and out -------------------------------------------------

    def asarray(self, a, dtype=None):
        """Copy a NumPy array (or nested list) onto the backend; floats become `self.dtype`."""
        a = np.asarray(a)
        if dtype is None and a.dtype.kind == "f":
            a = a.astype(self.dtype_name, copy=False)
        if self.name == "numpy":
            return a if dtype is None else a.astype(dtype)
        if self.name == "cupy":
            return self._lib.asarray(a, dtype=dtype)
        return self.xp.asarray(a, dtype=dtype, device=self.device)

    def zeros(self, shape, dtype=None):
        """A zero array on the backend, `self.dtype` unless told otherwise."""
        return self.xp.zeros(shape, dtype=dtype or self.dtype, device=self.device)

    def to_numpy(self, x) -> np.ndarray:
        """The one boundary back to NumPy (plots, files, printing). Synchronises on GPU."""
        return to_numpy(x)

    # ---- randomness ----------------------------------------------------------

    def reseed(self, *stream):
        """Restart the generator on the stream named by (seed, *stream).

        Every random step of training restarts on its own stream, e.g.
        ``reseed(1, epoch)``, so the random state of a run is fully given by
        (seed, epoch): that is what makes resuming from a checkpoint exact.
        The stream ids are NumPy's SeedSequence spawn keys, so different ids
        always name different streams (unlike a list seed, where trailing
        zeros are ignored and (seed, 0) would equal (seed,)).
        """
        seq = np.random.SeedSequence(self.seed, spawn_key=tuple(int(s) for s in stream))
        if self.name == "cupy":
            self._rng = self._lib.random.default_rng(int(seq.generate_state(1)[0]))
        else:
            self._rng = np.random.default_rng(seq)
        # Host-side generator for index shuffles (indices live on the host).
        self._host_rng = np.random.default_rng(seq.spawn(1)[0])

    def normal(self, shape):
        """Standard normal draws, shape `shape`, in `self.dtype`, on the backend."""
        if self.name == "array_api_strict":
            return self.asarray(self._rng.standard_normal(shape, dtype=self.dtype_name))
        return self._rng.standard_normal(shape, dtype=self.dtype_name)

    def uniform(self, shape):
        """Uniform draws on [0, 1), shape `shape`, in `self.dtype`, on the backend."""
        if self.name == "array_api_strict":
            return self.asarray(self._rng.random(shape, dtype=self.dtype_name))
        return self._rng.random(shape, dtype=self.dtype_name)

    def permutation(self, n: int) -> np.ndarray:
        """A random permutation of range(n), as host (NumPy) integers."""
        return self._host_rng.permutation(n)

    def synchronize(self):
        """Wait for queued GPU work (a no-op on CPU backends); for timing only."""
        if self.name == "cupy":
            self._lib.cuda.get_current_stream().synchronize()


def to_numpy(x) -> np.ndarray:
    """Any backend array (or scalar) as a NumPy array."""
    if isinstance(x, (np.ndarray, np.generic, int, float)):
        return np.asarray(x)
    if hasattr(x, "get") and type(x).__module__.startswith("cupy"):
        return x.get()
    xp = namespace_of(x)
    info = getattr(xp, "__array_namespace_info__", None)
    if info is not None and hasattr(x, "to_device"):
        # array-api-strict refuses to hand over arrays on a non-CPU device.
        x = x.to_device(info().default_device())
    return np.asarray(x)


def get_backend(name: str = "numpy", seed: int = 0, dtype: str = "float32") -> Backend:
    """The backend called `name`: 'numpy' (default), 'cupy', or 'array_api_strict'."""
    return Backend(name, seed=seed, dtype=dtype)
