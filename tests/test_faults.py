"""Faults a real run meets, provoked for real: a diverging run, an output folder that
cannot be written, a disk that fills part-way through a write, kill -9 in the middle of
a checkpoint, Ctrl-C before anything is saved. Each ends in one line with exit status
2 (130 for Ctrl-C), and no file that was saved is lost or replaced by a worse one.

The demo runs on a tiny synthetic MNIST: in-process through main(argv) where a
monkeypatch is enough, and as a subprocess (a small driver script) where the fault
needs a process of its own: a resource limit, a signal, a dropped privilege.
"""
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tinyvae import checkpoint, data, train
from tinyvae.backend import get_backend
from tinyvae.data import MNIST

from conftest import load_script, one_line

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "demos" / "mnist.py"
SMALL = ["--hidden", "16", "--batch-size", "50", "--iw-k", "3", "--iw-images", "20"]


demo = load_script(SCRIPT)
common = sys.modules["common"]


def tiny_mnist_data():
    rng = np.random.default_rng(0)
    return MNIST(rng.integers(0, 256, (200, 784), dtype=np.uint8), np.arange(200) % 10,
                 rng.integers(0, 256, (100, 784), dtype=np.uint8), np.arange(100) % 10)


@pytest.fixture
def tiny_mnist(monkeypatch):
    """main() trains on 200 + 100 random "digits" instead of loading MNIST."""
    d = tiny_mnist_data()
    monkeypatch.setattr(common, "load_mnist", lambda data_dir=None, **kw: d)
    return d


def temp_files(folder):
    return sorted(p.name for p in Path(folder).iterdir() if checkpoint.TEMP_FILE.match(p.name))


def saved_epoch(out):
    return train.load_checkpoint(Path(out) / "checkpoint.npz", get_backend("numpy"))[2]["epoch"]


def main_run(argv, capsys):
    """demo.main(argv) in-process: (exit status, stdout, stderr)."""
    status = demo.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if training starts: the fault must be found before it."""
    def refuse(*args, **kwargs):
        raise AssertionError("training started although the fault could be seen before it")
    monkeypatch.setattr(train, "train_epoch", refuse)


# ---- the driver: the demo as its own process, on the tiny MNIST -------------------

DRIVER = textwrap.dedent("""\
    import signal, sys, time
    import numpy as np
    # Ctrl-C raises KeyboardInterrupt, as in any Python started from a terminal; a
    # test run started in the background (`&`, nohup) would pass on SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.path[:0] = [{demos!r}, {root!r}]
    import common
    from tinyvae.data import MNIST
    rng = np.random.default_rng(0)
    d = MNIST(rng.integers(0, 256, (200, 784), dtype=np.uint8), np.arange(200) % 10,
              rng.integers(0, 256, (100, 784), dtype=np.uint8), np.arange(100) % 10)
    common.load_mnist = lambda data_dir=None, **kw: d
    import importlib.util
    spec = importlib.util.spec_from_file_location("demo_mnist", {script!r})
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    {fault}
    sys.exit(demo.main(sys.argv[1:]))
""")

# Faults planted in the driver: each announces on stdout that it has been reached, then waits.
HANG_IN_TRAINING = """
import tinyvae.train as t
def hang(*args, **kwargs):
    print("TRAINING", flush=True); time.sleep(120)
t.train_epoch = hang
"""
HANG_MID_WRITE = """
def half_a_checkpoint(f, **arrays):
    f.write(b"PK\\x03\\x04 the first bytes of a checkpoint " * 2000); f.flush()
    print("WRITING", flush=True); time.sleep(120)
np.savez = half_a_checkpoint
"""


def driver(tmp_path, fault=""):
    path = tmp_path / "driver.py"
    path.write_text(DRIVER.format(demos=str(SCRIPT.parent), root=str(ROOT), script=str(SCRIPT),
                                  fault=textwrap.dedent(fault)))
    return path


def popen(tmp_path, argv, fault="", preexec_fn=None):
    return subprocess.Popen([sys.executable, str(driver(tmp_path, fault)), *map(str, argv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=preexec_fn, cwd=tmp_path)


def wait_for(proc, word, timeout=60):
    """Read the driver's stdout until `word` (the fault has been reached)."""
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        if word in line:
            return
        assert time.monotonic() < deadline, f"the driver never said {word}"
    pytest.fail(f"the driver ended before {word}: {proc.stderr.read()[-2000:]}")


