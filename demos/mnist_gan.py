"""Train the GAN on MNIST; write a checkpoint, metrics.json, a sample grid per epoch, the curves, and
the judge's scores of 10,000 samples (judged.json) to --out.

    python demos/mnist_gan.py                                   # MLP: G 20-400-784, D 784-400-1, 20 epochs
    python demos/mnist_gan.py --arch dcgan --out runs/gan-dcgan # a small DCGAN, batch norm in G: ~35 s an epoch
    python demos/mnist_gan.py --arch conv --out runs/gan-conv   # G the Keras conv decoder, D its conv encoder
    python demos/mnist_gan.py --epochs 30 --resume              # continue the first run from its checkpoint
    python demos/mnist_gan.py --gen-hidden 256 512 --hidden 512 256 --latent-dim 64 --out runs/gan-deep

The generator is the VAE's decoder (logits, x = sigmoid(logits)) and the
discriminator its encoder with a 1-unit head and leaky ReLUs (tinyvae/core/gan.py).
The recipe: Adam, lr 2e-4, beta1 0.5 for both players, one D step then one G
step per batch on the same z, the non-saturating generator loss, D's leaky ReLU
of slope 0.2 and one-sided label smoothing (real images' target 0.9). Per epoch
it prints both players' losses (nats per image), D's accuracy on real images
and on fakes, and the seconds the epoch took, and draws the same fixed z as
samples_NNN.png; at the end the judge (tinyvae/judge.py) scores --judge-samples
samples: classifier score, Frechet distance, each digit's share.
Errors the user can fix are one line on stderr, exit status 2; Ctrl-C is one
line saying which epochs are saved, exit status 130 (demos/common.py).
Explained: docs/gan.md
"""
from __future__ import annotations

import sys
from pathlib import Path

# common first: it puts this checkout's tinyvae first on sys.path (demos/common.py)
from common import (add_common_flags, add_size_flags, drawing_pictures, flag, from_flags, main_wrapper,
                    one_line_parser, say_wrote, start_run)
from matplotlib.ticker import MaxNLocator
from tqdm import tqdm

import numpy as np

from tinyvae import judge as J
from tinyvae import plots
from tinyvae.checkpoint import CHECKPOINT_FILE, METRICS_FILE, write_json
from tinyvae.checks import Int
from tinyvae.core.gan import GANConfig, critic, generate
from tinyvae.core.vae import INITS
from tinyvae.errors import InputError
from tinyvae.gan_train import GANTrainConfig, fit_gan
from tinyvae.specs import dcgan_discriminator, dcgan_generator, keras_conv_decoder, keras_conv_encoder
from tinyvae.train import STREAM_PICTURES

N_SAMPLES = 64               # the fixed z of every epoch's grid, 8 x 8
HIDDEN = (400,)              # the MLP discriminator's hidden sizes (the VAE demo's); G mirrors them
RECIPE = dict(dis_activation="leaky_relu_0.2", real_label=0.9)   # D's slope (DCGAN's), one-sided smoothing
STREAM_SAMPLES = 20         # the z of the judged samples (as demos/mnist_compare.py draws its models' samples)
PICTURES = ("samples.png", "gan_curves.png")
JUDGED_FILE = "judged.json"
OUTPUT_FILES = (CHECKPOINT_FILE, METRICS_FILE, JUDGED_FILE, *PICTURES)


