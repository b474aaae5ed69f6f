"""The dense VAE's epoch, this checkout against an earlier revision, side by side in one run.

A change to the engine (the layer stack, say) must not make the plain MLP
VAE slower. This script answers that on the machine as found: it extracts
the earlier revision's files with `git archive` into a temporary folder,
starts one worker process per contestant (each imports its own copy of
tinyvae, loads MNIST and warms up with one epoch), then asks them for one
timed epoch each in turn, alternating who goes first, for --rounds rounds.

    python benchmarks/mlp_versions.py --ref 78fe84f                # before the layer stack
    python benchmarks/mlp_versions.py --ref 78fe84f --plain-adam   # also this checkout with Adam(fast=False)

The model, data and settings are the PyTorch example's (784-400-20, batch
128, Adam lr 1e-3, float32, NumPy). Nothing here sets threads or BLAS
options. Results: docs/benchmarks.md#the-mlp-before-and-after-the-layer-stack.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAUSE_S = 0.2  # between contestants, so one's last memory traffic does not land on the next


# ---------------------------------------------------------------------------
# The worker: one copy of tinyvae, one epoch per request on stdin
# ---------------------------------------------------------------------------


def worker(src: str, limit: int, batch_size: int, fast: bool):
    """Import tinyvae from `src`, then answer each line on stdin with one timed epoch's seconds."""
    sys.path.insert(0, src)
    import numpy as np
    import tinyvae
    if not Path(tinyvae.__file__).resolve().is_relative_to(Path(src).resolve()):
        raise SystemExit(f"error: imported tinyvae from {tinyvae.__file__}, not from {src}")
    from tinyvae.backend import get_backend
    from tinyvae.data import load_mnist, to_unit_interval
    from tinyvae.optim import Adam
    try:
        from tinyvae.vae import VAEConfig, init_params, loss_and_grads
    except ImportError:  # revisions before the layer stack kept the model in model.py
        from tinyvae.model import VAEConfig, init_params, loss_and_grads

    be = get_backend("numpy", seed=0)
    x = be.asarray(to_unit_interval(load_mnist(progress=False).x_train[:limit]))
    config = VAEConfig()
    params = init_params(config, be)
    try:
        opt = Adam(params, lr=1e-3, fast=fast)
    except TypeError:  # no fast path in this revision
        opt = Adam(params, lr=1e-3)
    rng = np.random.default_rng(0)

    def epoch():
        idx = be.asarray(rng.permutation(x.shape[0]))
        for start in range(0, x.shape[0], batch_size):
            xb = be.xp.take(x, idx[start:start + batch_size], axis=0)
            eps = be.normal((xb.shape[0], config.latent_dim))
            _, grads = loss_and_grads(params, xb, eps, config)
            opt.step(params, grads)

    epoch()  # warm-up: caches, page faults, the fast path's compile
    print("ready", flush=True)
    for _ in sys.stdin:
        t0 = time.perf_counter()
        epoch()
        print(f"{time.perf_counter() - t0:.6f}", flush=True)


# ---------------------------------------------------------------------------
# The parent: start the workers, take turns, print the table
# ---------------------------------------------------------------------------


def extract(ref: str, dest: str) -> str:
    """The files of git revision `ref` of this repository, unpacked under dest; returns the folder."""
    archive = Path(dest) / "ref.tar"
    with open(archive, "wb") as f:
        subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref], stdout=f, check=True)
    out = Path(dest) / "src"
    with tarfile.open(archive) as t:
        t.extractall(out, filter="data")
    return str(out)


def start(src, args, fast=True):
    cmd = [sys.executable, __file__, "--worker", src, "--limit", str(args.limit),
           "--batch-size", str(args.batch_size)] + ([] if fast else ["--plain-adam"])
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=src)
    if p.stdout.readline().strip() != "ready":
        raise SystemExit(f"error: the worker for {src} did not start (run it alone to see why)")
    return p


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ref", default="78fe84f", help="the earlier git revision (default: before the layer stack)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--limit", type=int, default=60000, help="training images per epoch")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--plain-adam", action="store_true",
                   help="add this checkout with Adam(fast=False) as a third contestant "
                        "(as a worker flag: run the plain lines)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.limit, args.batch_size, fast=not args.plain_adam)

    # Imported here, not at the top: it imports this checkout's tinyvae, which a
    # worker for an earlier revision must not get.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from epoch_vs_pytorch import machine_report

    for line in machine_report(None, "numpy", "cpu"):
        print(line)
    print(f"{args.limit} images/epoch, batch {args.batch_size}")
    with tempfile.TemporaryDirectory() as tmp:
        workers = {f"before ({args.ref})": start(extract(args.ref, tmp), args),
                   "now": start(str(ROOT), args)}
        if args.plain_adam:
            workers["now, Adam fast=False"] = start(str(ROOT), args, fast=False)
        times = {k: [] for k in workers}
        for r in range(args.rounds):
            order = list(workers) if r % 2 == 0 else list(reversed(workers))
            for name in order:
                time.sleep(PAUSE_S)
                workers[name].stdin.write("go\n")
                workers[name].stdin.flush()
                times[name].append(float(workers[name].stdout.readline()))
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in times.items()),
                  flush=True)
        for w in workers.values():
            w.stdin.close()
            w.wait()
    print()
    print(f"{'':24s}{'min s':>8s}{'median s':>10s}")
    for name, t in times.items():
        print(f"{name:24s}{min(t):8.3f}{statistics.median(t):10.3f}")
    before_t = times[f"before ({args.ref})"]
    before = statistics.median(before_t)
    for name, t in times.items():
        if name.startswith("now"):
            # Round by round: the two epochs of a round ran back to back, so a slow
            # spell of the machine that spans a round moves both.
            by_round = statistics.median(a / b for a, b in zip(t, before_t))
            print(f"{name} / before: {statistics.median(t) / before:.3f} of the medians, "
                  f"{by_round:.3f} round by round (median)   (target <= 1.03)")


if __name__ == "__main__":
    main()
