"""Training and evaluation: minibatches, Adam, the test -ELBO, log p(x), and a run that fails cleanly.

This is the edge, not the core: it calls each model's adapter (tinyvae/models.py:
`train_step`, one minibatch's loss and gradients with its noise drawn there, and
`eval_terms`, each test image's numbers), plus core.vae.iw_log_px, and keeps the
bookkeeping (shuffling, progress bar, timing, files) out of the math. The model
is found from the config's class (models.for_config), so fit has no per-model
branch, and `steps` is the one minibatch loop (the benchmarks time it too).
The data are checked once, when fit starts; no step checks anything.

    config, tconfig = VAEConfig(), TrainConfig(epochs=10, seed=0)
    backend = get_backend("numpy", seed=tconfig.seed)
    result = fit(x_train, x_test, config, tconfig, backend, out_dir="runs/mnist")
    result.metrics["test_neg_elbo"]         # nats per image

Every loss number here is in nats per image: summed over pixels (recon) and
latent dimensions (KL), averaged over images.

Randomness. Each random step restarts the backend's generator on its own
stream, ``backend.reseed(STREAM_..., ...)``, so the random state of a run is
given by (seed, epoch) alone. A checkpoint taken after epoch e therefore holds
everything needed to continue: on NumPy a resumed run gives bitwise the same
numbers as an uninterrupted one. init_params draws from the bare stream
(seed,), which no other step uses.

Files in the output directory (tinyvae.checkpoint), each written atomically:

    checkpoint.npz   parameters, Adam state, and a JSON "meta" record
    metrics.json     config, backend, per-epoch numbers, final test numbers

How a run ends when something goes wrong, one mechanism each:

- before any training, the memory the model needs and the output folder
  (checkpoint.prepare_out_dir, which also removes dead runs' temp files) are
  checked: a problem is one line, and nothing has been trained in vain;
- an epoch whose numbers or weights are not finite stops the run with
  DivergenceError; it is never saved, so the last good checkpoint stays;
- a failed write is checkpoint.OutputError, and the file it would have
  replaced is unchanged;
- Ctrl-C becomes Interrupted, whose message says which epochs are saved.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from . import checks, models
from .checkpoint import (
    CHECKPOINT_FILE,
    METRICS_FILE,
    OutputError,
    check_checkpoint,
    check_output_path,
    check_resumable,
    checkpoint_bytes,
    format_bytes,
    hold_folder,
    load_checkpoint,
    prepare_out_dir,
    remove_if_empty,
    save_checkpoint,
    write_json,
)
from .checks import Bool, Checked, Int, Real
from .core.layers import one_hot
from .core.optim import Adam
from .core.vae import VAEConfig, init_params, iw_log_px, param_shapes
from .errors import CheckpointError, InputError, TinyVAEError


def model_name(config) -> str:
    """'vae', 'ae' or 'm2': the model of config's class."""
    return models.for_config(config).name

# The random streams of a run, as backend.reseed(*stream) arguments.
STREAM_TRAIN = 1          # (STREAM_TRAIN, epoch): shuffle, binarization, eps; epoch = 1, 2, ...
STREAM_EVAL = 2           # the test -ELBO's eps: the same every epoch, so epochs compare
STREAM_IW = 3             # the importance samples of the log p(x) estimate
STREAM_BINARIZE_TEST = 4  # the one fixed binarization of the test set
STREAM_PICTURES = 5       # prior samples for the pictures (used by demos/mnist.py)

PROGRESS_EVERY = 25      # steps between progress-bar updates (each one waits for the device)
PROGRESS_SECONDS = 10.0  # without a terminal: a plain progress line at most this often
IW_CHUNK_FLOATS = 1 << 22  # the importance samples are drawn in chunks of at most this many
                           # floats per layer output (16 MB in float32), so any k fits in memory


class DivergenceError(TinyVAEError, FloatingPointError):
    """Training produced NaN or inf: the loss, the test numbers, or the weights themselves."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during fit; its message says which epochs are saved and how to go on."""


