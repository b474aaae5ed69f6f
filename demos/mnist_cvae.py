"""The conditional VAE on MNIST: "draw me a 7". A one-hot label joins the encoder's input and z.

    python demos/mnist_cvae.py                       # 784-400-2 (+ the label), 10 epochs, and the VAE
    python demos/mnist_cvae.py --latent-dim 20 --out runs/cvae-z20      # more room for style
    python demos/mnist_cvae.py --no-compare --out runs/cvae-alone       # the CVAE alone

The CVAE (VAEConfig with n_classes=10) models p(x | y): its decoder reads
[z | y], so z is free to hold what the label does not say, the style (slant,
width, stroke). Unless --no-compare, the unconditional VAE of the same size is
trained the same way beside it (train.fit: the same epochs, batch size,
learning rate and seed), and the two test -ELBOs are compared: -log p(x | y)
against -log p(x). A perfect model could gain at most log 10 = 2.30 nats from
the label (docs/autoencoders.md#the-conditional-vae).

The digit grid decodes the same z values (one per column, z ~ N(0, I)) with
each label 0-9 (one per row); it is checked with a nearest-class-mean
classifier (the mean training image of each digit, compared by angle): a row is
read as its digit when most of its images are nearest that digit's mean.

Written to --out:

    cvae/, vae/              each model's checkpoint.npz and metrics.json (train.fit)
    metrics.json             both models' final test numbers, the grid check, seconds
    digit_grid.png           rows 0-9 from the same z values: the style kept, the class changed
    style_transfer.png       test digits (top), their z = mean of q(z | x, y) decoded with every label
    samples.png              class-conditional samples: each row one label, each image its own z

Errors the user can fix are one line on stderr, exit status 2; Ctrl-C is one
line saying what is saved, exit status 130 (demos/common.py).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

# common first: it puts this checkout's tinyvae first on sys.path (demos/common.py)
from common import (add_common_flags, add_size_flags, finish, fit_each, flag, from_flags, main_wrapper, mlp_shape,
                    on_ctrl_c, one_line_parser, run_info, shape_name, start_run, train_config)
from measures import K, class_means, nearest_class, read_grid
from tinyvae import plots
from tinyvae.checkpoint import METRICS_FILE
from tinyvae.core.layers import one_hot
from tinyvae.core.vae import VAEConfig, decode_mean, encode
from tinyvae.train import STREAM_PICTURES, TrainConfig

N_COLUMNS = 10              # z values in the digit grid and in each row of samples
STREAM_SAMPLES = 12         # the independent z of samples.png (the grid uses STREAM_PICTURES)
PICTURES = ("digit_grid.png", "style_transfer.png", "samples.png")
OUTPUT_FILES = (METRICS_FILE, *PICTURES)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def build_parser():
    p = one_line_parser(
        "demos/mnist_cvae.py",
        "Train the conditional VAE on MNIST (and the unconditional VAE of the same size beside it); "
        "draw each digit in the same styles, and compare the test -ELBOs.")
    add_common_flags(p, out="runs/cvae")
    add_size_flags(p, 2, "latent dimensions of both models", models="both models")
    p.add_argument("--no-compare", action="store_true",
                   help="train the CVAE only, not the unconditional VAE beside it")
    flag(p, "--iw-k", TrainConfig, "iw_k", default=100, metavar="K",
         help="importance samples per image for -log p(x | y) and -log p(x), 0 to skip; default %(default)s")
    flag(p, "--iw-images", TrainConfig, "iw_images", default=10000, metavar="N",
         help="test images (the first N) in that estimate; default %(default)s")
    return p


@from_flags
def configs_from_args(args):
    """({'cvae': VAEConfig(n_classes=10), 'vae': VAEConfig} (no 'vae' with --no-compare), TrainConfig)."""
    configs = {"cvae": VAEConfig(**mlp_shape(args), n_classes=K)}
    if not args.no_compare:
        configs["vae"] = VAEConfig(**mlp_shape(args))
    return configs, train_config(args, iw_k=args.iw_k, iw_images=args.iw_images)


# ---------------------------------------------------------------------------
# Pictures: the digit grid (read back by measures.read_grid), style transfer, samples
# ---------------------------------------------------------------------------


def labelled(params, config: VAEConfig, z, label: int, backend):
    """E[x | z, y = label] for every row of z (M, L) on the backend -> host (M, 784)."""
    y = one_hot(backend.asarray(np.full(z.shape[0], label)), K, like=z)        # (M, K)
    return backend.to_numpy(decode_mean(params, z, config, y))


def digit_grid(params, config: VAEConfig, backend, n_columns=N_COLUMNS) -> np.ndarray:
    """(10, n_columns, 784): row d decodes the same z values (z ~ N(0, I), STREAM_PICTURES) with label d."""
    backend.reseed(STREAM_PICTURES)
    z = backend.normal((n_columns, config.latent_dim))                          # (C, L)
    return np.stack([labelled(params, config, z, d, backend) for d in range(K)])


def write_pictures(params, config, backend, grid, x_test, y_test, out: Path) -> list:
    """digit_grid.png, style_transfer.png, samples.png. grid (10, C, 784) from digit_grid."""
    rows = [(f"y = {d}", grid[d]) for d in range(K)]
    plots.image_rows(rows, out / "digit_grid.png",
                     "One z ~ N(0, I) per column, one label per row: the style stays, the digit changes")

    x = backend.asarray(x_test[:N_COLUMNS])                                      # (C, 784)
    y = one_hot(backend.asarray(y_test[:N_COLUMNS]), K, like=x)
    z = encode(params, x, config, y)[0]                                          # (C, L) means of q(z | x, y)
    rows = [("test digit", x_test[:N_COLUMNS])]
    rows += [(f"y = {d}", labelled(params, config, z, d, backend)) for d in range(K)]
    plots.image_rows(rows, out / "style_transfer.png",
                     "Test digits (top), their style z decoded with every label")

    backend.reseed(STREAM_SAMPLES)
    rows = [(f"y = {d}", labelled(params, config, backend.normal((N_COLUMNS, config.latent_dim)), d, backend))
            for d in range(K)]
    plots.image_rows(rows, out / "samples.png", "Class-conditional samples: x ~ p(x | z, y), z ~ N(0, I)")
    return list(PICTURES)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def final_numbers(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k.startswith("test_") or k in ("iw_k", "iw_images")}


def run(args) -> int:
    configs, tconfig = configs_from_args(args)
    backend, out, (x_train, y_train, x_test, y_test) = start_run(args, configs.values(), tconfig, OUTPUT_FILES)
    c = configs["cvae"]
    print(f"CVAE{'' if args.no_compare else ' and VAE'} on MNIST: {x_train.shape[0]} train / "
          f"{x_test.shape[0]} test images, {shape_name(c)}, backend {backend.name}, out {out}", flush=True)
    t0 = time.perf_counter()
    results, seconds = fit_each(args, {name: (name.upper(), config, tconfig) for name, config in configs.items()},
                                x_train, x_test, backend, out, labels=(y_train, y_test))
    finals = {name: final_numbers(r.metrics) for name, r in results.items()}
    for name, f in finals.items():
        given = "-log p(x | y)" if name == "cvae" else "-log p(x)"
        iw = f"; {given} ~= {f['test_iw_nll']:.2f} (k={f['iw_k']})" if "test_iw_nll" in f else ""
        print(f"{name.upper():4s} test -ELBO {f['test_neg_elbo']:.2f} nats/image "
              f"(recon {f['test_recon']:.2f} + KL {f['test_kl']:.2f}){iw}")
    with on_ctrl_c(f"interrupted after training: the models are saved under {out}; "
                   "--resume draws the pictures again"):
        grid = digit_grid(results["cvae"].params, c, backend)
        means = class_means(x_train, np.asarray(y_train))
        check = read_grid(grid, means)
        check["test_digits_right"] = float(np.mean(nearest_class(x_test, means) == np.asarray(y_test)))
        print(f"digit grid: rows read as {check['read_as']} by the nearest class mean: "
              f"{check['right']} of {K} rows right ({check['cells_right']} of {check['cells']} images; "
              f"the same reader gets {check['test_digits_right']:.1%} of the real test digits right)")
        pictures = write_pictures(results["cvae"].params, c, backend, grid, x_test, np.asarray(y_test), out)
    finish(out, {"configs": {name: config.to_dict() for name, config in configs.items()},
                 "train_config": tconfig.to_dict(), **run_info(backend, x_train, x_test),
                 "final": finals, "digit_grid": check, "seconds": seconds}, configs, pictures, t0)
    return 0


main = main_wrapper(build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
