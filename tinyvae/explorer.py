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
import re
import shlex
import sys
from pathlib import Path

import numpy as np

from .backend import get_backend, to_numpy
from .checkpoint import CHECKPOINT_FILE, METRICS_FILE, OutputError, atomic_write, load_checkpoint
from .data import load_mnist, to_unit_interval
from .errors import CheckpointError, DataError, InputError, TinyVAEError
from .checks import check_params
from .core.nets import param_shapes
from .core.vae import VAEConfig, encode
from .specs import layer_to_dict

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
    if path.is_dir():
        raise OutputError(f"{path} is a folder: pass a file name for the page, "
                          f"e.g. --out {shlex.quote(str(path / EXPLORER_FILE))}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot make the folder {path.parent} for {path.name} "
                          f"({e.strerror or e}): pass another --out") from None
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


# What the explorer draws, and how to make a run it can draw. Every message
# names only the explorer's own arguments (RUN_DIR, --out, --data-dir) or a
# whole command that makes such a run.
DRAWS = "the explorer draws VAE and CVAE runs with a 2-D latent"
MNIST_PIXELS = 784         # the explorer encodes the MNIST test set
MNIST_CLASSES = 10
KINDS = {"ae": "an autoencoder (ae) run",
         "m2": "an M2 semi-supervised (m2) run"}
MAX_LISTED = 6             # subfolder runs named in one message
_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "a boolean", type(None): "null"}


def _q(path) -> str:
    """A path as it is typed in a shell command."""
    return shlex.quote(str(path))


def _train_command(out="DIR") -> str:
    return f"python demos/mnist.py --latent-dim 2 --out {out}"


def _one_line(text) -> str:
    return " ".join(str(text).split())


def _without_fix(error) -> str:
    """A checkpoint error's problem without the words about resuming training, and without its fix
    clause, which names training's flags (--resume, --out)."""
    text = re.sub(r":\s[^:]*--(?:resume|out|overwrite)[^:]*$", "", _one_line(error))
    return re.sub(r";[^;():]*\bresum[^;():]*", "", text)


def _retrain(run_dir) -> str:
    return (f"train the run again with {_train_command(_q(run_dir))} --overwrite, "
            "or pass another run folder")


def _obstacle(meta: dict) -> str | None:
    """Why the explorer cannot draw the model of a checkpoint record ('holds ...'), or None."""
    kind = meta.get("model")
    if kind is None:                                # records before AE and M2 are the VAE's ...
        fields = meta["config"]                     # ... unless their config says otherwise
        kind = "ae" if "corruption" in fields else "m2" if "cls_hidden" in fields else "vae"
    if kind == "ae" and meta["config"].get("corruption", "none") != "none":   # config: a dict, checked
        return "holds a denoising autoencoder (ae) run"
    if kind != "vae":
        return "holds " + ((KINDS.get(kind) if isinstance(kind, str) else None) or f"a {kind!r} run")
    try:
        config = VAEConfig.from_dict(meta["config"])
    except (InputError, TypeError, ValueError, KeyError, AttributeError) as e:
        return f"holds a VAE config the explorer cannot read ({_one_line(e)})"
    if config.latent_dim != 2:
        return f"holds a model with latent_dim={config.latent_dim}"
    if config.input_dim != MNIST_PIXELS:
        return f"holds a model of {config.input_dim}-pixel images, not MNIST's {MNIST_PIXELS}"
    if config.n_classes not in (0, MNIST_CLASSES):
        return f"holds a CVAE of n_classes={config.n_classes}, not MNIST's {MNIST_CLASSES} digits"
    return None


def _runs_below(folder: Path, backend) -> list:
    """[(run folder, obstacle or None)] for the checkpoints one or two folders below `folder`."""
    try:
        found = sorted({p.parent for pattern in (f"*/{CHECKPOINT_FILE}", f"*/*/{CHECKPOINT_FILE}")
                        for p in folder.glob(pattern) if p.is_file()})
    except OSError:
        return []
    runs = []
    for run in found:
        try:
            _, _, meta = load_checkpoint(run / CHECKPOINT_FILE, backend)
            runs.append((run, _obstacle(meta)))
        except TinyVAEError:
            runs.append((run, "holds an unreadable checkpoint"))
    return runs


def _listed(paths) -> str:
    names = [str(p) for p in paths[:MAX_LISTED]]
    more = len(paths) - len(names)
    return ", ".join(names) + (f" and {more} more" if more else "")


