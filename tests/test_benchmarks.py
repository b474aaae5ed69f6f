"""The benchmarks' turn-taking: each contestant in a process of its own, page faults counted there.

The benchmarks compare libraries that share nothing only if they run apart:
in one process the C allocator's state would pass from one to the other
(docs/benchmarks.md#fresh-memory-page-faults). These tests run the machinery
with toy contestants, and the conv benchmark's accuracy modes on toy data;
nothing here is timed.
"""
from __future__ import annotations

import mmap
import os
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from conftest import load_script

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from harness import take_turns  # noqa: E402


def make_pid_writer(path):
    """A toy contestant whose epoch appends its process id and the batch order's first index to `path`."""
    def epoch(perm):
        with open(path, "a") as f:
            f.write(f"{os.getpid()} {int(perm[0])}\n")
    return epoch


def make_fresh_memory_user(megabytes):
    """A toy contestant whose epoch maps `megabytes` of new memory and writes a byte to each 4 KiB page."""
    def epoch(perm):
        with mmap.mmap(-1, megabytes * 2**20) as region:
            for offset in range(0, len(region), 4096):
                region[offset] = 1  # the first write to each fresh page faults
    return epoch


def test_each_contestant_runs_in_a_process_of_its_own_and_sees_each_rounds_batch_order(tmp_path):
    files = {name: tmp_path / f"{name}.txt" for name in ("a", "b")}
    results = take_turns({name: partial(make_pid_writer, str(f)) for name, f in files.items()},
                         rounds=3, n=1000, seed=0, pause_s=0.0)
    assert {name: len(r) for name, r in results.items()} == {"a": 3, "b": 3}
    lines = {name: [line.split() for line in f.read_text().splitlines()] for name, f in files.items()}
    pids = {name: {pid for pid, _ in rows} for name, rows in lines.items()}
    assert all(len(p) == 1 for p in pids.values())                       # one process each, for every round
    assert pids["a"] != pids["b"] and str(os.getpid()) not in pids["a"] | pids["b"]
    firsts = {name: [first for _, first in rows] for name, rows in lines.items()}
    assert firsts["a"] == firsts["b"]                                    # the same batch order per round
    assert len(set(firsts["a"])) > 1                                     # and a new one each round


def test_page_faults_are_counted_in_the_contestants_process():
    results = take_turns({"fresh": partial(make_fresh_memory_user, 64),
                          "none": partial(make_pid_writer, os.devnull)},
                         rounds=2, n=10, seed=0, pause_s=0.0)
    fresh = [faults for _, faults in results["fresh"]]
    none = [faults for _, faults in results["none"]]
    # Each epoch maps 64 MiB afresh: 16,384 faults of 4 KiB pages, or 32 where
    # the kernel hands out 2 MiB pages instead.
    assert min(fresh) >= 32, fresh
    assert max(none) < min(fresh), (none, fresh)
    assert all(seconds >= 0 for r in results.values() for seconds, _ in r)


def make_broken():
    """A toy contestant that fails while it is being built."""
    raise ValueError("no such library")


def test_a_contestant_that_fails_to_start_is_named_in_one_line():
    with pytest.raises(RuntimeError, match=r"^broken: its process ended \(exit code 1\) before it was ready"):
        take_turns({"broken": make_broken}, rounds=1, n=10, seed=0, pause_s=0.0)


def _conv_bench_with_toy_data(monkeypatch, seen):
    """benchmarks/conv_vs_pytorch.py on 64 training and 32 test images, PyTorch left out; epochs recorded."""
    bench = load_script(Path(__file__).resolve().parents[1] / "benchmarks" / "conv_vs_pytorch.py")
    rng = np.random.default_rng(0)
    x, x_test = (rng.uniform(0, 1, (n, 784)).astype(np.float32) for n in (64, 32))
    monkeypatch.setattr(bench, "load_data", lambda limit, synthetic: (x, x_test))
    monkeypatch.setattr(bench, "import_torch", lambda backend: (None, None))
    epoch, test_neg_elbo = bench.TinyVAERun.epoch, bench.TinyVAERun.test_neg_elbo

    def recorded_epoch(self, perm, batch_size, limit=None):
        seen["images"] = perm.shape[0]
        seen["train"] = epoch(self, perm, batch_size, limit)
        return seen["train"]

    def recorded_test(self, x_test, batch_size=1000):
        seen["test"] = test_neg_elbo(self, x_test, batch_size)
        return seen["test"]

    monkeypatch.setattr(bench.TinyVAERun, "epoch", recorded_epoch)
    monkeypatch.setattr(bench.TinyVAERun, "test_neg_elbo", recorded_test)
    return bench


@pytest.mark.parametrize("keras", [False, True])
def test_conv_accuracy_mode_reports_test_elbo_or_keras_training_loss(monkeypatch, capsys, keras):
    seen = {}
    bench = _conv_bench_with_toy_data(monkeypatch, seen)
    bench.main(["--accuracy", "--epochs", "1"] + (["--keras-protocol"] if keras else []))
    last = capsys.readouterr().out.strip().splitlines()[-1].split()
    if keras:   # Keras's figure: trained on train and test together, the epoch's training loss printed
        assert seen["images"] == 96 and "test" not in seen
        assert float(last[1]) == pytest.approx(seen["train"], abs=0.005)
    else:       # the test -ELBO of a model trained on the training images alone
        assert seen["images"] == 64
        assert float(last[1]) == pytest.approx(seen["test"], abs=0.005)


def test_keras_protocol_without_accuracy_is_refused_in_one_line(monkeypatch, capsys):
    bench = _conv_bench_with_toy_data(monkeypatch, {})
    with pytest.raises(SystemExit):
        bench.main(["--keras-protocol"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--keras-protocol goes with --accuracy" in err


@pytest.mark.parametrize("backend, budget", [("numpy", "COLUMN_ENTRIES_PER_PASS"),
                                             ("cupy", "GPU_COLUMN_ENTRIES_PER_PASS")])
def test_pass_entries_sets_the_budget_of_the_device_in_use(monkeypatch, backend, budget):
    """--pass-entries changes the conv budget of the benchmark's device and leaves the other
    device's alone; without it, the library's default for that device is reported."""
    bench = load_script(Path(__file__).resolve().parents[1] / "benchmarks" / "conv_vs_pytorch.py")
    other = ({"COLUMN_ENTRIES_PER_PASS", "GPU_COLUMN_ENTRIES_PER_PASS"} - {budget}).pop()
    for name in (budget, other):
        monkeypatch.setattr(bench.conv, name, getattr(bench.conv, name))  # restored after the test
    before = getattr(bench.conv, other)
    assert bench.set_pass_entries(backend, None) == getattr(bench.conv, budget)
    assert bench.set_pass_entries(backend, 1e4) == 10_000 == getattr(bench.conv, budget)
    assert getattr(bench.conv, other) == before


def test_the_pytorch_dcgan_reference_trains_and_is_judged(tmp_path, capsys):
    """benchmarks/dcgan_pytorch.py for one epoch on 256 real images (PyTorch installed only): each epoch's
    line carries the judge's classifier score."""
    bench = load_script(Path(__file__).resolve().parents[1] / "benchmarks" / "dcgan_pytorch.py")
    pytest.importorskip("torch")
    status = bench.main(["--epochs", "1", "--limit", "256", "--samples", "200",
                         "--judge", str(tmp_path / "judge" / "checkpoint.npz")])
    out = capsys.readouterr().out
    assert status == 0 and "epoch   1" in out and "classifier score" in out, out
