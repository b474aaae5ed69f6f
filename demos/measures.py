"""What the demos measure with trained models, beyond fit's own numbers: one section per demo.

The demo scripts read as flags, config, fit, pictures; the numbers they then
compute from the trained models are here, each with its definition:

    in_batches            any per-image function over a test set, batch by batch (all demos)
    mnist_ae.py           reconstruction_table, family_markdown, codes, code_spread
    mnist_cvae.py         class_means, nearest_class, read_grid (reading the digit grid back)
    mnist_beta.py         beta_row, beta_markdown (active units: tinyvae.metrics)
    mnist_m2.py           predict, confusion, largest_balanced
    mnist_anomaly.py      held_out_split, SCORES, vae_scores, ae_scores, ink, evaluate_scores, auroc_table

Every number is per image and, where it is a log-likelihood, in nats.
Random draws come from fixed streams (backend.reseed), so a number does not
change between runs of the same models.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

import common  # noqa: F401  (puts this checkout's tinyvae first on sys.path)
from tinyvae import plots
from tinyvae.backend import namespace_of
from tinyvae.core import ae, vae
from tinyvae.core.distributions import kl_normal_forward, reparameterize_forward
from tinyvae.core.m2 import classify
from tinyvae.errors import InputError
from tinyvae.metrics import active_units, auroc, average_ranks, roc_curve

EVAL_BATCH = 1000             # test images per step of in_batches and reconstruction_table


def in_batches(f, x, backend, batch=EVAL_BATCH) -> np.ndarray:
    """f(rows of x) for every `batch` rows, brought to the host and joined: x (N, ...) -> (N, ...)."""
    return np.concatenate([backend.to_numpy(f(x[s:s + batch])) for s in range(0, x.shape[0], batch)])


# ---------------------------------------------------------------------------
# mnist_ae.py: reconstruction errors of clean and corrupted digits, and where the codes lie
# ---------------------------------------------------------------------------

STREAM_TABLE = 11             # the VAE's z ~ q(z | x_in) in the table


def codes(params, configs, name, x_in):
    """The AE's code h = enc(x_in), or the mean of the VAE's q(z | x_in): (B, 784) -> (B, L)."""
    if name == "vae":
        return vae.encode(params[name], x_in, configs[name])[0]
    return ae.encode(params[name], x_in, configs[name])


def reconstruction_table(params, configs, x, x_noisy, backend) -> dict:
    """{row: {"clean": nats, "corrupted": nats}}, means over the test images.

    Every number is -log p(x | ...) under the Bernoulli likelihood against the
    clean x (N, 784), from the clean input x or the corrupted x_noisy:
    ae, dae: -log p(x | dec(enc(x_in))); vae_recon: -log p(x | z), z ~ q(z | x_in)
    (one draw per image, fixed stream); vae_recon_at_mean: z = mu(x_in);
    vae_neg_elbo: vae_recon + KL(q(z | x_in) || N(0, I)).
    """
    xp = backend.xp
    cv = configs["vae"]
    sums = {}

    def add(row, column, terms):                                   # terms (B,)
        key = (row, column)
        sums[key] = sums.get(key, 0.0) + float(xp.sum(terms))

    backend.reseed(STREAM_TABLE)
    n = x.shape[0]
    for start in range(0, n, EVAL_BATCH):
        xb = x[start:start + EVAL_BATCH, :]                                    # (B, 784)
        eps = backend.normal((xb.shape[0], cv.latent_dim))                     # (B, L), both columns
        for column, x_in in (("clean", xb), ("corrupted", x_noisy[start:start + EVAL_BATCH, :])):
            for name in ("ae", "dae"):
                add(name, column, ae.recon_terms(params[name], x_in, xb, configs[name]))
            p = params["vae"]
            mu, logvar = vae.encode(p, x_in, cv)                                # (B, L) each
            z, _ = reparameterize_forward(mu, logvar, eps)
            recon = vae.recon_nll(p, vae.decode(p, z, cv), xb, cv)              # (B,)
            add("vae_recon", column, recon)
            add("vae_recon_at_mean", column, vae.recon_nll(p, vae.decode(p, mu, cv), xb, cv))
            add("vae_neg_elbo", column, recon + kl_normal_forward(mu, logvar)[0])
    rows = ("ae", "dae", "vae_recon", "vae_recon_at_mean", "vae_neg_elbo")
    return {r: {c: sums[(r, c)] / n for c in ("clean", "corrupted")} for r in rows}


ROW_LABELS = {
    "ae": "AE: -log p(x \\| dec(enc(x_in)))",
    "dae": "DAE: -log p(x \\| dec(enc(x_in)))",
    "vae_recon": "VAE: -log p(x \\| z), z ~ q(z \\| x_in)",
    "vae_recon_at_mean": "VAE: -log p(x \\| z), z = mean of q(z \\| x_in)",
    "vae_neg_elbo": "VAE: -ELBO = -log p(x \\| z), z ~ q, + KL",
}   # "\\|" is a "|" inside a Markdown table cell


def family_markdown(table: dict, corruption: str) -> str:
    """The table as Markdown, nats per image, one row per model and term."""
    lines = [f"| test reconstruction error (nats per image) | clean input | corrupted input ({corruption}) |",
             "|---|---:|---:|"]
    lines += [f"| {ROW_LABELS[r]} | {v['clean']:.2f} | {v['corrupted']:.2f} |" for r, v in table.items()]
    return "\n".join(lines)


def code_spread(z) -> dict:
    """Where a model puts the test digits, against N(0, I): each dimension's mean and standard
    deviation, and (L = 2) the share of them inside the circle holding 95% of N(0, I)."""
    z = np.asarray(z, dtype=np.float64)                                     # (N, L)
    inside = float(np.mean(np.hypot(z[:, 0], z[:, 1]) < plots.PRIOR_95_RADIUS)) if z.shape[1] == 2 else None
    return {"mean": z.mean(axis=0).tolist(), "std": z.std(axis=0).tolist(), "inside_prior_95": inside}


# ---------------------------------------------------------------------------
# mnist_cvae.py: reading the digit grid back with a nearest-class-mean classifier
# ---------------------------------------------------------------------------

K = 10                        # digits


def class_means(x, y) -> np.ndarray:
    """The mean image of each digit, (10, 784): the nearest-class-mean classifier's prototypes."""
    return np.stack([x[y == d].mean(axis=0) for d in range(K)])


