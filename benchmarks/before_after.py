"""The MLP and conv VAE epochs of this checkout against another, side by side in one run.

A change to the engine must not make training slower. Each contestant is one checkout's tinyvae
training one model, in a process of its own, the contestants taking turns one epoch at a time
(benchmarks/harness.py); the epoch is that checkout's own `tinyvae.train.train_epoch`, the epoch
fit runs (in this checkout, tinyvae.train.steps). The other checkout is a folder (--other, e.g. a
`git worktree add`) or a revision of this repository (--ref, unpacked with `git archive`).

    git worktree add /tmp/tinyvae_before be30177     # the commit before the change
    python benchmarks/before_after.py --other /tmp/tinyvae_before --limit 6400 --rounds 7
    python benchmarks/before_after.py --ref 78fe84f --models mlp --plain-adam   # before the layer stack

The models: the PyTorch example's MLP VAE (784-400-20) and the Keras example's conv VAE (latent 2),
batch 128, Adam lr 1e-3, float32, NumPy, warmed up off the clock. Results: docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import subprocess
import sys
import tarfile
import tempfile
from functools import partial
from pathlib import Path

from harness import add_clock_flag, load_data, machine_report, take_turns

ROOT = Path(__file__).resolve().parents[1]


def module_of(tree, *names):
    """The first tinyvae.<name> of `names` that `tree` has (older: nets.py, optim.py), imported; asked by
    file, since an editable install's finder would hand over this checkout's module for a missing one."""
    name = next(n for n in names if Path(tree, "tinyvae", *n.split(".")).with_suffix(".py").exists())
    return importlib.import_module(f"tinyvae.{name}")


def make_epoch(tree, model, limit, synthetic, batch_size, warm_batches, fast=True):
    """Build, in a contestant's process: the tinyvae of `tree` and its `model`, warmed up; returns epoch(perm)."""
    x_host = load_data(limit, synthetic)[0]
    for name in [m for m in sys.modules if m.split(".")[0] == "tinyvae"]:  # the harness imported this
        del sys.modules[name]                                           # checkout's: `tree`'s comes instead
    sys.path.insert(0, tree)
    import tinyvae
    from tinyvae import VAEConfig, get_backend, init_params, train
    if not Path(tinyvae.__file__).resolve().is_relative_to(Path(tree).resolve()):
        raise SystemExit(f"error: imported tinyvae from {tinyvae.__file__}, not from {tree}")
    specs = module_of(tree, "specs", "nets") if model == "conv" else None
    config = VAEConfig(latent_dim=2, encoder=specs.keras_conv_encoder(2),
                       decoder=specs.keras_conv_decoder()) if specs else VAEConfig()
    be = get_backend("numpy", seed=0)
    x, params = be.asarray(x_host), init_params(config, be)
    opt = module_of(tree, "core.optim", "optim").Adam(params, lr=1e-3, **({} if fast else {"fast": False}))
    tconfig, epochs = train.TrainConfig(batch_size=batch_size), [1]
    train.train_epoch(params, opt, x[:warm_batches * batch_size], be, config, tconfig, 1, progress=False)

    def epoch(perm):  # the batch order is the epoch's own, drawn from (seed, epoch) in each checkout alike
        epochs[0] += 1
        train.train_epoch(params, opt, x, be, config, tconfig, epochs[0], progress=False)
    return epoch


def extract(ref, dest):
    """The files of git revision `ref` of this repository, unpacked under dest; returns the folder."""
    archive, out = Path(dest) / "ref.tar", Path(dest) / "src"
    with open(archive, "wb") as f:
        subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref], stdout=f, check=True)
    with tarfile.open(archive) as t:
        t.extractall(out, filter="data")
    return str(out)


def compare(args, other):
    data, warm = (args.limit, args.synthetic, args.batch_size), {"mlp": 20, "conv": 5}  # warm-up batches
    makers = {f"{model} {side}": partial(make_epoch, tree, model, *data, warm[model])
              for model in args.models for side, tree in (("before", other), ("now", str(ROOT)))}
    if args.plain_adam and "mlp" in args.models:
        makers["mlp now, fast=False"] = partial(make_epoch, str(ROOT), "mlp", *data, warm["mlp"], fast=False)
    n = args.limit if args.synthetic else min(args.limit, 60000)
    results, steps = take_turns(makers, args.rounds, n, seed=0, clock=args.clock), -(-n // args.batch_size)
    print(f"\n{'':22s}{'min s':>8s}{'median s':>10s}{'faults/step':>13s}")
    times = {name: [s for s, _ in r] for name, r in results.items()}
    for name, t in times.items():
        print(f"{name:22s}{min(t):8.3f}{statistics.median(t):10.3f}"
              f"{statistics.median(f for _, f in results[name]) / steps:13.0f}")
    for name, now, before in [(k, t, times[k.split()[0] + " before"]) for k, t in times.items() if " now" in k]:
        # Round by round: the epochs of a round ran close together, so a slow spell that spans a round moves both.
        print(f"{name} / before: {statistics.median(now) / statistics.median(before):.3f} of the medians, "
              f"{statistics.median(a / b for a, b in zip(now, before)):.3f} round by round (median)"
              "   (target <= 1.03)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--other", help="the other checkout's folder (the one with tinyvae/ in it)")
    which.add_argument("--ref", help="a git revision of this repository, unpacked for the run")
    p.add_argument("--models", nargs="+", choices=("mlp", "conv"), default=["mlp", "conv"])
    p.add_argument("--rounds", type=int, default=7, help="timed epochs per contestant")
    p.add_argument("--limit", type=int, default=60000, help="training images per epoch")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--synthetic", action="store_true", help="random pixels instead of MNIST")
    p.add_argument("--plain-adam", action="store_true", help="add this checkout's MLP with Adam(fast=False)")
    add_clock_flag(p)
    args = p.parse_args(argv)

    print("\n".join(machine_report(None, "numpy", "cpu")))
    print(f"before: {args.other or args.ref}; now: {ROOT}; {args.limit} images/epoch, batch {args.batch_size}, "
          f"{args.clock} clock")
    if args.other:
        return compare(args, str(Path(args.other).resolve()))
    with tempfile.TemporaryDirectory() as tmp:
        compare(args, extract(args.ref, tmp))


if __name__ == "__main__":
    main()
