"""The two gradient estimators at the edge: the checked entry point, the variance measurement, short
training runs that compare them, and their pictures. The math is tinyvae/core/estimators.py.

    spec = EstimatorSpec("score", "loo", samples=4)
    moments = gradient_moments(params, x, config, backend, spec, draws=500)   # per-coordinate mean, variance
    ratio_quartiles(moments["mu"].var, pathwise["mu"].var)                      # Var(score) / Var(pathwise)

Explained, with the measured table: docs/estimators.md
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import checks, models, plots
from .checks import Checked, Int, OneOf
from .core import estimators
from .core.estimators import BASELINES, ESTIMATORS
from .core.optim import Adam
from .core.vae import VAEConfig
from .errors import InputError
from .train import evaluate, steps

STREAM_CURVES = 20          # (STREAM_CURVES, chunk): the batches and eps of the comparison runs
BASELINE_NAMES = {"none": "no baseline", "batch": "batch baseline", "loo": "leave-one-out baseline"}


# ---------------------------------------------------------------------------
# Which estimator, checked
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EstimatorSpec(Checked):
    """One estimator of the ELBO's gradient: 'pathwise' or 'score' (with a baseline), S samples per image."""

    estimator: str = "score"
    baseline: str = "none"
    samples: int = 1

    RULES = dict(estimator=OneOf(ESTIMATORS), baseline=OneOf(BASELINES), samples=Int(1))

    def __post_init__(self):
        super().__post_init__()
        if self.estimator == "pathwise" and self.baseline != "none":
            raise InputError(f"baseline {self.baseline!r} is for the score estimator: the pathwise one takes "
                             "none (leave baseline='none')")
        if self.baseline == "loo" and self.samples < 2:
            raise InputError(f"the leave-one-out baseline needs samples >= 2 per image (the other samples of "
                             f"the image), got {self.samples}: pass samples=2 or more")

    @property
    def label(self) -> str:
        return "pathwise" if self.estimator == "pathwise" else f"score, {BASELINE_NAMES[self.baseline]}"


def check_model(config):
    """Refuse, in one line, a model the estimators do not handle: they take the plain Bernoulli VAE."""
    if type(config) is not VAEConfig or config.n_classes or config.likelihood != "bernoulli":
        raise InputError("the estimators compare gradients of the plain VAE with the Bernoulli likelihood: pass "
                         "a VAEConfig with n_classes=0 and likelihood='bernoulli'")


def loss_and_grads(params, x, eps, config, estimator="score", baseline="none", check_values=True):
    """core.estimators.loss_and_grads (S samples per image, eps (S, N, L)), its arguments checked first."""
    check_model(config)
    checks.check_array(eps, "eps")
    checks.check_batch(x, params, config, values=check_values)
    shape, L = tuple(eps.shape), config.latent_dim
    if len(shape) != 3 or shape[1:] != (x.shape[0], L) or eps.dtype != x.dtype:
        raise InputError(f"eps has shape {shape} and dtype {eps.dtype}, expected (S, {x.shape[0]}, {L}) {x.dtype}: "
                         f"S samples per image, e.g. backend.normal((S, N, latent_dim))")
    spec = EstimatorSpec(estimator, baseline, shape[0])
    if spec.baseline == "batch" and shape[0] * shape[1] < 2:
        raise InputError("the batch baseline needs at least two samples in the batch (S N >= 2): pass more "
                         "images or samples")
    if check_values:
        checks.check_values(x, config, eps=eps)
    return estimators.loss_and_grads(params, x, eps, config, spec.estimator, spec.baseline)


# ---------------------------------------------------------------------------
# The variance of each estimate, coordinate by coordinate
# ---------------------------------------------------------------------------


@dataclass
class Moments:
    """Per-coordinate mean and variance over the draws (float64, host), and the draws of the watched columns."""

    mean: np.ndarray
    var: np.ndarray
    draws: int


