"""The sparse autoencoder at the edge: its checked entry point, its training step for the loop, the share of
near-zero code activations, and the picture of its features. The math is tinyvae/core/sparse.py.

    config = SparseAEConfig()                               # UFLDL's 784-196-784, KL toward rho = 0.05
    params = init_params(config, backend)
    for _ in train.steps(params, Adam(params), model(), config, backend, x, order, 128): ...
    near_zero_share(codes(params, x_test, config, backend))  # the share of activations below 0.05

Explained, with the pictures: docs/autoencoders.md#sparse-autoencoder
"""
from __future__ import annotations

import numpy as np

from . import checks
from .core import ae, sparse
from .core.sparse import SparseAEConfig
from .errors import InputError

NEAR_ZERO = 0.05        # a sigmoid unit below this is counted as off


def loss_and_grads(params, x, config, check_values=True):
    """core.sparse.loss_and_grads, its arguments checked first."""
    if not isinstance(config, SparseAEConfig):
        raise InputError(f"the sparse autoencoder's loss needs a SparseAEConfig, got {type(config).__name__}")
    checks.check_batch(x, params, config, values=check_values)
    return sparse.loss_and_grads(params, x, config)


def train_step(params, batch, backend, config, beta=1.0):
    """The loop's step (tinyvae/models.py's train_step): ({'loss', 'recon', 'sparsity', 'decay'}, grads);
    no noise, beta unused."""
    parts, grads = sparse.loss_and_grads(params, batch["x"], config)
    return {"loss": parts.loss, "recon": parts.recon, "sparsity": parts.sparsity, "decay": parts.decay}, grads


def model():
    """The adapter train.steps and fit take: 'sparse_ae', this module's train_step, the autoencoder's eval terms."""
    from .models import Model, ae_terms            # models may import this module: not at import time
    return Model("sparse_ae", train_step, ae_terms, lambda *a: {})


def codes(params, x, config, backend, batch_size=1000) -> np.ndarray:
    """The code h = enc(x) of every image, on the host. x (M, D) on the backend -> (M, H)."""
    return np.concatenate([backend.to_numpy(ae.encode(params, x[i:i + batch_size, :], config))
                           for i in range(0, x.shape[0], batch_size)])


def near_zero_share(h, threshold=NEAR_ZERO) -> float:
    """The share of code activations |h_nj| below `threshold`, over all images and units."""
    return float(np.mean(np.abs(np.asarray(h)) < threshold))


def effective_pixels(W) -> np.ndarray:
    """How many pixels each unit's weights W[:, j] (784, H) spread over: the participation ratio
    (sum_i w_ij^2)^2 / sum_i w_ij^4, which is k for a feature of k equal weights and 784 for a flat one. (H,)"""
    w2 = np.asarray(W, dtype=np.float64) ** 2
    return np.sum(w2, axis=0) ** 2 / np.maximum(np.sum(w2 * w2, axis=0), 1e-300)


def code_summary(params, x, config, backend) -> dict:
    """The numbers the sparse-AE comparison reports for one model on images x (M, D), on the backend:
    the share of near-zero code activations, the mean activation, the units never on (below 1/2 on every
    image: dead units), and the median over units of the first layer's effective pixels."""
    h = codes(params, x, config, backend)                                  # (M, H)
    first = next(i for i, layer in enumerate(config.encoder_layers) if layer.PARAMS)   # the first with weights
    W = backend.to_numpy(params[f"enc.{first}.W"])
    return {"near_zero_share": near_zero_share(h), "mean_activation": float(np.mean(h)),
            "units_never_on": int(np.sum(np.max(np.abs(h), axis=0) < 0.5)), "units": int(h.shape[1]),
            "effective_pixels_median": float(np.median(effective_pixels(W)))}


def feature_images(W) -> np.ndarray:
    """A first-layer weight matrix W (784, H) as H images (H, 784) in [0, 1]: each unit's weights divided by
    twice their largest magnitude and shifted by 1/2, so 0 is mid-grey, as UFLDL's display_network draws them."""
    W = np.asarray(W, dtype=np.float64).T                                  # (H, 784)
    scale = np.maximum(np.max(np.abs(W), axis=1, keepdims=True), 1e-12)
    return 0.5 + 0.5 * W / scale


def features_picture(panels: dict, path, title, n=64):
    """Save the first n units' weight images of each model side by side, one grid per model.

    panels: {label: W (784, H) host}; each grid is sqrt(n) x sqrt(n), ink (dark) where a weight is positive.
    """
    from . import plots                              # matplotlib only when a picture is drawn
    side = int(np.ceil(np.sqrt(n)))
    grids = [plots.tile_images(feature_images(W)[:n], side, side) for W in panels.values()]
    gap = np.full((grids[0].shape[0], plots.SIDE), 0.5)                     # a mid-grey column between grids
    picture = np.concatenate([g if i == 0 else np.concatenate([gap, g], axis=1) for i, g in enumerate(grids)],
                             axis=1)
    fig, ax = plots._grid_figure(picture, title)
    width = side * plots.SIDE
    ax.set_xticks([width / 2 + i * (width + plots.SIDE) for i in range(len(grids))], list(panels))
    return plots._save(fig, path)
