"""The files of a run: the output folder, atomic writes, and the checkpoint.

Three rules, one function each:

- `prepare_out_dir` checks the output folder once, before any training: it
  exists or can be made, it is a folder, a file can be written in it, the
  files a run writes there are not folders, and (given a size) the disk has
  room for a checkpoint beside the one already there. It also removes the
  temporary files of runs that were killed (`remove_stale_temp_files`).
- `atomic_write` writes every file as a temporary file beside it, fsyncs it
  and renames it over the old one: readers see the old file or the new one,
  never half of one. A failed write (a full disk, a read-only folder) is one
  OutputError line, and the file it would have replaced is unchanged.
- `load_checkpoint` trusts nothing in the file: `check_checkpoint` then holds
  every array's name and shape against the model's config, refuses NaN or
  inf weights, and checks the types of the JSON record.

    checkpoint.npz   "param/<name>", "adam.m/<name>", "adam.v/<name>" arrays and
                     a JSON "meta" record (format, config, epochs, Adam's t, ...)
"""
from __future__ import annotations

import errno
import json
import math
import numbers
import os
import re
import shutil
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .errors import CheckpointError, InputError, TinyVAEError

CHECKPOINT_FILE = "checkpoint.npz"
METRICS_FILE = "metrics.json"
CHECKPOINT_FORMAT = 1
ARRAY_GROUPS = ("param", "adam.m", "adam.v")   # what a checkpoint holds for each parameter

# A temporary file of atomic_write (and of plots' and data's writers): ".<name>.<pid>.tmp".
TEMP_FILE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>[0-9]+)\.tmp$")


class OutputError(TinyVAEError, OSError):
    """The output folder, or a file in it, cannot be written."""


# ---------------------------------------------------------------------------
# The output folder, checked once before training
# ---------------------------------------------------------------------------


def _reason(error: BaseException) -> str:
    """An OSError as a short phrase: 'No space left on device', not '[Errno 28] ...: path'."""
    text = getattr(error, "strerror", None) or str(error)
    return " ".join(text.split()) or type(error).__name__


def _fix_for(error: OSError) -> str:
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "free some space or pass another --out"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "make it writable or pass another --out"
    return "pass another --out"


def prepare_out_dir(out_dir, files=(), need_bytes=0) -> Path:
    """Check that a run can write `files` into `out_dir`, make the folder, sweep dead runs' temp files.

    Raises OutputError (one line, naming the path and the fix) if `out_dir`
    is empty, is a file or lies under one, cannot be made or written, if one
    of `files` exists as something other than a file, or if its disk has fewer
    than `need_bytes` bytes free. Returns out_dir as a Path.
    """
    if str(out_dir).strip() == "":
        raise OutputError("the output folder is an empty name: pass a folder, e.g. --out runs/mnist")
    out_dir = Path(out_dir)
    existing = next((p for p in (out_dir, *out_dir.parents) if p.exists() or p.is_symlink()), None)
    if existing is not None and not existing.is_dir():
        where = "is" if existing == out_dir else f"lies under {existing}, which is"
        raise OutputError(f"output folder {out_dir} {where} a file, not a folder: pass another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot make the output folder {out_dir} ({_reason(e)}): "
                          f"{_fix_for(e)}") from None
    for name in files:
        path = out_dir / name
        if path.exists() and not path.is_file():
            raise OutputError(f"{path} is a folder (or other non-file), so the run cannot write "
                              f"its {name} there: remove it or pass another --out")
    probe = out_dir / f".write-check.{os.getpid()}.tmp"   # swept like any temp file if we die here
    try:
        with open(probe, "wb") as f:
            f.write(b"tinyvae")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise OutputError(f"cannot write in the output folder {out_dir} ({_reason(e)}): "
                          f"{_fix_for(e)}") from None
    finally:
        _remove_quietly(probe)
    if need_bytes > 0:
        free = shutil.disk_usage(out_dir).free
        if free < need_bytes:
            raise OutputError(f"output folder {out_dir} has {format_bytes(free)} free, but the run needs "
                              f"about {format_bytes(need_bytes)} for its checkpoints: free some space "
                              "or pass another --out")
    remove_stale_temp_files(out_dir)
    return out_dir


def format_bytes(n: float) -> str:
    """Bytes as a short human figure: '2.4 MB', '313.6 GB'."""
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000


