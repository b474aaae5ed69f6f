"""The autoencoder family side by side: a plain AE, a denoising AE and a VAE, trained alike on MNIST.

    python demos/mnist_ae.py                                       # 784-400-2, masking 0.3, 10 epochs
    python demos/mnist_ae.py --corruption gaussian --corruption-level 0.5 --out runs/family-gaussian
    python demos/mnist_ae.py --latent-dim 20 --out runs/family-z20
    python demos/mnist_ae.py --sparsity kl --epochs 5 --out runs/sparse   # plain and sparse AE, 784-196-784

The three models have the same encoder and decoder shapes (784-400-L-400-784,
ReLU; the VAE's encoder ends in 2L numbers, mu and logvar, instead of L), the
same Bernoulli likelihood and are trained the same way (train.fit: Adam, the
same epochs, batch size, learning rate and seed). The denoising autoencoder
(DAE) sees each training digit corrupted afresh every epoch (--corruption)
and is scored against the clean digit.

The table: each model's test reconstruction error in nats per image under the
Bernoulli likelihood, -log p(x | x_in) summed over the 784 pixels, for the clean
test digits and for a corrupted copy (one fixed draw of the same corruption),
always scored against the clean digit. For the VAE: the reconstruction term at
z ~ q(z | x_in) (its ELBO's term), at z = the mean of q, and the -ELBO.

Written to --out:

    ae/, dae/, vae/          each model's checkpoint.npz and metrics.json (train.fit)
    metrics.json             the table, each model's settings and final test numbers, seconds
    reconstructions.png      clean and corrupted test digits and each model's reconstruction
    samples.png              the same z ~ N(0, I) decoded by each model
    latent_scatters.png      the test digits' codes (AE, DAE) and means of q(z|x) (VAE)

With --sparsity kl|l1 the demo trains, instead, a plain and a sparse autoencoder
of one shape, 784-H-784 with H sigmoid code units (--code-units), the sparse one
with the activity penalty and weight decay (tinyvae/core/sparse.py), into plain/
and sparse/, and writes features.png (the first layer's weights, one image per
unit) and each model's share of near-zero code activations in metrics.json.

Errors the user can fix are one line on stderr, exit status 2; Ctrl-C is one
line saying what is saved, exit status 130 (demos/common.py).
Explained, with the pictures of a 10-epoch run: docs/autoencoders.md
"""
from __future__ import annotations

import sys
import time
from pathlib import Path


# common first: it puts this checkout's tinyvae first on sys.path (demos/common.py)
from common import (add_common_flags, add_size_flags, finish, fit_each, flag, from_flags, main_wrapper, mlp_shape,
                    on_ctrl_c, one_line_parser, run_info, shape_name, start_run, train_config)
from measures import code_spread, codes, family_markdown, in_batches, reconstruction_table
from tinyvae import plots, sparse
from tinyvae.checkpoint import METRICS_FILE
from tinyvae.core import ae, vae
from tinyvae.core.ae import AEConfig
from tinyvae.core.layers import sigmoid
from tinyvae.core.sparse import PENALTIES, SparseAEConfig
from tinyvae.core.vae import VAEConfig
from tinyvae.models import corrupt
from tinyvae.train import STREAM_PICTURES

MODELS = {"ae": "AE", "dae": "DAE", "vae": "VAE"}   # folder under --out: label
DEFAULT_LEVEL = {"mask": 0.3, "gaussian": 0.5}     # the levels used in teaching
STREAM_TEST_CORRUPTION = 10   # the one fixed corruption of the test set
N_SHOWN = 12                  # test digits in reconstructions.png
N_SAMPLES = 24                # prior samples per model, two rows
PICTURES = ("reconstructions.png", "samples.png", "latent_scatters.png")
OUTPUT_FILES = (METRICS_FILE, *PICTURES)
SPARSE_MODELS = {"plain": "plain AE", "sparse": "sparse AE"}   # --sparsity: folder under --out: label
SPARSE_PICTURES = ("features.png",)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def build_parser():
    p = one_line_parser(
        "demos/mnist_ae.py",
        "Train a plain autoencoder, a denoising autoencoder and a VAE of the same shape on MNIST, "
        "the same way, and compare their reconstructions, samples and latent spaces.")
    add_common_flags(p, out="runs/family")
    add_size_flags(p, 2, "code size of the autoencoders and latent size of the VAE "
                         "(2, a plane: the scatters show the codes themselves)", models="every model")
    p.add_argument("--corruption", choices=("mask", "gaussian"), default="mask",
                   help="the DAE's corruption, and the test set's: mask (each pixel zeroed with "
                        "probability p) or gaussian (noise of std sigma, clipped to [0, 1]); "
                        "default %(default)s")
    flag(p, "--corruption-level", AEConfig, "corruption_level", default=None, metavar="P",
         help="p for mask (below 1), sigma for gaussian; default 0.3 for mask, 0.5 for gaussian")
    p.add_argument("--sparsity", choices=PENALTIES, default=None,
                   help="instead of the family: a plain and a sparse autoencoder, 784-H-784 with H sigmoid "
                        "code units, and their first-layer features; kl (UFLDL's penalty toward --rho) or l1")
    flag(p, "--code-units", SparseAEConfig, "latent_dim", default=196, metavar="H",
         help="with --sparsity: the code's sigmoid units; default %(default)s")
    flag(p, "--rho", SparseAEConfig, "rho", default=0.05,
         help="with --sparsity kl: each code unit's target mean activation; default %(default)s")
    flag(p, "--sparsity-weight", SparseAEConfig, "sparsity_weight", default=3.0, metavar="BETA",
         help="with --sparsity: the penalty's weight beta; default %(default)s")
    flag(p, "--weight-decay", SparseAEConfig, "weight_decay", default=3e-3, metavar="LAMBDA",
         help="with --sparsity: lambda / 2 times the sum of every squared weight (not the biases); "
              "default %(default)s")
    return p