def finish(proc, timeout=60):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


# ---- 1. divergence ---------------------------------------------------------------


def test_a_huge_learning_rate_stops_in_one_line_with_nothing_saved(tmp_path, tiny_mnist, capsys):
    status, out, err = main_run([*SMALL, "--epochs", 3, "--lr", 10, "--out", tmp_path], capsys)
    assert status == 2
    line = one_line(err)
    assert line.startswith("error: training diverged in epoch 1") and "--lr" in line
    assert "nothing of this run was saved" in line
    assert not (tmp_path / "checkpoint.npz").exists() and not (tmp_path / "metrics.json").exists()
    assert not list(tmp_path.glob("*.png"))          # no pictures of NaN weights, no plot traceback


def test_divergence_after_good_epochs_keeps_the_last_good_checkpoint(tmp_path, tiny_mnist, capsys,
                                                                     monkeypatch):
    """Epoch 1 is good; in epoch 2 the weights blow up. Epoch 1's files stay, byte for byte."""
    argv = [*SMALL, "--out", tmp_path]
    assert main_run([*argv, "--epochs", 1], capsys)[0] == 0
    good = {name: (tmp_path / name).read_bytes() for name in ("checkpoint.npz", "metrics.json")}
    real_epoch = train.train_epoch

    def blows_up_in_epoch_2(params, optimizer, x, backend, config, tconfig, epoch, progress=None, *rest):
        numbers = real_epoch(params, optimizer, x, backend, config, tconfig, epoch, progress, *rest)
        if epoch == 2:
            params["dec.0.W"][0, 0] = np.inf                 # what a too-large step does
        return numbers

    monkeypatch.setattr(train, "train_epoch", blows_up_in_epoch_2)
    status, _, err = main_run([*argv, "--epochs", 3, "--resume"], capsys)
    assert status == 2
    line = one_line(err)
    assert "diverged in epoch 2" in line and "weights are NaN or inf" in line
    assert "epoch 1 is saved" in line and "is kept" in line
    for name, raw in good.items():
        assert (tmp_path / name).read_bytes() == raw, name
    json.loads((tmp_path / "metrics.json").read_text(), parse_constant=pytest.fail)  # strict JSON
    assert saved_epoch(tmp_path) == 1 and temp_files(tmp_path) == []


def test_metrics_json_refuses_nan():
    """The last guard: metrics.json is strict JSON, so a NaN can never be written into it."""
    with pytest.raises(ValueError):
        checkpoint.write_json(Path("never-written.json"), {"test_neg_elbo": float("nan")})
    assert not Path("never-written.json").exists()


# ---- 2. the output folder, checked before training --------------------------------


@pytest.mark.parametrize("setup, out, words", [
    (lambda d: (d / "file").write_text("x"), "file", "is a file, not a folder"),
    (lambda d: (d / "file").write_text("x"), "file/run", "lies under"),
    (lambda d: (d / "run" / "metrics.json").mkdir(parents=True), "run", "metrics.json is a folder"),
    (lambda d: (d / "run" / "checkpoint.npz").mkdir(parents=True), "run", "checkpoint.npz is a folder"),
    (lambda d: (d / "run" / "samples.png").mkdir(parents=True), "run", "samples.png is a folder"),
])
def test_an_output_folder_that_cannot_hold_the_run_fails_before_training(
        tmp_path, tiny_mnist, no_training, capsys, setup, out, words):
    setup(tmp_path)
    status, _, err = main_run([*SMALL, "--epochs", 1, "--out", tmp_path / out], capsys)
    assert status == 2
    line = one_line(err)
    assert line.startswith("error: ") and words in line and "--out" in line


def _drop_dac_override():
    """In the child: give up root's power to write anywhere (CAP_DAC_OVERRIDE), as a user is."""
    libc = ctypes.CDLL(None, use_errno=True)
    PR_CAPBSET_DROP, CAP_DAC_OVERRIDE = 24, 1
    if libc.prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_a_read_only_output_folder_fails_before_training(tmp_path):
    out = tmp_path / "read-only"
    out.mkdir()
    out.chmod(0o555)
    try:
        # root writes into read-only folders; the child gives that power up (Linux)
        proc = popen(tmp_path, [*SMALL, "--epochs", 1, "--out", out], fault=HANG_IN_TRAINING,
                     preexec_fn=_drop_dac_override if os.geteuid() == 0 else None)
        status, stdout, stderr = finish(proc)
    finally:
        out.chmod(0o755)
    assert status == 2, stderr
    line = one_line(stderr)
    assert line.startswith("error: cannot write in the output folder") and "--out" in line
    assert "Permission denied" in line
    assert "TRAINING" not in stdout and list(out.iterdir()) == []


