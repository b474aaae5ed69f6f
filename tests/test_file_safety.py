"""tinyvae never harms a file that is not its own, and never trips over one.

One test (or one parametrised test) per class of problem:

1. outputs that are not regular files or folders (/dev/null, a FIFO, a socket,
   a symlink to one, a symlink to nowhere) are refused before anything is written;
2. tinyvae's temporary files carry a name no one else uses, and the sweep removes only those;
3. a file tinyvae did not write (Keras's own mnist.npz, a file at the cache's
   name without tinyvae's marker) is never deleted or replaced;
4. a cache that cannot be written never stops the load: every source works in memory;
5. `python -W error` and a damaged cache: one line, never a traceback or a hint at allow_pickle;
6. one run at a time holds an output folder;
7. an earlier run's results are not overwritten unless asked, and a folder made
   for a run that failed at once can be removed again;
8. a checkpoint from a newer tinyvae says so;
9. a name too long for the file system is one line naming the fix.

No test reaches the network or pip: the mirrors and the PyPI download are faked as in
tests/test_data.py, whose helpers these tests share.
"""
import builtins
import ctypes
import errno
import gzip
import io
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import urllib.error
import urllib.request
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tinyvae import checkpoint, data
from tinyvae.checkpoint import OutputError
from tinyvae.errors import CheckpointError, DataError

from conftest import one_line
from test_data import (assert_same, fake, fake_mirrors, fake_wheel, install_fake_pip, offline,  # noqa: F401
                       spec_of, synthetic_mnist)  # the same offline (autouse) and fake fixtures as test_data.py

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


@pytest.fixture
def short_tmp():
    """A folder with a short path: a unix socket's path must fit in about 100 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="tv-"))
    yield folder
    shutil.rmtree(folder)


def dead_pid() -> int:
    """The PID of a process that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def snapshot(folder):
    """{name: (file type, bytes or link target)} of everything in `folder`, for 'nothing changed'."""
    out = {}
    for p in sorted(Path(folder).iterdir()):
        st = os.lstat(p)
        if stat.S_ISREG(st.st_mode):
            out[p.name] = ("file", p.read_bytes())
        elif stat.S_ISLNK(st.st_mode):
            out[p.name] = ("link", os.readlink(p))
        else:
            out[p.name] = (stat.S_IFMT(st.st_mode), st.st_ino)
    return out


# ---- 1. outputs that are not regular files or folders ----------------------------------


def _fifo(folder):
    os.mkfifo(folder / "out")
    return folder / "out"


def _socket(folder):
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(folder / "out"))
    s.close()                                  # the socket file stays, as a dead server's does
    return folder / "out"


def _link_to_dev_null(folder):
    (folder / "out").symlink_to("/dev/null")
    return folder / "out"


def _link_to_link_to_fifo(folder):
    os.mkfifo(folder / "pipe")
    (folder / "hop").symlink_to(folder / "pipe")
    (folder / "out").symlink_to(folder / "hop")
    return folder / "out"


def _dangling_link(folder):
    (folder / "out").symlink_to(folder / "nowhere" / "file")
    return folder / "out"


def _link_loop(folder):
    (folder / "out").symlink_to(folder / "out")
    return folder / "out"


NOT_REGULAR = [_fifo, _socket, _link_to_dev_null, _link_to_link_to_fifo, _dangling_link, _link_loop]


@pytest.mark.parametrize("make", NOT_REGULAR)
def test_atomic_write_refuses_what_is_not_a_file_and_writes_nothing(short_tmp, make):
    target = make(short_tmp)
    before = snapshot(short_tmp)
    for write in (lambda: checkpoint.atomic_write(target, lambda f: f.write(b"data")),
                  lambda: checkpoint.write_json(target, {"a": 1})):
        with pytest.raises(OutputError) as e:
            write()
        line = one_line(str(e.value))
        assert str(target) in line and "--out" in line and "Errno" not in line
    assert snapshot(short_tmp) == before          # no temp file, the node itself untouched


def test_dev_null_itself_is_refused_and_stays_a_device(tmp_path):
    before = os.stat("/dev/null")
    with pytest.raises(OutputError, match="/dev/null is a character device, not a file or folder"):
        checkpoint.atomic_write("/dev/null", lambda f: f.write(b"data"))
    with pytest.raises(OutputError, match="character device"):
        checkpoint.prepare_out_dir("/dev/null", ("metrics.json",))
    with pytest.raises(OutputError, match="lies under /dev/null, which is a character device"):
        checkpoint.prepare_out_dir("/dev/null/run", ("metrics.json",))
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert not any(checkpoint.TEMP_FILE.match(name) for name in os.listdir("/dev"))


