"""The files of a run: the output folder, atomic writes, and the checkpoint.

Five rules, one function each:

- `prepare_out_dir` checks the output folder once, before any training: it
  exists or can be made, it is a folder, a file can be written in it, the
  files a run writes there are not folders, devices, pipes or sockets
  (`check_output_path`), they are not an earlier run's results unless
  overwriting was asked for, and (given a size) the disk has room for a
  checkpoint beside the one already there. It also removes the temporary
  files of runs that were killed (`remove_stale_temp_files`); a folder it
  made can be removed again by `remove_if_empty` when the run fails early.
- `atomic_write` writes every file as a temporary file beside it, fsyncs it
  and renames it over the old one: readers see the old file or the new one,
  never half of one. A failed write (a full disk, a read-only folder) is one
  OutputError line, and the file it would have replaced is unchanged.
- `temp_path` names every temporary file tinyvae writes, ".<name>.tinyvae-<pid>.tmp",
  and the sweep removes only names of that form: no one else's file is touched.
- `hold_folder` holds the output folder for one run (a lock file, `.tinyvae.lock`):
  a second run there is refused at once, naming the first.
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
import shlex
import shutil
import stat
import sys
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .errors import CheckpointError, InputError, TinyVAEError

try:
    import fcntl                   # POSIX; where it is missing, folders are not locked
except ImportError:                # pragma: no cover - Windows
    fcntl = None

CHECKPOINT_FILE = "checkpoint.npz"
METRICS_FILE = "metrics.json"
LOCK_FILE = ".tinyvae.lock"        # holds the PID and command line of the run using the folder
CHECKPOINT_FORMAT = 1
ARRAY_GROUPS = ("param", "adam.m", "adam.v")   # what a checkpoint holds for each parameter

# A temporary file of tinyvae's writers (temp_path): ".<name>.tinyvae-<pid>.tmp".
TEMP_FILE = re.compile(r"^\.(?P<name>.*)\.tinyvae-(?P<pid>[0-9]+)\.tmp$")
NAME_MAX = 255                     # bytes in one file name, where the file system does not say
PATH_MAX = 4096                    # bytes in a whole path, likewise

# The folders prepare_out_dir made in this process (resolved), for remove_if_empty.
_MADE_FOLDERS: set = set()
# The folders this process holds: resolved lock file -> [its fd (None: no locks there), holds].
_HELD: dict = {}


class OutputError(TinyVAEError, OSError):
    """The output folder, or a file in it, cannot be written."""


# ---------------------------------------------------------------------------
# What may be written over
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
    if error.errno == errno.ENAMETOOLONG:
        return "pass a shorter --out"
    return "pass another --out"


def _kind(mode: int) -> str:
    """What a file of st_mode `mode` is, in words: 'a character device', 'a folder'."""
    for test, words in ((stat.S_ISREG, "a file"), (stat.S_ISDIR, "a folder"),
                        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                        (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return words
    return "a special file"


def _name_max(path: Path) -> int:
    """The longest file name (bytes) the file system of `path`'s nearest existing folder takes."""
    for folder in (path, *path.parents):
        if os.path.isdir(folder):
            try:
                return os.pathconf(folder, "PC_NAME_MAX")
            except (OSError, ValueError, AttributeError):
                break
    return NAME_MAX


def _shorten(text: str, keep: int = 24) -> str:
    """A long name cut to its start and end: 'aaaaaaaa...aaaa'."""
    return text if len(text) <= 2 * keep else f"{text[:keep]}...{text[-8:]}"


def _check_name_lengths(path: Path):
    """Raise OutputError if a name in `path`, or the whole path, is too long for the file system."""
    limit = _name_max(path)
    for part in path.parts:
        size = len(os.fsencode(part))
        if size > limit:
            raise OutputError(f"the name {_shorten(part)} in the output path is {size} bytes, longer than "
                              f"the {limit} the file system allows in one name: pass a shorter --out")
    size = len(os.fsencode(os.path.abspath(path)))
    if size > PATH_MAX:
        raise OutputError(f"the output path {_shorten(str(path), 40)} is {size} bytes, longer than the "
                          f"{PATH_MAX} the file system allows: pass a shorter --out")


