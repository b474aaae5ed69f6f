"""Pictures of a trained VAE, saved as PNG files.

Every function takes plain NumPy arrays (convert from the backend first, with
`to_numpy`), draws one figure, writes it to `path` atomically and returns `path`:

    reconstructions(x_test, x_recon, "recon.png")   # digits above their reconstructions
    samples(decoded, "samples.png")                  # a grid of digits decoded from p(z)
    loss_curves(history, "loss.png")                 # negative ELBO per epoch, nats per image
    manifold(decode, 15, "manifold.png")             # a 2-D latent space, decoded on a grid
    latent_scatter(z_mean, y_test, "latent.png")     # test digits in latent space, by label

and, for anomaly detection (higher score = more anomalous):

    score_histograms({"-ELBO": s}, is_anomaly, "hist.png")  # normal vs anomalous scores
    roc_curves({"-ELBO": (fpr, tpr)}, "roc.png")          # tinyvae.metrics.roc_curve points
    image_rows([("label", images), ...], "rows.png", title)  # labelled rows of digits
    score_vs_ink(ink, s, is_anomaly, "ink.png", "-ELBO")  # a score against the ink per image

Figures are built from `matplotlib.figure.Figure` with the Agg canvas, never
through pyplot, so nothing here touches global plotting state or needs a display.
Digits are drawn dark on light ("gray_r"), pixel values 0 (paper) .. 1 (ink).
"""
from __future__ import annotations

import os
import textwrap
from pathlib import Path
from statistics import NormalDist

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from . import checkpoint
from .errors import InputError

DPI = 100           # pixels per inch of every saved PNG
SIDE = 28           # an MNIST digit is SIDE x SIDE pixels
DIGIT_CMAP = "gray_r"
GRID_PIXELS = 840   # image grids are magnified by a whole factor to about this many pixels
TITLE_CHARS_PER_INCH = 9   # a grid's title is wrapped at about this many characters per inch of figure


def tile_images(images, nrows, ncols, side=SIDE):
    """Lay flat images out row by row in one picture; empty cells stay 0.

    images (N, side*side) with N <= nrows*ncols -> (nrows*side, ncols*side).
    Image k fills the block at row k // ncols, column k % ncols.
    """
    images = np.asarray(images, dtype=np.float64).reshape(-1, side, side)  # (N, side, side)
    if len(images) > nrows * ncols:
        raise InputError(f"{len(images)} images do not fit a {nrows}x{ncols} grid; "
                         "pass a bigger grid or fewer images")
    grid = np.zeros((nrows * ncols, side, side))
    grid[:len(images)] = images
    grid = grid.reshape(nrows, ncols, side, side).transpose(0, 2, 1, 3)  # (rows, side, cols, side)
    return grid.reshape(nrows * side, ncols * side)


def principal_components(z, k=2):
    """Project points onto their first k principal components (SVD of the centred data).

    z (N, L) -> (N, k); column j is the coordinate along the j-th direction of
    greatest variance, so column 0 has the largest variance. N points span at
    most min(N - 1, L) directions: the columns beyond min(N, L) are 0.
    """
    z = np.asarray(z, dtype=np.float64)
    centred = z - z.mean(axis=0)                           # (N, L)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)  # rows of vt: directions, (min(N, L), L)
    pcs = centred @ vt[:k].T                                # (N, L) @ (L, k') -> (N, k'), k' <= k
    return np.pad(pcs, ((0, 0), (0, k - pcs.shape[1])))    # (N, k): too few points or units, zeros