def build_parser():
    p = one_line_parser("demos/mnist_gan.py", "Train the tinyvae GAN on MNIST: the VAE's decoder as the "
                        "generator, its encoder with a 1-unit head as the discriminator.")
    add_common_flags(p, out="runs/mnist_gan", epochs=20, batch_size=64, lr=2e-4)
    add_size_flags(p, 20, "noise dimensions (z)", models="the discriminator", hidden=HIDDEN)
    p.add_argument("--arch", choices=("mlp", "dcgan", "conv"), default="mlp",
                   help="mlp: dense layers (--hidden); dcgan: a small DCGAN, G z-7x7x64-14x14x32-28x28 by "
                        "transposed convs, D its mirror; conv: the Keras example's conv decoder as G and its "
                        "conv encoder as D; default %(default)s")
    p.add_argument("--init", choices=INITS, default=None,
                   help="how the weights start (tinyvae/core/vae.py init_params); default: pytorch for "
                        "dcgan (with glorot_he and no batch norm its G's pixels go blank in the first epoch: "
                        "docs/gan.md), glorot_he for mlp and conv")
    p.add_argument("--no-batch-norm", action="store_true",
                   help="dcgan only: G without its BatchNorm layers (the ReLUs on the Dense and the first "
                        "transposed conv)")
    flag(p, "--beta1", GANTrainConfig, "beta1", default=0.5, help="Adam's beta1 for both players; default %(default)s")
    flag(p, "--gen-hidden", rule=Int(1), also=("gen_hidden",), nargs="+", default=None, metavar="H",
         help="the MLP generator's hidden sizes, e.g. 256 512 1024; default: --hidden reversed")
    flag(p, "--gen-activation", GANConfig, "gen_activation", default="relu", metavar="NAME",
         help="the MLP generator's hidden activation; default %(default)s")
    flag(p, "--dis-activation", GANConfig, "dis_activation", default=RECIPE["dis_activation"], metavar="NAME",
         help="D's activation: leaky_relu_0.2 (DCGAN's slope), leaky_relu (slope 0.01), relu, ...; "
              "default %(default)s")
    flag(p, "--real-label", GANConfig, "real_label", default=RECIPE["real_label"], metavar="T",
         help="D's target for real images: 0.9 (one-sided label smoothing), or 1; default %(default)s")
    flag(p, "--pack", GANConfig, "pack", default=1, metavar="K",
         help="images D judges side by side (PacGAN; 2 is usual), against mode collapse; the batch size "
              "must be a multiple; default %(default)s")
    flag(p, "--judge-samples", rule=Int(0), default=10000, metavar="N",
         help="samples the judge scores after training (classifier score, label shares, Frechet distance); "
              "0: none; default %(default)s")
    p.add_argument("--judge", type=Path, default=None, metavar="FILE",
                   help="the judge's checkpoint (trained there first if missing); default: the cache folder's")
    return p


@from_flags
def configs_from_args(args):
    """(GANConfig, GANTrainConfig) from the flags: D mirrors the VAE's encoder, G its decoder."""
    L, init = args.latent_dim, args.init or ("pytorch" if args.arch == "dcgan" else "glorot_he")
    if args.no_batch_norm and args.arch != "dcgan":
        raise InputError(f"--no-batch-norm takes the batch norm out of --arch dcgan's G, and --arch {args.arch}'s "
                         "G has none: drop it, or pass --arch dcgan")
    if args.arch != "mlp":
        if args.hidden != list(HIDDEN) or args.gen_hidden is not None:
            raise InputError(f"--hidden and --gen-hidden set the MLP's sizes and --arch {args.arch} has fixed "
                             "conv layers: drop them, or pass --arch mlp")
        if args.pack > 1:
            raise InputError(f"--pack sets the MLP discriminator's input and --arch {args.arch}'s D takes one "
                             "image: drop --pack, or pass --arch mlp")
        G, D = ((dcgan_generator(batch_norm=not args.no_batch_norm),
                 dcgan_discriminator(activation=args.dis_activation)) if args.arch == "dcgan" else
                (keras_conv_decoder(), critic(keras_conv_encoder(L), args.dis_activation)))
        config = GANConfig(input_dim=784, latent_dim=L, generator=G, discriminator=D, init=init,
                           dis_activation=args.dis_activation, real_label=args.real_label, pack=args.pack)
    else:
        config = GANConfig(input_dim=784, latent_dim=L, dis_hidden=tuple(args.hidden),
                           gen_hidden=tuple(args.gen_hidden or reversed(args.hidden)),
                           gen_activation=args.gen_activation, dis_activation=args.dis_activation,
                           init=init, real_label=args.real_label, pack=args.pack)
    return config, GANTrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, beta1=args.beta1,
                                  seed=args.seed)


def gan_curves(epochs, path):
    """Two panels per epoch: (a) both players' losses, nats per image; (b) D's accuracy on real and fake."""
    x = [e["epoch"] for e in epochs]
    fig = plots._new_figure(10, 4, layout="constrained")
    losses, accuracy = fig.subplots(1, 2)
    for ax, key, label in ((losses, "train_d_loss", "D: -log D(x) - log(1 - D(G(z)))"),
                           (losses, "train_g_loss", "G: -log D(G(z))"),
                           (accuracy, "train_acc_real", "real, training batches"),
                           (accuracy, "train_acc_fake", "fake, training batches"),
                           (accuracy, "test_acc_real", "real, test images"),
                           (accuracy, "test_acc_fake", "fake, after the epoch")):
        ax.plot(x, [e[key] for e in epochs], marker="o", markersize=4, label=label)
    losses.set(title="(a) each player's loss", xlabel="epoch", ylabel="nats per image")
    accuracy.set(title="(b) D's accuracy", xlabel="epoch", ylabel="share right", ylim=(-0.02, 1.02))
    for ax in (losses, accuracy):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return plots._save(fig, path)