@from_flags
def configs_from_args(args):
    """({'ae': AEConfig, 'dae': AEConfig, 'vae': VAEConfig}, TrainConfig): one shape, one training."""
    level = args.corruption_level if args.corruption_level is not None else DEFAULT_LEVEL[args.corruption]
    shape = mlp_shape(args)
    configs = {"ae": AEConfig(**shape),
               "dae": AEConfig(**shape, corruption=args.corruption, corruption_level=level),
               "vae": VAEConfig(**shape)}
    return configs, train_config(args, iw_k=0)


@from_flags
def sparse_configs(args):
    """({'plain': SparseAEConfig, 'sparse': SparseAEConfig}, TrainConfig): one shape, without and with the penalty."""
    shape = dict(input_dim=784, latent_dim=args.code_units)
    return ({"plain": SparseAEConfig(**shape, sparsity_weight=0.0, weight_decay=0.0),
             "sparse": SparseAEConfig(**shape, sparsity=args.sparsity, rho=args.rho,
                                      sparsity_weight=args.sparsity_weight, weight_decay=args.weight_decay)},
            train_config(args, iw_k=0))


def corruption_name(config: AEConfig) -> str:
    return (f"masking, p = {config.corruption_level:g}" if config.corruption == "mask"
            else f"Gaussian, sigma = {config.corruption_level:g}")


# ---------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------