def test_a_write_that_fails_part_way_keeps_the_previous_checkpoint(tmp_path, tiny_mnist, capsys):
    """The file-size limit stops the checkpoint write half-way, like a disk that fills up."""
    out = tmp_path / "run"
    assert main_run([*SMALL, "--epochs", 1, "--out", out], capsys)[0] == 0
    before = (out / "checkpoint.npz").read_bytes()
    limit = len(before) // 2                       # room for metrics.json, not for a checkpoint

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = popen(tmp_path, [*SMALL, "--epochs", 2, "--resume", "--out", out], preexec_fn=small_files)
    status, stdout, stderr = finish(proc)
    assert status == 2, stderr
    line = one_line(stderr)
    assert line.startswith(f"error: could not write {out / 'checkpoint.npz'} (File too large)")
    assert "the previous checkpoint.npz is unchanged" in line
    assert "epoch   2" not in stdout                    # the epoch was not reported as done
    assert (out / "checkpoint.npz").read_bytes() == before and saved_epoch(out) == 1
    assert temp_files(out) == []


def test_a_failed_write_and_a_failed_cleanup_are_still_one_error(tmp_path, monkeypatch):
    """No chained traceback: the cleanup's own failure is not raised over the write's."""
    path = tmp_path / "metrics.json"
    path.write_text("{}\n")

    def no_space(src, dst):
        raise OSError(28, "No space left on device")

    def cannot_delete(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", no_space)
    monkeypatch.setattr(Path, "unlink", cannot_delete)
    with pytest.raises(checkpoint.OutputError) as e:
        checkpoint.write_json(path, {"a": 1})
    assert e.value.__cause__ is None and e.value.__suppress_context__
    message = str(e.value)
    assert "No space left on device" in message and "free some space" in message
    assert "the previous metrics.json is unchanged" in message and "\n" not in message
    monkeypatch.undo()
    assert path.read_text() == "{}\n"


def test_a_disk_without_room_for_a_checkpoint_fails_before_training(tmp_path, tiny_mnist, no_training,
                                                                     capsys, monkeypatch):
    real = checkpoint.shutil.disk_usage
    monkeypatch.setattr(checkpoint.shutil, "disk_usage",
                        lambda p: real(p)._replace(free=10_000))   # a 10 kB disk
    status, _, err = main_run([*SMALL, "--epochs", 1, "--out", tmp_path / "run"], capsys)
    assert status == 2
    line = one_line(err)
    assert "has 10.0 kB free, but the run needs about" in line and "--out" in line


# ---- 3. kill -9 mid-write: the next run removes what the dead one left -------------


def test_kill_9_mid_write_leaves_nothing_after_the_next_run_starts(tmp_path, tiny_mnist, capsys,
                                                                   monkeypatch):
    out = tmp_path / "run"
    assert main_run([*SMALL, "--epochs", 1, "--out", out], capsys)[0] == 0
    before = (out / "checkpoint.npz").read_bytes()

    proc = popen(tmp_path, [*SMALL, "--epochs", 2, "--resume", "--out", out], fault=HANG_MID_WRITE)
    wait_for(proc, "WRITING")
    proc.kill()                                   # SIGKILL: no cleanup runs
    proc.wait()                                   # reaped, as a shell would
    left = temp_files(out)
    assert left == [checkpoint.temp_path(out / "checkpoint.npz", proc.pid).name]  # the half-written file ...
    assert (out / "checkpoint.npz").read_bytes() == before  # ... and the checkpoint is whole
    checkpoint.temp_path(out / "samples.png", proc.pid).write_bytes(b"")  # as plots' writer would leave it

    seen_at_start = []
    real_epoch = train.train_epoch

    def look_first(*args, **kwargs):
        seen_at_start.append(temp_files(out))
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train, "train_epoch", look_first)
    assert main_run([*SMALL, "--epochs", 2, "--resume", "--out", out], capsys)[0] == 0
    assert seen_at_start[0] == []                 # gone before the first step of the next run
    assert temp_files(out) == [] and saved_epoch(out) == 2