def _no_run_error(run_dir: Path, backend) -> TinyVAEError:
    """The one-line error for a RUN_DIR without a checkpoint file: what it is, what to pass instead."""
    ckpt = run_dir / CHECKPOINT_FILE
    if not run_dir.exists():
        return CheckpointError(f"no checkpoint at {ckpt}: {run_dir} does not exist; pass the folder of "
                               f"a finished run, or train a model there first with {_train_command(_q(run_dir))}")
    if not run_dir.is_dir():
        if run_dir.name == CHECKPOINT_FILE:
            return InputError(f"{run_dir} is the checkpoint file; the explorer takes its folder: "
                              f"python -m tinyvae.explorer {_q(run_dir.parent)}")
        beside = (f", e.g. python -m tinyvae.explorer {_q(run_dir.parent)}"
                  if (run_dir.parent / CHECKPOINT_FILE).is_file() else "")
        return InputError(f"{run_dir} is a file, not a run folder: pass the folder of a finished run "
                          f"(the one holding {CHECKPOINT_FILE}){beside}")
    if ckpt.exists():                              # a folder, a FIFO, a device
        what = "a folder, not a checkpoint file" if ckpt.is_dir() else "not a regular file, so no checkpoint"
        return CheckpointError(f"{ckpt} is {what}: pass the folder of a finished "
                               f"run, or remove it and train a model there with {_train_command(_q(run_dir))}")
    runs = _runs_below(run_dir, backend)
    good = [run for run, why in runs if why is None]
    if good:
        which = "a subfolder holds a run" if len(good) == 1 else "its subfolders hold runs"
        return CheckpointError(f"no checkpoint at {ckpt}, but {which} the explorer can draw: "
                               f"{_listed(good)}; pass {'it' if len(good) == 1 else 'one of them'}, "
                               f"e.g. python -m tinyvae.explorer {_q(good[0])}")
    if runs:
        shown = "; ".join(f"{run} {why}" for run, why in runs[:MAX_LISTED])
        more = f"; and {len(runs) - MAX_LISTED} more" if len(runs) > MAX_LISTED else ""
        return CheckpointError(f"no checkpoint at {ckpt}, and the runs in its subfolders cannot be drawn "
                               f"({shown}{more}): {DRAWS}; train one with {_train_command()}")
    return CheckpointError(f"no checkpoint at {ckpt}: {run_dir} holds no finished run; pass the folder "
                           f"of one, or train a model there first with {_train_command(_q(run_dir))}")


def load_run(run_dir, backend):
    """(params, config, meta) of run_dir/checkpoint.npz, if the explorer can draw it.

    Otherwise one line saying why, with a fix the explorer's user can act on:
    a folder without a run (and the subfolders that hold runs), a corrupt
    checkpoint, a model of another kind (AE, M2) or another latent size.
    """
    run_dir = Path(run_dir)
    ckpt = run_dir / CHECKPOINT_FILE
    if not ckpt.is_file():
        raise _no_run_error(run_dir, backend)
    try:
        params, _, meta = load_checkpoint(ckpt, backend)
    except CheckpointError as e:
        raise CheckpointError(f"{_without_fix(e)}: {_retrain(run_dir)}") from None
    obstacle = _obstacle(meta)
    if obstacle:
        raise InputError(f"{run_dir} {obstacle}; {DRAWS}: pass such a run's folder, "
                         f"or train one with {_train_command()}")
    config = VAEConfig.from_dict(meta["config"])
    try:
        check_params(params, config)
    except InputError as e:
        problem = _one_line(e)
        if "): " in problem:                                              # without check_params' fix
            problem = problem.rpartition("): ")[0] + ")"
        inner = re.search(r"\((.*)\)", problem)                         # "params do not fit (...)"
        problem = inner.group(1) if inner else problem
        raise CheckpointError(f"checkpoint {ckpt} does not fit its own model config ({problem}): it was "
                              f"edited or damaged; {_retrain(run_dir)}") from None
    return params, config, meta


def _bad_metrics(path, problem) -> DataError:
    return DataError(f"{path} {problem}: delete it or put back the run's own {METRICS_FILE} "
                     f"(the explorer takes the model and its numbers from {CHECKPOINT_FILE})")


