"""The VAE, the GAN and the autoencoder side by side, scored by the same judge on 10,000 samples each.

    python demos/mnist_compare.py                          # 784-400-20: VAE, AE 10 epochs, GAN 20, into runs/compare
    python demos/mnist_compare.py --from runs/compare --out runs/compare-scores   # score saved models again

One architecture for all three: the VAE's decoder is the GAN's generator and
the AE's decoder (L-400-784, logits, pixels sigma(logits)); the VAE's encoder
is the AE's (its last layer L numbers, not 2L) and the GAN's discriminator
(784-400-1; leaky ReLU of slope 0.2 and real label 0.9, as demos/mnist_gan.py). Samples: the VAE decodes z ~ N(0, I), the GAN generates from z ~
N(0, I), and the AE decodes z from a Gaussian fitted to its training codes
(it has no prior of its own). Every sample is the decoder's pixel means.

A tinyvae classifier, the judge (tinyvae/judge.py; trained once, about 99%
right, kept in the cache folder), scores each model's samples against the test
images: the Frechet distance of its features, the classifier score, how evenly
its labels spread (the rarest digit's share, KL to uniform), each sample's
distance to its nearest training image, and beside them the VAE's importance-
weighted -log p(x) (the GAN and the AE define no likelihood to bound) and the
seconds an epoch took. A side table gives each set of samples' Parzen-window
log-likelihood of the test images, the number Theis et al. (2016) warn against.
Written to --out: vae/, ae/, gan/ (each model's run), metrics.json, samples.png,
interpolations.png. Explained: docs/gan.md#the-comparison
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

# common first: it puts this checkout's tinyvae first on sys.path (demos/common.py)
from common import (add_common_flags, add_size_flags, finish, flag, from_flags, load_run, main_wrapper, mlp_shape,
                    on_ctrl_c, one_line_parser, print_epoch, run_info, start_run, train_config)
from mnist_gan import RECIPE, STREAM_SAMPLES, judged_row, print_gan_epoch
from tinyvae import judge as J
from tinyvae import plots
from tinyvae.checkpoint import CHECKPOINT_FILE, METRICS_FILE
from tinyvae.checks import Int
from tinyvae.core import ae, vae
from tinyvae.core.ae import AEConfig
from tinyvae.core.gan import GANConfig, generate
from tinyvae.core.layers import sigmoid
from tinyvae.core.vae import VAEConfig
from tinyvae.gan_train import GANTrainConfig, fit_gan, load_gan
from tinyvae.train import fit

MODELS = {"vae": "VAE", "ae": "AE", "gan": "GAN"}
PICTURES = ("samples.png", "interpolations.png")


def build_parser():
    p = one_line_parser("demos/mnist_compare.py", "Train (or load) a VAE, a GAN and an autoencoder of one "
                        "architecture and score 10,000 samples of each with tinyvae's MNIST classifier.")
    add_common_flags(p, out="runs/compare")
    add_size_flags(p, 20, "latent size of all three (z, the code)", models="every model")
    flag(p, "--gan-epochs", rule=Int(1), default=20, metavar="N", help="the GAN's epochs (Adam 2e-4, beta1 0.5, "
         "batch 64, as demos/mnist_gan.py); default %(default)s")
    flag(p, "--gan-pack", GANConfig, "pack", default=1, metavar="K", help="images the GAN's D judges side by "
         "side (PacGAN, demos/mnist_gan.py --pack); default %(default)s")
    flag(p, "--samples", rule=Int(1), default=10000, metavar="N", help="samples per model; default %(default)s")
    flag(p, "--nn-samples", rule=Int(1), default=10000, metavar="N", help="samples (the first N) whose nearest "
         "training image is found; default %(default)s")
    flag(p, "--parzen-images", rule=Int(1), default=1000, metavar="N", help="test images the Parzen window "
         "scores (its sigma is chosen on as many training images); default %(default)s")
    flag(p, "--iw-k", rule=Int(0), default=100, metavar="K", help="the VAE's importance samples; default %(default)s")
    p.add_argument("--from", dest="source", type=Path, default=None, metavar="DIR",
                   help="score the models saved in DIR/vae, DIR/ae, DIR/gan instead of training")
    p.add_argument("--judge", type=Path, default=None, metavar="FILE",
                   help="the judge's checkpoint (trained there first if missing); default: the cache folder's")
    return p


@from_flags
def configs_from_args(args):
    """{name: (config, train config)}: one architecture; the GAN's D is the encoder with a 1-unit head."""
    shape = mlp_shape(args)
    gan = GANConfig(input_dim=784, latent_dim=args.latent_dim, dis_hidden=shape["enc_hidden"],
                    gen_hidden=shape["dec_hidden"], pack=args.gan_pack, **RECIPE)        # D's slope and smoothing: the GAN demo's
    t = train_config(args, iw_k=args.iw_k)
    return {"vae": (VAEConfig(**shape), t), "ae": (AEConfig(**shape), train_config(args, iw_k=0)),
            "gan": (gan, GANTrainConfig(epochs=args.gan_epochs, seed=args.seed))}


