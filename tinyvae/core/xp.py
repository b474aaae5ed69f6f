"""The array seam as the math sees it: which library an array belongs to, and where it lives.

Engine code never imports NumPy or CuPy. It asks its arrays, ``xp = namespace_of(x)``,
and uses only names of the Python array API standard, so the same lines run on
NumPy (CPU), CuPy (GPU) and array-api-strict (the strict test backend).
Making arrays, the random generator and the way back to NumPy: tinyvae/backend.py.
"""
from array_api_compat import array_namespace
from array_api_compat import device as device_of  # noqa: F401  x.device, also on NumPy 1.x


def namespace_of(*arrays):
    """The array API namespace of `arrays` (NumPy, CuPy or array-api-strict)."""
    return array_namespace(*arrays)