def check_output_path(path) -> Path:
    """Refuse, in one OutputError line, an output path that tinyvae must not write over.

    Refused: a name too long for the file system; an existing device
    (/dev/null), named pipe, socket, or a symlink leading to one; a symlink
    that leads nowhere (dangling, or a loop), since writing there would
    replace the user's link with a file. A regular file, a folder, or
    nothing at all passes. Returns `path` as a Path.
    """
    path = Path(path)
    _check_name_lengths(path)
    try:
        mode = path.stat().st_mode              # follows symlinks
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise OutputError(f"the output path {_shorten(str(path), 40)} is too long for the file "
                              "system: pass a shorter --out") from None
        if os.path.islink(path):
            raise OutputError(f"{path} is a symlink to {_link_target(path)}, which "
                              f"{'does not exist' if e.errno == errno.ENOENT else 'cannot be reached'}: "
                              "remove the link, or pass another --out") from None
        return path                             # nothing there, or under a file: the write says so
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return path
    via = f" a symlink to {os.path.realpath(path)}, which is" if os.path.islink(path) else ""
    raise OutputError(f"{path} is{via} {_kind(mode)}, not a file or folder, so tinyvae will not "
                      "write over it: pass another --out")


def _what_is(path: Path) -> str:
    """What the existing `path` is, in words: 'a file', 'a symlink to x, which does not exist'."""
    try:
        return _kind(os.stat(path).st_mode)
    except OSError:
        return f"a symlink to {_link_target(path)}, which does not exist"


def _link_target(path: Path) -> str:
    """Where the symlink `path` points, as written in it ('?' if it cannot be read)."""
    try:
        return os.readlink(path)
    except OSError:
        return "?"


# ---------------------------------------------------------------------------
# The output folder, checked once before training
# ---------------------------------------------------------------------------


def prepare_out_dir(out_dir, files=(), need_bytes=0, overwrite=True, can_resume=True) -> Path:
    """Check that a run can write `files` into `out_dir`, make the folder, sweep dead runs' temp files.

    Raises OutputError (one line, naming the path and the fix) if `out_dir`
    is empty, is a file or lies under one, cannot be made or written, if it
    or one of `files` is a device, pipe, socket or dangling symlink
    (check_output_path), if one of `files` is a folder, if its disk has fewer
    than `need_bytes` bytes free, or, with overwrite=False, if one of `files`
    is already there (an earlier run's; can_resume: the message offers
    --resume). Nothing is written before these checks. Returns out_dir as a Path.
    """
    if str(out_dir).strip() == "":
        raise OutputError("the output folder is an empty name: pass a folder, e.g. --out runs/mnist")
    out_dir = check_output_path(out_dir)
    for name in files:
        check_output_path(out_dir / name)
    existing = next((p for p in (out_dir, *out_dir.parents) if os.path.lexists(p)), None)
    if existing is not None and not existing.is_dir():
        where = "is" if existing == out_dir else f"lies under {existing}, which is"
        raise OutputError(f"output folder {out_dir} {where} {_what_is(existing)}, not a folder: "
                          "pass another --out")
    for name in files:
        path = out_dir / name
        if path.exists() and not path.is_file():
            raise OutputError(f"{path} is a folder (or other non-file), so the run cannot write "
                              f"its {name} there: remove it or pass another --out")
    if not overwrite:
        _refuse_earlier_results(out_dir, files, can_resume)
    _make_folder(out_dir)
    _check_writable(out_dir)
    if need_bytes > 0:
        free = shutil.disk_usage(out_dir).free
        if free < need_bytes:
            raise OutputError(f"output folder {out_dir} has {format_bytes(free)} free, but the run needs "
                              f"about {format_bytes(need_bytes)} for its checkpoints: free some space "
                              "or pass another --out")
    remove_stale_temp_files(out_dir)
    return out_dir


def _refuse_earlier_results(out_dir: Path, files, can_resume: bool):
    """Raise OutputError if any of `files` is already in `out_dir`: an earlier run's results."""
    there = [name for name in files if (out_dir / name).is_file()]
    if not there:
        return
    more = f" (and {len(there) - 1} more)" if len(there) > 1 else ""
    them = "them" if len(there) > 1 else "it"
    resume = ", --resume to continue" if can_resume else ""
    raise OutputError(f"{out_dir} already holds {there[0]}{more} from an earlier run: pass --overwrite "
                      f"to replace {them}{resume}, or another --out")


def _make_folder(out_dir: Path):
    """mkdir -p `out_dir`, remembering the folders it made (for remove_if_empty)."""
    missing = []
    for folder in (out_dir, *out_dir.parents):
        if os.path.lexists(folder):
            break
        missing.append(folder)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot make the output folder {out_dir} ({_reason(e)}): "
                          f"{_fix_for(e)}") from None
    _MADE_FOLDERS.update(folder.resolve() for folder in missing)