def judged_row(images, judge, test_features, backend) -> dict:
    """What the judge says of images (n, 784) host: Frechet distance to the test images' features, classifier
    score, label shares, the rarest digit's share and the labels' KL to uniform."""
    params, config, _ = judge
    probs = J.probabilities(params, config, images, backend)
    hist = J.label_histogram(probs)
    return {"frechet": J.frechet_distance(J.features(params, config, images, backend), test_features),
            "classifier_score": J.classifier_score(probs), "rarest_digit": hist["rarest"],
            "kl_uniform": hist["kl_uniform"], "label_shares": hist["shares"]}


def judged_samples(params, config, n, backend) -> np.ndarray:
    """The n samples (n, 784) host that the judge scores: z from STREAM_SAMPLES, 1000 at a time."""
    backend.reseed(STREAM_SAMPLES)
    return np.concatenate([backend.to_numpy(generate(params, backend.normal((min(1000, n - s), config.latent_dim)),
                                                     config)) for s in range(0, n, 1000)])


def judge_samples(args, params, config, backend, data, out) -> dict:
    """Score args.judge_samples samples (judged_samples) with the judge; print it and write it to judged.json."""
    n, judge = args.judge_samples, J.judge(backend, data, args.judge)
    images = judged_samples(params, config, n, backend)
    row = judged_row(images, judge, J.features(judge[0], judge[1], data[2], backend), backend)
    print(f"judged on {n} samples: classifier score {row['classifier_score']:.2f}, Frechet distance "
          f"{row['frechet']:.2f}, rarest digit {row['rarest_digit']:.1%} (digit {int(np.argmin(row['label_shares']))}"
          f"), label shares " + " ".join(f"{v:.1%}" for v in row["label_shares"]), flush=True)
    write_json(out / JUDGED_FILE, {"samples": n, "judge_test_accuracy": judge[2]["test_accuracy"], **row})
    return row


def print_gan_epoch(record: dict):
    tqdm.write(f"epoch {record['epoch']:3d}  D loss {record['train_d_loss']:6.3f}  G loss {record['train_g_loss']:6.3f}"
               f"  (nats/image)  D right on real {record['train_acc_real']:5.1%}, fake "
               f"{record['train_acc_fake']:5.1%}  {record['seconds']:6.1f} s")


def run(args) -> int:
    config, tconfig = configs_from_args(args)
    backend, out, data = start_run(args, [], tconfig, OUTPUT_FILES)
    x_train, x_test = data[0], data[2]
    shapes = [(args.arch, args.arch) if args.arch != "mlp" else
              ("-".join(map(str, (config.latent_dim, *config.gen_hidden, 784))),
               "-".join(map(str, (config.pack * 784, *config.dis_hidden, 1))))][0]
    packs = f", packs of {config.pack}" if config.pack > 1 else ""
    print(f"tinyvae GAN on MNIST: {x_train.shape[0]} train images, G {shapes[0]}, D {shapes[1]} "
          f"({config.dis_activation}, real label {config.real_label:g}{packs}), Adam lr {tconfig.lr:g} beta1 "
          f"{tconfig.beta1:g}, batch {tconfig.batch_size}, backend {backend.name}, out {out}", flush=True)
    backend.reseed(STREAM_PICTURES)
    z = backend.normal((N_SAMPLES, config.latent_dim))               # the same z every epoch, (64, L)

    def on_epoch(record, params):
        print_gan_epoch(record)
        plots.samples(backend.to_numpy(generate(params, z, config)), out / f"samples_{record['epoch']:03d}.png")

    result = fit_gan(x_train, x_test, config, tconfig, backend, out, resume=args.resume,
                     overwrite=args.overwrite, on_epoch=on_epoch)
    epochs = result.metrics["epochs"]
    with drawing_pictures(out, len(epochs)):
        plots.samples(backend.to_numpy(generate(result.params, z, config)), out / "samples.png")
        gan_curves(epochs, out / "gan_curves.png")
    grids = "samples_001.png" + (f" ... samples_{len(epochs):03d}.png" if len(epochs) > 1 else "")
    if args.judge_samples:
        judge_samples(args, result.params, config, backend, data, out)
    say_wrote(out, [CHECKPOINT_FILE, METRICS_FILE, *PICTURES, grids] + [JUDGED_FILE] * bool(args.judge_samples))
    return 0


main = main_wrapper(build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