def train_or_load(args, runs, data, backend, out):
    """{name: (params, metrics)}: each model trained into out/name (continued there with --resume), or loaded."""
    x_train, _, x_test, _ = data
    models = {}
    for name, (config, tconfig) in runs.items():
        path = (args.source or out) / name / CHECKPOINT_FILE
        if args.source is not None:
            params = load_gan(path, backend)[0] if name == "gan" else load_run(path, type(config), backend)[0]
            models[name] = (params, json.loads((path.parent / METRICS_FILE).read_text()))
            continue
        print(f"{MODELS[name]}:", flush=True)
        resume = args.resume and path.exists()
        if name == "gan":
            r = fit_gan(x_train, x_test, config, tconfig, backend, out / name, resume, args.overwrite,
                        on_epoch=lambda record, _: print_gan_epoch(record))
        else:
            r = fit(x_train, x_test, config, tconfig, backend, out / name, resume, args.overwrite, on_epoch=print_epoch)
        models[name] = (r.params, r.metrics)
    return models


def latent_sampler(name, params, config, x_train, backend):
    """draw(n) -> z (n, L): N(0, I) for the VAE and the GAN; for the AE, the Gaussian fitted to its training codes."""
    if name != "ae":
        return lambda n: backend.normal((n, config.latent_dim))
    h = np.concatenate([backend.to_numpy(ae.encode(params, backend.asarray(x_train[s:s + 1000]), config))
                        for s in range(0, len(x_train), 1000)]).astype(np.float64)    # (N, L)
    mean, chol = h.mean(axis=0), np.linalg.cholesky(np.cov(h, rowvar=False) + 1e-6 * np.eye(h.shape[1]))
    return lambda n: backend.asarray(mean + backend.to_numpy(backend.normal((n, config.latent_dim))) @ chol.T)


def decoder(name, params, config, backend):
    """z (n, L) on the backend -> the model's pixel means (n, 784) on the host."""
    if name == "gan":
        return lambda z: backend.to_numpy(generate(params, z, config))
    if name == "ae":
        return lambda z: backend.to_numpy(sigmoid(ae.decode(params, z, config)))
    return lambda z: backend.to_numpy(vae.decode_mean(params, z, config))


def score(images, judge, test, x_train, parzen_sigma_images, args, backend, nn_images=None):
    """One row of the table for a set of images (n, 784) host: the judge's numbers, the Parzen window on them,
    and the distance of each of nn_images (default: the images) to its nearest training image."""
    m = args.parzen_images
    sigma = J.parzen_sigma(images, parzen_sigma_images, backend)
    return {**judged_row(images, judge, test["features"], backend),
            "nearest_train": float(np.mean(J.nearest_distances((images if nn_images is None else nn_images)
                                                               [:args.nn_samples], x_train, backend))),
            "parzen_sigma": sigma, "parzen_log_px": float(np.mean(J.parzen_log_likelihood(images, test["x"][:m],
                                                                                         sigma, backend)))}


