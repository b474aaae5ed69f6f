"""beta and KL warm-up on MNIST: what the KL weight trades, and which latent units it switches off.

    python demos/mnist_beta.py                               # beta 0.5, 1, 4; warm-up over 5 epochs
    python demos/mnist_beta.py --betas 0.25 1 2 8 --latent-dim 32 --out runs/beta-z32
    python demos/mnist_beta.py --warmup-epochs 0 --out runs/beta-sweep   # the sweep alone

Each run trains the VAE (784-400-L, the same shapes, epochs, batch size,
learning rate and seed) on the objective recon + beta KL; the test numbers are
always the negative ELBO at beta = 1 and its two terms, so runs compare. One
more run trains beta = 1 with the KL weight ramped from 0 to 1 over the first
--warmup-epochs epochs (train.kl_weight), against the same beta without it.

A latent unit j is active when its mean moves with the input,
A_j = Var_x(E_q[z_j | x]) > 0.01 over the test images (Burda et al. 2016,
tinyvae.metrics.active_units); the others have collapsed to the prior.

Written to --out:

    beta_<b>/, beta_1_warmup<W>/   each run's checkpoint.npz and metrics.json (train.fit)
    metrics.json                   the table: per run, beta, warm-up, objective, recon, KL, -ELBO, active units
    tradeoff.png                   test reconstruction against KL, one point per beta
    reconstructions.png            test digits, each beta's reconstructions and prior samples
    kl_curves.png                  KL weight, test KL and test -ELBO per epoch of every run
    active_units.png               every run's unit activities, and the threshold

Errors the user can fix are one line on stderr, exit status 2; Ctrl-C is one
line saying what is saved, exit status 130 (demos/common.py).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from tqdm import tqdm

# common first: it puts this checkout's tinyvae first on sys.path (demos/common.py)
from common import (add_common_flags, add_size_flags, finish, fit_each, flag, from_flags, main_wrapper, mlp_shape,
                    on_ctrl_c, one_line_parser, run_info, shape_name, start_run, train_config)
from measures import beta_markdown, beta_row, epochs_phrase, in_batches
from tinyvae import plots
from tinyvae.checkpoint import METRICS_FILE
from tinyvae.checks import Real
from tinyvae.core.vae import VAEConfig, decode_mean, encode
from tinyvae.metrics import unit_activity
from tinyvae.train import STREAM_PICTURES, TrainConfig

THRESHOLD = 0.01            # a unit is active above this activity (Burda et al.)
N_SHOWN = 12                # test digits and samples per row of reconstructions.png
PICTURES = ("tradeoff.png", "reconstructions.png", "kl_curves.png", "active_units.png")
OUTPUT_FILES = (METRICS_FILE, *PICTURES)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def build_parser():
    p = one_line_parser(
        "demos/mnist_beta.py",
        "Train the VAE on MNIST for several KL weights beta and with and without KL warm-up; "
        "compare reconstruction, KL, the -ELBO and the active latent units.")
    add_common_flags(p, out="runs/beta")
    # TrainConfig takes beta = 0 (no KL at all); a sweep point of the trade-off needs some KL
    flag(p, "--betas", rule=Real(0, low_open=True), also=("beta",), nargs="+", default=[0.5, 1.0, 4.0],
         metavar="B", help="the KL weights of the sweep; default 0.5 1 4")
    flag(p, "--warmup-epochs", TrainConfig, "warmup_epochs", default=5, metavar="W",
         help="the warm-up run ramps beta = 1 in from 0 over W epochs, step by step; 0 skips it; "
              "default %(default)s")
    add_size_flags(p, 20, "latent dimensions of every run")
    return p


@from_flags
def runs_from_args(args):
    """(VAEConfig, {run name: TrainConfig}): the sweep, beta = 1 if it is not in it, the warm-up run."""
    config = VAEConfig(**mlp_shape(args))
    betas = sorted(set(args.betas) | ({1.0} if args.warmup_epochs else set()))
    runs = {f"beta_{b:g}": train_config(args, iw_k=0, beta=b) for b in betas}
    if args.warmup_epochs:
        runs[f"beta_1_warmup{args.warmup_epochs}"] = train_config(args, iw_k=0, beta=1.0,
                                                                  warmup_epochs=args.warmup_epochs)
    return config, runs


def run_label(t: TrainConfig) -> str:
    return f"beta {t.beta:g}" + (f", warm-up {epochs_phrase(t.warmup_epochs)}" if t.warmup_epochs else "")


# ---------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------


def write_pictures(params, config, runs, table, epochs, activity, backend, x_test, out: Path) -> list:
    """The four PNGs. x_test (M, 784) host."""
    sweep = [name for name, t in runs.items() if not t.warmup_epochs]
    plots.beta_tradeoff([(f"beta {runs[n].beta:g}", table[n]["kl"], table[n]["recon"]) for n in sweep],
                        out / "tradeoff.png", title="Test reconstruction against KL, one point per beta")

    x = backend.asarray(x_test[:N_SHOWN])
    backend.reseed(STREAM_PICTURES)
    z_prior = backend.normal((N_SHOWN, config.latent_dim))                     # the same z for every run
    rows = [("test digits", x_test[:N_SHOWN])]
    for name in runs:
        label = run_label(runs[name]).replace(", ", "\n")
        recon = decode_mean(params[name], encode(params[name], x, config)[0], config)     # (12, 784)
        rows += [(f"{label}\nreconstruction", backend.to_numpy(recon)),
                 (f"{label}\nz ~ N(0, I)", backend.to_numpy(decode_mean(params[name], z_prior, config)))]
    plots.image_rows(rows, out / "reconstructions.png",
                     "Test digits, then for each run: reconstructions (mean of q) and prior samples")

    plots.kl_curves({run_label(runs[n]): epochs[n] for n in runs}, out / "kl_curves.png",
                    title="Per epoch: each beta, and beta = 1 warmed up")
    plots.unit_activities({run_label(runs[n]): activity[n] for n in runs}, out / "active_units.png",
                          threshold=THRESHOLD, title="Active latent units: Var_x(E_q[z_j | x]) on the test set")
    return list(PICTURES)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def print_epoch(record: dict):
    """One line per epoch: the KL weight, the objective, and the test -ELBO = recon + KL."""
    tqdm.write(f"epoch {record['epoch']:3d}  KL weight {record['beta']:5.3g}  "
               f"train loss {record['train_loss']:8.2f}  test -ELBO {record['test_neg_elbo']:8.2f} "
               f"= {record['test_recon']:7.2f} recon "
               f"+ {record['test_kl']:6.2f} KL  (nats/image)  {record['seconds']:6.1f} s")


def run(args) -> int:
    config, runs = runs_from_args(args)
    backend, out, (x_train, _, x_test, _) = start_run(args, [config], next(iter(runs.values())), OUTPUT_FILES)
    print(f"beta-VAE on MNIST: {x_train.shape[0]} train / {x_test.shape[0]} test images, {shape_name(config)}, "
          "runs: " + "; ".join(run_label(t) for t in runs.values()) + f", backend {backend.name}, out {out}",
          flush=True)
    t0 = time.perf_counter()
    results, seconds = fit_each(args, {name: (run_label(t), config, t) for name, t in runs.items()},
                                x_train, x_test, backend, out, on_epoch=print_epoch)
    x = backend.asarray(x_test)
    z_means = {name: in_batches(lambda xb, p=r.params: encode(p, xb, config)[0], x, backend)
               for name, r in results.items()}                                           # {name: (M, L)}
    activity = {name: unit_activity(z) for name, z in z_means.items()}
    table = {name: beta_row(runs[name], r.metrics, z_means[name], THRESHOLD) for name, r in results.items()}
    print(beta_markdown(table))
    params, epochs = {n: r.params for n, r in results.items()}, {n: r.metrics["epochs"] for n, r in results.items()}
    with on_ctrl_c(f"interrupted after training: every run is saved under {out}; --resume draws the pictures again"):
        pictures = write_pictures(params, config, runs, table, epochs, activity, backend, x_test, out)
    finish(out, {"config": config.to_dict(), "train_configs": {n: t.to_dict() for n, t in runs.items()},
                 **run_info(backend, x_train, x_test), "threshold": THRESHOLD, "table": table,
                 "unit_activity": {n: a.tolist() for n, a in activity.items()}, "seconds": seconds},
           runs, pictures, t0)
    return 0


main = main_wrapper(build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
