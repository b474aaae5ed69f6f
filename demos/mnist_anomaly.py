"""Anomaly detection on MNIST: train on nine digits, and find the tenth among the test images.

    python demos/mnist_anomaly.py --anomaly 1                  # hold out the 1s
    python demos/mnist_anomaly.py --all --out runs/anomaly     # each digit in turn, and the table
    python demos/mnist_anomaly.py --anomaly 1 --from runs/anomaly/heldout_1 --out runs/rescore
    python demos/mnist_anomaly.py --anomaly 1 --limit 3000 --epochs 2 --iw-k 5   # a quick look
    python demos/mnist_anomaly.py --all --hidden 512 256 --epochs 20 --ae-code 8   # the best table (docs/anomaly.md)

The protocol: the models are trained on the training images of the nine
normal digits only; then every test image (all ten digits) gets a score,
higher meaning "more anomalous", and the held-out digit's test images are the
anomalies. Each score is judged by its AUROC (tinyvae.metrics). The scores:

    -ELBO       the VAE's negative ELBO, z sampled from q(z|x) (--elbo-samples draws, averaged)
    -log p(x)   the VAE's importance-weighted estimate, --iw-k samples of z per image
    recon       the VAE's reconstruction term alone, -log p(x|z) (An & Cho's score)
    sq. error   the VAE's squared error, sum over pixels of (x - E[x|z])^2, z as for recon
    rel. sq. err. the VAE's squared error divided by the image's own sum of x^2 (its ink)
    AE recon.   the plain autoencoder's reconstruction term, -log p(x | dec(enc(x)))
    AE sq. err. the plain autoencoder's squared error, sum over pixels of (x - dec(enc(x)))^2
    AE rel. sq. the plain autoencoder's squared error divided by the image's sum of x^2
    ink         no model: the number of pixels above 0.5 (a reference, not a detector)

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

import argparse
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

# common first: it puts this checkout's tinyvae first on sys.path (demos/common.py)
from common import (add_common_flags, add_size_flags, int_at_least, main_wrapper, mnist,
                    one_line_parser, train_config_kwargs)
from tinyvae import ae, plots
from tinyvae.ae import AEConfig
from tinyvae.backend import get_backend, namespace_of
from tinyvae.checkpoint import CHECKPOINT_FILE, atomic_write, load_checkpoint, prepare_out_dir, write_json
from tinyvae.distributions import kl_normal_forward, reparameterize_forward
from tinyvae.errors import CheckpointError, InputError
from tinyvae.metrics import auroc, average_ranks, roc_curve
from tinyvae.train import Interrupted, TrainConfig, fit
from tinyvae.vae import VAEConfig, check_params, decode, encode, iw_log_px, output_mean, recon_nll

# The published result this protocol is compared with: a VAE with a 2-D latent
# space scored by its ELBO, held-out digits 0..9 (L. Tonnaer, PhD thesis,
# chapter 3, Table 3.3; docs/anomaly.md#the-table).
ANCHOR = (0.96, 0.73, 0.97, 0.94, 0.73, 0.92, 0.95, 0.77, 0.92, 0.66)

STREAM_SCORES = 100          # (STREAM_SCORES, 1): the -ELBO's z; (STREAM_SCORES, 2): the IW samples
INK_THRESHOLD = 0.5          # a pixel is ink above this
SCORE_BATCH = 500            # images per scoring step: memory ~ SCORE_BATCH x (784 + k) values
N_EXTREMES = 10              # digits per row of extremes.png
PICTURES = ("score_histograms.png", "roc_curves.png", "extremes.png", "score_vs_ink.png")
SCORES_FILE = "scores.npz"   # every test image's scores and its digit, for further analysis


class Score(NamedTuple):
    """One anomaly score: its key in metrics.json, its label in tables and pictures, its model."""

    key: str
    label: str
    model: str      # "vae", "ae", or "" for no model
    about: str


SCORES = (                   # the model scores, in table order
    Score("neg_elbo", "-ELBO", "vae", "the VAE's negative ELBO, z sampled from q(z|x)"),
    Score("iw_nll", "-log p(x)", "vae", "the VAE's importance-weighted -log p(x), k samples of z"),
    Score("recon", "recon", "vae", "the VAE's reconstruction term -log p(x|z) alone"),
    Score("sq_err", "sq. error", "vae", "the VAE's squared error sum_d (x_d - E[x_d|z])^2, z from q(z|x)"),
    Score("rel_sq_err", "rel. sq. err.", "vae", "the VAE's squared error divided by the image's sum_d x_d^2"),
    Score("ae_recon", "AE recon.", "ae", "the plain autoencoder's reconstruction term"),
    Score("ae_sq_err", "AE sq. err.", "ae", "the plain autoencoder's squared error sum_d (x_d - dec(enc(x))_d)^2"),
    Score("ae_rel_sq_err", "AE rel. sq.", "ae", "the plain autoencoder's squared error divided by the "
                                                "image's sum_d x_d^2"),
)
INK = Score("ink", "ink", "", "no model: the number of pixels above 0.5")
BY_KEY = {s.key: s for s in (*SCORES, INK)}
LABELS = {key: s.label for key, s in BY_KEY.items()}


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def digit(text):
    """A flag type: one of the digits 0..9."""
    value = int_at_least(0)(text)
    if value > 9:
        raise argparse.ArgumentTypeError(f"must be a digit from 0 to 9, got {value}")
    return value


def build_parser():
    p = one_line_parser(
        "demos/mnist_anomaly.py",
        "Hold out one MNIST digit, train the VAE and a plain autoencoder on the other nine, and "
        "score every test image; report the AUROC of each score. Model defaults: 784-400-2, "
        "otherwise the PyTorch example's settings (ReLU, batch 128, Adam lr 1e-3, 10 epochs).")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--anomaly", type=digit, metavar="D", help="the held-out digit, 0..9")
    which.add_argument("--all", action="store_true",
                       help="each digit in turn (folders heldout_0..heldout_9), then table.md/json")
    add_common_flags(p, out="runs/anomaly")
    p.add_argument("--from", dest="from_dir", type=Path, default=None, metavar="DIR",
                   help="score the models saved in DIR instead of training them: DIR/vae/checkpoint.npz "
                        "(or DIR/checkpoint.npz, as demos/mnist.py writes it) and DIR/ae/checkpoint.npz "
                        "if there; with --all, DIR/heldout_D for each D")
    add_size_flags(p, 2, "the VAE's latent dimensions, and the autoencoder's code size unless --ae-code "
                         "is given (2 detects better than 20 here: docs/anomaly.md#the-table)", models="both models")
    p.add_argument("--ae-code", type=int_at_least(1), default=None, metavar="C",
                   help="the autoencoder's code size, if not --latent-dim (docs/anomaly.md#the-autoencoders-code-size)")
    p.add_argument("--iw-k", type=int_at_least(1), default=100, metavar="K",
                   help="importance samples per image for -log p(x); default %(default)s")
    p.add_argument("--elbo-samples", type=int_at_least(1), default=10, metavar="S",
                   help="draws of z averaged in the -ELBO and recon scores; default %(default)s")
    return p


def configs_from_args(args):
    """(VAEConfig, AEConfig, TrainConfig) from the parsed flags; the decoders mirror the encoders.

    The autoencoder's code has --ae-code dimensions if given, else --latent-dim like the VAE's z.

    ReLU, Bernoulli likelihood on pixels in [0, 1], the PyTorch example's initialisation.
    """
    shape = dict(input_dim=784, enc_hidden=tuple(args.hidden), dec_hidden=tuple(reversed(args.hidden)),
                 latent_dim=args.latent_dim, activation="relu", likelihood="bernoulli", init="pytorch")
    ae_shape = shape | {"latent_dim": args.latent_dim if args.ae_code is None else args.ae_code}
    return VAEConfig(**shape), AEConfig(**ae_shape), TrainConfig(**train_config_kwargs(args), iw_k=0)


# ---------------------------------------------------------------------------
# The scores
# ---------------------------------------------------------------------------


def squared_error(x, x_mean):
    """sum_d (x_d - x_mean_d)^2 per image: x, x_mean (N, D) -> (N,).

    A score on the scale of the pixels, not in nats: zero for a perfect
    reconstruction, where the Bernoulli -log p(x|z) of a grey pixel never falls
    below its entropy, and at most 1 a pixel
    (docs/anomaly.md#squared-error-against-nats-the-entropy-floor).
    """
    xp = namespace_of(x)
    return xp.sum((x - x_mean) ** 2, axis=1)


def relative_to_ink(error, x):
    """error_n / max(sum_d x_nd^2, 1): a per-image error over the image's own squared norm, (N,), (N, D) -> (N,).

    The squared error of a reconstruction grows with the ink there is to
    reconstruct, so a 1 (little ink) scores low whatever its shape; divided by
    sum_d x_d^2 (the ink of a black-and-white image), the score is the share of
    the image that was not reconstructed
    (docs/anomaly.md#relative-squared-error-the-ink-divided-out). An image with
    less than one pixel's worth of ink is divided by 1, so a blank image gets
    its squared error, not infinity.
    """
    xp = namespace_of(x)
    return error / xp.maximum(xp.sum(x * x, axis=1), 1.0)


def vae_scores(params, config, x, backend, k, samples) -> dict:
    """Every VAE score of every image in `x`, higher = more anomalous.

    neg_elbo = (1/S) sum_s [recon_s + KL],  recon = (1/S) sum_s -log p(x | z_s),  z_s ~ q(z|x),
    sq_err   = (1/S) sum_s sum_d (x_d - E[x_d | z_s])^2, the same z_s,
    rel_sq_err = sq_err / max(sum_d x_d^2, 1)   (relative_to_ink),
    iw_nll   = -log (1/k) sum_j p(x | z_j) p(z_j) / q(z_j | x)   (vae.iw_log_px).
    Each random draw comes from its own fixed stream, so a score does not change
    between runs. x (N, 784) on the backend -> {key: (N,) host float64}.
    """
    to_np = backend.to_numpy
    n, L = x.shape[0], config.latent_dim
    out = {"neg_elbo": [], "recon": [], "sq_err": [], "rel_sq_err": [], "iw_nll": []}
    backend.reseed(STREAM_SCORES, 1)
    for start in range(0, n, SCORE_BATCH):
        xb = x[start:start + SCORE_BATCH, :]                          # (B, 784)
        mu, logvar = encode(params, xb, config)                       # (B, L) each
        kl, _ = kl_normal_forward(mu, logvar)                         # (B,): no z in it
        recon_sum, kl_sum, sq_sum = 0.0, 0.0, 0.0
        for _ in range(samples):
            z, _ = reparameterize_forward(mu, logvar, backend.normal((xb.shape[0], L)))   # (B, L)
            dec = decode(params, z, config)                           # logits or means, (B, 784)
            recon_sum = recon_sum + recon_nll(params, dec, xb, config)  # (B,)
            kl_sum = kl_sum + kl                                      # summed like recon: same rounding
            sq_sum = sq_sum + squared_error(xb, output_mean(dec, config))
        out["recon"].append(to_np(recon_sum) / samples)
        out["neg_elbo"].append(to_np(recon_sum + kl_sum) / samples)
        out["sq_err"].append(to_np(sq_sum) / samples)
        out["rel_sq_err"].append(to_np(relative_to_ink(sq_sum, xb)) / samples)
    backend.reseed(STREAM_SCORES, 2)
    for start in range(0, n, SCORE_BATCH):
        xb = x[start:start + SCORE_BATCH, :]                          # (B, 784)
        eps = backend.normal((k, xb.shape[0], L))                     # (k, B, L)
        out["iw_nll"].append(-to_np(iw_log_px(params, xb, eps, config)))
    return {key: np.concatenate(parts).astype(np.float64) for key, parts in out.items()}


def ae_scores(params, config, x, backend) -> dict:
    """The autoencoder's scores of every image in `x`, higher = more anomalous.

    ae_recon = -log p(x | dec(enc(x))), nats;  ae_sq_err = sum_d (x_d - E[x_d | dec(enc(x))])^2;
    ae_rel_sq_err = ae_sq_err / max(sum_d x_d^2, 1)   (relative_to_ink).
    Deterministic (no sampling). x (N, 784) on the backend -> {key: (N,) host float64}.
    """
    out = {"ae_recon": [], "ae_sq_err": [], "ae_rel_sq_err": []}
    for start in range(0, x.shape[0], SCORE_BATCH):
        xb = x[start:start + SCORE_BATCH, :]                          # (B, 784)
        dec = ae.decode(params, ae.encode(params, xb, config), config)   # (B, 784)
        out["ae_recon"].append(backend.to_numpy(recon_nll(params, dec, xb, config)))   # ae.recon_terms
        sq = squared_error(xb, output_mean(dec, config))               # (B,)
        out["ae_sq_err"].append(backend.to_numpy(sq))
        out["ae_rel_sq_err"].append(backend.to_numpy(relative_to_ink(sq, xb)))
    return {key: np.concatenate(parts).astype(np.float64) for key, parts in out.items()}


def ink(x) -> np.ndarray:
    """Pixels above INK_THRESHOLD per image: x (N, 784) host -> (N,) float64."""
    return np.sum(x > INK_THRESHOLD, axis=1).astype(np.float64)


def spearman(a, b):
    """Spearman's rank correlation: the Pearson correlation of the average ranks (None if one is constant)."""
    ra, rb = average_ranks(a), average_ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


# ---------------------------------------------------------------------------
# One held-out digit
# ---------------------------------------------------------------------------


def split(data, digit):
    """(x_train of the nine normal digits, x_test, is_anomaly) from mnist(args)'s four arrays."""
    x_train, y_train, x_test, y_test = data
    is_anomaly = np.asarray(y_test) == digit
    if not is_anomaly.any():
        raise InputError(f"the {len(is_anomaly)} test images hold no {digit}s: "
                         "raise --limit so both normal and anomalous images are scored")
    return x_train[np.asarray(y_train) != digit], x_test, is_anomaly


def _vae_checkpoint(directory: Path) -> Path:
    """The VAE checkpoint of a trained run: DIR/vae/checkpoint.npz, else DIR/checkpoint.npz."""
    for path in (directory / "vae" / CHECKPOINT_FILE, directory / CHECKPOINT_FILE):
        if path.is_file():
            return path
    raise CheckpointError(f"no checkpoint in {directory} (looked for vae/{CHECKPOINT_FILE} and "
                          f"{CHECKPOINT_FILE}): train one first, without --from")


def _load(path: Path, config_class, backend):
    """(params, config, meta) of a saved model, its arrays checked against its config."""
    params, _, meta = load_checkpoint(path, backend)
    try:
        config = config_class.from_dict(meta["config"])
        check_params(params, config)
    except InputError as e:
        raise CheckpointError(f"checkpoint {path} does not hold a {config_class.__name__} model ({e}): "
                              "pass the folder of a run of this demo or of demos/mnist.py") from None
    return params, config, meta


def _protocol_note(path, meta, x_train, digit):
    """A warning (None if none) when a saved model was not trained on exactly the nine normal digits."""
    n_train = meta.get("data", {}).get("n_train")
    if n_train == len(x_train):
        return None
    note = (f"{path} was trained on {n_train} images, not on the {len(x_train)} training images "
            f"of the nine normal digits: if it saw {digit}s, this is not the held-out protocol")
    print(f"warning: {note}", file=sys.stderr)
    return note


def trained_models(args, digit, x_train, x_test_normal, backend, out: Path):
    """{"vae": (params, config), "ae": (params, config)}, and notes: trained here, or loaded from --from.

    With --from, a folder without ae/checkpoint.npz gives no "ae" entry, and a
    note says so.
    """
    notes = []
    if args.from_dir is None:
        vae_config, ae_config, tconfig = configs_from_args(args)
        saved = [out / m / CHECKPOINT_FILE for m in ("vae", "ae") if (out / m / CHECKPOINT_FILE).exists()]
        if saved and not (args.overwrite or args.resume):
            raise CheckpointError(f"{out} already holds trained models: score them with --from {out}, "
                                  "finish their training with --resume, retrain with --overwrite, "
                                  "or pass a new --out")
        models = {}
        for name, config in (("vae", vae_config), ("ae", ae_config)):
            result = fit(x_train, x_test_normal, config, tconfig, backend, out / name,
                         resume=args.resume, overwrite=args.overwrite, on_epoch=print_epoch)
            models[name] = (result.params, config)
        return models, notes
    source = args.from_dir / f"heldout_{digit}" if args.all else args.from_dir
    path = _vae_checkpoint(source)
    if path.parent.resolve() == out.resolve():
        raise InputError(f"--out {out} holds the checkpoint being scored, and its metrics.json "
                         "would be replaced: pass another --out")
    params, config, meta = _load(path, VAEConfig, backend)
    models = {"vae": (params, config)}
    notes.append(_protocol_note(path, meta, x_train, digit))
    ae_path = source / "ae" / CHECKPOINT_FILE
    if ae_path.is_file():
        params, config, meta = _load(ae_path, AEConfig, backend)
        models["ae"] = (params, config)
        notes.append(_protocol_note(ae_path, meta, x_train, digit))
    else:
        notes.append(f"no autoencoder in {source} (no ae/{CHECKPOINT_FILE}): its score is left out")
        print(f"note: {notes[-1]}")
    return models, [n for n in notes if n]


def evaluate_scores(scores: dict, is_anomaly, ink_pixels) -> dict:
    """metrics.json's record of each score: AUROC, ROC points, rank correlation with the ink."""
    record = {}
    for key, values in scores.items():
        fpr, tpr = roc_curve(values, is_anomaly)
        record[key] = {"auroc": auroc(values, is_anomaly),
                       "spearman_with_ink": spearman(values, ink_pixels),
                       "spearman_with_ink_anomalies": spearman(values[is_anomaly],
                                                               ink_pixels[is_anomaly]),
                       "roc": {"fpr": [round(v, 6) for v in fpr.tolist()],
                               "tpr": [round(v, 6) for v in tpr.tolist()]}}
    return record


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
    normal_idx, anomaly_idx = np.flatnonzero(~is_anomaly), np.flatnonzero(is_anomaly)
    for key, values in scores.items():
        if key == INK.key:
            continue
        top_normal = normal_idx[np.argsort(-values[normal_idx], kind="stable")[:N_EXTREMES]]
        low_anomaly = anomaly_idx[np.argsort(values[anomaly_idx], kind="stable")[:N_EXTREMES]]
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
    prepare_out_dir(out, ("metrics.json", SCORES_FILE, *PICTURES))
    x_train, x_test, is_anomaly = split(data, digit)
    print(f"held-out digit {digit}: training on {len(x_train)} images of the other nine digits, "
          f"scoring {len(x_test)} test images ({int(is_anomaly.sum())} anomalies)", flush=True)
    backend = get_backend(args.backend, seed=args.seed)
    models, notes = trained_models(args, digit, x_train, x_test[~is_anomaly], backend, out)
    t1 = time.perf_counter()
    try:
        x = backend.asarray(x_test)
        scores = vae_scores(*models["vae"], x, backend, args.iw_k, args.elbo_samples)
        if "ae" in models:
            scores |= ae_scores(*models["ae"], x, backend)
        scores[INK.key] = ink(x_test)
        t2 = time.perf_counter()
        record = evaluate_scores(scores, is_anomaly, scores[INK.key])
        pictures = write_pictures(digit, scores, record, x_test, is_anomaly, out)
        atomic_write(out / SCORES_FILE, lambda f: np.savez(f, label=np.asarray(data[3]), **scores))
    except KeyboardInterrupt:
        where = out if args.from_dir is None else args.from_dir
        raise Interrupted(f"interrupted while scoring held-out digit {digit}: the models are saved "
                          f"under {where}; score them with --from") from None
    metrics = {
        "held_out_digit": digit,
        "configs": {name: config.to_dict() for name, (_, config) in models.items()},
        "n_train": len(x_train), "n_test": len(x_test), "n_anomalies": int(is_anomaly.sum()),
        "iw_k": args.iw_k, "elbo_samples": args.elbo_samples, "seed": args.seed,
        "trained_here": args.from_dir is None, "notes": notes,
        "scores": {k: {"label": LABELS[k], "model": BY_KEY[k].model, "about": BY_KEY[k].about, **v}
                   for k, v in record.items()},
        "mean_score_normal": {k: float(v[~is_anomaly].mean()) for k, v in scores.items()},
        "mean_score_anomalies": {k: float(v[is_anomaly].mean()) for k, v in scores.items()},
        "seconds": {"train": t1 - t0, "score": t2 - t1, "total": time.perf_counter() - t0},
    }
    write_json(out / "metrics.json", metrics)
    print(f"held-out {digit}: AUROC " + "  ".join(f"{LABELS[k]} {record[k]['auroc']:.3f}" for k in record)
          + f"  (anchor {ANCHOR[digit]:.2f}; {metrics['seconds']['total']:.0f} s)", flush=True)
    print(f"wrote {out}/: metrics.json, {SCORES_FILE}, " + ", ".join(pictures), flush=True)
    return metrics


# ---------------------------------------------------------------------------
# The table over all ten digits
# ---------------------------------------------------------------------------


def table(results: list) -> tuple:
    """(markdown, record): held-out digit x score AUROC, the anchor, and each column's mean.

    results: metrics.json records, one per held-out digit. The best model score
    of each row is bold; the ink column is a reference, never counted as best.
    A score a run did not compute is "n/a", and its column has no mean.
    """
    keys = [s.key for s in SCORES]
    header = ["held-out digit", "anchor (2-D VAE, ELBO)", *[LABELS[k] for k in keys], "ink (reference)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    rows = {}
    for m in results:
        d = m["held_out_digit"]
        rows[d] = {k: m["scores"][k]["auroc"] for k in (*keys, INK.key) if k in m["scores"]}
    digits = sorted(rows)

    def cell(value, bold=False):
        return "n/a" if value is None else (f"**{value:.3f}**" if bold else f"{value:.3f}")

    for d in digits:
        best = max(rows[d][k] for k in keys if k in rows[d])
        cells = [cell(rows[d].get(k), rows[d].get(k) == best) for k in keys]
        lines.append(f"| {d} | {ANCHOR[d]:.2f} | " + " | ".join(cells) + f" | {cell(rows[d][INK.key])} |")
    means = {k: float(np.mean([rows[d][k] for d in digits])) for k in (*keys, INK.key)
             if all(k in rows[d] for d in digits)}
    best_each = float(np.mean([max(rows[d][k] for k in keys if k in rows[d]) for d in digits]))
    anchor_mean = float(np.mean([ANCHOR[d] for d in digits]))
    lines.append(f"| mean | {anchor_mean:.3f} | " + " | ".join(cell(means.get(k)) for k in keys)
                 + f" | {cell(means.get(INK.key))} |")
    lines.append("")
    lines.append(f"Mean over digits of the best model score of each row: {best_each:.3f} "
                 f"(picked with the test labels, so an upper bound); anchor mean {anchor_mean:.3f}.")
    record = {"digits": digits, "auroc": {str(d): rows[d] for d in digits},
              "anchor": {str(d): ANCHOR[d] for d in digits}, "mean": means,
              "mean_of_row_best": best_each, "anchor_mean": anchor_mean, "labels": LABELS,
              "seconds": {str(m["held_out_digit"]): m["seconds"]["total"] for m in results}}
    return "\n".join(lines) + "\n", record


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
    if args.from_dir is not None and (args.resume or args.overwrite):
        raise InputError("--from scores a saved model, --resume and --overwrite train one: pass one or the other")
    get_backend(args.backend)                   # fails fast, before any data is read
    prepare_out_dir(args.out, ("table.md", "table.json") if args.all else ())
    data = mnist(args)
    if not args.all:
        run_digit(args, args.anomaly, data, args.out)
        return 0
    t0 = time.perf_counter()
    results = []
    for d in range(10):
        results.append(run_digit(args, d, data, args.out / f"heldout_{d}"))
        markdown, record = table(results)     # rewritten after each digit: a partial table survives
        record["seconds_total"] = time.perf_counter() - t0
        atomic_write(args.out / "table.md", lambda f: f.write(markdown.encode()))
        write_json(args.out / "table.json", record)
    print(markdown, end="")
    print(f"all ten digits in {time.perf_counter() - t0:.0f} s; wrote {args.out}/table.md, table.json")
    return 0


main = main_wrapper(build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
