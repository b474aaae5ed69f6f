"""Where one training step's time goes: each engine function, the optimizer, batching.

Trains the PyTorch-example VAE (see epoch_vs_pytorch.py) for a few hundred
steps with a stopwatch around every forward/backward function that
`loss_and_grads` calls, and around batching, the noise draw and Adam, then
prints milliseconds per step for each, largest first, next to the matrix
multiplies alone (the floor of epoch_vs_pytorch.py).

    python benchmarks/step_breakdown.py                 # NumPy, 400 timed steps
    python benchmarks/step_breakdown.py --backend cupy  # synchronises per call: slower

The stopwatch costs about a microsecond a call. On CuPy every timed call is
followed by a synchronisation, so the numbers show where the GPU's time goes,
not how fast training runs. Results: docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # epoch_vs_pytorch, next to this file

import numpy as np  # noqa: E402
from epoch_vs_pytorch import CONFIG, MatmulFloor, TinyVAERun, load_data  # noqa: E402

import tinyvae.vae as model  # noqa: E402

TIMED = [  # the names loss_and_grads looks up in tinyvae.vae
    "check_batch", "affine_forward", "affine_backward",
    "reparameterize_forward", "reparameterize_backward",
    "bernoulli_nll_forward", "bernoulli_nll_backward",
    "kl_normal_forward", "kl_normal_backward",
]


def stopwatch(fn, label, totals, sync):
    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        sync()
        totals[label] += time.perf_counter() - t0
        return out
    return timed


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    p.add_argument("--steps", type=int, default=400, help="timed steps (after 30 warm-up steps)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--synthetic", action="store_true", help="random pixels instead of MNIST")
    args = p.parse_args(argv)

    warm = 30
    n_images = (args.steps + warm) * args.batch_size
    x, _ = load_data(min(n_images, 60000), args.synthetic)
    run = TinyVAERun(args.backend, x)
    be, xp = run.be, run.xp
    sync = be.synchronize
    totals = collections.defaultdict(float)

    # Wrap the functions loss_and_grads calls, and the activation pair it uses.
    originals = {name: getattr(model, name) for name in TIMED}
    for name, fn in originals.items():
        setattr(model, name, stopwatch(fn, name, totals, sync))
    act = CONFIG.activation
    act_pair = model.ACTIVATIONS[act]
    model.ACTIVATIONS[act] = (stopwatch(act_pair[0], f"{act}_forward", totals, sync),
                              stopwatch(act_pair[1], f"{act}_backward", totals, sync))
    try:
        order = be.asarray(np.random.default_rng(0).permutation(x.shape[0]))
        steps = 0
        for start in range(0, n_images, args.batch_size):
            if steps == warm:
                totals.clear()
            t0 = time.perf_counter()
            xb = xp.take(run.x, order[start % x.shape[0]:start % x.shape[0] + args.batch_size], axis=0)
            sync()
            t1 = time.perf_counter()
            eps = be.normal((xb.shape[0], CONFIG.latent_dim))
            sync()
            t2 = time.perf_counter()
            _, grads = model.loss_and_grads(run.params, xb, eps, CONFIG, check_values=False)
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
            steps += 1
    finally:
        for name, fn in originals.items():
            setattr(model, name, fn)
        model.ACTIVATIONS[act] = act_pair

    timed = steps - warm
    inner = sum(v for k, v in totals.items() if k in TIMED or k.startswith(act))
    totals["loss_and_grads, its own lines"] = totals["loss_and_grads, all of it"] - inner
    floor = MatmulFloor(args.backend, args.batch_size)
    floor.epoch(warm * args.batch_size)
    t0 = time.perf_counter()
    floor.epoch(timed * args.batch_size)
    totals["matrix multiplies alone (floor)"] = time.perf_counter() - t0

    print(f"{args.backend}, batch {args.batch_size}, {timed} steps, "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{'':40s}{'ms/step':>9s}{'share':>8s}")
    for label, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        share = seconds / totals["STEP"]
        print(f"{label:40s}{seconds / timed * 1e3:9.3f}{share:8.0%}")
    print("(affine_forward/backward hold the multiplies, bias adds and bias sums)")


if __name__ == "__main__":
    main()
