"""A GAN epoch against a VAE epoch of the same architecture, side by side: the ratio of their seconds.

The same architecture: the VAE 784-400-20 (encoder 784-400-40, decoder 20-400-784) and the GAN
whose generator is that decoder (20-400-784) and whose discriminator is that encoder with a 1-unit
head (784-400-1, leaky ReLU). Both train as their fits train them, at the same batch size, on the
same images: the VAE through tinyvae.train.steps with fit's step (models.for_config), the GAN
through tinyvae.gan_train.train_epoch (per batch: D's step, Adam on D, G's step on the same z
reusing D's step's pass through G, Adam on G). Each runs in a process of its own and they take
turns, one epoch each, the order reversed every other round (harness.take_turns), so that both
see the same machine; each round gives one ratio, GAN seconds over VAE seconds. Where fit's VAE
step is not the core's (a fast path, tinyvae/fast/step.py), the core's plain step runs too.

    python benchmarks/gan_vs_vae.py                          # whole epochs (60,000 images), batch 64, 5 rounds
    python benchmarks/gan_vs_vae.py --limit 6400 --rounds 7  # quicker, noisier
    python benchmarks/gan_vs_vae.py --before 3ee6949         # and the GAN of that revision (git archive)
    OPENBLAS_NUM_THREADS=1 python benchmarks/gan_vs_vae.py --clock cpu   # CPU seconds: steadier when busy

Also printed: the matrix-multiply FLOPs of one step of each, counted from the layer shapes
(what the ratio would be if only the multiplies took time). Nothing here sets threads or BLAS
options: the machine is measured, and reported, as found. Results: docs/gan.md#speed.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from functools import partial
from pathlib import Path

from before_after import extract
from harness import TinyVAERun, add_clock_flag, load_data, machine_report, make_run, take_turns, warmed_up

from tinyvae import models
from tinyvae.backend import get_backend
from tinyvae.core.gan import GANConfig
from tinyvae.core.nets import Dense
from tinyvae.core.vae import VAEConfig, init_params
from tinyvae.gan_train import GANTrainConfig, Players, train_epoch

VAE = VAEConfig()                                    # 784-400-20
GAN = GANConfig()                                    # G 20-400-784, D 784-400-1
WARM_BATCHES = 20


class GANRun:
    """The GAN trained as fit_gan trains it: each epoch is gan_train.train_epoch (its batch order and
    z from the stream (train.STREAM_TRAIN, epoch), as in a run)."""

    def __init__(self, backend_name, x_host, seed=0):
        self.be = get_backend(backend_name, seed=seed)
        self.x = self.be.asarray(x_host)                           # (N, D), on the device, once
        self.be.reseed()
        self.params = init_params(GAN, self.be)
        self.tconfig = GANTrainConfig(seed=seed)
        self.players = Players(self.params, self.tconfig)
        self.epochs = 0

    def epoch(self, perm, batch_size, limit=None):
        """One pass over the first `limit` images (all without it); perm gives only the count."""
        self.epochs += 1
        tconfig = GANTrainConfig(batch_size=batch_size, seed=self.tconfig.seed)
        x = self.x[:limit] if limit is not None else self.x
        return train_epoch(self.params, self.players, x, self.be, GAN, tconfig, self.epochs, progress=False)


def vae_run(backend_name, x, seed, plain=False):
    """The VAE as fit trains it; plain: with the core's step (models.MODELS) whatever fit's step is."""
    run = TinyVAERun(backend_name, x, VAE, seed)
    if plain:
        run.model = models.MODELS[VAEConfig]
    return run


def gan_run(backend_name, x, seed):
    return GANRun(backend_name, x, seed)


def make_gan_before(tree, backend_name, limit, synthetic, seed, batch_size, warm_batches):
    """Build, in a contestant's process: GANRun on the tinyvae of the folder `tree`, warmed up."""
    x = load_data(limit, synthetic)[0]
    for name in [m for m in sys.modules if m.split(".")[0] == "tinyvae"]:   # this checkout's, imported above
        del sys.modules[name]
    sys.path.insert(0, tree)
    import tinyvae
    if not Path(tinyvae.__file__).resolve().is_relative_to(Path(tree).resolve()):
        raise SystemExit(f"error: imported tinyvae from {tinyvae.__file__}, not from {tree}")
    from tinyvae.backend import get_backend as other_backend
    from tinyvae.core.vae import init_params as other_init
    from tinyvae import gan_train
    globals().update(get_backend=other_backend, init_params=other_init, GANTrainConfig=gan_train.GANTrainConfig,
                     Players=gan_train.Players, train_epoch=gan_train.train_epoch, GAN=gan_train.GANConfig())
    return warmed_up(GANRun(backend_name, x, seed), x.shape[0], seed, batch_size, warm_batches)


