"""Where one training step's time goes: each engine function, the optimizer, batching.

Trains the PyTorch-example VAE (see epoch_vs_pytorch.py) for a few hundred
steps with a stopwatch around every forward/backward function that
`loss_and_grads` calls, and around batching, the noise draw and Adam, then
prints milliseconds per step for each, largest first, next to the matrix
multiplies alone (the floor of epoch_vs_pytorch.py).

Two columns, measured in turns in one process so that both see the same
machine: Adam's plain lines (`fast=False`) and its fast path (`fast=True`,
tinyvae/fused.py), each on its own copy of the same model, in turns of
--block steps, alternating, with the same steps of the matmul floor after
each turn. Each line is the median over the turns of its milliseconds per
step, so that a turn slowed down by other work on the machine moves it
little. The line "not the multiplies" is STEP minus the floor; "outside the
dense layers" is STEP minus affine_forward and affine_backward (the
multiplies with their bias adds and sums), which are timed in the same steps
and so are steadier than the floor on a busy machine.

    python benchmarks/step_breakdown.py                 # NumPy, 400 timed steps per column
    python benchmarks/step_breakdown.py --backend cupy  # synchronises per call: slower

The stopwatch costs about a microsecond a call. On CuPy every timed call is
followed by a synchronisation, so the numbers show where the GPU's time goes,
not how fast training runs (and Adam runs its plain lines there either way).
Results: docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # epoch_vs_pytorch, next to this file

import numpy as np  # noqa: E402
from epoch_vs_pytorch import CONFIG, MatmulFloor, TinyVAERun, load_data  # noqa: E402

import tinyvae.nets as nets  # noqa: E402
import tinyvae.vae as vae  # noqa: E402
from tinyvae.layers import ACTIVATIONS  # noqa: E402

# The names loss_and_grads looks up, by the module it looks them up in.
TIMED = {
    vae: ["check_batch", "reparameterize_forward", "reparameterize_backward",
          "bernoulli_nll_forward", "bernoulli_nll_backward",
          "kl_normal_forward", "kl_normal_backward"],
    nets: ["affine_forward", "affine_backward"],
}
COLUMNS = {"fast=False": False, "fast=True": True}  # Adam's switch


def stopwatch(fn, label, totals, sync):
    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        sync()
        totals[0][label] += time.perf_counter() - t0
        return out
    return timed


def install_stopwatches(current, sync):
    """Wrap every timed function (and the activations a Dense layer calls); returns the undo."""
    saved = [(module, name, getattr(module, name)) for module, names in TIMED.items() for name in names]
    for module, name, fn in saved:
        setattr(module, name, stopwatch(fn, name, current, sync))
    acts = {a: ACTIVATIONS[a] for a in ("relu", "linear")}
    for a, (fwd, bwd) in acts.items():
        ACTIVATIONS[a] = (stopwatch(fwd, f"{a}_forward", current, sync),
                          stopwatch(bwd, f"{a}_backward", current, sync))

    def undo():
        for module, name, fn in saved:
            setattr(module, name, fn)
        ACTIVATIONS.update(acts)
    return undo


def train_steps(run, order, start, n_steps, batch_size, totals):
    """n_steps of training from image `start` of `order`; stopwatch totals go to `totals`."""
    be, xp, sync = run.be, run.xp, run.be.synchronize
    n = order.shape[0]
    for _ in range(n_steps):
        s = start % (n - batch_size + 1)
        t0 = time.perf_counter()
        xb = xp.take(run.x, order[s:s + batch_size], axis=0)
        sync()
        t1 = time.perf_counter()
        eps = be.normal((xb.shape[0], CONFIG.latent_dim))
        sync()
        t2 = time.perf_counter()
        _, grads = vae.loss_and_grads(run.params, xb, eps, CONFIG, check_values=False)
        sync()
        t3 = time.perf_counter()
        run.opt.step(run.params, grads)
        sync()
        t4 = time.perf_counter()
        totals["batch (take)"] += t1 - t0
        totals["noise (backend.normal)"] += t2 - t1
        totals["loss_and_grads, all of it"] += t3 - t2
        totals["Adam.step"] += t4 - t3
        totals["STEP"] += t4 - t0
        start += batch_size
    return start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    p.add_argument("--steps", type=int, default=400, help="timed steps per column (after 30 warm-up steps)")
    p.add_argument("--block", type=int, default=50, help="steps per turn before the other column runs")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--synthetic", action="store_true", help="random pixels instead of MNIST")
    args = p.parse_args(argv)

    warm, bs = 30, args.batch_size
    x, _ = load_data(min((args.steps + warm) * bs, 60000), args.synthetic)
    runs = {name: TinyVAERun(args.backend, x, fast=fast) for name, fast in COLUMNS.items()}
    floor = MatmulFloor(args.backend, bs)
    sync = runs["fast=True"].be.synchronize
    order = runs["fast=True"].be.asarray(np.random.default_rng(0).permutation(x.shape[0]))
    blocks = {name: [] for name in runs}  # per column: one dict of seconds per turn
    current = [None]  # the dict the stopwatches write to
    undo = install_stopwatches(current, sync)
    try:
        starts = {}
        for name, run in runs.items():  # warm up each column off the clock
            current[0] = collections.defaultdict(float)
            starts[name] = train_steps(run, order, 0, warm, bs, current[0])
        floor.epoch(warm * bs)
        done, turn = 0, 0
        while done < args.steps:
            n = min(args.block, args.steps - done)
            names = list(runs) if turn % 2 == 0 else list(runs)[::-1]
            for name in names:
                current[0] = collections.defaultdict(float)
                starts[name] = train_steps(runs[name], order, starts[name], n, bs, current[0])
                blocks[name].append({k: v / n for k, v in current[0].items()})  # seconds per step
            t0 = time.perf_counter()
            floor.epoch(n * bs)
            floor_s = (time.perf_counter() - t0) / n
            for name in runs:
                b = blocks[name][-1]
                b["matrix multiplies alone (floor)"] = floor_s
                inner = sum(v for k, v in b.items() if k.endswith(("_forward", "_backward")) or k == "check_batch")
                b["loss_and_grads, its own lines"] = b["loss_and_grads, all of it"] - inner
                b["not the multiplies (STEP - floor)"] = b["STEP"] - floor_s
                b["outside the dense layers (STEP - affine)"] = (
                    b["STEP"] - b["affine_forward"] - b["affine_backward"])
            done, turn = done + n, turn + 1
    finally:
        undo()

    # The median over the turns, label by label: a turn that a neighbour's burst
    # of work slowed down moves it little. (Medians need not add up exactly.)
    med = {name: {k: statistics.median(b[k] for b in bl) for k in bl[0]} for name, bl in blocks.items()}
    print(f"{args.backend}, batch {bs}, {done} steps per column in {turn} turns of {args.block}, "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("ms per step, the median over the turns")
    print(f"{'':40s}" + "".join(f"{name:>18s}" for name in runs))
    print(f"{'':40s}" + "".join(f"{'ms/step':>10s}{'share':>8s}" for _ in runs))
    base = med["fast=False"]
    for label in sorted(base, key=lambda k: -base[k]):
        print(f"{label:40s}" + "".join(
            f"{m[label] * 1e3:10.3f}{m[label] / m['STEP']:8.0%}" for m in med.values()))
    for key, what in [("not the multiplies (STEP - floor)", "not the multiplies"),
                      ("outside the dense layers (STEP - affine)", "outside the dense layers")]:
        ratios = sorted(f[key] / p[key] for f, p in zip(blocks["fast=True"], blocks["fast=False"]))
        print(f"{what}, fast=True / fast=False: {med['fast=True'][key] / base[key]:.2f} of the medians; "
              f"turn by turn {statistics.median(ratios):.2f} median, {ratios[0]:.2f} to {ratios[-1]:.2f}"
              "   (target <= 0.50)")
    print(f"floor / STEP: fast=False {base['matrix multiplies alone (floor)'] / base['STEP']:.2f}, "
          f"fast=True {med['fast=True']['matrix multiplies alone (floor)'] / med['fast=True']['STEP']:.2f}")
    print("(the floor is measured after each turn and is not part of a step's sum; "
          "affine_forward/backward hold the multiplies, bias adds and bias sums)")


if __name__ == "__main__":
    main()