@pytest.mark.parametrize("make", NOT_REGULAR)
def test_prepare_out_dir_refuses_such_a_file_or_folder_before_writing(short_tmp, make):
    target = make(short_tmp)
    (short_tmp / "run").mkdir()
    os.symlink(target, short_tmp / "run" / "metrics.json")
    before = snapshot(short_tmp), snapshot(short_tmp / "run")
    for out, files in ((target, ("metrics.json",)), (short_tmp / "run", ("checkpoint.npz", "metrics.json"))):
        with pytest.raises(OutputError) as e:
            checkpoint.prepare_out_dir(out, files)
        line = one_line(str(e.value))
        assert "--out" in line and "Errno" not in line
    assert (snapshot(short_tmp), snapshot(short_tmp / "run")) == before   # no probe, no folder made


def test_a_folder_under_a_dangling_symlink_is_named_as_such(tmp_path):
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    with pytest.raises(OutputError, match="lies under .*gone, which is a symlink to .*nowhere, which does not"):
        checkpoint.prepare_out_dir(tmp_path / "gone" / "run")
    assert not (tmp_path / "nowhere").exists()


def test_regular_files_folders_and_symlinks_to_them_still_pass(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    out = checkpoint.prepare_out_dir(tmp_path / "link", ("metrics.json",))
    checkpoint.write_json(out / "metrics.json", {"a": 1})
    assert json.loads((tmp_path / "real" / "metrics.json").read_text()) == {"a": 1}


# ---- 2. tinyvae's temp files, and the sweep -------------------------------------------


def test_temp_names_are_tinyvaes_own(tmp_path):
    tmp = checkpoint.temp_path(tmp_path / "checkpoint.npz", 123)
    assert tmp == tmp_path / ".checkpoint.npz.tinyvae-123.tmp"
    assert checkpoint.TEMP_FILE.match(tmp.name)["pid"] == "123"
    assert checkpoint.temp_path(tmp_path / "x").name == f".x.tinyvae-{os.getpid()}.tmp"
    for user_file in (".notes.99999.tmp", ".notes.tmp", ".x.tinyvae.tmp", "x.tinyvae-1.tmp", ".x.tinyvae-1.tmp~",
                      ".x.tinyvae-12a.tmp"):
        assert not checkpoint.TEMP_FILE.match(user_file), user_file
    long = checkpoint.temp_path(tmp_path / ("n" * 250), 4194304)   # the name fits; name + tail would not
    assert len(long.name.encode()) <= 255 and checkpoint.TEMP_FILE.match(long.name)


def test_the_sweep_removes_only_dead_tinyvae_temp_files(tmp_path):
    dead, sleeper = dead_pid(), subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        users = [tmp_path / f".notes.{dead}.tmp", tmp_path / ".notes.99999.tmp", tmp_path / ".notes.tmp",
                 tmp_path / f".mnist.npz.{dead}.tmp", tmp_path / f"checkpoint.npz.tinyvae-{dead}.tmp"]
        stale = [checkpoint.temp_path(tmp_path / "checkpoint.npz", dead),
                 checkpoint.temp_path(tmp_path / "samples.png", dead)]
        live = [checkpoint.temp_path(tmp_path / "checkpoint.npz", sleeper.pid),
                checkpoint.temp_path(tmp_path / "metrics.json")]           # this process's own
        for p in users + stale + live:
            p.write_bytes(b"x")
        assert sorted(checkpoint.remove_stale_temp_files(tmp_path)) == sorted(stale)
        assert all(p.exists() for p in users + live) and not any(p.exists() for p in stale)
        checkpoint.prepare_out_dir(tmp_path, ("checkpoint.npz",))          # the run's sweep: the same
        data._write_cache(tmp_path / data.CACHE_FILE, synthetic_mnist())   # the cache writer's: the same
        assert all(p.exists() for p in users + live)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_every_file_tinyvae_writes_goes_through_a_tinyvae_temp_name(tmp_path, fake, monkeypatch):
    """Whatever is fsynced (written for keeps) is written under temp_path's name, then renamed."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to name an open file")
    synced, real_fsync = [], os.fsync

    def fsync(fd):
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    fake_mirrors(monkeypatch, fake)
    out = checkpoint.prepare_out_dir(tmp_path / "run", ("metrics.json",))   # its write check
    checkpoint.write_json(out / "metrics.json", {"a": 1})                   # atomic_write
    data.load_mnist(cache_dir=tmp_path / "cache", progress=False)          # downloads kept, the cache
    assert len(synced) == 2 + 4 + 1
    assert all(checkpoint.TEMP_FILE.match(name) for name in synced), synced


# ---- 3. files tinyvae did not write -----------------------------------------------------


def keras_npz(d) -> bytes:
    """An mnist.npz laid out as Keras's own: images (N, 28, 28), keys x_train, y_train, x_test, y_test."""
    buffer = io.BytesIO()
    np.savez(buffer, x_train=d.x_train.reshape(-1, 28, 28), y_train=d.y_train.astype(np.uint8),
             x_test=d.x_test.reshape(-1, 28, 28), y_test=d.y_test.astype(np.uint8))
    return buffer.getvalue()


def test_kerass_mnist_npz_in_the_cache_folder_is_never_touched(fake, tmp_path, monkeypatch):
    keras = tmp_path / "mnist.npz"
    keras.write_bytes(keras_npz(fake))                    # the real MNIST, in Keras's layout
    os.utime(keras, (1_000_000, 1_000_000))
    before = keras.read_bytes()
    fake_mirrors(monkeypatch, fake)
    monkeypatch.setenv("TINYVAE_CACHE", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")                    # nothing to warn about: it is not ours
        assert_same(data.load_mnist(progress=False), fake)
        assert_same(data.load_mnist(progress=False), fake)   # the second time from tinyvae's own cache
    assert keras.read_bytes() == before and os.stat(keras).st_mtime == 1_000_000
    assert_same(data._read_cache(tmp_path / data.CACHE_FILE), fake)


def _garbage(path, d):
    path.write_bytes(b"not an npz at all")


def _keras_layout(path, d):
    path.write_bytes(keras_npz(d))


def _another_programs_zip(path, d):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("notes.txt", "mine")


def _truncated_foreign_npz(path, d):
    path.write_bytes(keras_npz(d)[:-300])


def _newer_tinyvae(path, d):
    np.savez_compressed(path, **{data.CACHE_MARKER: np.array(data.CACHE_FORMAT + 1)}, x=np.zeros(3))


@pytest.mark.parametrize("plant", [_garbage, _keras_layout, _another_programs_zip, _truncated_foreign_npz,
                                   _newer_tinyvae])
def test_a_file_at_the_caches_name_that_tinyvae_did_not_write_is_left_alone(fake, tmp_path, monkeypatch,
                                                                             plant):
    cache = tmp_path / data.CACHE_FILE
    plant(cache, fake)
    before = cache.read_bytes()
    fake_mirrors(monkeypatch, fake)
    with pytest.warns(UserWarning) as caught:
        assert_same(data.load_mnist(cache_dir=tmp_path, progress=False), fake)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "\n" not in messages[0]
    assert "leaves it as it is and keeps MNIST in memory" in messages[0] and str(cache) in messages[0]
    assert cache.read_bytes() == before
    with pytest.raises(DataError, match="left as it is"):
        data._write_cache(cache, fake)                     # the writer refuses on its own, too
    write_idx(tmp_path / "idx", fake)
    assert_same(data.load_mnist(data_dir=tmp_path / "idx", cache_dir=tmp_path), fake)
    assert cache.read_bytes() == before


def test_a_fifo_at_the_caches_name_neither_blocks_nor_is_replaced(fake, tmp_path, monkeypatch):
    os.mkfifo(tmp_path / data.CACHE_FILE)
    fake_mirrors(monkeypatch, fake)
    with pytest.warns(UserWarning, match="leaves it as it is"):
        assert_same(data.load_mnist(cache_dir=tmp_path, progress=False), fake)
    assert stat.S_ISFIFO(os.lstat(tmp_path / data.CACHE_FILE).st_mode)


def write_idx(folder, d):
    folder.mkdir()
    from test_data import idx_files
    for name, raw in idx_files(d).items():
        (folder / f"{name}.gz").write_bytes(gzip.compress(raw))


def test_an_older_tinyvaes_cache_is_read_but_never_written_or_deleted(fake, tmp_path, monkeypatch):
    old = tmp_path / data.LEGACY_CACHE_FILE                 # what tinyvae 0.1 wrote: flat pixels, no marker
    np.savez_compressed(old, x_train=fake.x_train, y_train=fake.y_train.astype(np.uint8),
                        x_test=fake.x_test, y_test=fake.y_test.astype(np.uint8))
    before = old.read_bytes()
    assert_same(data.load_mnist(cache_dir=tmp_path, progress=False), fake)   # the network is refused
    assert old.read_bytes() == before
    assert_same(data._read_cache(tmp_path / data.CACHE_FILE), fake)        # copied into tinyvae's own

    old.write_bytes(before[:-1000])                          # a damaged old cache: ignored, kept
    (tmp_path / data.CACHE_FILE).unlink()
    fake_mirrors(monkeypatch, fake)
    assert_same(data.load_mnist(cache_dir=tmp_path, progress=False), fake)
    assert old.read_bytes() == before[:-1000]


def test_downloads_never_replace_a_users_file_of_the_same_name(fake, tmp_path, monkeypatch):
    mine = tmp_path / "train-images-idx3-ubyte.gz"          # not MNIST: the user's own file
    mine.write_bytes(b"my own file")
    fake_mirrors(monkeypatch, fake)
    assert_same(data.load_mnist(cache_dir=tmp_path, progress=False), fake)
    assert mine.read_bytes() == b"my own file"


# ---- 4. a cache that cannot be written -------------------------------------------------


def read_only_file_system(monkeypatch, folder):
    """Every call that would change anything under `folder` fails with EROFS, as on a read-only
    mount: writes, renames, deletes (of files that are not there too), new folders."""
    folder = os.path.abspath(folder)

    def under(path):
        try:
            return os.path.abspath(os.fsdecode(path)).startswith(folder)
        except TypeError:                                   # a file descriptor
            return False

    def refuse(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

    def guard(real, *, when=lambda *a, **k: True, paths=1):
        def call(*args, **kwargs):
            if any(under(a) for a in args[:paths]) and when(*args, **kwargs):
                refuse(args[0] if under(args[0]) else args[1])
            return real(*args, **kwargs)
        return call

    def writes(path, mode="r", *a, **k):
        return any(c in mode for c in "wax+")

    def write_flags(path, flags, *a, **k):
        return flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC)

    monkeypatch.setattr(builtins, "open", guard(builtins.open, when=writes))
    monkeypatch.setattr(io, "open", guard(io.open, when=writes))
    monkeypatch.setattr(os, "open", guard(os.open, when=write_flags))
    for name in ("unlink", "remove", "mkdir", "rmdir"):
        monkeypatch.setattr(os, name, guard(getattr(os, name)))
    for name in ("replace", "rename", "link", "symlink"):
        monkeypatch.setattr(os, name, guard(getattr(os, name), paths=2))


@pytest.mark.parametrize("cache_there", [True, False], ids=["empty-folder", "no-folder"])
@pytest.mark.parametrize("mirrors_up", [True, False], ids=["mirrors", "pypi"])
def test_a_read_only_cache_falls_through_and_keeps_mnist_in_memory(fake, tmp_path, monkeypatch,
                                                                   cache_there, mirrors_up):
    cache = tmp_path / "ro-cache"
    if cache_there:
        cache.mkdir()
    fake_mirrors(monkeypatch, fake)
    if not mirrors_up:
        def no_dns(url, timeout):
            raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))
        monkeypatch.setattr(urllib.request, "urlopen", no_dns)
        install_fake_pip(monkeypatch, fake_wheel(fake))
    read_only_file_system(monkeypatch, tmp_path)
    with pytest.warns(UserWarning) as caught:
        got = data.load_mnist(cache_dir=cache, progress=False)
    monkeypatch.undo()
    assert_same(got, fake)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert messages[0].startswith(f"could not write the MNIST cache {cache / data.CACHE_FILE} (Read-only")
    assert "kept in memory" in messages[0] and "TINYVAE_CACHE" in messages[0] and "\n" not in messages[0]
    assert (os.listdir(cache) == []) if cache_there else not cache.exists()