def unit_length(a) -> np.ndarray:
    """Each row scaled to Euclidean length 1 (an all-zero row stays zero): (M, D) -> (M, D)."""
    a = np.asarray(a, dtype=np.float64)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def nearest_class(images, means) -> np.ndarray:
    """Each image's nearest class mean, both scaled to length 1: (M, 784), (10, 784) -> (M,) labels.

    argmin_c || x / |x| - m_c / |m_c| ||^2 = argmax_c cos(x, m_c): a faint and a
    bold stroke of one shape compare alike (by plain distance, a thin 0 lies
    nearer the mean 5, which has less ink than the mean 0).
    """
    return (unit_length(images) @ unit_length(means).T).argmax(axis=1)            # (M, 10) -> (M,)


def read_grid(grid, means) -> dict:
    """How each row of the grid reads: {"read_as": [majority class per row], "right": rows read as
    their own digit, "cells_right": images nearest their own row's mean}."""
    votes = [nearest_class(row, means) for row in grid]                          # (C,) per row
    read_as = [int(np.bincount(v, minlength=K).argmax()) for v in votes]
    return {"read_as": read_as, "right": sum(r == d for d, r in enumerate(read_as)),
            "cells_right": int(sum(np.sum(v == d) for d, v in enumerate(votes))),
            "cells": int(sum(len(v) for v in votes))}


# ---------------------------------------------------------------------------
# mnist_beta.py: one row of the table per run
# ---------------------------------------------------------------------------


def epochs_phrase(n: int) -> str:
    return "1 epoch" if n == 1 else f"{n} epochs"


def beta_row(t, metrics: dict, z_mean, threshold) -> dict:
    """One run's line of the table: settings, final test numbers (nats per image), active units."""
    recon, kl = metrics["test_recon"], metrics["test_kl"]
    return {"beta": t.beta, "warmup_epochs": t.warmup_epochs, "objective": recon + t.beta * kl,
            "recon": recon, "kl": kl, "neg_elbo": metrics["test_neg_elbo"],
            "active_units": active_units(z_mean, threshold), "latent_dim": int(z_mean.shape[1])}


