"""Anomaly detection on MNIST: train on nine digits, and find the tenth among the test images.

    python demos/mnist_anomaly.py --anomaly 1 --out runs/anomaly-1   # hold out the 1s
    python demos/mnist_anomaly.py --all --out runs/anomaly           # each digit in turn, and the table
    python demos/mnist_anomaly.py --anomaly 1 --from runs/anomaly/heldout_1 --out runs/rescore
    python demos/mnist_anomaly.py --anomaly 1 --limit 3000 --epochs 2 --iw-k 5 --out runs/anomaly-quick
    python demos/mnist_anomaly.py --all --hidden 512 256 --epochs 20 --ae-code 8 --out runs/anomaly-deep20-ae8

The protocol: the models are trained on the training images of the nine
normal digits only; then every test image (all ten digits) gets a score,
higher meaning "more anomalous", and the held-out digit's test images are the
anomalies. Each score is judged by its AUROC (tinyvae.metrics). The scores,
defined in demos/measures.py (SCORES): the VAE's -ELBO (--elbo-samples draws
of z, averaged), its importance-weighted -log p(x) (--iw-k samples), its
reconstruction term alone (An & Cho's score), its squared error, and that error
divided by the image's own ink; the plain autoencoder's reconstruction term,
squared error and relative squared error; and the ink (pixels above 0.5), a
reference, not a detector.

Both models have the same layers (784-400-2 by default: a 2-D latent space
detects better than 20 dimensions, docs/anomaly.md#the-table; --ae-code gives
the autoencoder's code a size of its own) and likelihood, and are trained
alike by train.fit (Adam, the same epochs, batch size and learning rate, the
same shuffles).
Written to --out (with --all, one folder heldout_D per digit, and the table):

    vae/checkpoint.npz, vae/metrics.json   the trained VAE, as demos/mnist.py writes them
    ae/checkpoint.npz, ae/metrics.json     the trained autoencoder
    metrics.json                           AUROC and ROC points of every score, and timings
    scores.npz                             every test image's scores ("neg_elbo", ...) and digit ("label")
    score_histograms.png, roc_curves.png, extremes.png, score_vs_ink.png
    table.md, table.json                   (--all) held-out digit x score AUROC

Errors the user can fix are one line on stderr, exit status 2; Ctrl-C is one
line saying what is saved, exit status 130 (demos/common.py).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

# common first: it puts this checkout's tinyvae first on sys.path (demos/common.py)
from common import (add_common_flags, add_size_flags, claim_out, flag, from_flags, main_wrapper, mlp_shape, mnist,
                    on_ctrl_c, one_line_parser, train_config, train_or_load)
from measures import (ANCHOR, INK, LABELS, ae_scores, auroc_table, evaluate_scores, extremes, held_out_split, ink,
                      mean_scores, vae_scores)
from tinyvae import plots
from tinyvae.backend import get_backend
from tinyvae.checkpoint import CHECKPOINT_FILE, OutputError, atomic_write, write_json
from tinyvae.checks import Int
from tinyvae.core.ae import AEConfig
from tinyvae.core.vae import VAEConfig
from tinyvae.errors import InputError

N_EXTREMES = 10              # digits per row of extremes.png
PICTURES = ("score_histograms.png", "roc_curves.png", "extremes.png", "score_vs_ink.png")
SCORES_FILE = "scores.npz"   # every test image's scores and its digit, for further analysis


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def build_parser():
    p = one_line_parser(
        "demos/mnist_anomaly.py",
        "Hold out one MNIST digit, train the VAE and a plain autoencoder on the other nine, and "
        "score every test image; report the AUROC of each score. Model defaults: 784-400-2, "
        "otherwise the PyTorch example's settings (ReLU, batch 128, Adam lr 1e-3, 10 epochs).")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--anomaly", type=int, choices=range(10), metavar="D", help="the held-out digit, 0..9")
    which.add_argument("--all", action="store_true",
                       help="each digit in turn (folders heldout_0..heldout_9), then table.md/json")
    add_common_flags(p, out="runs/anomaly")
    p.add_argument("--from", dest="from_dir", type=Path, default=None, metavar="DIR",
                   help="score the models saved in DIR instead of training them: DIR/vae/checkpoint.npz "
                        "(or DIR/checkpoint.npz, as demos/mnist.py writes it) and DIR/ae/checkpoint.npz "
                        "if there; with --all, DIR/heldout_D for each D")
    add_size_flags(p, 2, "the VAE's latent dimensions, and the autoencoder's code size unless --ae-code "
                         "is given (2 detects better than 20 here: docs/anomaly.md#the-table)", models="both models")
    flag(p, "--ae-code", AEConfig, "latent_dim", default=None, metavar="C",
         help="the autoencoder's code size, if not --latent-dim (docs/anomaly.md#the-autoencoders-code-size)")
    flag(p, "--iw-k", rule=Int(1), default=100, metavar="K",
         help="importance samples per image for -log p(x); default %(default)s")
    flag(p, "--elbo-samples", rule=Int(1), default=10, metavar="S",
         help="draws of z averaged in the -ELBO and recon scores; default %(default)s")
    return p


@from_flags
def configs_from_args(args):
    """(VAEConfig, AEConfig, TrainConfig) from the parsed flags: the MLP of mlp_shape (ReLU,
    Bernoulli, the PyTorch example's init), the autoencoder's code --ae-code if given, else --latent-dim."""
    ae_code = args.latent_dim if args.ae_code is None else args.ae_code
    return VAEConfig(**mlp_shape(args)), AEConfig(**mlp_shape(args, latent_dim=ae_code)), train_config(args, iw_k=0)


# ---------------------------------------------------------------------------
# One held-out digit: the models (trained here or loaded with --from), scores, pictures
# ---------------------------------------------------------------------------


def trained_models(args, digit, x_train, x_test_normal, backend, out: Path):
    """({"vae": (params, config), "ae": (params, config)}, notes): trained here, or loaded from --from.

    With --from, a folder without ae/checkpoint.npz gives no "ae" entry, and a
    note says so; a model not trained on exactly the nine normal digits, a warning.
    """
    vae_config, ae_config, tconfig = configs_from_args(args)
    source = args.from_dir and (args.from_dir / f"heldout_{digit}" if args.all else args.from_dir)
    models, saved = train_or_load(args, {"vae": ("", vae_config, tconfig), "ae": ("", ae_config, tconfig)},
                                  x_train, x_test_normal, backend, out, source, on_epoch=print_epoch)
    notes = [f"{path} was trained on {n} images, not on the {len(x_train)} training images of the nine normal "
             f"digits: if it saw {digit}s, this is not the held-out protocol"
             for meta, path in saved.values() if (n := meta.get("data", {}).get("n_train")) != len(x_train)]
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    if source and "ae" not in models:
        notes.append(f"no autoencoder in {source} (no ae/{CHECKPOINT_FILE}): its score is left out")
        print(f"note: {notes[-1]}")
    return models, notes


def write_pictures(digit, scores, record, x_test, is_anomaly, out: Path):
    """The four PNGs of one held-out digit; returns their names."""
    named = {k: f"{LABELS[k]}  (AUROC {record[k]['auroc']:.3f})" for k in scores}
    plots.score_histograms({named[k]: v for k, v in scores.items()}, is_anomaly,
                           out / "score_histograms.png",
                           title=f"held-out digit {digit}: scores of normal and anomalous test images")
    curves = {named[k]: (np.array(record[k]["roc"]["fpr"]), np.array(record[k]["roc"]["tpr"]))
              for k in scores}
    plots.roc_curves(curves, out / "roc_curves.png", title=f"held-out digit {digit}")
    rows = []
    for key in (k for k in scores if k != INK.key):
        top_normal, low_anomaly = extremes(scores[key], is_anomaly, N_EXTREMES)
        rows += [(f"{LABELS[key]}\nhighest normal", x_test[top_normal]),
                 (f"{LABELS[key]}\nlowest {digit}s", x_test[low_anomaly])]
    plots.image_rows(rows, out / "extremes.png",
                     f"held-out {digit}: normal digits scored most anomalous, and the {digit}s scored least")
    plots.score_vs_ink(scores[INK.key], scores["iw_nll"], is_anomaly, out / "score_vs_ink.png",
                       "-log p(x) (nats)", title=f"held-out digit {digit}: -log p(x) against ink")
    return list(PICTURES)


def run_digit(args, digit, data, out: Path) -> dict:
    """Train (or load), score, judge and draw for one held-out digit; returns metrics.json's record."""
    t0 = time.perf_counter()
    try:
        claim_out(args, out, ("metrics.json", SCORES_FILE, *PICTURES))
    except OutputError as e:                      # an earlier run's results: its models can be scored again
        raise OutputError(f"{e} (its saved models can be scored again: --from {out} --out NEW)"
                          if args.from_dir is None else str(e)) from None
    x_train, x_test, is_anomaly = held_out_split(data, digit)
    print(f"held-out digit {digit}: training on {len(x_train)} images of the other nine digits, "
          f"scoring {len(x_test)} test images ({int(is_anomaly.sum())} anomalies)", flush=True)
    backend = get_backend(args.backend, seed=args.seed)
    models, notes = trained_models(args, digit, x_train, x_test[~is_anomaly], backend, out)
    t1 = time.perf_counter()
    with on_ctrl_c(f"interrupted while scoring held-out digit {digit}: the models are saved under "
                   f"{out if args.from_dir is None else args.from_dir}; score them with --from"):
        x = backend.asarray(x_test)
        scores = vae_scores(*models["vae"], x, backend, args.iw_k, args.elbo_samples)
        if "ae" in models:
            scores |= ae_scores(*models["ae"], x, backend)
        scores[INK.key] = ink(x_test)
        t2 = time.perf_counter()
        record = evaluate_scores(scores, is_anomaly, scores[INK.key])
        pictures = write_pictures(digit, scores, record, x_test, is_anomaly, out)
        atomic_write(out / SCORES_FILE, lambda f: np.savez(f, label=np.asarray(data[3]), **scores))
    metrics = {
        "held_out_digit": digit,
        "configs": {name: config.to_dict() for name, (_, config) in models.items()},
        "n_train": len(x_train), "n_test": len(x_test), "n_anomalies": int(is_anomaly.sum()),
        "iw_k": args.iw_k, "elbo_samples": args.elbo_samples, "seed": args.seed,
        "trained_here": args.from_dir is None, "notes": notes,
        "scores": record, **mean_scores(scores, is_anomaly),
        "seconds": {"train": t1 - t0, "score": t2 - t1, "total": time.perf_counter() - t0},
    }
    write_json(out / "metrics.json", metrics)
    print(f"held-out {digit}: AUROC " + "  ".join(f"{LABELS[k]} {record[k]['auroc']:.3f}" for k in record)
          + f"  (anchor {ANCHOR[digit]:.2f}; {metrics['seconds']['total']:.0f} s)", flush=True)
    print(f"wrote {out}/: metrics.json, {SCORES_FILE}, " + ", ".join(pictures), flush=True)
    return metrics


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def print_epoch(record: dict):
    """One line per epoch: the VAE's -ELBO or the autoencoder's reconstruction term, train and
    held-in test (normal digits), nats per image; seconds."""
    what = "-ELBO" if "test_neg_elbo" in record else "AE recon."
    key = "neg_elbo" if "test_neg_elbo" in record else "recon"
    tqdm.write(f"  epoch {record['epoch']:3d}  {what:9s} train {record['train_' + key]:8.2f}  "
               f"test (normal digits) {record['test_' + key]:8.2f}  {record['seconds']:5.1f} s")


def run(args) -> int:
    if args.from_dir is not None and args.resume:
        raise InputError("--from scores a saved model, --resume trains one: pass one or the other")
    get_backend(args.backend)                   # fails fast, before any data is read
    claim_out(args, args.out, ("table.md", "table.json") if args.all else ())
    data = mnist(args)
    if not args.all:
        run_digit(args, args.anomaly, data, args.out)
        return 0
    t0 = time.perf_counter()
    results = []
    for d in range(10):
        results.append(run_digit(args, d, data, args.out / f"heldout_{d}"))
        markdown, record = auroc_table(results)     # rewritten after each digit: a partial table survives
        record["seconds_total"] = time.perf_counter() - t0
        atomic_write(args.out / "table.md", lambda f: f.write(markdown.encode()))
        write_json(args.out / "table.json", record)
    print(markdown, end="")
    print(f"all ten digits in {time.perf_counter() - t0:.0f} s; wrote {args.out}/table.md, table.json")
    return 0


main = main_wrapper(build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
