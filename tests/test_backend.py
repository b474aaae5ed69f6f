"""The backend seam: choosing a backend, arrays in and out, the seeded generator."""
import numpy as np
import pytest

from conftest import BACKENDS, make
from tinyvae.backend import get_backend, to_numpy
from tinyvae.errors import BackendError


def test_unknown_backend_is_refused_in_one_line():
    with pytest.raises(BackendError) as e:
        get_backend("jax")
    assert "numpy" in str(e.value) and "\n" not in str(e.value)


def test_cupy_request_without_a_gpu_names_the_fix():
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here; the missing-CuPy message cannot be shown")
    except ImportError:
        pass
    with pytest.raises(BackendError) as e:
        get_backend("cupy")
    msg = str(e.value)
    assert "pip install cupy-cuda12x" in msg and "--backend numpy" in msg and "\n" not in msg


def test_unknown_dtype_is_refused():
    with pytest.raises(BackendError, match="float32"):
        get_backend("numpy", dtype="float16")


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_arrays_round_trip_in_the_backend_dtype(name, dtype):
    be = make(name, dtype=dtype)
    a = np.arange(6, dtype=np.float64).reshape(2, 3) / 7
    x = be.asarray(a)
    assert x.dtype == getattr(be.xp, dtype)
    back = be.to_numpy(x)
    assert isinstance(back, np.ndarray) and back.dtype == dtype
    np.testing.assert_allclose(back, a, rtol=1e-6 if dtype == "float32" else 0)
    assert be.normal((4, 2)).dtype == x.dtype and be.uniform((3,)).dtype == x.dtype
    assert be.zeros((2,)).dtype == x.dtype


def test_strict_backend_lives_off_the_default_device():
    """A host round-trip (an array made on the default device) cannot mix in."""
    be = make("array_api_strict")
    x = be.asarray(np.ones(3))
    assert x.device != be.xp.__array_namespace_info__().default_device()
    with pytest.raises(ValueError):
        x + be.xp.asarray(np.ones(3))


@pytest.mark.parametrize("name", BACKENDS)
def test_reseed_replays_the_same_stream(name):
    be = make(name, seed=7)
    be.reseed(3)
    first = (be.to_numpy(be.normal((5,))), be.to_numpy(be.uniform((5,))), be.permutation(10))
    be.reseed(4)
    other = be.to_numpy(be.normal((5,)))
    be.reseed(3)
    again = (be.to_numpy(be.normal((5,))), be.to_numpy(be.uniform((5,))), be.permutation(10))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other)
    assert sorted(first[2]) == list(range(10))


def test_normal_draws_look_standard_normal():
    be = make("numpy", dtype="float32", seed=1)
    z = be.normal((200_000,))
    assert abs(float(z.mean())) < 0.02 and abs(float(z.std()) - 1.0) < 0.02


def test_to_numpy_accepts_plain_numbers():
    assert to_numpy(3.5) == np.asarray(3.5)


def test_stream_ids_never_alias():
    """(seed,), (seed, 0) and (seed, 0, 0) are three different streams."""
    be = make("numpy", seed=3)
    draws = []
    for stream in [(), (0,), (0, 0), (1,)]:
        be.reseed(*stream)
        draws.append(be.normal((4,)))
    for i in range(len(draws)):
        for j in range(i + 1, len(draws)):
            assert not np.array_equal(draws[i], draws[j]), (i, j)