def test_the_temp_file_of_a_live_process_is_kept(tmp_path):
    """Another process may be writing its temp file right now: only dead writers' files go."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        live_file = checkpoint.temp_path(tmp_path / "checkpoint.npz", sleeper.pid)
        dead_file = checkpoint.temp_path(tmp_path / "checkpoint.npz", dead.pid)
        other = tmp_path / f".notes.{dead.pid}.tmp"     # not a tinyvae temp file: a user's
        for p in (live_file, dead_file, other):
            p.write_bytes(b"x")
        assert checkpoint.remove_stale_temp_files(tmp_path) == [dead_file]
        assert live_file.exists() and other.exists() and not dead_file.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_mnist_cache_writer_sweeps_a_dead_writers_temp_file(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = checkpoint.temp_path(tmp_path / data.CACHE_FILE, dead.pid)
    stale.write_bytes(b"half of a 50 MB cache")
    data._write_cache(tmp_path / data.CACHE_FILE, tiny_mnist_data())
    assert sorted(p.name for p in tmp_path.iterdir()) == [data.CACHE_FILE]


# ---- 4. Ctrl-C ---------------------------------------------------------------------


def test_ctrl_c_before_the_first_checkpoint_says_nothing_was_saved(tmp_path):
    out = tmp_path / "run"
    proc = popen(tmp_path, [*SMALL, "--epochs", 2, "--out", out], fault=HANG_IN_TRAINING)
    wait_for(proc, "TRAINING")
    proc.send_signal(signal.SIGINT)
    status, _, stderr = finish(proc)
    assert status == 130
    line = one_line(stderr)
    assert line.startswith("interrupted in epoch 1, before the first checkpoint")
    assert "nothing of this run was saved" in line and "--resume" not in line
    assert not (out / "checkpoint.npz").exists()


def test_ctrl_c_after_an_epoch_says_which_are_saved_and_resume_works(tmp_path, tiny_mnist, capsys,
                                                                     monkeypatch):
    out = tmp_path / "run"
    real_epoch = train.train_epoch

    def interrupt_epoch_2(*args, **kwargs):
        if args[6] == 2:                                  # the epoch argument
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train, "train_epoch", interrupt_epoch_2)
    status, _, err = main_run([*SMALL, "--epochs", 2, "--out", out], capsys)
    assert status == 130
    line = one_line(err)
    assert line == (f"interrupted in epoch 2: epoch 1 is saved in {out / 'checkpoint.npz'}; "
                    "continue with --resume")
    monkeypatch.setattr(train, "train_epoch", real_epoch)
    assert main_run([*SMALL, "--epochs", 2, "--resume", "--out", out], capsys)[0] == 0
    assert saved_epoch(out) == 2


def test_ctrl_c_with_overwrite_says_the_earlier_checkpoint_is_unchanged(tmp_path, tiny_mnist, capsys,
                                                                       monkeypatch):
    out = tmp_path / "run"
    assert main_run([*SMALL, "--epochs", 1, "--out", out], capsys)[0] == 0
    before = (out / "checkpoint.npz").read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "train_epoch", interrupted)
    status, _, err = main_run([*SMALL, "--epochs", 1, "--overwrite", "--out", out], capsys)
    assert status == 130
    line = one_line(err)
    assert "nothing of this run was saved" in line and "earlier run" in line and "--overwrite" in line
    assert (out / "checkpoint.npz").read_bytes() == before


# ---- 6. memory ---------------------------------------------------------------------


def test_a_model_too_large_for_memory_is_one_line_naming_the_bytes(tmp_path, tiny_mnist, no_training,
                                                                    capsys):
    status, _, err = main_run(["--hidden", 100_000_000, "--out", tmp_path / "run"], capsys)
    assert status == 2
    line = one_line(err)
    H = 100_000_000                                   # 784-H-(2*20) encoder, 20-H-784 decoder
    assert f"the model has {784 * H + H + 40 * H + 40 + 20 * H + H + 784 * H + 784:,} parameters" in line
    assert "TB of memory" in line and "--hidden" in line
    assert not (tmp_path / "run").exists()            # refused before anything was made