def read_metrics_epochs(path) -> list | None:
    """The per-epoch records of a run's metrics.json, or None if it has none (or no file).

    A file that cannot be read, is not JSON (cut short), is not a JSON object,
    or whose "epochs" is not a list of records with numeric test_neg_elbo
    raises DataError, one line naming the file.
    """
    path = Path(path)
    if not path.exists():
        return None
    if path.is_dir():
        raise _bad_metrics(path, "is a folder, not a file")
    if not path.is_file():                         # a FIFO or a device: reading it could block forever
        raise _bad_metrics(path, "is not a regular file")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise _bad_metrics(path, f"cannot be read ({e.strerror or _one_line(e)})") from None
    except UnicodeDecodeError:
        raise _bad_metrics(path, "is not text (not UTF-8), so not JSON") from None
    except ValueError as e:                        # json.JSONDecodeError: truncated, not JSON
        raise _bad_metrics(path, f"is not valid JSON, e.g. cut short ({_one_line(e)})") from None
    except RecursionError:
        raise _bad_metrics(path, "is nested too deeply to be a metrics record") from None
    if not isinstance(record, dict):
        raise _bad_metrics(path, f"holds {_JSON_TYPES.get(type(record), type(record).__name__)}, "
                                 "not a JSON object")
    epochs = record.get("epochs")
    if epochs is None:
        return None
    if not isinstance(epochs, list) or not all(isinstance(r, dict) for r in epochs):
        raise _bad_metrics(path, "has an \"epochs\" entry that is not a list of per-epoch records")
    for i, r in enumerate(epochs, start=1):
        v = r.get("test_neg_elbo")
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise _bad_metrics(path, f"has epoch record {i} with test_neg_elbo {v!r}, not a number")
    return epochs


def _summary(epochs) -> str:
    n = len(epochs)
    last = epochs[-1].get("test_neg_elbo") if epochs else None
    return f"{n} epoch{'s' if n != 1 else ''}" + (f" (test -ELBO {last:.2f})" if last is not None else "")


def run_caption_checked(run_dir, meta: dict, notes=None) -> str:
    """The caption of a run: from its checkpoint's own epoch records, never metrics.json's.

    run_dir/metrics.json is read and checked (an unreadable one is a DataError);
    where it disagrees with the checkpoint, a note saying so is appended to `notes`.
    """
    run_dir = Path(run_dir)
    epochs = meta["epochs"]                        # checked by load_checkpoint: one record per epoch
    theirs = read_metrics_epochs(run_dir / METRICS_FILE)
    if theirs is not None and notes is not None:
        key = lambda records: [r.get("test_neg_elbo") for r in records]
        if key(theirs) != key(epochs):
            notes.append(f"{run_dir / METRICS_FILE} records {_summary(theirs)} but {run_dir / CHECKPOINT_FILE} "
                         f"holds {_summary(epochs)}: the page shows the checkpoint's model and numbers")
    return run_caption(epochs)


def explorer_for_run(run_dir, data_dir=None, out=None, batch_size=1000, notes=None) -> Path:
    """Rebuild run_dir/explorer.html from run_dir/checkpoint.npz.

    The scatter is the MNIST test set encoded by the checkpoint's encoder (z
    means); the caption comes from the checkpoint's own epoch records.
    metrics.json, if there, is checked against them: `notes` (a list) gets a
    line when it disagrees.
    """
    run_dir = Path(run_dir)
    backend = get_backend("numpy")
    params, config, meta = load_run(run_dir, backend)     # say what is wrong before reading 10,000 images
    caption = run_caption_checked(run_dir, meta, notes)
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
                          np.concatenate(z_mean), mnist.y_test, caption=caption)


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr (exit 2), like every other error."""

    def error(self, message):
        self.exit(2, f"error: {message} (see --help)\n")


def main(argv=None) -> int:
    p = _OneLineParser(
        prog="python -m tinyvae.explorer", allow_abbrev=False,
        description="Write explorer.html, the interactive latent explorer, for a run directory "
                    "of a 2-D latent VAE or CVAE (from its checkpoint.npz; its metrics.json, if "
                    "there, is checked against it).")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="e.g. runs/mnist")
    p.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                   help="directory holding the four MNIST IDX files; without it: the cache")
    p.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="where to write the page; default RUN_DIR/explorer.html")
    args = p.parse_args(argv)
    notes = []
    try:
        path = explorer_for_run(args.run_dir, args.data_dir, args.out, notes=notes)
    except TinyVAEError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {path}: open it in a web browser (no server needed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
