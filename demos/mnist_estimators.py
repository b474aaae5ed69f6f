"""Why the reparameterization trick: the score-function estimator of the ELBO's gradient beside the pathwise one.

    python demos/mnist_estimators.py                              # trains a short VAE (3 epochs) into --out/vae
    python demos/mnist_estimators.py --from runs/mnist --out runs/estimators-mnist   # measures a demos/mnist.py run
    python demos/mnist_estimators.py --draws 50 --steps 50 --limit 2000 --epochs 1 --out runs/estimators-quick

For one fixed batch of test digits (--images), on the untrained VAE (its initial
weights) and on the trained one, each estimator is drawn --draws times with
fresh eps, --samples samples per image each time: the pathwise one (the
reparameterization trick, what training uses) and the score function (REINFORCE)
without a baseline, with the batch baseline and with the leave-one-out
baseline (tinyvae/core/estimators.py). The table: per coordinate, Var(score) /
Var(pathwise), its quartiles over the coordinates of dL/dmu, dL/dlogvar (the
encoder's outputs, images x latent units) and the encoder's first-layer weights.
Then one short Adam run per estimator from the same initial weights, the same
batches and the same eps: the test -ELBO (first 1000 test images, nats per image,
continuous pixels) every --every steps.

Written to --out:

    vae/                        the short VAE's checkpoint and metrics.json (not with --from)
    metrics.json                the table, the pictures' numbers, the curves, settings, seconds
    gradient_histograms.png     one first-layer weight's estimates under each estimator (trained VAE)
    training_curves.png         test -ELBO against the step, one curve per estimator

Errors the user can fix are one line on stderr, exit status 2; Ctrl-C is one
line, exit status 130 (demos/common.py). Explained, with the measured table:
docs/estimators.md
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

# common first: it puts this checkout's tinyvae first on sys.path (demos/common.py)
from common import (add_common_flags, add_size_flags, finish, flag, from_flags, main_wrapper, mlp_shape, on_ctrl_c,
                    one_line_parser, run_info, start_run, train_config, train_or_load)
from tinyvae import estimators
from tinyvae.checkpoint import METRICS_FILE
from tinyvae.checks import Int
from tinyvae.core.vae import VAEConfig, encode, init_params, neg_elbo_terms
from tinyvae.estimators import EstimatorSpec

SPECS = {"pathwise": ("pathwise", "none"), "score": ("score", "none"), "score_batch": ("score", "batch"),
         "score_loo": ("score", "loo")}
STREAM_DRAWS = 21           # (STREAM_DRAWS, model): the eps of the variance draws, the same for every estimator
N_CURVE_TEST = 1000         # test images behind each point of the training curves
PICTURES = ("gradient_histograms.png", "training_curves.png")
OUTPUT_FILES = (METRICS_FILE, *PICTURES)


def build_parser():
    p = one_line_parser(
        "demos/mnist_estimators.py",
        "Measure the variance of the score-function (REINFORCE) estimator of the VAE's gradient against the "
        "pathwise (reparameterization) one, on an untrained and a trained VAE, and train with each.")
    add_common_flags(p, out="runs/estimators", epochs=3)
    add_size_flags(p, 20, "latent dimensions of the VAE trained here (784-400-20, the PyTorch example)")
    p.add_argument("--from", dest="source", type=Path, default=None, metavar="RUN",
                   help="measure the VAE saved in RUN (RUN/checkpoint.npz as demos/mnist.py writes it, or "
                        "RUN/vae/checkpoint.npz) instead of training a short one")
    flag(p, "--samples", EstimatorSpec, "samples", default=4, metavar="S",
         help="samples of z per image in every estimate and training step (the leave-one-out baseline "
              "needs 2 or more); default %(default)s")
    flag(p, "--draws", rule=Int(2), default=200, metavar="R", help="estimates drawn per estimator; default %(default)s")
    flag(p, "--images", rule=Int(2), default=100, metavar="B",
         help="test digits in the fixed batch; default %(default)s")
    flag(p, "--steps", rule=Int(1), default=300, help="Adam steps of each training run; default %(default)s")
    flag(p, "--every", rule=Int(1), default=25, metavar="K", help="test -ELBO every K steps; default %(default)s")
    return p


@from_flags
def configs_from_args(args):
    """(VAEConfig, TrainConfig, {name: EstimatorSpec}): the VAE of --hidden/--latent-dim, trained by fit."""
    specs = {name: EstimatorSpec(e, b, args.samples) for name, (e, b) in SPECS.items()}
    return VAEConfig(**mlp_shape(args)), train_config(args, iw_k=0), specs


def scales(params, config, x, backend, draws=20):
    """What the prediction needs: the batch's recon f = -log p(x|z) (its mean in nats and E[f^2] per image,
    z ~ q), logvar, and the quartiles of sigma over the active units (Var_x(mu_j) > 0.01; all when none is)."""
    backend.reseed(STREAM_DRAWS, 0)
    f = np.stack([backend.to_numpy(neg_elbo_terms(params, x, backend.normal((x.shape[0], config.latent_dim)),
                                                  config)[0]) for _ in range(draws)])     # (draws, B)
    mu, logvar = (backend.to_numpy(a) for a in encode(params, x, config))
    active = mu.var(axis=0) > 0.01                                          # (L,)
    sigma = np.exp(0.5 * logvar[:, active if active.any() else slice(None)])
    return {"recon": float(f.mean()), "recon_sq": (f.astype(np.float64) ** 2).mean(axis=0), "logvar": logvar,
            "active_units": int(active.sum()),
            "sigma_quartiles": [float(q) for q in np.quantile(sigma, [0.25, 0.5, 0.75])]}


def measure(params, config, x, backend, specs, draws, model):
    """{name: gradient_moments} for every estimator, each drawn from the same eps stream."""
    moments = {}
    for name, spec in specs.items():
        backend.reseed(STREAM_DRAWS, model)
        t = time.perf_counter()
        moments[name] = estimators.gradient_moments(params, x, config, backend, spec, draws)
        print(f"  {spec.label}: {draws} draws in {time.perf_counter() - t:.0f} s", flush=True)
    return moments


def print_table(title, scale, rows, specs, predicted):
    q, n = scale["sigma_quartiles"], scale["active_units"]
    print(f"\n{title}: recon -log p(x|z) {scale['recon']:.1f} nats per image on the batch; {n} active units; "
          f"posterior sd sigma's quartiles ({'active units' if n else 'all units'}) "
          f"{q[0]:.3g} / {q[1]:.3g} / {q[2]:.3g}")
    print("| Var(score) / Var(pathwise) | coordinates | 25% | median | 75% |\n|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {specs[r['estimator']].label}: dL/d{r['part']} | {r['coordinates']} | {r['q25']:.3g} | "
              f"{r['median']:.3g} | {r['q75']:.3g} |")
    print(f"| predicted, no baseline: E[f^2] / (sigma^2 Var_q[df/dz]) | | {predicted[0]:.3g} | {predicted[1]:.3g} | "
          f"{predicted[2]:.3g} |")


def histogram(moments, specs, config, out):
    """The first-layer weight whose pathwise estimate is clearest (largest |mean| / sd), under each estimator."""
    path = moments["pathwise"]["watched"]                                  # (R, ..., watch): (R, 784, 8) for the MLP
    snr = np.abs(path.mean(axis=0)) / (path.std(axis=0) + 1e-30)
    index = tuple(int(i) for i in np.unravel_index(np.argmax(snr), snr.shape))
    draws = {specs[n].label: moments[n]["watched"][(slice(None), *index)] for n in ("pathwise", "score")}
    name = f"W[pixel {index[0]}, unit {index[1]}]" if len(index) == 2 else f"W{list(index)}"   # MLP, conv
    estimators.gradient_histograms(draws, float(path.mean(axis=0)[index]), out / PICTURES[0],
                                   f"trained VAE: dL/d{name} of the first layer, {len(path)} estimates each")
    return {"weight": name, **{label: {"mean": float(v.mean()), "sd": float(v.std(ddof=1))}
                               for label, v in draws.items()}}


def run(args) -> int:
    config, tconfig, specs = configs_from_args(args)
    backend, out, (x_train, _, x_test, _) = start_run(args, [] if args.source else [config], tconfig, OUTPUT_FILES)
    t0 = time.perf_counter()
    models, _ = train_or_load(args, {"vae": ("a short VAE to measure", config, tconfig)}, x_train, x_test,
                              backend, out, args.source)
    trained, config = models["vae"]
    estimators.check_model(config)
    backend.reseed()
    untrained = init_params(config, backend)                               # the same draw fit starts from
    with on_ctrl_c("interrupted while measuring: no table or picture was written" + (
            "" if args.source else f"; the short VAE is saved, and --from {out} with another --out measures it")):
        x = backend.asarray(x_test[:args.images])                          # the fixed batch, (B, 784)
        record, moments = {"tables": {}, "scales": {}}, {}
        for model, (name, params) in enumerate((("untrained", untrained), ("trained", trained)), start=1):
            print(f"{name} VAE, {x.shape[0]} test digits, {args.samples} samples per image:", flush=True)
            moments[name] = measure(params, config, x, backend, specs, args.draws, model)
            scale = scales(params, config, x, backend)
            predicted = estimators.predicted_ratio(scale.pop("recon_sq"), scale.pop("logvar"),
                                                   moments[name]["pathwise"]["mu"].var, args.samples)
            record["scales"][name] = {**scale, "predicted_no_baseline_mu": predicted}
            record["tables"][name] = estimators.variance_table(moments[name])
            print_table(f"{name} VAE", scale, record["tables"][name], specs, predicted)
        record["histogram"] = histogram(moments["trained"], specs, config, out)
        print(f"\ntraining from the untrained VAE, {args.steps} Adam steps of batch {tconfig.batch_size}:", flush=True)
        x_tr, x_te = backend.asarray(x_train), backend.asarray(x_test[:N_CURVE_TEST])
        curves = {}
        for name, spec in specs.items():
            curves[spec.label] = estimators.train_curve(untrained, config, spec, x_tr, x_te, backend, args.steps,
                                                        tconfig.batch_size, tconfig.lr, args.every)
            print(f"  {spec.label}: test -ELBO {curves[spec.label]['test_neg_elbo'][-1]:.2f} after "
                  f"{args.steps} steps", flush=True)
        estimators.training_curves(curves, out / PICTURES[1],
                                   f"{args.samples} samples of z per image per step, batch {tconfig.batch_size}")
    finish(out, {"config": config.to_dict(), "samples": args.samples, "draws": args.draws, "images": x.shape[0],
                 "source": None if args.source is None else str(args.source), **run_info(backend, x_train, x_test),
                 **record, "curves": curves, "seconds": {}}, [] if args.source else ["vae"], PICTURES, t0)
    return 0


main = main_wrapper(build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