class Progress:
    """A bar on a terminal; without one (a log file, a pipe), a plain line to stderr at most every
    PROGRESS_SECONDS, with the time left; nothing with progress=False. progress=True: always the bar."""

    def __init__(self, total, desc, unit, progress=None):
        tty = getattr(sys.stderr, "isatty", lambda: False)()
        self.lines = progress is None and not tty
        self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr,
                        disable=not (progress or (progress is None and tty)))
        self.total, self.desc, self.unit, self.done, self.note = total, desc, unit, 0, ""
        self.start = self.last = time.perf_counter()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()

    def update(self, n=1, note=None):
        self.bar.update(n)
        self.done += n
        if note is not None:
            self.note = note
            self.bar.set_postfix_str(note)
        now = time.perf_counter()
        if self.lines and now - self.last >= PROGRESS_SECONDS and self.done < self.total:
            left = (now - self.start) / self.done * (self.total - self.done)
            print(f"{self.desc}: {self.done}/{self.total} {self.unit}s{', ' + self.note if self.note else ''}, "
                  f"about {left:.0f} s left", file=sys.stderr, flush=True)
            self.last = now


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig(Checked):
    """How to train and evaluate. Defaults: the PyTorch example (Adam 1e-3, batch 128, 10 epochs).

    binarize:   resample each training pixel as Bernoulli(x) every epoch (the
                test set is binarized once, on a fixed stream).
    iw_k:       importance samples per image for the log p(x) estimate (0 = skip).
    iw_images:  how many test images (the first ones) that estimate uses.
    beta:       the KL weight of the training objective recon + beta KL (1: the ELBO).
    warmup_epochs: KL warm-up: beta grows linearly from 0 to `beta` over this many
                epochs, step by step (0: no warm-up); see kl_weight.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    binarize: bool = False
    iw_k: int = 100
    iw_images: int = 1000
    eval_batch_size: int = 1000
    beta: float = 1.0
    warmup_epochs: int = 0

    RULES = dict(epochs=Int(1), batch_size=Int(1), lr=Real(0, low_open=True), seed=Int(0), binarize=Bool(),
                 iw_k=Int(0), iw_images=Int(0), eval_batch_size=Int(1), beta=Real(0, fix="1 is the ELBO"),
                 warmup_epochs=Int(0))
    LABEL = "TrainConfig.{field}"

# The TrainConfig fields a resumed run must share with the checkpoint: the ones
# that change the numbers of the epochs still to come. (epochs may grow; the
# evaluation settings may change.)
RESUME_FIELDS = ("batch_size", "lr", "seed", "binarize", "beta", "warmup_epochs")


def kl_weight(step: int, steps_per_epoch: int, tconfig: TrainConfig) -> float:
    """The KL weight at global step `step` (1, 2, ...): beta * min(1, step / (warmup_epochs * steps_per_epoch)).

    A pure function of the step, so a resumed run continues the ramp exactly.
    No warm-up: beta at every step. Always a Python float (float32 stays float32).
    """
    if tconfig.warmup_epochs == 0:
        return tconfig.beta
    return tconfig.beta * min(1.0, step / (tconfig.warmup_epochs * steps_per_epoch))


# ---------------------------------------------------------------------------
# One epoch of training, and the two test numbers
# ---------------------------------------------------------------------------


def binarize(x, backend):
    """Sample each pixel as Bernoulli(x): x_b = [u < x], u ~ U[0, 1). Shapes: (N, D) -> (N, D)."""
    xp = backend.xp
    return xp.astype(backend.uniform(tuple(x.shape)) < x, backend.dtype)


def steps(params, optimizer, model, config, backend, x, order, batch_size, y=None, extra=None,
          binarize_batches=False, beta_at=None):
    """The one minibatch loop: for each batch of `order`, the model's train_step, then optimizer.step.

    Yields (B, parts) per step: the batch size and the model's numbers (0-d
    arrays, left on the device). beta_at(step) is the KL weight of step 1, 2, ...
    (1 when None). Shapes: x (N, D) on the backend; order (n,) row indices;
    y (N,) integer labels or None; extra: arrays every step sees whole.
    """
    xp = backend.xp
    n = order.shape[0]
    for step, start in enumerate(range(0, n, batch_size), start=1):
        rows = order[start:min(start + batch_size, n)]
        xb = xp.take(x, rows, axis=0)                                       # (B, D)
        if binarize_batches:
            xb = binarize(xb, backend)
        batch = {"x": xb, "y": None if y is None else xp.take(y, rows, axis=0), **(extra or {})}
        parts, grads = model.train_step(params, batch, backend, config, 1.0 if beta_at is None else beta_at(step))
        optimizer.step(params, grads)
        yield xb.shape[0], parts


def train_epoch(params, optimizer, x, backend, config, tconfig: TrainConfig,
                epoch: int, progress=None, y=None, extra=None) -> dict:
    """One pass over `x` in shuffled minibatches, one Adam step per batch (`steps`).

    Each step minimises the model's objective on the batch (the VAE's:
    L_b = mean_n [recon_n + beta_t kl_n], beta_t = kl_weight of the global step).
    The epoch's numbers are image-weighted means over the pass (the last batch
    may be smaller), in nats per image; they are summed on the device and read
    back only every PROGRESS_EVERY steps for the bar, and once at the end.

    Shapes: x (N, D) on the backend, already checked; y (N,) integer labels or
    None; extra: arrays every step sees whole (M2's labelled set, binarized once
    per epoch like the batches where the model names them extra_images). `epoch`
    counts from 1 and names the random stream. Returns the model's train_step
    numbers as floats ({"loss", "recon", "kl"} for the VAE).
    """
    model = models.for_config(config)
    n, bs = x.shape[0], tconfig.batch_size
    backend.reseed(STREAM_TRAIN, epoch)
    order = backend.asarray(backend.permutation(n))  # (N,) ints, uploaded once per epoch
    if tconfig.binarize and extra:
        extra = {k: binarize(v, backend) if k in model.extra_images else v for k, v in extra.items()}
    totals = {}
    n_steps = -(-n // bs)
    beta_at = lambda step: kl_weight((epoch - 1) * n_steps + step, n_steps, tconfig)  # noqa: E731
    with Progress(n_steps, f"epoch {epoch}", "step", progress) as bar:
        for step, (nb, parts) in enumerate(steps(params, optimizer, model, config, backend, x, order, bs,
                                                 y, extra, tconfig.binarize, beta_at), start=1):
            for k, v in parts.items():                                      # image-weighted sums, on device
                totals[k] = totals.get(k, 0.0) + v * nb
            note = f"loss {float(totals['loss']) / min(step * bs, n):.2f}" if step % PROGRESS_EVERY == 0 else None
            bar.update(1, note)
    return {k: float(v) / n for k, v in totals.items()}


def evaluate(params, x, backend, config, batch_size=1000, y=None) -> dict:
    """The model's test numbers on `x`, nats per image (the VAE: -ELBO with z sampled from q(z | x)).

    -ELBO = mean_n [ -log p(x_n | z_n) + KL(q(z | x_n) || p(z)) ],  z_n ~ q(z | x_n).
    Its noise comes from the fixed stream STREAM_EVAL, so the numbers of
    different epochs differ only through the parameters. y (N,): the labels
    (the CVAE needs them; M2 scores its classifier with them).

    Shapes: x (N, D) on the backend. Returns the means of the model's
    eval_terms as floats ({"neg_elbo", "recon", "kl"} for the VAE).
    """
    xp = backend.xp
    model = models.for_config(config)
    n = x.shape[0]
    backend.reseed(STREAM_EVAL)
    totals = {}
    for start in range(0, n, batch_size):
        batch = {"x": x[start:min(start + batch_size, n), :],                # (B, D)
                 "y": None if y is None else y[start:min(start + batch_size, n)]}
        for k, v in model.eval_terms(params, batch, backend, config).items():  # (B,) each
            totals[k] = totals.get(k, 0.0) + xp.sum(v)
    return {k: float(v) / n for k, v in totals.items()}


def iw_nll(params, x, backend, config: VAEConfig, k: int, batch_size=500, progress=None, y=None) -> float:
    """Importance-weighted estimate of -log p(x), nats per image, averaged over `x`.

    -log p(x_n) ~= -log (1/k) sum_j p(x_n | z_j) p(z_j) / q(z_j | x_n),  z_j ~ q(z | x_n)
    (vae.iw_log_px, log-sum-exp stable). It is never above the -ELBO in
    expectation, and tends to -log p(x) as k grows. eps from STREAM_IW.

    Any k runs in bounded memory: the k samples of a batch are drawn in chunks
    along k, one after another from the same stream (so the chunks are the rows
    of the one (k, B, L) draw), and the chunks' log-sums are combined exactly:
    log sum_j w_j = logaddexp over chunks c of (iw_log_px_c + log k_c), then
    minus log k for the mean. A chunk holds at most IW_CHUNK_FLOATS floats per
    layer output. docs/elbo.md#importance-weighting

    Shapes: x (N, D) on the backend; eps drawn (k_c, B, L) per chunk; y (N,)
    labels for the CVAE (then it is -log p(x | y)). Returns a float.
    """
    xp = backend.xp
    n, L = x.shape[0], config.latent_dim
    widest = max([config.input_dim, *(s[-1] for s in param_shapes(config).values())])
    backend.reseed(STREAM_IW)
    batches = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    chunk = [max(1, min(k, IW_CHUNK_FLOATS // ((stop - start) * widest))) for start, stop in batches]
    total = backend.zeros(())
    with Progress(sum(-(-k // c) for c in chunk), f"log p(x), k={k}", "chunk", progress) as bar:
        for (start, stop), c in zip(batches, chunk):
            xb = x[start:stop, :]                                          # (B, D)
            yb = None if y is None else one_hot(y[start:stop], config.n_classes, like=xb)
            log_sum = None                                                 # log sum_j w_j so far, (B,)
            for j in range(0, k, c):
                kc = min(c, k - j)
                eps = backend.normal((kc, stop - start, L))                # rows j..j+kc of (k, B, L)
                part = iw_log_px(params, xb, eps, config, y=yb) + math.log(kc)  # log sum over the chunk
                log_sum = part if log_sum is None else xp.logaddexp(log_sum, part)
                bar.update(1)
            total = total + xp.sum(log_sum - math.log(k))                  # log mean_j w_j, summed
    return -float(total) / n


# ---------------------------------------------------------------------------
# Before training: the memory the model needs
# ---------------------------------------------------------------------------


def _host_memory() -> int | None:
    """This machine's physical memory in bytes, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def memory_needed(config: VAEConfig, tconfig: TrainConfig, itemsize: int, n_images=None) -> int:
    """About how many bytes training holds at once, counted from the shapes alone (nothing allocated).

    4 copies of every parameter (the weights, their gradients, Adam's m and v),
    plus each layer's output for the larger of the two batch sizes, kept for
    the backward and its gradient (3 copies). For dense layers this is close;
    for conv layers, whose outputs are larger than their kernels, a lower bound.
    """
    shapes = param_shapes(config)
    n_params = sum(math.prod(s) for s in shapes.values())
    units = config.input_dim + sum(s[-1] for name, s in shapes.items() if name.endswith(".W"))
    batch = max(tconfig.batch_size, tconfig.eval_batch_size)
    batch = batch if n_images is None else min(batch, n_images)   # a batch never holds more than the data
    return itemsize * (4 * n_params + 3 * batch * units)