def _drop_dac_override():
    """In the child: give up root's power to write anywhere (CAP_DAC_OVERRIDE), as a user is."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(24, 1, 0, 0, 0) != 0:                   # PR_CAPBSET_DROP, CAP_DAC_OVERRIDE
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


LOADER = textwrap.dedent("""\
    import socket, sys, urllib.error, urllib.request
    sys.path[:0] = [{tests!r}, {root!r}]
    import pytest
    from test_data import fake_wheel, install_fake_pip, spec_of, synthetic_mnist
    from tinyvae import data
    mp = pytest.MonkeyPatch()
    d = synthetic_mnist()
    mp.setattr(data, "SPLITS", {{"train": spec_of(d.x_train, d.y_train), "test": spec_of(d.x_test, d.y_test)}})
    def no_dns(url, timeout):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))
    mp.setattr(urllib.request, "urlopen", no_dns)
    install_fake_pip(mp, fake_wheel(d))
    got = data.load_mnist(cache_dir=sys.argv[1], progress=False)
    assert all((a == b).all() for a, b in zip(got, d))
    print("LOADED")
""")


def run_loader(tmp_path, cache, *python_flags, preexec_fn=None):
    script = tmp_path / "loader.py"
    script.write_text(LOADER.format(tests=str(TESTS), root=str(ROOT)))
    return subprocess.run([sys.executable, *python_flags, str(script), str(cache)], capture_output=True,
                          text=True, timeout=120, preexec_fn=preexec_fn, cwd=tmp_path)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="drops a Linux capability")
def test_a_really_read_only_cache_folder_still_loads(tmp_path):
    """No monkeypatch on the files: a folder the process may not write (root gives up its override)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o555)
    try:
        proc = run_loader(tmp_path, cache, preexec_fn=_drop_dac_override if os.geteuid() == 0 else None)
    finally:
        cache.chmod(0o755)
    assert proc.returncode == 0 and "LOADED" in proc.stdout, proc.stderr
    assert "could not write the MNIST cache" in proc.stderr and "Traceback" not in proc.stderr
    assert os.listdir(cache) == []