def _save(fig, path):
    """Write `fig` as a PNG to `path` atomically, through checkpoint.atomic_write.

    Its temporary file beside `path` is named as every tinyvae temporary file is,
    so prepare_out_dir sweeps the one a killed run leaves. A failure mid-write
    leaves the old file (or none), never half a PNG, and raises OutputError, one line.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    checkpoint.atomic_write(Path(path), lambda f: fig.savefig(f, format="png", dpi=DPI))
    return path


def _new_figure(width, height, **kwargs):
    """A Figure of width x height inches on its own Agg canvas (no pyplot, no display)."""
    fig = Figure(figsize=(width, height), dpi=DPI, **kwargs)
    FigureCanvasAgg(fig)
    return fig


def _grid_figure(grid, title, left=0.8):
    """A figure showing an image grid crisply: each pixel magnified by a whole factor.

    The axes are placed by hand so that no resampling blurs the digits;
    the margins (inches; `left` for long row labels) leave room for tick labels and the title,
    which is wrapped to the figure's width.
    """
    h, w = grid.shape
    scale = max(1, round(GRID_PIXELS / max(h, w)))
    img_w, img_h = w * scale / DPI, h * scale / DPI       # inches
    right, bottom = 0.3, 0.6                               # inches
    fig_w = img_w + left + right
    title = textwrap.fill(title, width=max(20, int(fig_w * TITLE_CHARS_PER_INCH))) if title else title
    top = 0.3 + 0.25 * (title.count("\n") + 1 if title else 0)
    fig_h = img_h + bottom + top
    fig = _new_figure(fig_w, fig_h)
    ax = fig.add_axes((left / fig_w, bottom / fig_h, img_w / fig_w, img_h / fig_h))
    ax.imshow(grid, cmap=DIGIT_CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig, ax


def reconstructions(originals, recons, path, n=10):
    """Save the first n test digits (top row) above their reconstructions (bottom row).

    originals, recons (N, 784) in [0, 1].
    """
    if np.shape(originals) != np.shape(recons):
        raise InputError(f"originals {np.shape(originals)} and recons {np.shape(recons)} "
                         "differ in shape; pass the reconstructions of these digits")
    if len(originals) == 0 or n < 1:
        raise InputError(f"reconstructions needs at least one image to show, got {len(originals)} "
                         f"images and n={n}")
    n = min(n, len(originals))
    grid = tile_images(np.concatenate([originals[:n], recons[:n]]), 2, n)  # (2*28, n*28)
    fig, ax = _grid_figure(grid, "Test digits (top) and reconstructions (bottom)")
    ax.set_yticks([SIDE / 2, 3 * SIDE / 2], ["test", "recon."])
    return _save(fig, path)


def samples(images, path, ncols=8):
    """Save a grid of digits decoded from prior samples z ~ N(0, I), ncols per row.

    images (N, 784) in [0, 1].
    """
    if len(images) == 0:
        raise InputError("samples needs at least one image")
    ncols = min(ncols, len(images))
    nrows = -(-len(images) // ncols)  # ceiling division
    fig, _ = _grid_figure(tile_images(images, nrows, ncols), "Samples from the prior")
    return _save(fig, path)


def loss_curves(epochs, path):
    """Save two panels per epoch: (a) train and test negative ELBO, (b) its test parts.

    epochs: one dict per epoch (epoch k+1 at index k) with keys train_neg_elbo,
    test_neg_elbo, test_recon, test_kl, each in nats per image.
    """
    if not epochs:
        raise InputError("loss_curves needs at least one epoch of history")
    x = np.arange(1, len(epochs) + 1)
    fig = _new_figure(10, 4, layout="constrained")
    ax_elbo, ax_parts = fig.subplots(1, 2)
    curves = [(ax_elbo, "train_neg_elbo", "train"), (ax_elbo, "test_neg_elbo", "test"),
              (ax_parts, "test_recon", "reconstruction  -E_q[log p(x|z)]"),
              (ax_parts, "test_kl", "KL(q(z|x) || p(z))")]
    for ax, key, label in curves:
        ax.plot(x, [e[key] for e in epochs], marker="o", markersize=4, label=label)
    ax_elbo.set_title("(a) negative ELBO")
    ax_parts.set_title("(b) test negative ELBO = reconstruction + KL")
    for ax in (ax_elbo, ax_parts):
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per image")
        ax.set_xlim(0.5, len(epochs) + 0.5)  # a single epoch still gets a sensible axis
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def latent_grid(n):
    """The n values of one latent coordinate: Gaussian quantiles at (i + 0.5) / n.

    -> (n,) increasing and symmetric about 0; each value is the middle of a
    slice of the prior N(0, 1) holding probability 1/n.
    """
    return np.array([NormalDist().inv_cdf((i + 0.5) / n) for i in range(n)])


def manifold(decode_fn, n, path):
    """Save the digits decoded on an n x n grid of a 2-D latent space, as one image.

    decode_fn: (M, 2) -> (M, 784) in [0, 1]. Column j has z1 = latent_grid(n)[j]
    (increasing to the right); row i has z2 = latent_grid(n)[n-1-i] (increasing upwards).
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"manifold needs a grid of n >= 1 tiles per side, got n={n!r}")
    zs = latent_grid(n)                               # (n,)
    z1, z2 = np.meshgrid(zs, zs[::-1])                # (n, n) each; row 0 is the top row
    z = np.stack([z1.ravel(), z2.ravel()], axis=1)    # (n*n, 2), row by row
    decoded = np.asarray(decode_fn(z))                # (n*n, 784)
    fig, ax = _grid_figure(tile_images(decoded, n, n), "Decoder output over the latent plane")
    ticks = np.unique(np.linspace(0, n - 1, 5).round().astype(int))  # a few tiles per axis
    centres = ticks * SIDE + (SIDE - 1) / 2           # pixel centre of each tile
    ax.set_xticks(centres, [f"{zs[j]:.2f}" for j in ticks])
    ax.set_yticks(centres, [f"{zs[n - 1 - i]:.2f}" for i in ticks])
    ax.set_xlabel("z1 (Gaussian quantiles of an even grid)")
    ax.set_ylabel("z2")
    return _save(fig, path)


