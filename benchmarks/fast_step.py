"""One training step (the model's train_step, then Adam) on the fast path and on the plain path, and
where the fast step's time goes.

    python benchmarks/fast_step.py --model conv                  # fast, fast with parallel loops, plain
    python benchmarks/fast_step.py --model mlp --modes fast plain
    python benchmarks/fast_step.py --model conv --pieces         # the fast step's time, piece by piece

Each mode runs in a fresh process of its own (this script, started again with --child), the modes
taking turns round after round. A child warms up, then times --steps steps --rounds times and
reports its best wall-clock and CPU milliseconds a step (CPU: time.process_time, every thread of
the process, spinning ones included). Modes: fast (tinyvae/fast/step.py, its loops on the calling
thread), parallel (the same with kernels.PARALLEL: the large loops on Numba's threads), plain (the
core's step and Adam's plain lines). --pieces times, inside one fast process, every compiled loop
and every np.matmul of the step, in CPU milliseconds a step. Nothing here sets a thread count or an
environment variable: the machine is measured as found. Results: docs/fast_path.md.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from tinyvae import models  # noqa: E402
from tinyvae.backend import get_backend  # noqa: E402
from tinyvae.core.optim import Adam  # noqa: E402
from tinyvae.core.vae import VAEConfig, init_params  # noqa: E402
from tinyvae.fast import kernels  # noqa: E402
from tinyvae.fast import step as fast_step  # noqa: E402
from tinyvae.specs import keras_conv_decoder, keras_conv_encoder  # noqa: E402

BATCH = 128


def config_of(model):
    if model == "conv":
        return VAEConfig(latent_dim=2, encoder=keras_conv_encoder(2), decoder=keras_conv_decoder(), init="pytorch")
    return VAEConfig(init="pytorch")   # the PyTorch example's MLP


def trainer(model, mode):
    """A function that runs one step (train_step, then Adam) of `model` on the path `mode`."""
    kernels.PARALLEL = mode == "parallel"
    config, fast = config_of(model), mode != "plain"
    be = get_backend("numpy", seed=0)
    params = init_params(config, be)
    net, opt = models.for_config(config, fast=fast), Adam(params, lr=1e-3, fast=fast)
    batch = {"x": (np.random.default_rng(0).uniform(size=(BATCH, 784)) > 0.7).astype(np.float32), "y": None}

    def one():
        parts, grads = net.train_step(params, batch, be, config)
        opt.step(params, grads)
    for _ in range(3):
        one()   # compiled (or loaded from Numba's cache), the workspace grown
    return one


def child(args):
    one = trainer(args.model, args.child)
    wall, cpu = [], []
    for _ in range(args.rounds):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(args.steps):
            one()
        wall.append((time.perf_counter() - t0) / args.steps * 1e3)
        cpu.append((time.process_time() - c0) / args.steps * 1e3)
    print(f"{min(wall):.2f} {min(cpu):.2f}")


def pieces(args):
    """Wall-clock and CPU milliseconds a step in each compiled loop and in np.matmul, inside the fast step."""
    spent = {}   # name -> [wall s, CPU s]

    def timed(name, f):
        def g(*a, **k):
            t0, c0 = time.perf_counter(), time.process_time()
            out = f(*a, **k)
            s = spent.setdefault(name, [0.0, 0.0])
            s[0] += time.perf_counter() - t0
            s[1] += time.process_time() - c0
            return out
        return g
    compiled = kernels.compiled
    shim = type(sys)("numpy_timed")
    shim.__dict__.update(np.__dict__)
    shim.matmul = timed("np.matmul", np.matmul)
    kernels.compiled, fast_step.np = (lambda name: timed(name, compiled(name))), shim
    try:
        one = trainer(args.model, "fast")
        spent.clear()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(args.steps):
            one()
        total = [(time.perf_counter() - t0) * 1e3 / args.steps, (time.process_time() - c0) * 1e3 / args.steps]
    finally:
        kernels.compiled, fast_step.np = compiled, np
    print(f"{args.model}, fast step and Adam, ms a step: {total[0]:.1f} wall, {total[1]:.1f} CPU (all threads)")
    rows = sorted(((name, w * 1e3 / args.steps, c * 1e3 / args.steps) for name, (w, c) in spent.items()),
                  key=lambda r: -r[1])
    rows.append(("the rest", total[0] - sum(r[1] for r in rows), total[1] - sum(r[2] for r in rows)))
    print(f"  {'piece':18s}{'wall':>9s}{'CPU':>9s}")
    for name, w, c in rows:
        print(f"  {name:18s}{w:9.2f}{c:9.2f}")
    print("  (the rest: Adam, the Bernoulli loss's NumPy lines, dW summed over the passes, Python)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=("conv", "mlp"), default="conv")
    p.add_argument("--modes", nargs="+", choices=("fast", "parallel", "plain"), default=["fast", "parallel", "plain"])
    p.add_argument("--steps", type=int, default=None, help="steps a timing (default 10 conv, 50 mlp)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the modes' turns; timings per child")
    p.add_argument("--pieces", action="store_true", help="the fast step's CPU time piece by piece, in one process")
    p.add_argument("--child", choices=("fast", "parallel", "plain"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.steps = args.steps or (10 if args.model == "conv" else 50)
    if args.child:
        return child(args)
    if args.pieces:
        return pieces(args)
    best = {m: [] for m in args.modes}
    for r in range(args.rounds):
        for mode in (args.modes if r % 2 == 0 else args.modes[::-1]):
            out = subprocess.run([sys.executable, __file__, "--child", mode, "--model", args.model,
                                  "--steps", str(args.steps), "--rounds", "1"],
                                 capture_output=True, text=True, check=True).stdout.split()
            best[mode].append(tuple(map(float, out)))
            print(f"round {r + 1}/{args.rounds}: {mode:8s} {out[0]:>8s} ms a step, {out[1]:>8s} CPU ms", flush=True)
    print(f"{args.model}, batch {BATCH}, {args.steps} steps a timing; median of {args.rounds} rounds:")
    for mode, runs in best.items():
        print(f"  {mode:8s} {np.median([w for w, _ in runs]):9.1f} ms a step {np.median([c for _, c in runs]):9.1f} CPU ms")


if __name__ == "__main__":
    main()
