"""Train the VAE on MNIST; write a checkpoint, metrics.json and pictures to --out.

    python demos/mnist.py                                          # the PyTorch example: 784-400-20, 10 epochs
    python demos/mnist.py --latent-dim 2 --out runs/mnist-z2       # adds the manifolds and explorer.html
    python demos/mnist.py --arch conv --epochs 30 --out runs/conv30   # the Keras example's conv VAE, 2-D latent
    python demos/mnist.py --beta 4 --out runs/beta4                # a beta-VAE (--kl-warmup-epochs for a warm-up)
    python demos/mnist.py --binarize --iw-k 5000 --out runs/binarized   # the literature's log-likelihood setting
    python demos/mnist.py --epochs 20 --resume                     # continue the first run from its checkpoint

Each setting writes to its own --out: a folder holds one run, and a second run
into it is refused (--resume continues it, --overwrite replaces it). Per epoch
it prints the train and test negative ELBO (nats per image, the test one split
into reconstruction + KL) and the seconds the epoch took; at the end, the
importance-weighted estimate of -log p(x) on the first --iw-images test
images. Errors the user can fix are one line on stderr, exit status 2; Ctrl-C
is one line saying which epochs are saved, exit status 130 (demos/common.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

# common first: it puts this checkout's tinyvae first on sys.path (demos/common.py)
from common import (add_common_flags, drawing_pictures, flag, from_flags, main_wrapper, one_line_parser, print_epoch,
                    say_wrote, shape_name, start_run, train_config)
from tinyvae import plots
from tinyvae.checkpoint import CHECKPOINT_FILE, METRICS_FILE
from tinyvae.checks import Int
from tinyvae.core.vae import INITS, LIKELIHOODS, VAEConfig, decode_mean, encode
from tinyvae.errors import InputError
from tinyvae.explorer import EXPLORER_FILE, run_caption, write_explorer
from tinyvae.specs import keras_conv_decoder, keras_conv_encoder, summary
from tinyvae.train import STREAM_PICTURES, TrainConfig, fit

N_RECONSTRUCTIONS = 10   # test digits shown above their reconstructions
N_SAMPLES = 64           # prior samples, an 8 x 8 grid
MANIFOLD_SIZES = (15, 30)
PICTURES = ("reconstructions.png", "samples.png", "loss_curves.png", "latent_scatter.png",
            *(f"manifold_{n}x{n}.png" for n in MANIFOLD_SIZES), EXPLORER_FILE)
OUTPUT_FILES = (CHECKPOINT_FILE, METRICS_FILE, *PICTURES)   # --out is checked for them before training


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def build_parser():
    p = one_line_parser(
        "demos/mnist.py",
        "Train the tinyvae VAE on MNIST. Defaults: the PyTorch example (784-400-20, ReLU, its "
        "nn.Linear initialisation, batch 128, Adam lr 1e-3, 10 epochs, continuous pixels).")
    add_common_flags(p, out="runs/mnist")
    p.add_argument("--arch", choices=("mlp", "conv"), default="mlp",
                   help="mlp: dense layers (--hidden), the PyTorch example; conv: the Keras example's "
                        "conv VAE (Conv 32, 64 stride 2, Dense 16 | Dense 7*7*64, ConvTranspose 64, "
                        "32 stride 2, ConvTranspose 1); default %(default)s")
    flag(p, "--latent-dim", VAEConfig, "latent_dim", default=None, metavar="L",
         help="default 20 (mlp) or 2 (conv); with 2 the manifold pictures are drawn too")
    flag(p, "--hidden", rule=Int(1), also=("enc_hidden", "dec_hidden"), nargs="+", default=None, metavar="H",
         help="mlp only: encoder hidden sizes, e.g. 400 or 512 256; the decoder mirrors them; default 400")
    flag(p, "--beta", TrainConfig, "beta", default=1.0,
         help="KL weight of the training objective recon + beta KL (the reported test "
              "-ELBO is always at beta = 1); default %(default)s")
    flag(p, "--kl-warmup-epochs", TrainConfig, "warmup_epochs", default=0, metavar="E",
         help="KL warm-up: the weight grows linearly from 0 to --beta over E epochs; default 0 (none)")
    p.add_argument("--likelihood", choices=LIKELIHOODS, default="bernoulli",
                   help="p(x|z): bernoulli (cross-entropy, pixels in [0, 1]) or gaussian "
                        "(learned variance per pixel: a density, see docs/elbo.md); default %(default)s")
    p.add_argument("--init", choices=INITS, default=None,
                   help="initial weights: pytorch (nn.Linear's default, uniform +-1/sqrt(fan_in), "
                        "as in the PyTorch example), keras (Glorot uniform, zero biases, as in the "
                        "Keras example) or glorot_he (He for ReLU layers, Glorot for the linear "
                        "outputs, zero biases; the library's default); default: pytorch for the MLP, "
                        "keras for --arch conv")
    p.add_argument("--binarize", action="store_true",
                   help="resample training pixels as Bernoulli(x) every epoch (the test set is binarized once)")
    flag(p, "--iw-k", TrainConfig, "iw_k", default=100, metavar="K",
         help="importance samples per image for the -log p(x) estimate, 0 to skip it; any K fits in "
              "memory; default %(default)s")
    flag(p, "--iw-images", TrainConfig, "iw_images", default=None, metavar="N",
         help="test images (the first N) in the -log p(x) estimate; default 10000 for the MLP, 1000 for "
              "--arch conv (whose decoder is slower: the estimate would take longer than the training)")
    return p


@from_flags
def configs_from_args(args):
    """(VAEConfig, TrainConfig) from the parsed flags; the MLP decoder mirrors the encoder."""
    if args.arch == "conv":
        if args.hidden is not None:
            raise InputError("--hidden sets the MLP's sizes and --arch conv has fixed Keras layers: "
                             "drop --hidden, or pass --arch mlp")
        latent = args.latent_dim or 2
        # The Keras example's init. With PyTorch's (uniform +-1/sqrt(fan_in),
        # biases too) seed 0 ended its first epoch with 14 of the 16 Dense(16)
        # units dead and the encoder collapsed: test -ELBO 206.8, the average
        # digit's (docs/results.md#the-convolutional-vae-the-keras-example).
        config = VAEConfig(input_dim=784, latent_dim=latent, encoder=keras_conv_encoder(latent),
                           decoder=keras_conv_decoder(), likelihood=args.likelihood, init=args.init or "keras")
    else:
        hidden = tuple(args.hidden or (400,))
        config = VAEConfig(input_dim=784, enc_hidden=hidden, dec_hidden=hidden[::-1],
                           latent_dim=args.latent_dim or 20, activation="relu", likelihood=args.likelihood,
                           init=args.init or "pytorch")
    iw_images = args.iw_images if args.iw_images is not None else 1000 if args.arch == "conv" else 10000
    tconfig = train_config(args, binarize=args.binarize, iw_k=args.iw_k, iw_images=iw_images,
                           beta=args.beta, warmup_epochs=args.kl_warmup_epochs)
    return config, tconfig


# ---------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------


def write_pictures(params, config, backend, x_test, y_test, epochs, out: Path) -> list:
    """The PNGs: reconstructions, prior samples, loss curves, latent scatter (and manifolds).

    x_test (M, 784) host float32 in [0, 1]; reconstructions decode the mean of q(z|x).
    """
    to_np = backend.to_numpy

    def decode(z):                                        # host (M, L) -> host (M, 784)
        return to_np(decode_mean(params, backend.asarray(z), config))

    def z_mean(xb):                                       # backend (B, 784) -> host (B, L)
        return to_np(encode(params, xb, config)[0])

    written = []
    originals = x_test[:N_RECONSTRUCTIONS]
    recons = decode(z_mean(backend.asarray(originals)))
    written.append(plots.reconstructions(originals, recons, out / "reconstructions.png"))
    backend.reseed(STREAM_PICTURES)
    z_prior = backend.normal((N_SAMPLES, config.latent_dim))          # z ~ N(0, I), (64, L)
    written.append(plots.samples(to_np(decode_mean(params, z_prior, config)), out / "samples.png"))
    written.append(plots.loss_curves(epochs, out / "loss_curves.png"))
    if config.latent_dim == 2:
        for n in MANIFOLD_SIZES:
            written.append(plots.manifold(decode, n, out / f"manifold_{n}x{n}.png"))
    z = z_mean(backend.asarray(x_test))                                # (M, L)
    written.append(plots.latent_scatter(z, y_test, out / "latent_scatter.png"))
    if config.latent_dim == 2:                     # the interactive page (tinyvae/explorer.py)
        written.append(write_explorer(out / EXPLORER_FILE, params, config, z, y_test,
                                      caption=run_caption(epochs)))
    return [Path(p) for p in written]


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def run(args) -> int:
    config, tconfig = configs_from_args(args)
    backend, _, (x_train, _, x_test, y_test) = start_run(args, [config], tconfig, OUTPUT_FILES)
    shape = f"conv-{config.latent_dim}" if args.arch == "conv" else shape_name(config)
    print(f"tinyvae on MNIST: {x_train.shape[0]} train / {x_test.shape[0]} test images, {shape}, "
          f"{config.likelihood}{', binarized' if tconfig.binarize else ''}"
          f"{f', beta {tconfig.beta:g}' if tconfig.beta != 1 else ''}"
          f"{f', KL warm-up {tconfig.warmup_epochs} epochs' if tconfig.warmup_epochs else ''}, "
          f"backend {backend.name}, out {args.out}", flush=True)
    print(summary(config.encoder_layers, (784,), "encoder"))
    print(summary(config.decoder_layers, (config.latent_dim,), "decoder"), flush=True)
    result = fit(x_train, x_test, config, tconfig, backend, args.out, resume=args.resume,
                 overwrite=args.overwrite, on_epoch=print_epoch)
    m = result.metrics
    print(f"test -ELBO {m['test_neg_elbo']:.2f} nats/image (recon {m['test_recon']:.2f} + KL {m['test_kl']:.2f})")
    if "test_iw_nll" in m:
        print(f"test -log p(x) ~= {m['test_iw_nll']:.2f} nats/image "
              f"(importance-weighted, k={m['iw_k']}, first {m['iw_images']} test images)")
    with drawing_pictures(args.out, len(m["epochs"])):
        pictures = write_pictures(result.params, config, backend, x_test, y_test, m["epochs"], Path(args.out))
    say_wrote(args.out, [CHECKPOINT_FILE, METRICS_FILE, *(p.name for p in pictures)])
    return 0


main = main_wrapper(build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