# ---- 5. python -W error ---------------------------------------------------------------------


def _marked_garbage(path, d):
    data._write_cache(path, d)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = bytes(64)
    path.write_bytes(bytes(raw))


def _marked_with_a_pickle(path, d):
    np.savez(path, **{data.CACHE_MARKER: np.array(data.CACHE_FORMAT)},
             x_train=np.array([{"a": 1}], dtype=object))


@pytest.mark.parametrize("spoil", [_marked_garbage, _marked_with_a_pickle, _garbage])
def test_a_bad_cache_under_warnings_as_errors_is_one_line(fake, tmp_path, monkeypatch, capsys, spoil):
    cache = tmp_path / data.CACHE_FILE
    spoil(cache, fake)
    fake_mirrors(monkeypatch, fake)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same(data.load_mnist(cache_dir=tmp_path, progress=False), fake)
    line = one_line(capsys.readouterr().err)
    assert line.startswith("warning: ") and str(cache) in line and "allow_pickle" not in line


def test_a_numpy_warning_while_reading_the_cache_counts_as_a_corrupt_cache(fake, tmp_path, monkeypatch):
    cache = tmp_path / data.CACHE_FILE
    data._write_cache(cache, fake)
    real_load = np.load

    def load_with_a_warning(*args, **kwargs):
        warnings.warn("this file looks odd; try allow_pickle=True", UserWarning)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", load_with_a_warning)
    with pytest.warns(UserWarning) as caught:
        assert data._read_cache(cache) is None
    (message,) = [str(w.message) for w in caught]
    assert message.startswith(f"MNIST cache {cache} is corrupt") and "allow_pickle" not in message
    assert not cache.exists()                              # tinyvae's own, so deleted and fetched again


