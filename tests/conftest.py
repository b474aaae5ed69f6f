"""Shared test set-up: the backends every numerical test runs on, hypothesis profiles,
importing a demo or benchmark script by path, and reading a one-line error."""
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from tinyvae.backend import get_backend
from tinyvae.errors import BackendError

settings.register_profile(
    "default", max_examples=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# CI: the same properties, with a fixed example order so a red run can be replayed.
settings.register_profile(
    "ci", max_examples=25, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci" if os.environ.get("CI") else "default")


def _cupy_skip_reason():
    try:
        get_backend("cupy")
    except BackendError as e:
        return str(e)
    return None


_CUPY_MISSING = _cupy_skip_reason()

# Every numerical test is parametrised over these. array-api-strict runs on a
# non-default device, so a silent host round-trip in the engine is an error.
BACKENDS = [
    "numpy",
    "array_api_strict",
    pytest.param("cupy", marks=[pytest.mark.gpu, pytest.mark.skipif(
        _CUPY_MISSING is not None, reason=f"no CuPy/GPU: {_CUPY_MISSING}")]),
]


def load_script(path):
    """Import a script (demos/*.py, benchmarks/*.py) by path, as `python <path>` runs it:
    its folder first on sys.path, so that it finds its neighbours (`common`). A fresh
    module object on every call."""
    path = Path(path)
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(f"{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_line(text):
    """The text's one line (an error a user reads); fails naming the lines when there are more."""
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got {lines!r}"
    return lines[0]


def make(name, dtype="float64", seed=0):
    """A backend for a test: float64 by default (gradient checks need it)."""
    return get_backend(name, seed=seed, dtype=dtype)


def put(be, a):
    """A NumPy array onto backend `be`, keeping float64."""
    return be.asarray(np.asarray(a, dtype=np.float64))