def first_layer(config) -> str:
    """The name of the encoder's first weight array: 'enc.0.W' for the MLP, 'enc.1.W' after a Reshape."""
    return f"enc.{next(i for i, layer in enumerate(config.encoder_layers) if layer.PARAMS)}.W"


def gradient_moments(params, x, config, backend, spec: EstimatorSpec, draws: int, watch=8) -> dict:
    """Draw the estimate `draws` times for the fixed batch x (fresh eps each time) and keep, per coordinate,
    the mean and variance (Welford, float64) of dL/dmu, dL/dlogvar (N, L) and the encoder's first-layer
    weights: {'mu', 'logvar', 'W': Moments, 'watched': (draws, ..., watch) every draw of the first `watch`
    units' weights ((draws, 784, watch) for the MLP)}.
    Shapes: x (N, D) on the backend."""
    W = first_layer(config)
    mean, m2, watched = {}, {}, []
    for r in range(1, draws + 1):
        eps = backend.normal((spec.samples, x.shape[0], config.latent_dim))           # (S, N, L)
        parts, grads = estimators.loss_and_grads(params, x, eps, config, spec.estimator, spec.baseline)
        now = {"mu": parts.dmu, "logvar": parts.dlogvar, "W": grads[W]}
        for k, v in now.items():
            v = np.asarray(backend.to_numpy(v), dtype=np.float64)
            if r == 1:
                mean[k], m2[k] = np.zeros_like(v), np.zeros_like(v)
            delta = v - mean[k]
            mean[k] += delta / r
            m2[k] += delta * (v - mean[k])
            if k == "W":
                watched.append(v[..., :watch].copy())
    out = {k: Moments(mean[k], m2[k] / (draws - 1), draws) for k in mean}
    out["watched"] = np.stack(watched)
    return out


def ratio_quartiles(var, var_reference):
    """Quartiles (25%, median, 75%) of var / var_reference over the coordinates where var_reference > 0,
    and how many coordinates that is (a pixel that is 0 in every image gives its weights no gradient)."""
    keep = var_reference > 0
    ratio = var[keep] / var_reference[keep]
    return [float(q) for q in np.quantile(ratio, [0.25, 0.5, 0.75])], int(keep.sum())


def predicted_ratio(recon_sq, logvar, var_mu_pathwise, samples):
    """The no-baseline prediction for each dL/dmu_nj: Var(score) / Var(pathwise) ~= E[f^2] / (sigma^2 Var_q[df/dz_j]).

    One sample's score term for mu_nj is f eps_j / sigma_j, of variance ~= E[f_n^2] / sigma_nj^2 when f's
    offset dominates; the pathwise term df/dz_j has variance v_nj = Var(dL/dmu_nj) N^2 S (the estimate
    averages S samples and the loss N images). recon_sq (N,): E[recon^2] per image; logvar (N, L);
    var_mu_pathwise (N, L): the measured Var(dL/dmu). Returns the quartiles over the coordinates (v > 0).
    """
    N = logvar.shape[0]
    v = var_mu_pathwise * N * N * samples                                  # (N, L)
    keep = v > 0
    predicted = (recon_sq[:, None] / np.exp(logvar))[keep] / v[keep]
    return [float(q) for q in np.quantile(predicted, [0.25, 0.5, 0.75])]


def variance_table(moments: dict, reference="pathwise") -> list:
    """Rows {estimator, part, q25, median, q75, coordinates}: each score estimate's variance over the
    pathwise one's, per coordinate, for mu, logvar and the first-layer weights."""
    rows = []
    for label, m in moments.items():
        if label == reference:
            continue
        for part in ("mu", "logvar", "W"):
            (q25, q50, q75), n = ratio_quartiles(m[part].var, moments[reference][part].var)
            rows.append({"estimator": label, "part": part, "q25": q25, "median": q50, "q75": q75, "coordinates": n})
    return rows


# ---------------------------------------------------------------------------
# Short training runs: the same start, the same batches and eps, one estimator each
# ---------------------------------------------------------------------------