def test_python_W_error_with_a_corrupt_cache_is_no_traceback(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / data.CACHE_FILE).write_bytes(b"PK\x03\x04" + bytes(26) + b"garbage")
    proc = run_loader(tmp_path, cache, "-W", "error")
    assert proc.returncode == 0 and "LOADED" in proc.stdout, proc.stderr
    assert "Traceback" not in proc.stderr and "allow_pickle" not in proc.stderr
    assert one_line(proc.stderr).startswith("warning: ")


def test_a_checkpoint_with_a_pickle_under_warnings_as_errors_is_one_line(tmp_path):
    path = tmp_path / "checkpoint.npz"
    np.savez(path, meta=np.array([{"format": 1}], dtype=object))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(CheckpointError) as e:
            checkpoint.load_checkpoint(path, backend=None)
    line = one_line(str(e.value))
    assert "unreadable or corrupt" in line and "allow_pickle" not in line


# ---- 6. one run at a time --------------------------------------------------------------------


HOLDER = "import sys, time; sys.path.insert(0, sys.argv[2]); from tinyvae.checkpoint import hold_folder; " \
         "h = hold_folder(sys.argv[1]); print('HELD', flush=True); time.sleep(60)"


def test_a_folder_held_by_another_process_is_refused_until_it_ends(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), str(ROOT)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "HELD"
        with pytest.raises(OutputError) as e:
            checkpoint.hold_folder(tmp_path)
        line = one_line(str(e.value))
        assert line.startswith(f"{tmp_path} is in use by another tinyvae run (PID {child.pid}: ")
        assert "time.sleep(60)" in line and line.endswith("wait for it to finish, or pass another --out")
    finally:
        child.kill()                                      # kill -9: no cleanup runs in the child
        child.wait()
        child.stdout.close()
    assert (tmp_path / checkpoint.LOCK_FILE).exists()     # left behind, but not held by anyone
    with checkpoint.hold_folder(tmp_path) as lock:
        pid, command = (tmp_path / checkpoint.LOCK_FILE).read_text().splitlines()
        assert int(pid) == os.getpid() and "pytest" in command
    assert lock.path == tmp_path / checkpoint.LOCK_FILE and not lock.path.exists()