def _scatter_coordinates(z_mean):
    """Two coordinates to plot per point, and their axis labels.

    z_mean (N, L), N >= 1 -> x (N,), y (N,), xlabel, ylabel. L == 2: z itself;
    L > 2: the first two principal components (0 where N is too small to have
    them); L == 1: z against random jitter.
    """
    latent = z_mean.shape[1]
    if latent == 1:
        jitter = np.random.default_rng(0).uniform(-1, 1, len(z_mean))
        return z_mean[:, 0], jitter, "z", "random jitter (no meaning)"
    if latent == 2:
        return z_mean[:, 0], z_mean[:, 1], "z1", "z2"
    pcs = principal_components(z_mean, k=2)                  # (N, 2)
    total = z_mean.var(axis=0).sum()
    share = pcs.var(axis=0) / total if total > 0 else np.zeros(2)   # fraction of total variance
    return (pcs[:, 0], pcs[:, 1], f"PC 1 of z ({share[0]:.0%} of variance)",
            f"PC 2 of z ({share[1]:.0%} of variance)")


def _check_codes(z, labels, what):
    """z as a host (N, L) float array with N >= 1, L >= 1, matching labels (N,); InputError otherwise."""
    z = np.asarray(z, dtype=np.float64)  # host-side, for the PCA's SVD; not training
    if z.ndim != 2 or np.ndim(labels) != 1 or len(labels) != len(z):
        raise InputError(f"{what} {z.shape} and labels {np.shape(labels)} do not match; "
                         "pass z (N, L) and labels (N,)")
    if z.shape[0] == 0 or z.shape[1] == 0:
        raise InputError(f"{what} has shape {z.shape}: pass at least one point with at least one "
                         "latent unit, (N, L) with N, L >= 1")
    return z