def check_memory(config: VAEConfig, tconfig: TrainConfig, backend, n_images=None):
    """Refuse, in one line naming the bytes, a model that cannot fit in this machine's memory.

    On the CPU backends the need is held against the physical memory before
    anything is allocated (so an impossible size never reaches the allocator,
    which might otherwise promise it and let the OOM killer end the run). A GPU
    reports its own out-of-memory error at the first allocation.
    """
    if backend.name == "cupy":
        return
    have = _host_memory()
    itemsize = 8 if backend.dtype_name == "float64" else 4
    need = memory_needed(config, tconfig, itemsize, n_images)
    if have is not None and need > have:
        n_params = sum(math.prod(s) for s in param_shapes(config).values())
        raise InputError(
            f"the model has {n_params:,} parameters: training it needs about {format_bytes(need)} of memory "
            f"(weights, gradients and Adam's two moments in {backend.dtype_name}, and the layer "
            f"outputs of a batch), more than this machine's {format_bytes(have)}: use smaller layers "
            "(--hidden, --latent-dim) or a smaller --batch-size"
        )


# ---------------------------------------------------------------------------
# The whole run
# ---------------------------------------------------------------------------

@dataclass
class FitResult:
    """What fit returns: the trained parameters (on the backend) and the metrics dict."""

    params: dict
    metrics: dict


