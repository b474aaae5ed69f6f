"""Where one training step's time goes: each engine function, the optimizer, batching.

Trains the PyTorch-example VAE (see epoch_vs_pytorch.py) for a few hundred
steps of tinyvae.train.steps, the loop fit runs, on the core's step
(models.MODELS[type(config)], the plain step), with a stopwatch around every
forward/backward function that the core's `loss_and_grads` calls, around
loss_and_grads itself, the noise draw and Adam, and around each whole step;
then prints milliseconds per step for each, largest first, next to the matrix
multiplies alone (the floor of epoch_vs_pytorch.py). "batch (take) and the
loop" is what is left of a step: the loop's take of the batch and its own lines.

Two columns, measured in turns in one process so that both see the same
machine: Adam's plain lines (`fast=False`) and its fast path (`fast=True`,
tinyvae/fast/optim.py), each on its own copy of the same model, in turns of
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
import time

import numpy as np
from epoch_vs_pytorch import CONFIG
from harness import MatmulFloor, TinyVAERun, load_data

import tinyvae.core.vae as vae
from tinyvae import models, train
from tinyvae.core.layers import ACTIVATIONS
from tinyvae.core.nets import Dense

# The names the core's loss_and_grads looks up in core/vae.py (models.vae_step looks up loss_and_grads there).
TIMED = ["loss_and_grads", "reparameterize_forward", "reparameterize_backward",
         "bernoulli_nll_forward", "bernoulli_nll_backward", "kl_normal_forward", "kl_normal_backward"]
COLUMNS = {"fast=False": False, "fast=True": True}  # Adam's switch
ALL_OF_IT = "loss_and_grads, all of it"


def stopwatch(fn, label, totals, sync):
    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        sync()
        totals[0][label] += time.perf_counter() - t0
        return out
    return timed


def install_stopwatches(current, sync):
    """Wrap every timed function, a Dense layer's pair and the activations it calls; returns the undo."""
    saved = [(name, getattr(vae, name)) for name in TIMED]
    for name, fn in saved:
        setattr(vae, name, stopwatch(fn, ALL_OF_IT if name == "loss_and_grads" else name, current, sync))
    dense_op = Dense.OP
    Dense.OP = tuple(stopwatch(fn, f"affine_{way}", current, sync)
                     for fn, way in zip(dense_op, ("forward", "backward")))
    acts = {a: ACTIVATIONS[a] for a in ("relu", "linear")}
    for a, (fwd, bwd) in acts.items():
        ACTIVATIONS[a] = (stopwatch(fwd, f"{a}_forward", current, sync),
                          stopwatch(bwd, f"{a}_backward", current, sync))

    def undo():
        for name, fn in saved:
            setattr(vae, name, fn)
        Dense.OP = dense_op
        ACTIVATIONS.update(acts)
    return undo


def train_steps(run, order, start, n_steps, batch_size, current):
    """n_steps of train.steps from image `start` of the host batch order `order` (wrapping round);
    the stopwatches' totals go to a fresh current[0]. Returns where the next turn starts."""
    be, sync = run.be, run.be.synchronize
    totals = current[0] = collections.defaultdict(float)
    rows = be.asarray(order[(start + np.arange(n_steps * batch_size)) % order.shape[0]])
    t0 = time.perf_counter()
    for _ in train.steps(run.params, run.opt, run.model, CONFIG, be, run.x, rows, batch_size):
        sync()
        totals["STEP"] += time.perf_counter() - t0
        t0 = time.perf_counter()
    totals["batch (take) and the loop"] = totals["STEP"] - sum(
        totals[k] for k in (ALL_OF_IT, "noise (backend.normal)", "Adam.step"))
    return start + n_steps * batch_size


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
    runs = {name: TinyVAERun(args.backend, x, CONFIG, fast=fast) for name, fast in COLUMNS.items()}
    for run in runs.values():  # the core's step (not fast/step.py's): the functions the stopwatches wrap
        run.model = models.MODELS[type(CONFIG)]                # the plain core step
    floor = MatmulFloor(args.backend, bs, CONFIG)
    sync = runs["fast=True"].be.synchronize
    order = np.random.default_rng(0).permutation(x.shape[0])
    blocks = {name: [] for name in runs}  # per column: one dict of seconds per turn
    current = [None]  # the dict the stopwatches write to
    undo = install_stopwatches(current, sync)
    for name, run in runs.items():  # the noise draw and the optimizer, on each column's own objects
        run.be.normal = stopwatch(run.be.normal, "noise (backend.normal)", current, sync)
        run.opt.step = stopwatch(run.opt.step, "Adam.step", current, sync)
    try:
        starts = {name: train_steps(run, order, 0, warm, bs, current) for name, run in runs.items()}  # warm-up
        floor.epoch(warm * bs)
        done, turn = 0, 0
        while done < args.steps:
            n = min(args.block, args.steps - done)
            names = list(runs) if turn % 2 == 0 else list(runs)[::-1]
            for name in names:
                starts[name] = train_steps(runs[name], order, starts[name], n, bs, current)
                blocks[name].append({k: v / n for k, v in current[0].items()})  # seconds per step
            t0 = time.perf_counter()
            floor.epoch(n * bs)
            floor_s = (time.perf_counter() - t0) / n
            for name in runs:
                b = blocks[name][-1]
                b["matrix multiplies alone (floor)"] = floor_s
                inner = sum(v for k, v in b.items() if k.endswith(("_forward", "_backward")))
                b["loss_and_grads, its own lines"] = b[ALL_OF_IT] - inner
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