def write_pictures(params, configs, backend, x, x_noisy, y_test, test_codes, out: Path) -> list:
    """reconstructions.png, samples.png, latent_scatters.png. x, x_noisy (M, 784) on the backend;
    test_codes {name: host (M, L)}."""
    to_np = backend.to_numpy
    cv = configs["vae"]

    def decoded(name, z):                        # pixel probabilities sigma(logits), (M, 784)
        if name == "vae":
            return to_np(vae.decode_mean(params[name], z, cv))
        return to_np(sigmoid(ae.decode(params[name], z, configs[name])))

    rows = []
    for column, x_in in (("test digits", x[:N_SHOWN, :]),
                         (f"corrupted\n({corruption_name(configs['dae'])})", x_noisy[:N_SHOWN, :])):
        rows.append((column, to_np(x_in)))
        rows += [(f"{label}\nreconstruction", decoded(name, codes(params, configs, name, x_in)))
                 for name, label in MODELS.items()]
    plots.image_rows(rows, out / "reconstructions.png",
                     "Clean and corrupted test digits, and each model's reconstruction")

    backend.reseed(STREAM_PICTURES)
    z = backend.normal((N_SAMPLES, cv.latent_dim))               # the same z for every model, (24, L)
    half = N_SAMPLES // 2
    rows = []
    for name, label in MODELS.items():
        images = decoded(name, z)
        rows += [(f"{label}\nz ~ N(0, I)", images[:half]), ("", images[half:])]
    plots.image_rows(rows, out / "samples.png", "The same z ~ N(0, I) decoded by each model")

    panels = {f"{label}: {'means of q(z|x)' if name == 'vae' else 'codes h = enc(x)'}": test_codes[name]
              for name, label in MODELS.items()}
    plots.latent_scatters(panels, y_test, out / "latent_scatters.png",
                          title="The same test digits in each model's latent space")
    return list(PICTURES)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def run_sparse(args) -> int:
    """--sparsity: the plain and the sparse autoencoder trained alike, their codes measured, their features drawn."""
    configs, tconfig = sparse_configs(args)
    backend, out, (x_train, _, x_test, _) = start_run(args, configs.values(), tconfig,
                                                      (METRICS_FILE, *SPARSE_PICTURES))
    s = configs["sparse"]
    print(f"plain and sparse AE on MNIST: 784-{s.latent_dim}-784, sigmoid code; {s.sparsity} penalty (rho {s.rho:g}, "
          f"beta {s.sparsity_weight:g}), weight decay {s.weight_decay:g}; backend {backend.name}, out {out}",
          flush=True)
    t0 = time.perf_counter()
    results, seconds = fit_each(args, {n: (label, configs[n], tconfig) for n, label in SPARSE_MODELS.items()},
                                x_train, x_test, backend, out)
    with on_ctrl_c(f"interrupted after training: both models are saved under {out}; --resume measures them again"):
        x = backend.asarray(x_test)
        codes_ = {n: sparse.code_summary(r.params, x, configs[n], backend) for n, r in results.items()}
        for n, m in codes_.items():
            print(f"{SPARSE_MODELS[n]}: {m['near_zero_share']:.1%} of the test codes' activations below "
                  f"{sparse.NEAR_ZERO}, mean {m['mean_activation']:.3f}, {m['units_never_on']} of {m['units']} units "
                  f"never above 1/2; features over a median {m['effective_pixels_median']:.0f} pixels")
        sparse.features_picture({SPARSE_MODELS[n]: backend.to_numpy(r.params["enc.0.W"]) for n, r in results.items()},
                                out / SPARSE_PICTURES[0], "First-layer features: each unit's encoder weights "
                                                           "(dark positive, light negative)")
    finish(out, {"configs": {n: c.to_dict() for n, c in configs.items()}, "train_config": tconfig.to_dict(),
                 **run_info(backend, x_train, x_test), "codes": codes_,
                 "final": {n: {k: v for k, v in r.metrics.items() if k.startswith("test_")}
                           for n, r in results.items()},
                 "seconds": seconds}, SPARSE_MODELS, SPARSE_PICTURES, t0)
    return 0


def run(args) -> int:
    if args.sparsity:
        return run_sparse(args)
    configs, tconfig = configs_from_args(args)
    backend, out, (x_train, _, x_test, y_test) = start_run(args, configs.values(), tconfig, OUTPUT_FILES)
    dae = configs["dae"]
    print(f"AE, DAE ({corruption_name(dae)}) and VAE on MNIST: {x_train.shape[0]} train / "
          f"{x_test.shape[0]} test images, {shape_name(dae)}, backend {backend.name}, out {out}", flush=True)
    t0 = time.perf_counter()
    results, seconds = fit_each(args, {name: (label, configs[name], tconfig) for name, label in MODELS.items()},
                                x_train, x_test, backend, out)
    params = {name: r.params for name, r in results.items()}
    with on_ctrl_c(f"interrupted after training: the three models are saved under {out} "
                   "(ae/, dae/, vae/); --resume makes the table and pictures again"):
        x = backend.asarray(x_test)                                          # (M, 784)
        backend.reseed(STREAM_TEST_CORRUPTION)
        x_noisy = corrupt(x, backend, dae)                                   # one fixed draw
        table = reconstruction_table(params, configs, x, x_noisy, backend)
        print(family_markdown(table, corruption_name(dae)))
        test_codes = {name: in_batches(lambda xb, name=name: codes(params, configs, name, xb), x, backend)
                      for name in MODELS}                                     # {name: (M, L)}
        spread = {name: code_spread(z) for name, z in test_codes.items()}
        for name, sp in spread.items():
            inside = "" if sp["inside_prior_95"] is None else \
                f", {sp['inside_prior_95']:.0%} inside the circle holding 95% of N(0, I)"
            print(f"{MODELS[name]} test codes: std per dimension "
                  + " ".join(f"{v:.2f}" for v in sp["std"][:4]) + ("..." if len(sp["std"]) > 4 else "") + inside)
        pictures = write_pictures(params, configs, backend, x, x_noisy, y_test, test_codes, out)
    finish(out, {"configs": {name: c.to_dict() for name, c in configs.items()},
                 "train_config": tconfig.to_dict(), **run_info(backend, x_train, x_test),
                 "corruption": {"kind": dae.corruption, "level": dae.corruption_level,
                                "test_stream": STREAM_TEST_CORRUPTION},
                 "table": table, "code_spread": spread,
                 "final": {name: {k: v for k, v in r.metrics.items() if k.startswith("test_")}
                           for name, r in results.items()},
                 "seconds": seconds}, MODELS, pictures, t0)
    return 0


main = main_wrapper(build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