def markdown(table: dict) -> str:
    head = ("| | Frechet distance | classifier score | rarest digit | KL(labels, uniform) | nearest training "
            "image | -log p(x) | s/epoch |\n|---|---|---|---|---|---|---|---|")
    rows = [f"| {label} | {r['frechet']:.2f} | {r['classifier_score']:.2f} | {r['rarest_digit']:.1%} | "
            f"{r['kl_uniform']:.3f} | {r['nearest_train']:.2f} | {r.get('neg_log_px', 'none' * (label != 'MNIST'))} | "
            f"{r.get('seconds_per_epoch', '')} |" for label, r in table.items()]
    side = ["| | Parzen log p(x), nats | sigma |", "|---|---|---|"] + [
        f"| {label} | {r['parzen_log_px']:.1f} | {r['parzen_sigma']:.3f} |" for label, r in table.items()]
    return "\n".join([head, *rows, "", *side])


def run(args) -> int:
    runs = configs_from_args(args)
    backend, out, data = start_run(args, [], runs["vae"][1], (METRICS_FILE, *PICTURES))
    x_train, y_train, x_test, y_test = data
    t0 = time.perf_counter()
    judge = J.judge(backend, data, args.judge, progress=None)
    print(f"judge: {judge[2]['test_accuracy']:.2%} right on the test set", flush=True)
    models = train_or_load(args, runs, data, backend, out)
    with on_ctrl_c(f"interrupted after training: the three models are saved under {out}; "
                   f"--from {out} --out ANOTHER scores them again"):
        n, m = args.samples, args.parzen_images
        test = {"x": x_test, "features": J.features(judge[0], judge[1], x_test, backend)}
        held = x_train[-m:]                                       # chooses each Parzen sigma
        # the reference row: real digits as if they were samples (training images; the nearest-image
        # distance of the test images, since a training image's nearest is itself)
        table = {"MNIST": score(x_train[:n], judge, test, x_train, held, args, backend, nn_images=x_test[:n])}
        samples, ends = {}, {}
        for name, label in MODELS.items():
            params, config = models[name][0], runs[name][0]
            backend.reseed(STREAM_SAMPLES)
            draw = latent_sampler(name, params, config, x_train, backend)
            decode = decoder(name, params, config, backend)
            samples[name] = np.concatenate([decode(draw(min(1000, n - s))) for s in range(0, n, 1000)])
            table[label] = score(samples[name], judge, test, x_train, held, args, backend)
            epochs = models[name][1]["epochs"]
            table[label]["seconds_per_epoch"] = round(float(np.median([e["seconds"] for e in epochs])), 1)
            if name == "vae" and "test_iw_nll" in models[name][1]:
                table[label]["neg_log_px"] = round(models[name][1]["test_iw_nll"], 2)
            a, b = backend.to_numpy(draw(4)), backend.to_numpy(draw(4))       # 4 pairs of end points
            t = np.linspace(0, 1, 10)[None, :, None]
            ends[label] = [decode(backend.asarray((a[i] * (1 - t) + b[i] * t)[0])) for i in range(4)]
        print(markdown(table))
        grids = [plots.tile_images(samples[name][:64], 8, 8) for name in MODELS]
        gap = np.zeros((8 * 28, 28))
        fig, ax = plots._grid_figure(np.concatenate([grids[0], gap, grids[1], gap, grids[2]], axis=1),
                                     "64 samples of each model (pixel means)")
        ax.set_xticks([112, 364, 616], list(MODELS.values()))
        plots._save(fig, out / "samples.png")
        plots.image_rows([(label if i == 0 else "", row) for label, rows in ends.items() for i, row in enumerate(rows)],
                         out / "interpolations.png", "Straight lines between two latent points of each model")
    finish(out, {"configs": {k: c.to_dict() for k, (c, _) in runs.items()},
                 "train_configs": {k: t.to_dict() for k, (_, t) in runs.items()}, **run_info(backend, x_train, x_test),
                 "judge": {"test_accuracy": judge[2]["test_accuracy"]}, "samples": n, "table": table,
                 "seconds": {}}, MODELS, list(PICTURES), t0)
    return 0


main = main_wrapper(build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
