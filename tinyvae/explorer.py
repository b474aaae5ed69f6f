"""The latent explorer: one self-contained web page that decodes the point under the cursor.

    write_explorer("runs/mnist/explorer.html", params, config, z_mean, y_test)
    python -m tinyvae.explorer runs/mnist      # rebuild it for a finished run

The page holds the decoder's weights (base64 float32) and a small JavaScript
forward pass of the same layers (tinyvae/explorer.js, embedded whole), so it
opens from disk with no server and no network. It shows the test digits' z
means on the latent plane, coloured by label, and the digit decoded at the
cursor, drawn large. Click pins a point, the arrow keys move it, and for a
conditional VAE a digit selector sets y. Scripts (and the tests) drive it
through `window.explorer`: setZ(z1, z2), setLabel(k), pixels(), decode(z, k).

This module is at the edge: it reads the model, it never trains or differentiates.
"""
from __future__ import annotations

import argparse
import base64
import html
import json
import math
import sys
from pathlib import Path

import numpy as np

from .backend import get_backend, to_numpy
from .checkpoint import CHECKPOINT_FILE, METRICS_FILE, atomic_write, load_checkpoint
from .data import load_mnist, to_unit_interval
from .errors import InputError, TinyVAEError
from .nets import layer_to_dict, param_shapes
from .vae import VAEConfig, check_params, encode

EXPLORER_FILE = "explorer.html"
PAGE_FORMAT = 1
_SCRIPT = Path(__file__).with_name("explorer.js")


# ---------------------------------------------------------------------------
# The model, as the page reads it
# ---------------------------------------------------------------------------


def _base64_float32(a) -> str:
    """Little-endian float32 values of `a` (row-major), as base64 text."""
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


def _image_shape(config):
    """(H, W) of the decoded picture: a square of input_dim pixels."""
    side = math.isqrt(config.input_dim)
    if side * side != config.input_dim:
        raise InputError(f"input_dim {config.input_dim} is not a square image: "
                         "the explorer draws square grayscale images such as MNIST's 28 x 28")
    return [side, side]


def _view(z_mean):
    """The square of the latent plane to show, [lo, hi]: at least [-3, 3], and 99% of the points."""
    reach = 3.0
    if z_mean is not None and len(z_mean):
        finite = np.abs(z_mean[np.all(np.isfinite(z_mean), axis=1)])
        if finite.size:
            reach = max(reach, float(np.quantile(finite, 0.99)) * 1.05)
    reach = math.ceil(reach * 2) / 2                  # a whole number of half units
    return [-reach, reach]


def explorer_model(params, config, z_mean=None, labels=None, caption="") -> dict:
    """The JSON record the page reads: the decoder's layers with their weights, and the scatter.

    params: the model's parameters (any backend); config: its VAEConfig with
    latent_dim 2; z_mean (M, 2) and labels (M,) ints 0..9: the points to plot
    (or None for none). Layer i's weights are params[f"dec.{i}.W"], ["dec.{i}.b"].
    """
    L, K = config.latent_dim, getattr(config, "n_classes", 0)
    if L != 2:
        raise InputError(f"the explorer shows a 2-D latent plane but this model has latent_dim={L}: "
                         "train one with --latent-dim 2")
    layers = config.decoder_layers
    want = param_shapes(layers, (L + K,), "dec")                 # {"dec.i.W": shape, ...}
    layer_dicts = []
    for i, layer in enumerate(layers):
        d = layer_to_dict(layer)                                  # {"kind": "dense", ...}
        for p in layer.PARAMS:
            key = f"dec.{i}.{p}"
            if key not in params:
                raise InputError(f"params lack {key}: pass the parameters of this config "
                                 "(init_params or its checkpoint)")
            value = to_numpy(params[key])
            if tuple(value.shape) != want[key]:
                raise InputError(f"{key} has shape {tuple(value.shape)}, the config needs "
                                 f"{want[key]}: pass the parameters of this config")
            d[p] = _base64_float32(value)
        layer_dicts.append(d)
    record = {
        "format": PAGE_FORMAT,
        "latent_dim": L,
        "n_classes": K,
        "likelihood": config.likelihood,
        "image_shape": _image_shape(config),
        "layers": layer_dicts,
        "points": None,
        "view": _view(None),
        "caption": caption,
    }
    if z_mean is not None:
        z_mean = np.asarray(to_numpy(z_mean), dtype=np.float64)
        labels = np.asarray(to_numpy(labels))
        if z_mean.ndim != 2 or z_mean.shape[1] != 2 or labels.shape != (len(z_mean),):
            raise InputError(f"z_mean {z_mean.shape} and labels {labels.shape} do not match: "
                             "pass z_mean (M, 2) and labels (M,)")
        if labels.size and (labels.min() < 0 or labels.max() > 255):
            raise InputError("labels must be small non-negative integers (digits 0..9)")
        record["points"] = {"z": _base64_float32(z_mean),
                            "labels": base64.b64encode(labels.astype(np.uint8).tobytes()).decode("ascii")}
        record["view"] = _view(z_mean)
    return record


# ---------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------