def train_curve(params0, config, spec: EstimatorSpec, x_train, x_test, backend, n_steps, batch_size=100,
                lr=1e-3, every=25):
    """Train a copy of params0 with Adam for n_steps, the gradient from `spec`, and return
    {'step': [...], 'test_neg_elbo': [...]}: the test -ELBO (nats per image) at step 0 and every `every` steps.

    Every run sees the same batches and the same eps ((STREAM_CURVES, chunk) streams), so runs differ
    only in how the estimator uses them. x_train, x_test (N, D) on the backend.
    """
    xp = backend.xp
    params = {k: xp.asarray(v, copy=True) for k, v in params0.items()}
    optimizer = Adam(params, lr=lr)

    def step(p, batch, be, c, beta):                       # train.steps' train_step, the eps drawn here
        eps = be.normal((spec.samples, batch["x"].shape[0], c.latent_dim))          # (S, B, L)
        parts, grads = estimators.loss_and_grads(p, batch["x"], eps, c, spec.estimator, spec.baseline)
        return {"loss": parts.loss}, grads

    model = models.Model(spec.label, step, models.vae_terms, models.vae_inputs)
    curve = {"step": [0], "test_neg_elbo": [evaluate(params, x_test, backend, config)["neg_elbo"]]}
    done, chunk = 0, 0
    while done < n_steps:
        chunk += 1
        backend.reseed(STREAM_CURVES, chunk)
        todo = min(every, n_steps - done)
        order = backend.asarray(backend.permutation(x_train.shape[0])[:todo * batch_size])
        for _ in steps(params, optimizer, model, config, backend, x_train, order, batch_size):
            done += 1
        curve["step"].append(done)
        curve["test_neg_elbo"].append(evaluate(params, x_test, backend, config)["neg_elbo"])
    return curve


# ---------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------


def gradient_histograms(samples: dict, truth, path, title):
    """Save the histograms of one coordinate's gradient estimates, one per estimator, on one axis.

    samples: {label: (R,) draws}; truth: the mean to mark (a vertical line). Shared bins over the
    0.5%..99.5% range of all draws together, each histogram of area 1.
    """
    values = np.concatenate([np.asarray(v, dtype=np.float64) for v in samples.values()])
    lo, hi = np.quantile(values, [0.005, 0.995])
    bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 81)
    fig = plots._new_figure(7.0, 4.2, layout="constrained")
    ax = fig.add_subplot()
    for label, v in samples.items():
        v = np.asarray(v, dtype=np.float64)
        ax.hist(np.clip(v, bins[0], bins[-1]), bins=bins, density=True, histtype="stepfilled", alpha=0.5,
                label=f"{label}: sd {v.std(ddof=1):.3g}")
    ax.axvline(truth, color="k", linestyle="--", linewidth=1, label=f"mean of the pathwise draws {truth:.3g}")
    ax.set_yscale("log")
    ax.set_xlabel("estimated dL/dW for one first-layer weight")
    ax.set_ylabel("density (log scale)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return plots._save(fig, path)


def training_curves(curves: dict, path, title):
    """Save each run's test -ELBO against the step, on one axis. curves: {label: train_curve's dict}.
    The axis shows the runs after their first step; the common start is said in the legend."""
    fig = plots._new_figure(7.0, 4.2, layout="constrained")
    ax = fig.add_subplot()
    for label, c in curves.items():
        ax.plot(c["step"], c["test_neg_elbo"], marker="o", markersize=3, label=label)
    later = [v for c in curves.values() for v in c["test_neg_elbo"][1:]]
    if later:
        lo, hi = min(later), max(later)
        ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.1 * (hi - lo))
    start = next(iter(curves.values()))["test_neg_elbo"][0]
    ax.plot([], [], " ", label=f"(every run starts at {start:.1f})")
    ax.set_xlabel("Adam step")
    ax.set_ylabel("test -ELBO (nats per image)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return plots._save(fig, path)