def test_the_same_process_holds_again_after_letting_go_and_nested_holds_nest(tmp_path):
    with checkpoint.hold_folder(tmp_path):
        with checkpoint.hold_folder(tmp_path):            # a demo's hold, then train.fit's inside it
            pass
        assert (tmp_path / checkpoint.LOCK_FILE).exists()  # still held: the outer hold is not over
        proc = subprocess.run([sys.executable, "-c", HOLDER, str(tmp_path), str(ROOT)], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode != 0 and "is in use by another tinyvae run" in proc.stderr
    assert os.listdir(tmp_path) == []
    lock = checkpoint.hold_folder(tmp_path)
    lock.release()
    lock.release()                                        # twice is harmless
    with checkpoint.FolderLock(tmp_path):
        pass
    assert os.listdir(tmp_path) == []


def test_a_lock_file_that_is_not_a_file_is_refused(short_tmp):
    os.mkfifo(short_tmp / checkpoint.LOCK_FILE)
    with pytest.raises(OutputError, match="named pipe"):
        checkpoint.hold_folder(short_tmp)
    assert stat.S_ISFIFO(os.lstat(short_tmp / checkpoint.LOCK_FILE).st_mode)


def test_without_fcntl_the_import_works_and_nothing_is_locked(tmp_path):
    code = ("import sys; sys.modules['fcntl'] = None; sys.path.insert(0, sys.argv[2]); "
            "from tinyvae import checkpoint as c; assert c.fcntl is None; "
            "a = c.hold_folder(sys.argv[1]); b = c.hold_folder(sys.argv[1]); a.release(); b.release(); "
            "print('OK')")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(ROOT)], capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout.strip() == "OK", proc.stderr


# ---- 7. an earlier run's results, and a folder made for nothing -------------------------------


def test_an_earlier_runs_results_are_refused_unless_overwrite(tmp_path):
    files = ("checkpoint.npz", "metrics.json", "samples.png")
    (tmp_path / "checkpoint.npz").write_bytes(b"old checkpoint")
    (tmp_path / "metrics.json").write_text("{}")
    before = snapshot(tmp_path)
    with pytest.raises(OutputError) as e:
        checkpoint.prepare_out_dir(tmp_path, files, overwrite=False)
    assert one_line(str(e.value)) == (
        f"{tmp_path} already holds checkpoint.npz (and 1 more) from an earlier run: pass --overwrite "
        "to replace them, --resume to continue, or another --out")
    assert snapshot(tmp_path) == before                   # refused before writing anything
    (tmp_path / "checkpoint.npz").unlink()
    with pytest.raises(OutputError) as e:
        checkpoint.prepare_out_dir(tmp_path, files, overwrite=False, can_resume=False)
    assert one_line(str(e.value)) == (f"{tmp_path} already holds metrics.json from an earlier run: "
                                      "pass --overwrite to replace it, or another --out")
    assert checkpoint.prepare_out_dir(tmp_path, files, overwrite=True) == tmp_path
    assert checkpoint.prepare_out_dir(tmp_path, files) == tmp_path       # the default: as before
    assert checkpoint.prepare_out_dir(tmp_path / "new", files, overwrite=False) == tmp_path / "new"


