"""Scoring a detector: the area under the ROC curve, and the curve itself.

An anomaly detector gives every image a score, higher meaning "more
anomalous". The ROC curve plots, for every threshold t, the share of anomalies
caught (score >= t, the true positive rate) against the share of normal images
wrongly flagged (the false positive rate). Its area, the AUROC, is the
probability that a random anomaly scores above a random normal image, a tie
counting half (the Mann-Whitney U statistic divided by n_pos n_neg):

    AUROC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg),

where R_pos is the sum of the anomalies' ranks among all scores, tied scores
sharing the average of their ranks. 1 is a perfect detector, 0.5 a coin, and
0 a perfect detector read backwards. Only the order of the scores matters, so
any strictly increasing transform of a score leaves both unchanged.

    auroc(scores, is_anomaly)          # float in [0, 1]
    fpr, tpr = roc_curve(scores, is_anomaly)

This is the edge, not the engine: plain NumPy on host arrays, in float64.
Derivation and use: docs/anomaly.md#the-auroc
"""
from __future__ import annotations

import numpy as np

from .errors import InputError


def _check(scores, is_anomaly):
    """scores (N,) float64 and is_anomaly (N,) bool, checked; raise InputError otherwise."""
    s = np.asarray(scores)
    y = np.asarray(is_anomaly)
    if s.ndim != 1 or y.ndim != 1:
        raise InputError(f"scores {s.shape} and is_anomaly {y.shape} must both be 1-D: "
                         "pass one score and one label per image")
    if len(s) != len(y):
        raise InputError(f"{len(s)} scores but {len(y)} labels: pass one label per score")
    if s.dtype.kind not in "biuf":
        raise InputError(f"scores have dtype {s.dtype}: pass real numbers")
    s = s.astype(np.float64)
    if np.isnan(s).any():
        raise InputError(f"{int(np.isnan(s).sum())} scores are NaN and cannot be ranked: "
                         "drop those images or fix the scoring")
    if y.dtype != bool:
        if y.dtype.kind not in "biu" or not np.isin(y, (0, 1)).all():
            raise InputError("is_anomaly must hold only True/False (or 1/0) values")
        y = y.astype(bool)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        kind = "anomalies" if n_pos == 0 else "normal images"
        raise InputError(f"there are no {kind} among the {len(y)} labels: "
                         "the AUROC needs at least one of each")
    return s, y


def average_ranks(values):
    """Ranks 1..N of `values` (N,), tied values sharing the mean of the ranks they span.

    E.g. [10, 20, 20, 30] -> [1, 2.5, 2.5, 4]. Returns (N,) float64.
    """
    values = np.asarray(values, dtype=np.float64)
    _, group, counts = np.unique(values, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)                      # rank of the last member of each tie group
    mean_rank = last - (counts - 1) / 2.0         # mean of the ranks last-c+1 .. last
    return mean_rank[group.ravel()]


def auroc(scores, is_anomaly) -> float:
    """Area under the ROC curve: P(anomaly's score > normal's score), ties counted half.

    AUROC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg), R_pos the sum of the
    anomalies' average ranks. scores (N,) real, is_anomaly (N,) bool -> float in [0, 1].
    """
    s, y = _check(scores, is_anomaly)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    r_pos = average_ranks(s)[y].sum()
    u = r_pos - n_pos * (n_pos + 1) / 2.0         # pairs (anomaly, normal) the anomaly wins, ties 1/2
    return float(u / (n_pos * n_neg))


def roc_curve(scores, is_anomaly):
    """The ROC curve: one point per distinct score t, flagging every image with score >= t.

    fpr = #(normal, score >= t) / n_neg,  tpr = #(anomaly, score >= t) / n_pos,
    for t from the highest score down; the curve starts at (0, 0) and ends at
    (1, 1). Tied scores move fpr and tpr together, so a tie is a diagonal step
    and the trapezoid area under the points equals `auroc` exactly.
    scores (N,), is_anomaly (N,) -> fpr (P,), tpr (P,) float64, P = distinct scores + 1.
    """
    s, y = _check(scores, is_anomaly)
    order = np.argsort(-s, kind="stable")                   # highest score first
    s, y = s[order], y[order]
    last_of_tie = np.r_[s[1:] != s[:-1], True]              # (N,) the last image of each tie group
    tp = np.cumsum(y)[last_of_tie]                          # anomalies flagged at each threshold
    fp = np.cumsum(~y)[last_of_tie]                         # normal images flagged
    fpr = np.r_[0.0, fp / fp[-1]]
    tpr = np.r_[0.0, tp / tp[-1]]
    return fpr, tpr


# ---------------------------------------------------------------------------
# Active latent units (Burda, Grosse & Salakhutdinov 2016)
# ---------------------------------------------------------------------------


def unit_activity(z_mean):
    """Each latent unit's activity A_j = Cov_x(E_q[z_j | x]): the variance over images of its mean.

    z_mean (N, L): the encoder means mu(x_n) of N images -> (L,) float64.
    A unit whose mean hardly moves with x carries no information about x:
    q(z_j | x) is then close to the prior for every image (posterior collapse).
    Docs: docs/autoencoders.md#active-units
    """
    z = np.asarray(z_mean, dtype=np.float64)
    if z.ndim != 2 or len(z) < 2:
        raise InputError(f"z_mean has shape {z.shape}: pass the encoder means of at least two images, (N, L)")
    return z.var(axis=0)


def active_units(z_mean, threshold=0.01) -> int:
    """How many latent units are active: A_j = Cov_x(E_q[z_j | x]) > threshold (0.01, as Burda et al.).

    z_mean (N, L) -> int in 0..L. See unit_activity.
    """
    return int(np.sum(unit_activity(z_mean) > threshold))