def dense_macs(layers, in_dim, forward=True, dw=True, dx=True, skip_first_dx=False):
    """Multiply-adds per image of a dense stack: forward (h W), and backward dW (h^T dy) and dx (dy W^T)."""
    total, first = 0, True
    for layer in layers:
        if isinstance(layer, Dense):
            mk = in_dim * layer.units
            total += mk * (forward + dw + (dx and not (skip_first_dx and first)))
            in_dim, first = layer.units, False
    return total


def step_flops():
    """Matrix-multiply FLOPs per real image of one step: {'VAE': ..., 'GAN': ...} (2 per multiply-add)."""
    enc, dec = VAE.networks()["enc"][0], VAE.networks()["dec"][0]
    vae = dense_macs(enc, 784, skip_first_dx=True) + dense_macs(dec, 20)     # z needs its gradient
    gen, dis = GAN.generator_layers, GAN.discriminator_layers
    d_step = dense_macs(gen, 20, dw=False, dx=False) + 2 * dense_macs(dis, 784, skip_first_dx=True)
    g_step = dense_macs(dis, 784, dw=False) + dense_macs(gen, 20, forward=False, skip_first_dx=True)
    return {"VAE": 2 * vae, "GAN": 2 * (d_step + g_step)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    p.add_argument("--rounds", type=int, default=5, help="timed epochs of each")
    p.add_argument("--limit", type=int, default=60000, help="training images per epoch")
    p.add_argument("--batch-size", type=int, default=64, help="both models' batch size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--synthetic", action="store_true", help="random pixels instead of MNIST (no download)")
    p.add_argument("--before", metavar="REF", help="also time the GAN of this git revision (unpacked with git archive)")
    add_clock_flag(p)
    args = p.parse_args(argv)
    for line in machine_report(None, args.backend, None):
        print(line)
    common = (args.backend, args.limit, args.synthetic, args.seed, args.batch_size, WARM_BATCHES)
    makers = {"GAN": partial(make_run, gan_run, *common), "VAE": partial(make_run, vae_run, *common)}
    if models.for_config(VAE).train_step is not models.MODELS[VAEConfig].train_step:
        makers["VAE, core step"] = partial(make_run, partial(vae_run, plain=True), *common)
    with tempfile.TemporaryDirectory() as tmp:
        if args.before:
            makers[f"GAN at {args.before}"] = partial(make_gan_before, extract(args.before, tmp), *common)
        results = take_turns(makers, args.rounds, args.limit, args.seed, clock=args.clock)
    times = {name: [s for s, _ in r] for name, r in results.items()}
    flops = step_flops()
    print(f"\n{args.limit} images per epoch, batch {args.batch_size}, {args.rounds} rounds, backend {args.backend}, "
          f"{args.clock} clock; matrix multiplies per image: GAN {flops['GAN'] / 1e6:.2f} MFLOP, "
          f"VAE {flops['VAE'] / 1e6:.2f}")
    for name, t in times.items():
        print(f"{name + ' epoch, s:':28s} min {min(t):7.3f}  median {statistics.median(t):7.3f}  max {max(t):7.3f}")
    for num, den in [(a, b) for a in times if a.startswith("GAN") for b in times if b.startswith("VAE")]:
        ratios = [g / v for g, v in zip(times[num], times[den])]
        print(f"{num} / {den}, per round: min {min(ratios):.2f}  median {statistics.median(ratios):.2f}  "
              f"max {max(ratios):.2f}")
    print(f"matrix multiplies alone, GAN / VAE: {flops['GAN'] / flops['VAE']:.2f}")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
