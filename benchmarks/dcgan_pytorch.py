"""The DCGAN of `demos/mnist_gan.py --arch dcgan`, written in PyTorch and judged by tinyvae's judge:
a reference for what this architecture's samples score, not a timing.

The same network (G: z -> Dense 3136 -> BatchNorm, ReLU -> 7x7x64 -> ConvTranspose 32, 4x4,
stride 2 -> BatchNorm, ReLU -> ConvTranspose 1, 4x4, stride 2 -> logits; D: Conv 32 and Conv 64,
4x4, stride 2, leaky ReLU 0.2 -> Dense 1), the same recipe (Adam lr 2e-4, beta1 0.5, batch 64,
the last smaller batch kept, one D step then one G step on the same z, the non-saturating loss,
real label 0.9), samples drawn as tinyvae draws them (the batch's own statistics in G's batch
norm, pixels sigmoid(logits)); PyTorch's own initialisation and random numbers, so the runs are
alike, not equal. After each epoch, --samples samples are scored by the judge tinyvae's demos use
(tinyvae/judge.py, from the cache folder, or --judge): classifier score, Frechet distance to the
test images, the rarest digit's share.

    python -m pip install torch==2.13.0              # optional reference, not a dependency; a CPU build is enough
    python benchmarks/dcgan_pytorch.py --epochs 20   # about 15 s an epoch on 2 CPU cores

Results: docs/gan.md#a-conv-gan-with-batch-norm.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))      # this checkout's tinyvae first
from tinyvae import judge as J                                        # noqa: E402
from tinyvae.backend import get_backend                               # noqa: E402
from tinyvae.data import load_mnist, to_unit_interval                 # noqa: E402


def networks(nn, latent_dim, width=32):
    """(G, D) as in tinyvae.specs.dcgan_generator / dcgan_discriminator; G ends in logits (N, 1, 28, 28)."""
    G = nn.Sequential(nn.Linear(latent_dim, 7 * 7 * 2 * width), nn.BatchNorm1d(7 * 7 * 2 * width), nn.ReLU(),
                      nn.Unflatten(1, (2 * width, 7, 7)),
                      nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
                      nn.ConvTranspose2d(width, 1, 4, 2, 1))
    D = nn.Sequential(nn.Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(width, 2 * width, 4, 2, 1),
                      nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(7 * 7 * 2 * width, 1))
    return G, D


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--latent-dim", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=10000)
    p.add_argument("--limit", type=int, default=None, help="the first N training images only, for a quick run")
    p.add_argument("--judge", type=Path, default=None, help="the judge's checkpoint; default: the cache folder's")
    args = p.parse_args(argv)
    try:
        import torch
        import torch.nn as nn
    except ImportError:
        print("error: PyTorch is not installed: python -m pip install torch==2.13.0 (a CPU build)", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    d = load_mnist(progress=False)
    x_train, x_test = to_unit_interval(d.x_train[:args.limit]), to_unit_interval(d.x_test)
    backend = get_backend("numpy", seed=0)
    jparams, jconfig, jmeta = J.judge(backend, (x_train, d.y_train[:args.limit], x_test, d.y_test), args.judge)
    test_features = J.features(jparams, jconfig, x_test, backend)
    x = torch.tensor(x_train).view(-1, 1, 28, 28)
    G, D = networks(nn, args.latent_dim)
    adam = {name: torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.5, 0.999)) for name, net in (("G", G), ("D", D))}
    bce = nn.BCEWithLogitsLoss()
    print(f"PyTorch {torch.__version__} DCGAN, z {args.latent_dim}, {len(x)} images, judge {jmeta['test_accuracy']:.2%} "
          "right", flush=True)
    for epoch in range(1, args.epochs + 1):
        t0, order = time.perf_counter(), torch.randperm(len(x))
        for start in range(0, len(x), 64):
            real = x[order[start:start + 64]]
            fake = torch.sigmoid(G(torch.randn(len(real), args.latent_dim)))
            a_real, a_fake = D(real), D(fake.detach())
            d_loss = bce(a_real, torch.full_like(a_real, 0.9)) + bce(a_fake, torch.zeros_like(a_fake))
            adam["D"].zero_grad()
            d_loss.backward()
            adam["D"].step()
            g_loss = bce(D(fake), torch.ones_like(a_fake))                      # -log D(G(z)), the same z
            adam["G"].zero_grad()
            g_loss.backward()
            adam["G"].step()
        seconds = time.perf_counter() - t0
        with torch.no_grad():                                                # G in training mode: batch statistics
            images = np.concatenate([torch.sigmoid(G(torch.randn(min(1000, args.samples - s), args.latent_dim)))
                                     .reshape(-1, 784).numpy() for s in range(0, args.samples, 1000)])
        probs = J.probabilities(jparams, jconfig, images, backend)
        frechet = J.frechet_distance(J.features(jparams, jconfig, images, backend), test_features)
        rarest = J.label_histogram(probs)["rarest"]
        print(f"epoch {epoch:3d}  {seconds:5.1f} s  classifier score {J.classifier_score(probs):.2f}  Frechet "
              f"{frechet:.2f}  rarest digit {rarest:.1%}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