def beta_markdown(table: dict) -> str:
    lines = ["| run | test recon + beta KL | test recon | test KL | test -ELBO (beta = 1) | active units |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in table.values():
        warm = f", warm-up {epochs_phrase(r['warmup_epochs'])}" if r["warmup_epochs"] else ""
        lines.append(f"| beta {r['beta']:g}{warm} | {r['objective']:.2f} | {r['recon']:.2f} | {r['kl']:.2f} "
                     f"| {r['neg_elbo']:.2f} | {r['active_units']} of {r['latent_dim']} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# mnist_m2.py: the classifier on the test set, and how many labels the data allows
# ---------------------------------------------------------------------------


def predict(params, config, backend, x) -> np.ndarray:
    """The classifier's most probable digit for each row of host x (N, 784): (N,) ints."""
    return in_batches(lambda xb: backend.xp.argmax(classify(params, backend.asarray(xb), config), axis=1),
                      x, backend)


def confusion(y_true, y_pred) -> np.ndarray:
    """(K, K) counts: [i, j] = images of digit i predicted as j."""
    return np.bincount(np.asarray(y_true) * K + np.asarray(y_pred), minlength=K * K).reshape(K, K)


def largest_balanced(y) -> int:
    """The most labels, the same number of each class, that leave at least one image unlabelled
    (0 when the smallest class has none to give)."""
    counts = np.bincount(np.asarray(y), minlength=K)
    per = int(counts.min())
    return K * (per - 1 if K * per == len(y) else per)


# ---------------------------------------------------------------------------
# mnist_anomaly.py: the anomaly scores, their AUROCs, and the table over the ten digits
# ---------------------------------------------------------------------------

STREAM_SCORES = 100          # (STREAM_SCORES, 1): the -ELBO's z; (STREAM_SCORES, 2): the IW samples
INK_THRESHOLD = 0.5          # a pixel is ink above this
SCORE_BATCH = 500            # images per scoring step: memory ~ SCORE_BATCH x (784 + k) values
# The published result this protocol is compared with: a VAE with a 2-D latent
# space scored by its ELBO, held-out digits 0..9 (L. Tonnaer, PhD thesis,
# chapter 3, Table 3.3; docs/anomaly.md#the-table).
ANCHOR = (0.96, 0.73, 0.97, 0.94, 0.73, 0.92, 0.95, 0.77, 0.92, 0.66)


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
        mu, logvar = vae.encode(params, xb, config)                   # (B, L) each
        kl, _ = kl_normal_forward(mu, logvar)                         # (B,): no z in it
        recon_sum, kl_sum, sq_sum = 0.0, 0.0, 0.0
        for _ in range(samples):
            z, _ = reparameterize_forward(mu, logvar, backend.normal((xb.shape[0], L)))   # (B, L)
            dec = vae.decode(params, z, config)                       # logits or means, (B, 784)
            recon_sum = recon_sum + vae.recon_nll(params, dec, xb, config)  # (B,)
            kl_sum = kl_sum + kl                                      # summed like recon: same rounding
            sq_sum = sq_sum + squared_error(xb, vae.output_mean(dec, config))
        out["recon"].append(to_np(recon_sum) / samples)
        out["neg_elbo"].append(to_np(recon_sum + kl_sum) / samples)
        out["sq_err"].append(to_np(sq_sum) / samples)
        out["rel_sq_err"].append(to_np(relative_to_ink(sq_sum, xb)) / samples)
    backend.reseed(STREAM_SCORES, 2)
    for start in range(0, n, SCORE_BATCH):
        xb = x[start:start + SCORE_BATCH, :]                          # (B, 784)
        eps = backend.normal((k, xb.shape[0], L))                     # (k, B, L)
        out["iw_nll"].append(-to_np(vae.iw_log_px(params, xb, eps, config)))
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
        out["ae_recon"].append(backend.to_numpy(vae.recon_nll(params, dec, xb, config)))   # ae.recon_terms
        sq = squared_error(xb, vae.output_mean(dec, config))           # (B,)
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


def held_out_split(data, digit):
    """The protocol's data, (x_train of the nine normal digits, x_test, is_anomaly), from the four
    arrays of common.mnist; a test set without the held-out digit is refused."""
    x_train, y_train, x_test, y_test = data
    is_anomaly = np.asarray(y_test) == digit
    if not is_anomaly.any():
        raise InputError(f"the {len(is_anomaly)} test images hold no {digit}s: "
                         "raise --limit so both normal and anomalous images are scored")
    return x_train[np.asarray(y_train) != digit], x_test, is_anomaly


def evaluate_scores(scores: dict, is_anomaly, ink_pixels) -> dict:
    """metrics.json's record of each score: what it is, its AUROC, ROC points, rank correlation with the ink."""
    record = {}
    for key, values in scores.items():
        fpr, tpr = roc_curve(values, is_anomaly)
        record[key] = {"label": LABELS[key], "model": BY_KEY[key].model, "about": BY_KEY[key].about,
                       "auroc": auroc(values, is_anomaly),
                       "spearman_with_ink": spearman(values, ink_pixels),
                       "spearman_with_ink_anomalies": spearman(values[is_anomaly], ink_pixels[is_anomaly]),
                       "roc": {"fpr": [round(v, 6) for v in fpr.tolist()],
                               "tpr": [round(v, 6) for v in tpr.tolist()]}}
    return record


def mean_scores(scores: dict, is_anomaly) -> dict:
    """Each score's mean over the normal and over the anomalous test images."""
    return {"mean_score_normal": {k: float(v[~is_anomaly].mean()) for k, v in scores.items()},
            "mean_score_anomalies": {k: float(v[is_anomaly].mean()) for k, v in scores.items()}}


def extremes(values, is_anomaly, n):
    """(the n normal images scored highest, the n anomalies scored lowest): indices, worst first."""
    normal, anomaly = np.flatnonzero(~is_anomaly), np.flatnonzero(is_anomaly)
    return (normal[np.argsort(-values[normal], kind="stable")[:n]],
            anomaly[np.argsort(values[anomaly], kind="stable")[:n]])


def auroc_table(results: list) -> tuple:
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