def test_a_folder_made_for_a_run_that_failed_at_once_can_be_removed(tmp_path):
    out = tmp_path / "runs" / "a" / "b"
    checkpoint.prepare_out_dir(out, ("metrics.json",))
    assert out.is_dir()
    assert checkpoint.remove_if_empty(out) is True
    assert os.listdir(tmp_path) == []                     # the parents it made went too

    (tmp_path / "there").mkdir()                          # a folder the user made: kept
    checkpoint.prepare_out_dir(tmp_path / "there")
    assert checkpoint.remove_if_empty(tmp_path / "there") is False and (tmp_path / "there").is_dir()

    out = tmp_path / "there" / "run"                      # made, then written to: kept
    checkpoint.prepare_out_dir(out)
    (out / "metrics.json").write_text("{}")
    assert checkpoint.remove_if_empty(out) is False and (out / "metrics.json").exists()
    (out / "metrics.json").unlink()
    with checkpoint.hold_folder(out):
        assert checkpoint.remove_if_empty(out) is False   # the lock file is in it while held
    assert checkpoint.remove_if_empty(out) is True and (tmp_path / "there").is_dir()


# ---- 8. a checkpoint from a newer tinyvae ------------------------------------------------------


@pytest.mark.parametrize("meta", [
    {"format": checkpoint.CHECKPOINT_FORMAT + 1},
    {"format": 7, "config": "a shape this tinyvae has never seen", "epochs": None},
])
def test_a_checkpoint_from_a_newer_tinyvae_says_upgrade(tmp_path, meta):
    path = tmp_path / "checkpoint.npz"
    np.savez(path, meta=np.array(json.dumps(meta)), **{"weights/enc": np.zeros((2, 2), np.int8)})
    with pytest.raises(CheckpointError) as e:
        checkpoint.load_checkpoint(path, backend=None)
    line = one_line(str(e.value))
    assert (f"checkpoint {path} was written by a newer tinyvae (format {meta['format']}; "
            f"this one reads up to {checkpoint.CHECKPOINT_FORMAT}): upgrade tinyvae") in line
    assert "corrupt" not in line and "delete" not in line


def test_an_unknown_older_or_odd_format_is_still_corrupt(tmp_path):
    path = tmp_path / "checkpoint.npz"
    for odd in (0, "2", 2.5, True, None):
        np.savez(path, meta=np.array(json.dumps({"format": odd})))
        with pytest.raises(CheckpointError, match="unreadable or corrupt .*unknown checkpoint format"):
            checkpoint.load_checkpoint(path, backend=None)


# ---- 9. names too long for the file system ----------------------------------------------------


def test_a_name_too_long_is_one_line_and_nothing_is_made(tmp_path):
    long = "a" * 300
    for out in (tmp_path / long, tmp_path / "new" / long / "run"):
        with pytest.raises(OutputError) as e:
            checkpoint.prepare_out_dir(out, ("metrics.json",))
        line = one_line(str(e.value))
        assert "300 bytes, longer than the 255" in line and line.endswith("pass a shorter --out")
        assert "Errno" not in line and len(line) < 300
    with pytest.raises(OutputError, match="pass a shorter --out"):
        checkpoint.prepare_out_dir(tmp_path, ("b" * 256 + ".json",))
    with pytest.raises(OutputError, match="pass a shorter --out"):
        checkpoint.atomic_write(tmp_path / ("c" * 300 + ".json"), lambda f: f.write(b"x"))
    with pytest.raises(OutputError, match="longer than the 4096 the file system allows: pass a shorter"):
        checkpoint.prepare_out_dir(tmp_path.joinpath(*["d" * 200] * 25))
    assert os.listdir(tmp_path) == []


def test_a_long_name_that_fits_is_written_though_its_temp_name_would_not(tmp_path):
    path = tmp_path / ("e" * 250)
    checkpoint.atomic_write(path, lambda f: f.write(b"x"))
    assert path.read_bytes() == b"x" and os.listdir(tmp_path) == [path.name]