def prepare_data(x, backend, config: VAEConfig, params, name: str):
    """A host (N, D) array in [0, 1] onto the backend, in its dtype, values checked once."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise InputError(f"{name} has dtype {x.dtype}: pass float pixels in [0, 1] "
                         "(uint8 images: tinyvae.data.to_unit_interval)")
    x = backend.asarray(x)
    checks.check_batch(x, params, config, values=True, name=name)
    return x


def prepare_labels(y, n, backend, config, name: str):
    """Host integer labels (n,) in [0, n_classes) onto the backend, or None; checked once."""
    if y is None:
        return None
    return backend.asarray(checks.check_labels(y, n, config.n_classes, name).astype(np.int64))


def _n_images(x, name) -> int:
    """N of an (N, D) array, or InputError naming it."""
    shape = np.shape(x)
    if len(shape) != 2:
        raise InputError(f"{name} has shape {shape}, expected (N, D): one flattened image per row")
    return int(shape[0])


def _start(config, tconfig, backend, ckpt_path, data, resume):
    """(params, Adam, finished epochs): fresh ones, or those saved in the checkpoint, all checked."""
    if not resume:
        backend.reseed()                      # init_params draws from stream (seed,)
        params = init_params(config, backend)
        return params, Adam(params, lr=tconfig.lr), []
    params, adam_state, meta = load_checkpoint(ckpt_path, backend)
    theirs = meta.get("model", "vae")                     # records before AE and M2 are the VAE's
    if theirs != model_name(config):
        raise CheckpointError(f"checkpoint {ckpt_path} holds a {theirs!r} model, not {model_name(config)!r}: "
                              "resume it with its own demo, or pass a new --out")
    # settings that came later take their then-only value in older records
    meta["train_config"] = {"beta": 1.0, "warmup_epochs": 0, **meta["train_config"]}
    check_resumable(meta, config, {k: getattr(tconfig, k) for k in RESUME_FIELDS}, data, ckpt_path)
    check_checkpoint({"param": params, "adam.m": adam_state["m"], "adam.v": adam_state["v"]},
                     param_shapes(config), ckpt_path)
    done = meta["epoch"]
    if done > tconfig.epochs:
        raise CheckpointError(
            f"{ckpt_path} already holds {done} epochs, more than the {tconfig.epochs} asked for "
            f"(--epochs): pass --epochs {done + 1} or more to train on, or --epochs {done} to "
            "redo only the final evaluation"
        )
    optimizer = Adam(params, lr=tconfig.lr)
    optimizer.load_state_dict(adam_state)
    return params, optimizer, list(meta["epochs"])


def _epoch_record(epoch, train, test, seconds, eval_seconds, beta) -> dict:
    """One entry of metrics.json's "epochs": the train and test numbers (nats per image), seconds.

    For the VAE: train_loss is the objective recon + beta kl that was minimised;
    train_neg_elbo = train_recon + train_kl is the negative ELBO (beta = 1), as
    every test_neg_elbo is, whatever beta trained the model.
    """
    record = {"epoch": epoch, **{f"train_{k}": v for k, v in train.items()}}
    if "recon" in train and "kl" in train:
        record["train_neg_elbo"] = train["recon"] + train["kl"]
    record.update({f"test_{k}": v for k, v in test.items()})
    record.update(beta=beta, seconds=seconds, eval_seconds=eval_seconds)
    return record


def _metrics(config, tconfig, backend, data, epochs, iw=None) -> dict:
    """The metrics.json record: settings, per-epoch numbers, the final test numbers."""
    out = {"model": model_name(config), "config": config.to_dict(), "train_config": tconfig.to_dict(),
           "backend": backend.name, "dtype": backend.dtype_name, "data": data,
           "epochs": epochs}
    if epochs:
        out.update({k: v for k, v in epochs[-1].items() if k.startswith("test_")})
    if iw is not None:
        out.update(iw)
    return out


def _train_and_test(params, optimizer, x_train, x_test, backend, config, tconfig, epoch, progress,
                    y_train=None, y_test=None, extra=None):
    """One epoch of training, then the test numbers: the epoch's metrics.json record."""
    backend.synchronize()
    t0 = time.perf_counter()
    train = train_epoch(params, optimizer, x_train, backend, config, tconfig, epoch, progress, y_train, extra)
    backend.synchronize()
    t1 = time.perf_counter()
    test = evaluate(params, x_test, backend, config, tconfig.eval_batch_size, y_test)
    n_steps = -(-x_train.shape[0] // tconfig.batch_size)
    beta = kl_weight(epoch * n_steps, n_steps, tconfig)           # the weight at the epoch's last step
    return _epoch_record(epoch, train, test, t1 - t0, time.perf_counter() - t1, beta)


def _final_iw(params, x_test, backend, config, tconfig, progress, saved, ckpt_path, y_test=None) -> dict:
    """The importance-weighted -log p(x) (-log p(x | y) for the CVAE) of the first iw_images test images."""
    m = min(tconfig.iw_images, x_test.shape[0])
    x_iw = x_test[:m, :]
    nll = iw_nll(params, x_iw, backend, config, tconfig.iw_k, progress=progress,
                 y=None if y_test is None else y_test[:m])
    if not math.isfinite(nll):
        raise DivergenceError(f"the -log p(x) estimate came out {nll} although the weights are "
                              f"finite: {_saved_phrase(saved, ckpt_path)}; skip the estimate with --iw-k 0")
    return {"test_iw_nll": nll, "iw_k": tconfig.iw_k, "iw_images": int(x_iw.shape[0])}


def _state_arrays(params, optimizer) -> list:
    """Every array a checkpoint saves: the parameters and Adam's m and v."""
    state = optimizer.state_dict()
    return [*params.values(), *state["m"].values(), *state["v"].values()]


def _all_finite(backend, arrays) -> bool:
    """Whether every entry of every array is finite (one device read per array)."""
    xp = backend.xp
    return all(bool(xp.all(xp.isfinite(a))) for a in arrays)


def _saved_phrase(saved: int, ckpt_path) -> str:
    """'epoch 1 is saved in DIR/checkpoint.npz' / 'epochs 1-3 are saved in ...'."""
    which = "epoch 1 is" if saved == 1 else f"epochs 1-{saved} are"
    return f"{which} saved in {ckpt_path}"


def _diverged(epoch, record, weights_finite, saved, ckpt_path, had_checkpoint, lr) -> DivergenceError:
    if "train_neg_elbo" in record and "test_neg_elbo" in record:
        numbers_ = f"train -ELBO {record['train_neg_elbo']:.4g}, test -ELBO {record['test_neg_elbo']:.4g}"
    else:
        numbers_ = ", ".join(f"{k.replace('_', ' ')} {v:.4g}" for k, v in record.items()
                             if k.startswith(("train_", "test_")))
    what = numbers_ if weights_finite else numbers_ + ", and the weights are NaN or inf"
    kept = (f"the last good checkpoint ({_saved_phrase(saved, ckpt_path)}) is kept" if saved
            else "nothing of this run was saved")
    again = " and --overwrite (or a new --out)" if saved or had_checkpoint else ""
    return DivergenceError(f"training diverged in epoch {epoch} ({what}): {kept}; start again with a "
                           f"smaller learning rate than {lr:g} (--lr){again}")


def _interrupted(phase, epoch, saved, ckpt_path, had_checkpoint) -> Interrupted:
    if phase == "iw":
        return Interrupted(f"interrupted during the final -log p(x) estimate: "
                           f"{_saved_phrase(saved, ckpt_path)}; --resume computes the estimate again")
    if saved:
        return Interrupted(f"interrupted in epoch {epoch}: {_saved_phrase(saved, ckpt_path)}; "
                           "continue with --resume")
    earlier = (f"; the checkpoint of the earlier run in {ckpt_path.parent} is unchanged, so start "
               "again with --overwrite" if had_checkpoint else "; start it again")
    return Interrupted(f"interrupted in epoch {epoch}, before the first checkpoint: nothing of "
                       f"this run was saved{earlier}")


def fit(x_train, x_test, config: VAEConfig, tconfig: TrainConfig, backend, out_dir,
        resume=False, overwrite=False, progress=None, on_epoch=None,
        y_train=None, y_test=None, labelled=None) -> FitResult:
    """Train for tconfig.epochs epochs, checkpointing and writing metrics.json after each.

    The model is the one of config's class (models.MODELS): a VAEConfig trains the VAE
    (the CVAE when n_classes > 0: pass y_train and y_test, integer labels), an
    AEConfig the (denoising) autoencoder, an M2Config M2: x_train is then the
    unlabelled set, labelled = (x_labelled, y_labelled) the labelled one, and
    y_test scores the classifier.

    x_train (N, D), x_test (M, D): host float arrays in [0, 1]. `backend` must
    be seeded with tconfig.seed. With resume=True, continue from
    out_dir/checkpoint.npz (same config required) up to tconfig.epochs. A new
    run refuses to replace an existing checkpoint unless overwrite=True.
    progress: True/False, or None for a bar only on a terminal. on_epoch(record)
    is called after each epoch. At the end, if tconfig.iw_k > 0, the
    importance-weighted -log p(x) of the first iw_images test images.

    Fails in one line, before training: a bad setting, a model too large for
    memory, an output folder that cannot be written (OutputError), a checkpoint
    that does not fit. During training: DivergenceError (nothing non-finite is
    saved), OutputError (a failed write; the previous files are unchanged),
    Interrupted (Ctrl-C; says which epochs are saved).
    """
    if not isinstance(out_dir, (str, os.PathLike)):
        raise InputError(f"out_dir must be a folder name, got {out_dir!r}: pass e.g. out_dir='runs/mnist'")
    if backend.seed != tconfig.seed:
        raise InputError(f"backend seed {backend.seed} differs from TrainConfig.seed {tconfig.seed}: "
                         "make it with get_backend(name, seed=tconfig.seed)")
    if resume and overwrite:
        raise InputError("resume and overwrite contradict each other (--resume continues the "
                         "checkpoint, --overwrite replaces it): pass only one")
    model = models.for_config(config)
    data = {"n_train": _n_images(x_train, "x_train"), "n_test": _n_images(x_test, "x_test")}
    data.update({k: _n_images(v, "x_labelled") for k, v in model.inputs(config, y_train, y_test, labelled).items()})
    check_memory(config, tconfig, backend, n_images=max(data.values()))
    itemsize = 8 if backend.dtype_name == "float64" else 4
    ckpt_size = checkpoint_bytes(param_shapes(config), itemsize)
    ckpt_path = check_output_path(out_dir) / CHECKPOINT_FILE
    old_size = ckpt_path.stat().st_size if ckpt_path.is_file() else 0
    copies = 1 if tconfig.epochs == 1 else 2      # from epoch 2 on, the new file beside the old
    if not resume and not overwrite and ckpt_path.exists():
        raise CheckpointError(f"{ckpt_path.parent} already holds a checkpoint from an earlier run: continue it "
                              "with --resume, start over with --overwrite, or pass a new --out")
    out_dir = prepare_out_dir(out_dir, (CHECKPOINT_FILE, METRICS_FILE), overwrite=resume or overwrite,
                              need_bytes=max(ckpt_size, copies * ckpt_size - old_size))
    try:
        with hold_folder(out_dir):                # a second run on this folder is refused, naming this one
            return _run(x_train, x_test, config, tconfig, backend, out_dir, resume, progress, on_epoch,
                        y_train, y_test, labelled, model, data)
    finally:
        remove_if_empty(out_dir)                  # a run that failed before writing leaves no folder behind


def _run(x_train, x_test, config, tconfig, backend, out_dir, resume, progress, on_epoch,
         y_train, y_test, labelled, model, data) -> FitResult:
    """fit's training, once the output folder is checked and held: the epochs, each saved, then the IW bound."""
    ckpt_path = out_dir / CHECKPOINT_FILE
    had_checkpoint = ckpt_path.exists()
    params, optimizer, epochs = _start(config, tconfig, backend, ckpt_path, data, resume)
    y_train = prepare_labels(y_train, data["n_train"], backend, config, "y_train")
    y_test = prepare_labels(y_test, data["n_test"], backend, config, "y_test")
    extra = None if labelled is None or "n_labelled" not in data else {   # M2's labelled set, whole
        "x_labelled": prepare_data(labelled[0], backend, config, params, "x_labelled"),
        "y_labelled": prepare_labels(labelled[1], data["n_labelled"], backend, config, "y_labelled")}
    x_train = prepare_data(x_train, backend, config, params, "x_train")
    x_test = prepare_data(x_test, backend, config, params, "x_test")
    if tconfig.binarize:
        backend.reseed(STREAM_BINARIZE_TEST)
        x_test = binarize(x_test, backend)

    saved = len(epochs)          # epochs of this run that checkpoint.npz holds
    phase, epoch, iw = "train", saved + 1, None
    # NumPy warns at every overflow, pages of it in a diverging run; each epoch is
    # checked for NaN and inf instead, and a bad one is reported in one line.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        try:
            for epoch in range(len(epochs) + 1, tconfig.epochs + 1):
                record = _train_and_test(params, optimizer, x_train, x_test, backend, config,
                                         tconfig, epoch, progress, y_train, y_test, extra)
                weights_finite = _all_finite(backend, _state_arrays(params, optimizer))
                if not (weights_finite and all(math.isfinite(v) for v in record.values())):
                    raise _diverged(epoch, record, weights_finite, saved, ckpt_path,
                                    had_checkpoint, tconfig.lr)
                epochs.append(record)                      # only finite epochs are ever saved
                meta = {"model": model.name, "config": config.to_dict(), "train_config": tconfig.to_dict(),
                        "data": data,
                        "epoch": epoch, "backend": backend.name, "dtype": backend.dtype_name,
                        "rng": {"seed": tconfig.seed, "next_train_stream": [STREAM_TRAIN, epoch + 1]},
                        "epochs": epochs}    # the run's whole random state is (seed, next epoch)
                save_checkpoint(ckpt_path, params, optimizer, meta, backend)
                saved = epoch
                write_json(out_dir / METRICS_FILE, _metrics(config, tconfig, backend, data, epochs))
                if on_epoch is not None:
                    on_epoch(epochs[-1])
            phase = "iw"
            if model.iw and tconfig.iw_k > 0 and tconfig.iw_images > 0:
                iw = _final_iw(params, x_test, backend, config, tconfig, progress, saved, ckpt_path, y_test)
        except KeyboardInterrupt:
            raise _interrupted(phase, epoch, saved, ckpt_path, had_checkpoint) from None
    metrics = _metrics(config, tconfig, backend, data, epochs, iw)
    write_json(out_dir / METRICS_FILE, metrics)
    return FitResult(params, metrics)


__all__ = ["TrainConfig", "FitResult", "DivergenceError", "Interrupted", "OutputError", "fit",
           "train_epoch", "evaluate", "iw_nll", "binarize", "check_memory", "memory_needed",
           "load_checkpoint", "save_checkpoint", "write_json", "RESUME_FIELDS", "steps"]