def _check_writable(out_dir: Path):
    """Write, fsync and delete a small file in `out_dir`; OutputError if that fails."""
    probe = temp_path(out_dir / "write-check")   # swept like any temp file if we die here
    try:
        with _open_temp(probe) as f:
            f.write(b"tinyvae")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise OutputError(f"cannot write in the output folder {out_dir} ({_reason(e)}): "
                          f"{_fix_for(e)}") from None
    finally:
        remove_quietly(probe)


def remove_if_empty(out_dir) -> bool:
    """Remove `out_dir` if prepare_out_dir made it in this process and it is still empty.

    For a run that fails before writing anything: it leaves no empty folder
    behind. The parents prepare_out_dir made with it go too, while empty. A
    folder that was there before, or holds anything, is kept. Returns whether
    `out_dir` was removed.
    """
    target = folder = Path(out_dir).resolve()
    while folder in _MADE_FOLDERS:
        try:
            folder.rmdir()                 # only an empty folder can be removed
        except OSError:
            break
        _MADE_FOLDERS.discard(folder)
        folder = folder.parent
    return folder != target


def format_bytes(n: float) -> str:
    """Bytes as a short human figure: '2.4 MB', '313.6 GB'."""
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000


# ---------------------------------------------------------------------------
# tinyvae's temporary files, and the sweep of dead runs' ones
# ---------------------------------------------------------------------------


def temp_path(path, pid=None) -> Path:
    """The temporary file tinyvae writes `path` through: '.<name>.tinyvae-<pid>.tmp' beside it.

    Every writer of tinyvae names its temporary files here, and
    remove_stale_temp_files removes only names of this form, so no one
    else's '.notes.123.tmp' is ever touched. `pid` defaults to this
    process's. A name too long for the file system is shortened.
    """
    path = Path(path)
    tail = f".tinyvae-{os.getpid() if pid is None else pid}.tmp"
    name, limit = path.name, _name_max(path.parent)
    while name and len(os.fsencode(f".{name}{tail}")) > limit:
        name = name[:-1]
    return path.with_name(f".{name}{tail}")


def _open_temp(tmp: Path):
    """Open tinyvae's temp file `tmp` for writing; a symlink planted there is refused, not followed."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    return os.fdopen(os.open(tmp, flags, 0o666), "wb")


def _process_alive(pid: int) -> bool:
    """Whether process `pid` exists (a zombie counts; so does one of another user)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)           # signal 0: only asks whether the process is there
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: there, but not ours; a huge number: not a pid
        return pid > 0
    return True


def remove_stale_temp_files(folder) -> list:
    """Delete tinyvae's temp files in `folder` (temp_path's names) whose writing process is dead.

    A process killed mid-write (kill -9, a power cut) leaves its temporary file
    behind, as large as the file it was writing; a live process's is left
    alone, since it may be writing it now, and so is every file whose name is
    not one tinyvae makes. POSIX only (elsewhere nothing is removed). Returns
    the paths removed.
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
            if remove_quietly(Path(entry.path)):
                removed.append(Path(entry.path))
    return removed


def remove_quietly(path: Path) -> bool:
    """Delete `path` if it is there; a failure to delete is not an error (returns False)."""
    try:
        Path(path).unlink()
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------
# One run at a time in a folder
# ---------------------------------------------------------------------------


class FolderLock:
    """A run's hold on its output folder: a lock (flock) on `<out_dir>/.tinyvae.lock`.

        with hold_folder(out_dir):     # OutputError at once if another process holds it
            ...                        # train, save

    The lock file holds the holder's PID and command line, for the message
    another process gets. Holds within one process nest (a demo holds its
    folder, and train.fit inside it holds it again): the folder is let go
    when the outermost hold is released. The kernel drops the lock when the
    holder dies, however it dies, so a killed run never leaves the folder
    stuck; the next holder takes the file over. Where fcntl is missing
    (Windows) nothing is locked.
    """

    def __init__(self, out_dir):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / LOCK_FILE
        self._key = None               # set while this object holds the folder

    def acquire(self) -> FolderLock:
        """Hold the folder, or raise OutputError naming the process that holds it. Returns self."""
        if fcntl is None or self._key is not None:
            return self
        key = self.path.resolve()
        if key in _HELD:               # already held by this process: nest
            _HELD[key][1] += 1
        else:
            check_output_path(self.path)
            _HELD[key] = [self._lock(), 1]
        self._key = key
        return self

    def release(self):
        """Let go; the outermost release removes the lock file (if still ours) and drops the lock."""
        key, self._key = self._key, None
        if key is None or key not in _HELD:
            return
        _HELD[key][1] -= 1
        if _HELD[key][1] > 0:
            return
        fd = _HELD.pop(key)[0]
        if fd is None:                 # a file system without locks
            return
        try:
            if _same_file(fd, self.path):
                remove_quietly(self.path)  # before the lock drops: no one else holds this file
        finally:
            os.close(fd)

    def _lock(self) -> int | None:
        """flock the lock file: its fd, None where the file system has no locks; OutputError if held."""
        for _ in range(100):           # again while the file is replaced under us
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise self._in_use(*holder) from None
            except OSError:            # a file system without locks: run unlocked
                os.close(fd)
                return None
            if _same_file(fd, self.path):  # not unlinked by a holder that let go meanwhile
                _write_holder(fd)
                return fd
            os.close(fd)
        raise OutputError(f"could not lock {self.path}: it keeps changing; pass another --out")

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            return os.open(self.path, flags, 0o644)
        except OSError as e:
            raise OutputError(f"cannot make the lock file {self.path} ({_reason(e)}): "
                              f"{_fix_for(e)}") from None

    def _in_use(self, pid, command) -> OutputError:
        return OutputError(f"{self.out_dir} is in use by another tinyvae run (PID {pid or 'unknown'}: "
                           f"{command or 'command unknown'}): wait for it to finish, or pass another --out")

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def hold_folder(out_dir) -> FolderLock:
    """Hold `out_dir` for this run (see FolderLock): `with hold_folder(out): ...`, or call .release()."""
    return FolderLock(out_dir).acquire()


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd`."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
    except OSError:
        return False


def _write_holder(fd: int):
    """Write this process's PID and command line into the lock file `fd`."""
    command = " ".join(shlex.join(getattr(sys, "orig_argv", sys.argv)).split())[:300]
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{command}\n".encode(errors="replace"), 0)
    except OSError:
        pass                               # the lock holds without its note