def latent_scatter(z_mean, labels, path):
    """Save the encoder means of test digits as points coloured by their label.

    z_mean (N, L), labels (N,) ints 0..9. See _scatter_coordinates for L != 2.
    """
    z_mean = _check_codes(z_mean, labels, "z_mean")
    x, y, xlabel, ylabel = _scatter_coordinates(z_mean)
    cmap = ListedColormap(colormaps["tab10"].colors)
    norm = BoundaryNorm(np.arange(-0.5, 10), cmap.N)          # one colour per digit 0..9
    fig = _new_figure(6.4, 5.2, layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(x, y, c=labels, cmap=cmap, norm=norm, s=4, alpha=0.6, linewidths=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title("Test digits in latent space (means of q(z|x))")
    # The colour bar gets its own opaque mappable: the points' alpha would wash it out.
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, ticks=range(10), label="digit")
    return _save(fig, path)


# ---------------------------------------------------------------------------
# Anomaly detection: how the scores of normal and anomalous images compare
# ---------------------------------------------------------------------------

ANOMALY_COLOURS = {False: "tab:blue", True: "tab:red"}   # normal, anomalous
HIST_BINS = 60
HIST_TAIL = 0.005   # the top and bottom 0.5% of scores are piled into the edge bins
HIST_COLUMNS = 4     # panels per row of score_histograms
ROW_LABEL_INCHES = 1.8   # room left of image_rows for labels of two short lines


def _check_scores(values, is_anomaly, name):
    """values (N,) and is_anomaly (N,) as host arrays of one length; InputError otherwise."""
    values, is_anomaly = np.asarray(values, dtype=np.float64), np.asarray(is_anomaly, dtype=bool)
    if values.ndim != 1 or values.shape != is_anomaly.shape:
        raise InputError(f"{name} {values.shape} and is_anomaly {is_anomaly.shape} do not match; "
                         "pass one value and one label per image")
    return values, is_anomaly


def score_histograms(scores, is_anomaly, path, title=None):
    """Save one panel per score: the normal and the anomalous images' scores, as histograms.

    scores: {label: (N,) array}, higher = more anomalous; is_anomaly (N,) bool.
    Both groups share the bins, and each histogram has area 1 (anomalies are
    few). Scores beyond the 0.5% tails are piled into the edge bins, so one
    extreme image cannot squash the rest.
    """
    if not scores:
        raise InputError("score_histograms needs at least one score")
    if np.size(is_anomaly) == 0:
        raise InputError("score_histograms needs the scores of at least one image")
    cols = min(len(scores), HIST_COLUMNS)
    rows = -(-len(scores) // cols)
    fig = _new_figure(4.2 * cols, 3.6 * rows, layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).reshape(-1)
    for ax in axes[len(scores):]:                          # the grid's unused panels
        ax.set_axis_off()
    for ax, (label, values) in zip(axes, scores.items()):
        values, anomalous = _check_scores(values, is_anomaly, label)
        lo, hi = np.quantile(values, [HIST_TAIL, 1.0 - HIST_TAIL])
        hi = hi if hi > lo else lo + 1.0                   # all equal: one visible bin
        bins = np.linspace(lo, hi, HIST_BINS + 1)
        for flag, name in ((False, "normal"), (True, "anomalous")):
            if not np.any(anomalous == flag):              # no such images: no histogram (0 / 0)
                continue
            ax.hist(np.clip(values[anomalous == flag], lo, hi), bins=bins, density=True,
                    histtype="stepfilled", alpha=0.55, color=ANOMALY_COLOURS[flag], label=f"{name} ({np.sum(anomalous == flag)})")
        ax.set_xlabel(label)
        ax.set_ylabel("density")
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def roc_curves(curves, path, title="ROC curves"):
    """Save the ROC curves of several scores on one axes, with the chance diagonal.

    curves: {label: (fpr (P,), tpr (P,))}; put the AUROC in the label.
    """
    if not curves:
        raise InputError("roc_curves needs at least one curve")
    fig = _new_figure(5.6, 5.2, layout="constrained")
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="chance (0.5)")
    for label, (fpr, tpr) in curves.items():
        if np.shape(fpr) != np.shape(tpr) or np.ndim(fpr) != 1:
            raise InputError(f"ROC curve {label!r}: fpr {np.shape(fpr)} and tpr {np.shape(tpr)} "
                             "must be 1-D and of one length (tinyvae.metrics.roc_curve)")
        ax.plot(fpr, tpr, linewidth=1.5, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.005)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate (normal images flagged)")
    ax.set_ylabel("true positive rate (anomalies caught)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def image_rows(rows, path, title):
    """Save rows of digits, one labelled row each (e.g. a score's worst false alarms).

    rows: [(label, images (n_i, 784) in [0, 1])]; short rows are padded with blanks.
    A label may take two lines ("-ELBO\\nhighest normal").
    """
    if not rows:
        raise InputError("image_rows needs at least one row")
    ncols = max(1, max(len(images) for _, images in rows))
    grid = np.zeros((len(rows) * ncols, SIDE * SIDE))
    for r, (_, images) in enumerate(rows):
        images = np.asarray(images, dtype=np.float64).reshape(-1, SIDE * SIDE)
        grid[r * ncols:r * ncols + len(images)] = images
    fig, ax = _grid_figure(tile_images(grid, len(rows), ncols), title, left=ROW_LABEL_INCHES)
    ax.set_yticks([SIDE * (r + 0.5) for r in range(len(rows))], [label for label, _ in rows])
    return _save(fig, path)


def score_vs_ink(ink, score, is_anomaly, path, score_label, title=None):
    """Save a scatter of one score against the ink in each image, normal and anomalous apart.

    ink (N,): e.g. the number of pixels above 0.5; score (N,); is_anomaly (N,) bool.
    """
    ink, _ = _check_scores(ink, is_anomaly, "ink")
    score, anomalous = _check_scores(score, is_anomaly, "score")
    fig = _new_figure(6.0, 4.8, layout="constrained")
    ax = fig.add_subplot()
    for flag, name in ((False, "normal"), (True, "anomalous")):
        ax.scatter(ink[anomalous == flag], score[anomalous == flag], s=3, alpha=0.35,
                   linewidths=0, color=ANOMALY_COLOURS[flag], label=name)
    ax.set_xlabel("ink: pixels above 0.5")
    ax.set_ylabel(score_label)
    ax.set_title(title or f"{score_label} against ink")
    ax.grid(alpha=0.3)
    ax.legend(markerscale=4)
    return _save(fig, path)


# ---------------------------------------------------------------------------
# The autoencoder family: side-by-side latent spaces, beta's trade-off, KL warm-up
# ---------------------------------------------------------------------------

PRIOR_95_RADIUS = 2.4477   # sqrt(-2 ln 0.05): 95% of the 2-D N(0, I) lies inside this circle


def latent_scatters(panels, labels, path, title=None):
    """Save several models' codes of the same test digits side by side, coloured by label.

    panels: {title: z (N, L)}, e.g. the AE's codes and the VAE's means of q(z|x);
    labels (N,) ints 0..9. Each panel has its own scale; for L == 2 the circle
    holding 95% of N(0, I) is drawn, so one sees where prior samples land.
    See _scatter_coordinates for L != 2.
    """
    if not panels:
        raise InputError("latent_scatters needs at least one panel")
    cmap = ListedColormap(colormaps["tab10"].colors)
    norm = BoundaryNorm(np.arange(-0.5, 10), cmap.N)          # one colour per digit 0..9
    fig = _new_figure(4.6 * len(panels) + 0.8, 4.8, layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (name, z) in zip(axes, panels.items()):
        z = _check_codes(z, labels, f"panel {name!r}: z")
        x, y, xlabel, ylabel = _scatter_coordinates(z)
        ax.scatter(x, y, c=labels, cmap=cmap, norm=norm, s=3, alpha=0.5, linewidths=0)
        if z.shape[1] == 2:
            t = np.linspace(0, 2 * np.pi, 200)
            ax.plot(PRIOR_95_RADIUS * np.cos(t), PRIOR_95_RADIUS * np.sin(t), color="k",
                    linestyle="--", linewidth=1.2, label="95% of N(0, I)")
            ax.legend(loc="upper right", fontsize="small")
            ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(name)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=list(axes), ticks=range(10), label="digit")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def beta_tradeoff(points, path, title="Reconstruction against KL (test set)"):
    """Save each model's test reconstruction term against its KL term, with lines of equal -ELBO.

    points: [(label, kl, recon)], nats per image (e.g. one per beta). Along a
    dashed line recon + kl, the negative ELBO, is constant: moving between
    points trades one term for the other.
    """
    if not points:
        raise InputError("beta_tradeoff needs at least one point")
    kl = np.array([p[1] for p in points], dtype=np.float64)
    recon = np.array([p[2] for p in points], dtype=np.float64)
    fig = _new_figure(6.4, 5.0, layout="constrained")
    ax = fig.add_subplot()
    span = max(kl.max() - kl.min(), 1.0)
    ks = np.linspace(max(0.0, kl.min() - 0.3 * span), kl.max() + 0.3 * span, 50)
    for k, (label, _, _) in enumerate(points):
        total = kl[k] + recon[k]
        ax.plot(ks, total - ks, color="0.7", linestyle="--", linewidth=1)
        ax.annotate(f"{label}\n-ELBO {total:.1f}", (kl[k], recon[k]), textcoords="offset points",
                    xytext=(8, 4), fontsize="small")
    ax.plot(kl, recon, marker="o", color="tab:blue", linewidth=1.5)
    pad = 0.15 * max(recon.max() - recon.min(), 5.0)
    ax.set_ylim(recon.min() - pad, recon.max() + pad)
    ax.set_xlim(ks[0], ks[-1])
    ax.set_xlabel("KL(q(z|x) || p(z)), nats per image")
    ax.set_ylabel("reconstruction -E_q[log p(x|z)], nats per image")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def kl_curves(runs, path, title=None):
    """Save three panels per epoch for several runs: the KL weight, the test KL, the test -ELBO.

    runs: {label: epochs}, each epochs a list of metrics.json records with keys
    beta (the KL weight at the epoch's last step), test_kl, test_neg_elbo.
    """
    if not runs or not all(runs.values()):
        raise InputError("kl_curves needs at least one run with at least one epoch")
    fig = _new_figure(13, 4, layout="constrained")
    axes = fig.subplots(1, 3)
    for label, epochs in runs.items():
        x = np.arange(1, len(epochs) + 1)
        for ax, key in zip(axes, ("beta", "test_kl", "test_neg_elbo")):
            ax.plot(x, [e[key] for e in epochs], marker="o", markersize=4, label=label)
    for ax, name in zip(axes, ("(a) KL weight at the end of the epoch", "(b) test KL, nats per image",
                               "(c) test -ELBO (beta = 1), nats per image")):
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def unit_activities(activity, path, threshold=0.01, title=None):
    """Save each run's latent-unit activities, largest first, on a log scale, with the threshold.

    activity: {label: (L,)} from tinyvae.metrics.unit_activity; a unit is
    active above `threshold`. Activities below 1e-8 are drawn at 1e-8.
    """
    if not activity:
        raise InputError("unit_activities needs at least one run")
    fig = _new_figure(6.4, 4.6, layout="constrained")
    ax = fig.add_subplot()
    for label, a in activity.items():
        a = np.sort(np.asarray(a, dtype=np.float64).ravel())[::-1]
        n_active = int(np.sum(a > threshold))
        ax.plot(np.arange(1, len(a) + 1), np.maximum(a, 1e-8), marker="o", markersize=4,
                label=f"{label}: {n_active} of {len(a)} active")
    ax.axhline(threshold, color="k", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("latent unit, most active first")
    ax.set_ylabel("activity Var_x(E_q[z_j | x])")
    ax.set_title(title or "Active latent units")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return _save(fig, path)


def confusion_matrix(counts, path, title="Confusion matrix"):
    """Save a classifier's confusion matrix: row = true class, column = predicted class.

    counts (K, K) non-negative integers, counts[i, j] = images of class i
    predicted as j. Each cell shows its count; its shade is the fraction of its
    row (so every class reads alike, whatever its size); the diagonal is right.
    """
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] == 0 \
            or counts.dtype.kind not in "iu" or counts.min() < 0:
        raise InputError(f"counts has shape {counts.shape} and dtype {counts.dtype}: pass a square "
                         "(K, K) array of non-negative integer counts, true class by row")
    K = counts.shape[0]
    rows = counts.sum(axis=1, keepdims=True)                          # (K, 1) images per true class
    fraction = counts / np.maximum(rows, 1)                           # (K, K), rows sum to 1 (or 0)
    fig = _new_figure(6.4, 5.6, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(fraction, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(K):
        for j in range(K):
            if counts[i, j]:
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize="small",
                        color="white" if fraction[i, j] > 0.5 else "black")
    ax.set_xticks(range(K))
    ax.set_yticks(range(K))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    errors = int(counts.sum() - np.trace(counts))
    ax.set_title(f"{title}: {errors} of {int(counts.sum())} wrong "
                 f"({100 * errors / max(int(counts.sum()), 1):.2f}%)")
    fig.colorbar(image, ax=ax, label="fraction of the true class")
    return _save(fig, path)


def m2_curves(epochs, path, reference=None):
    """Save M2's two test curves per epoch: (a) classification error in %, (b) -ELBO with y unobserved.

    epochs: one dict per epoch (epoch k+1 at index k) with keys test_error (a
    fraction) and test_neg_elbo (nats per image). reference: (error in %, label),
    e.g. a published figure, drawn as a dashed line in (a); or None.
    """
    if not epochs:
        raise InputError("m2_curves needs at least one epoch of history")
    x = np.arange(1, len(epochs) + 1)
    fig = _new_figure(10, 4, layout="constrained")
    ax_error, ax_elbo = fig.subplots(1, 2)
    ax_error.plot(x, [100 * e["test_error"] for e in epochs], marker="o", markersize=3, label="this run")
    if reference is not None:
        ax_error.axhline(reference[0], color="grey", linestyle="--", label=reference[1])
        ax_error.legend()
    ax_error.set_ylim(bottom=0)
    ax_error.set_ylabel("test error (%)")
    ax_error.set_title("(a) test classification error, argmax q(y|x)")
    ax_elbo.plot(x, [e["test_neg_elbo"] for e in epochs], marker="o", markersize=3)
    ax_elbo.set_ylabel("nats per image")
    ax_elbo.set_title("(b) test -ELBO, y unobserved")
    for ax in (ax_error, ax_elbo):
        ax.set_xlabel("epoch")
        ax.set_xlim(0.5, len(epochs) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
    return _save(fig, path)