_STYLE = """
body { font: 16px/1.4 system-ui, sans-serif; margin: 1.2rem; color: #222; background: #fafafa; }
h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
p { margin: .3rem 0; }
main { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; margin-top: .8rem; }
#plane-side { width: max(320px, min(620px, 92vw, calc(100vh - 11rem))); }   /* all on screen */
#digit-side { width: 300px; }
#plane { width: 100%; aspect-ratio: 1; cursor: crosshair; background: #fff; box-shadow: 0 0 0 1px #ccc; }
#plane:focus { outline: 2px solid #36c; }
#digit { width: 280px; height: 280px; image-rendering: pixelated; box-shadow: 0 0 0 1px #ccc; }
#readout { font: 1.25rem ui-monospace, monospace; }
#mode, .help, .caption { color: #555; }
#legend span { display: inline-block; margin-right: .7rem; }
#legend i { display: inline-block; width: .8rem; height: .8rem; margin-right: .25rem;
            border-radius: 50%; vertical-align: -1px; }
#labels label { display: inline-block; white-space: nowrap; margin-right: .6rem; }
"""


def page_html(record: dict, title="tinyvae latent explorer") -> str:
    """The whole page: markup, style, the model as JSON, and explorer.js."""
    script = _SCRIPT.read_text(encoding="utf-8")
    data = json.dumps(record, separators=(",", ":"), allow_nan=False)
    # Inside <script>, only "</" could end the element early; "<\/" means the same in JSON.
    data = data.replace("</", "<\\/")
    assert "</script" not in script.lower()
    caption = html.escape(record.get("caption") or "")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p class="caption">{caption}</p>
<main>
<section id="plane-side">
<canvas id="plane" tabindex="0" aria-label="latent plane: move the cursor to decode, click to pin"></canvas>
<p class="help">Points: the test digits' z means (of q(z|x)), coloured by digit.</p>
<p id="legend"></p>
</section>
<section id="digit-side">
<canvas id="digit" width="280" height="280" aria-label="the decoded digit"></canvas>
<p id="readout" aria-live="polite">z = (0.00, 0.00)</p>
<p id="mode"></p>
<fieldset id="labels" hidden><legend>digit y</legend></fieldset>
<p class="help">Move over the plane to decode z; click to pin it; arrow keys move the pinned
point (Shift: bigger steps); for a conditional VAE, keys 0-9 pick the digit.</p>
</section>
</main>
<script type="application/json" id="model-data">{data}</script>
<script>
{script}</script>
</body>
</html>
"""


def write_explorer(path, params, config, z_mean=None, labels=None, caption="",
                   title="tinyvae latent explorer") -> Path:
    """Write the explorer page for a 2-D latent model to `path`, atomically; returns the path.

    z_mean (M, 2) and labels (M,): the test digits' encoder means and their
    digits, drawn as the scatter (None: an empty plane). caption: one line under the title.
    """
    text = page_html(explorer_model(params, config, z_mean, labels, caption), title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
    return path


# ---------------------------------------------------------------------------
# Command line: the page for a finished run
# ---------------------------------------------------------------------------


def run_caption(epochs: list) -> str:
    """'MNIST, 10 epochs, test -ELBO 140.12 nats per image', from a run's per-epoch records."""
    if not epochs:
        return "MNIST"
    n, last = len(epochs), epochs[-1]
    text = f"MNIST, {n} epoch{'s' if n != 1 else ''}"
    if "test_neg_elbo" in last:
        text += f", test -ELBO {last['test_neg_elbo']:.2f} nats per image"
    return text


def explorer_for_run(run_dir, data_dir=None, out=None, batch_size=1000) -> Path:
    """Rebuild run_dir/explorer.html from run_dir/checkpoint.npz and metrics.json.

    The scatter is the MNIST test set encoded by the checkpoint's encoder (z means).
    """
    run_dir = Path(run_dir)
    backend = get_backend("numpy")
    params, _, meta = load_checkpoint(run_dir / CHECKPOINT_FILE, backend)
    config = VAEConfig.from_dict(meta["config"])
    check_params(params, config)
    if config.latent_dim != 2:   # say so before reading 10,000 images
        raise InputError(f"{run_dir} holds a model with latent_dim={config.latent_dim}; the explorer "
                         "needs 2: train one with python demos/mnist.py --latent-dim 2")
    metrics_path = run_dir / METRICS_FILE
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    mnist = load_mnist(data_dir=data_dir)
    x = to_unit_interval(mnist.x_test)
    z_mean = []
    for start in range(0, len(x), batch_size):
        xb = backend.asarray(x[start:start + batch_size])
        yb = None
        if config.n_classes:
            yb = backend.asarray(np.eye(config.n_classes)[mnist.y_test[start:start + batch_size]])
        z_mean.append(backend.to_numpy(encode(params, xb, config, yb)[0]))
    return write_explorer(Path(out) if out else run_dir / EXPLORER_FILE, params, config,
                          np.concatenate(z_mean), mnist.y_test, caption=run_caption(metrics.get("epochs", [])))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tinyvae.explorer",
        description="Write explorer.html, the interactive latent explorer, for a run directory "
                    "of a 2-D latent model (from its checkpoint.npz and metrics.json).")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="e.g. runs/mnist")
    p.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                   help="directory holding the four MNIST IDX files; without it: the cache")
    p.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="where to write the page; default RUN_DIR/explorer.html")
    args = p.parse_args(argv)
    try:
        path = explorer_for_run(args.run_dir, args.data_dir, args.out)
    except TinyVAEError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}: open it in a web browser (no server needed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