def _process_alive(pid: int) -> bool:
    """Whether process `pid` exists (a zombie counts; so does one of another user)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)           # signal 0: only asks whether the process is there
    except ProcessLookupError:
        return False
    except OSError:               # PermissionError: there, but not ours
        return True
    return True


def remove_stale_temp_files(folder) -> list:
    """Delete the ".<name>.<pid>.tmp" files in `folder` whose writing process is dead.

    A process killed mid-write (kill -9, a power cut) leaves its temporary file
    behind, as large as the file it was writing; a live process's is left
    alone, since it may be writing it now. POSIX only (elsewhere nothing is
    removed). Returns the paths removed.
    """
    if os.name != "posix":
        return []
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        m = TEMP_FILE.match(entry.name)
        if m and entry.is_file(follow_symlinks=False) and not _process_alive(int(m["pid"])):
            if _remove_quietly(Path(entry.path)):
                removed.append(Path(entry.path))
    return removed


def _remove_quietly(path: Path) -> bool:
    """Delete `path` if it is there; a failure to delete is not an error (returns False)."""
    try:
        path.unlink()
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------


def atomic_write(path, write):
    """Call write(file) on a temporary file beside `path`, fsync it, then rename it to `path`.

    os.replace is atomic within one folder: readers see the old file or the
    new one, never a half-written one, even if the process dies mid-write (its
    temporary file is then removed by the next run's prepare_out_dir). A failed
    write raises OutputError, one line; `path` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _remove_quietly(tmp)
        kept = f"the previous {path.name} is unchanged" if path.exists() else f"no {path.name} was written"
        raise OutputError(f"could not write {path} ({_reason(e)}): {_fix_for(e)}; {kept}") from None
    except BaseException:          # Ctrl-C or a bug in `write`: no temp file left behind either
        _remove_quietly(tmp)
        raise


def write_json(path, obj):
    """Write `obj` as indented JSON to `path`, atomically. NaN and inf are refused (not JSON)."""
    text = json.dumps(obj, indent=2, allow_nan=False) + "\n"
    atomic_write(Path(path), lambda f: f.write(text.encode()))


# ---------------------------------------------------------------------------
# The checkpoint
# ---------------------------------------------------------------------------


def checkpoint_bytes(shapes: dict, itemsize: int) -> int:
    """About how large a checkpoint of parameters `shapes` is: each array three times (p, m, v)."""
    return 3 * itemsize * sum(math.prod(s) for s in shapes.values()) + 64 * 1024


def save_checkpoint(path, params: dict, optimizer, meta: dict, backend):
    """Save parameters, Adam state and `meta` (JSON-able) to an .npz file, atomically.

    Arrays: "param/<name>", "adam.m/<name>", "adam.v/<name>" (host NumPy copies);
    "meta": one JSON string holding `meta` plus the Adam step count t.
    No pickles: load_checkpoint reads it with allow_pickle=False.
    """
    state = optimizer.state_dict()
    arrays = {f"param/{k}": backend.to_numpy(p) for k, p in params.items()}
    arrays.update({f"adam.m/{k}": backend.to_numpy(a) for k, a in state["m"].items()})
    arrays.update({f"adam.v/{k}": backend.to_numpy(a) for k, a in state["v"].items()})
    record = {"format": CHECKPOINT_FORMAT, **meta, "adam": {"t": state["t"], "lr": optimizer.lr}}
    arrays["meta"] = np.array(json.dumps(record, allow_nan=False))
    atomic_write(Path(path), lambda f: np.savez(f, **arrays))


def _corrupt(path, reason) -> CheckpointError:
    return CheckpointError(f"checkpoint {path} is unreadable or corrupt ({reason}): "
                           "delete it and start again without --resume, or use a new --out")


def load_checkpoint(path, backend, shapes=None):
    """Read a checkpoint written by save_checkpoint: (params, adam_state, meta).

    Arrays come back on `backend`, in its dtype; adam_state is what
    Adam.load_state_dict takes. A missing, truncated, foreign or hand-edited
    file raises CheckpointError, never a zipfile or NumPy traceback. With
    `shapes` ({name: shape}, the model's param_shapes), every array is also
    checked against them (check_checkpoint).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: run without --resume to start a new run there")
    try:
        if not zipfile.is_zipfile(path):
            raise ValueError("not an .npz (zip) file")
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"][()]))
            arrays = {key: np.array(f[key]) for key in f.files if key != "meta"}
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError,
            zipfile.BadZipFile, zlib.error) as e:
        raise _corrupt(path, " ".join(str(e).split()) or type(e).__name__) from None
    problem = _meta_problem(meta) or _arrays_problem(arrays)
    if problem:
        raise _corrupt(path, problem)
    groups = {group: {} for group in ARRAY_GROUPS}
    for key, a in arrays.items():
        group, name = key.split("/", 1)
        groups[group][name] = a
    if shapes is not None:
        check_checkpoint(groups, shapes, path)
    params, m, v = ({k: backend.asarray(a) for k, a in groups[g].items()} for g in ARRAY_GROUPS)
    return params, {"t": meta["adam"]["t"], "m": m, "v": v}, meta


def _is_int(x, low=0) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool) and x >= low


def _is_finite_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def _meta_problem(meta) -> str | None:
    """What is wrong with the types of a checkpoint's JSON record, or None."""
    if not isinstance(meta, dict):
        return f"its meta record is a {type(meta).__name__}, not a JSON object"
    if meta.get("format") != CHECKPOINT_FORMAT:
        return f"unknown checkpoint format {meta.get('format')!r}"
    for key in ("config", "train_config", "data", "adam"):
        if not isinstance(meta.get(key), dict):
            return f"meta {key!r} is {meta.get(key)!r}, not a JSON object"
    if not _is_int(meta.get("epoch")):
        return f"meta 'epoch' is {meta.get('epoch')!r}, not an integer >= 0"
    epochs = meta.get("epochs")
    if not isinstance(epochs, list) or len(epochs) != meta["epoch"]:
        return "the epoch history does not match the epoch count"
    for i, record in enumerate(epochs, start=1):
        if not isinstance(record, dict) or record.get("epoch") != i:
            return f"epoch record {i} is not a record of epoch {i}"
        bad = [k for k, v in record.items() if not _is_finite_number(v)]
        if bad:
            return f"epoch record {i} has non-numeric or non-finite {', '.join(bad)}"
    if not _is_int(meta["adam"].get("t")):
        return f"meta adam 't' is {meta['adam'].get('t')!r}, not an integer >= 0"
    return None


def _arrays_problem(arrays: dict) -> str | None:
    """What is wrong with the arrays' names, dtypes or values (NaN/inf), or None."""
    for key, a in arrays.items():
        group, _, name = key.partition("/")
        if group not in ARRAY_GROUPS or not name:
            return f"unexpected array {key!r}"
        if a.dtype.kind != "f":
            return f"array {key!r} has dtype {a.dtype}, not floating point"
        if not np.all(np.isfinite(a)):
            what = "weights" if group == "param" else "Adam state"
            return (f"{key} holds NaN or inf {what}, as a diverged run would; "
                    "such a checkpoint cannot be resumed")
    return None


def check_checkpoint(groups: dict, shapes: dict, path):
    """Raise CheckpointError unless each group of arrays holds exactly the parameters `shapes` names.

    groups: {"param": {name: array}, "adam.m": {...}, "adam.v": {...}}, as read.
    shapes: {name: shape}, the model's param_shapes(config), the ones
    init_params makes. The message lists every missing, extra or wrongly
    shaped array.
    """
    want = {k: tuple(s) for k, s in shapes.items()}
    problems = []
    for group, arrays in groups.items():
        missing = [k for k in want if k not in arrays]
        extra = [k for k in arrays if k not in want]
        if missing:
            problems.append(f"{group} lacks {', '.join(missing)}")
        if extra:
            problems.append(f"{group} has unexpected {', '.join(extra)}")
        problems += [f"{group}/{k} is {tuple(a.shape)}, the config makes {want[k]}"
                     for k, a in arrays.items() if k in want and tuple(a.shape) != want[k]]
    if problems:
        raise CheckpointError(f"checkpoint {path} does not fit its model config ({'; '.join(problems)}): "
                              "it was edited or damaged; delete it and start again without --resume, "
                              "or use a new --out")


def check_resumable(meta: dict, config, train_fields: dict, data: dict, path):
    """Raise CheckpointError naming every field where `meta` differs from this run.

    Compared: the whole model config, `train_fields` (the training settings
    that change the epochs still to come) and the data sizes. Anything else
    (the epoch count, evaluation settings) may change.
    """
    try:
        theirs = type(config).from_dict(meta["config"]).to_dict()
    except (KeyError, TypeError, ValueError, InputError) as e:
        raise CheckpointError(f"checkpoint {path} has no readable config "
                              f"({' '.join(str(e).split())}): use a new --out") from None
    pairs = [(k, theirs.get(k), v) for k, v in config.to_dict().items()]
    pairs += [(k, meta["train_config"].get(k), v) for k, v in train_fields.items()]
    pairs += [(k, meta["data"].get(k), v) for k, v in data.items()]
    diffs = [f"{k}: {a!r} in the checkpoint, {b!r} now" for k, a, b in pairs if a != b]
    if diffs:
        raise CheckpointError(
            f"checkpoint {path} is from another configuration ({'; '.join(diffs)}): "
            "resume with the same settings, or pass a new --out to start a new run"
        )