def _holder(fd: int) -> tuple:
    """(pid or None, command or '') from a lock file open as `fd`."""
    try:
        lines = os.pread(fd, 4096, 0).decode(errors="replace").splitlines()
    except OSError:
        lines = []
    pid = int(lines[0]) if lines and lines[0].strip().isdigit() else None
    return pid, " ".join(" ".join(lines[1:2]).split())


# ---------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------


def atomic_write(path, write):
    """Call write(file) on a temporary file beside `path`, fsync it, then rename it to `path`.

    os.replace is atomic within one folder: readers see the old file or the
    new one, never a half-written one, even if the process dies mid-write (its
    temporary file is then removed by the next run's prepare_out_dir). A path
    check_output_path refuses (/dev/null, a pipe, a too-long name) raises
    OutputError before anything is written; so does a failed write, one line,
    and `path` is left as it was.
    """
    path = check_output_path(path)
    tmp = temp_path(path)
    try:
        with _open_temp(tmp) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        remove_quietly(tmp)
        kept = f"the previous {path.name} is unchanged" if path.exists() else f"no {path.name} was written"
        raise OutputError(f"could not write {path} ({_reason(e)}): {_fix_for(e)}; {kept}") from None
    except BaseException:          # Ctrl-C or a bug in `write`: no temp file left behind either
        remove_quietly(tmp)
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


def _npz_reason(error: BaseException) -> str:
    """Why NumPy could not read an .npz, in one line that never suggests allow_pickle."""
    text = " ".join(str(error).split()) or type(error).__name__
    return "it holds pickled objects, which tinyvae never writes" if "pickle" in text else text


def _refuse_newer(meta, path):
    """Raise CheckpointError if `meta` says a newer tinyvae wrote the checkpoint."""
    version = meta.get("format") if isinstance(meta, dict) else None
    if _is_int(version) and version > CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} was written by a newer tinyvae (format {version}; "
                              f"this one reads up to {CHECKPOINT_FORMAT}): upgrade tinyvae, "
                              "or pass another --out to start a new run")


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
        # Any warning NumPy gives on a damaged file is an error here, under `python -W error` too.
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            if not zipfile.is_zipfile(path):
                raise ValueError("not an .npz (zip) file")
            with np.load(path, allow_pickle=False) as f:
                meta = json.loads(str(f["meta"][()]))
                _refuse_newer(meta, path)
                arrays = {key: np.array(f[key]) for key in f.files if key != "meta"}
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, MemoryError, Warning,
            zipfile.BadZipFile, zlib.error) as e:
        raise _corrupt(path, _npz_reason(e)) from None
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
    if not _is_int(meta.get("format")) or meta["format"] != CHECKPOINT_FORMAT:   # True == 1, but not a format
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
