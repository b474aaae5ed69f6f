"""Training and evaluation: minibatches, Adam, the test -ELBO, log p(x), checkpoints.

This is the edge, not the core: it only calls model.loss_and_grads and
model.neg_elbo_terms / iw_log_px, and keeps the bookkeeping (shuffling, progress
bar, timing, files) out of the math.

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

Files in the output directory, each written atomically (temporary file, fsync,
os.replace), so a crash leaves the previous version, never half a file:

    checkpoint.npz   parameters, Adam state, and a JSON "meta" record
    metrics.json     config, backend, per-epoch numbers, final test numbers
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
import zipfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .errors import CheckpointError, InputError
from .vae import VAEConfig, check_batch, init_params, iw_log_px, loss_and_grads, neg_elbo_terms
from .optim import Adam

# The random streams of a run, as backend.reseed(*stream) arguments.
STREAM_TRAIN = 1          # (STREAM_TRAIN, epoch): shuffle, binarization, eps; epoch = 1, 2, ...
STREAM_EVAL = 2           # the test -ELBO's eps: the same every epoch, so epochs compare
STREAM_IW = 3             # the importance samples of the log p(x) estimate
STREAM_BINARIZE_TEST = 4  # the one fixed binarization of the test set
STREAM_PICTURES = 5       # prior samples for the pictures (used by demos/mnist.py)

CHECKPOINT_FILE = "checkpoint.npz"
METRICS_FILE = "metrics.json"
CHECKPOINT_FORMAT = 1

PROGRESS_EVERY = 25  # steps between progress-bar updates (each one waits for the device)


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """How to train and evaluate. Defaults: the PyTorch example (Adam 1e-3, batch 128, 10 epochs).

    binarize:   resample each training pixel as Bernoulli(x) every epoch (the
                test set is binarized once, on a fixed stream).
    iw_k:       importance samples per image for the log p(x) estimate (0 = skip).
    iw_images:  how many test images (the first ones) that estimate uses.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    binarize: bool = False
    iw_k: int = 100
    iw_images: int = 1000
    eval_batch_size: int = 1000

    def __post_init__(self):
        positive = {"epochs": self.epochs, "batch_size": self.batch_size,
                    "eval_batch_size": self.eval_batch_size}
        for name, value in positive.items():
            if int(value) != value or value < 1:
                raise InputError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        for name, value in {"iw_k": self.iw_k, "iw_images": self.iw_images, "seed": self.seed}.items():
            if int(value) != value or value < 0:
                raise InputError(f"TrainConfig.{name} must be an integer >= 0, got {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"TrainConfig.lr must be a positive number, got {self.lr!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return cls(**d)


# The TrainConfig fields a resumed run must share with the checkpoint: the ones
# that change the numbers of the epochs still to come. (epochs may grow; the
# evaluation settings may change.)
RESUME_FIELDS = ("batch_size", "lr", "seed", "binarize")


# ---------------------------------------------------------------------------
# One epoch of training, and the two test numbers
# ---------------------------------------------------------------------------


def binarize(x, backend):
    """Sample each pixel as Bernoulli(x): x_b = [u < x], u ~ U[0, 1). Shapes: (N, D) -> (N, D)."""
    xp = backend.xp
    return xp.astype(backend.uniform(tuple(x.shape)) < x, backend.dtype)


def train_epoch(params, optimizer, x, backend, config: VAEConfig, tconfig: TrainConfig,
                epoch: int, progress=None) -> dict:
    """One pass over `x` in shuffled minibatches, one Adam step per batch.

    Each step minimises the batch's negative ELBO, L_b = mean_n [recon_n + kl_n].
    The epoch's numbers are image-weighted means over the pass (the last batch
    may be smaller), in nats per image; they are summed on the device and read
    back only every PROGRESS_EVERY steps for the bar, and once at the end.

    Shapes: x (N, D) on the backend, already checked. `epoch` counts from 1 and
    names the random stream. Returns {"neg_elbo", "recon", "kl"} as floats.
    """
    xp = backend.xp
    n, bs, L = x.shape[0], tconfig.batch_size, config.latent_dim
    backend.reseed(STREAM_TRAIN, epoch)
    order = backend.asarray(backend.permutation(n))  # (N,) ints, uploaded once per epoch
    total_loss, total_recon, total_kl = backend.zeros(()), backend.zeros(()), backend.zeros(())
    n_steps = -(-n // bs)
    with tqdm(total=n_steps, desc=f"epoch {epoch}", unit="step", leave=False,
              disable=None if progress is None else not progress, file=sys.stderr) as bar:
        for step, start in enumerate(range(0, n, bs), start=1):
            xb = xp.take(x, order[start:min(start + bs, n)], axis=0)      # (B, D)
            if tconfig.binarize:
                xb = binarize(xb, backend)
            nb = xb.shape[0]
            eps = backend.normal((nb, L))                          # (B, L)
            parts, grads = loss_and_grads(params, xb, eps, config, check_values=False)
            optimizer.step(params, grads)
            total_loss = total_loss + parts.loss * nb              # image-weighted sums, on device
            total_recon = total_recon + parts.recon * nb
            total_kl = total_kl + parts.kl * nb
            bar.update(1)
            if step % PROGRESS_EVERY == 0:
                bar.set_postfix(neg_elbo=f"{float(total_loss) / min(step * bs, n):.2f}")
    return {"neg_elbo": float(total_loss) / n, "recon": float(total_recon) / n,
            "kl": float(total_kl) / n}


def evaluate(params, x, backend, config: VAEConfig, batch_size=1000) -> dict:
    """The negative ELBO on `x`, with z sampled from q(z | x), nats per image.

    -ELBO = mean_n [ -log p(x_n | z_n) + KL(q(z | x_n) || p(z)) ],  z_n ~ q(z | x_n).
    eps comes from the fixed stream STREAM_EVAL, so the numbers of different
    epochs differ only through the parameters.

    Shapes: x (N, D) on the backend. Returns {"neg_elbo", "recon", "kl"} as floats.
    """
    xp = backend.xp
    n = x.shape[0]
    backend.reseed(STREAM_EVAL)
    total_recon, total_kl = backend.zeros(()), backend.zeros(())
    for start in range(0, n, batch_size):
        xb = x[start:min(start + batch_size, n), :]                          # (B, D)
        eps = backend.normal((xb.shape[0], config.latent_dim))       # (B, L)
        recon, kl = neg_elbo_terms(params, xb, eps, config)          # (B,) each
        total_recon = total_recon + xp.sum(recon)
        total_kl = total_kl + xp.sum(kl)
    recon, kl = float(total_recon) / n, float(total_kl) / n
    return {"neg_elbo": recon + kl, "recon": recon, "kl": kl}


def iw_nll(params, x, backend, config: VAEConfig, k: int, batch_size=500) -> float:
    """Importance-weighted estimate of -log p(x), nats per image, averaged over `x`.

    -log p(x_n) ~= -log (1/k) sum_j p(x_n | z_j) p(z_j) / q(z_j | x_n),  z_j ~ q(z | x_n)
    (model.iw_log_px, log-sum-exp stable). It is never above the -ELBO in
    expectation, and tends to -log p(x) as k grows. eps from STREAM_IW.

    Shapes: x (N, D) on the backend; eps drawn (k, B, L) per batch. Returns a float.
    """
    xp = backend.xp
    n = x.shape[0]
    backend.reseed(STREAM_IW)
    total = backend.zeros(())
    for start in range(0, n, batch_size):
        xb = x[start:min(start + batch_size, n), :]                                # (B, D)
        eps = backend.normal((k, xb.shape[0], config.latent_dim))         # (k, B, L)
        total = total + xp.sum(iw_log_px(params, xb, eps, config))        # sum of (B,)
    return -float(total) / n


# ---------------------------------------------------------------------------
# Files: atomic writes, the checkpoint, metrics.json
# ---------------------------------------------------------------------------


def _atomic_write(path: Path, write):
    """Call write(file) on a temporary file beside `path`, fsync it, then rename it to `path`.

    os.replace is atomic within one directory: readers see the old file or the
    new one, never a half-written one, even if the process dies mid-write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # still there only if something failed


def write_json(path, obj):
    """Write `obj` as indented JSON to `path`, atomically."""
    text = json.dumps(obj, indent=2, allow_nan=True) + "\n"
    _atomic_write(Path(path), lambda f: f.write(text.encode()))


def save_checkpoint(path, params: dict, optimizer: Adam, meta: dict, backend):
    """Save parameters, Adam state and `meta` (JSON-able) to an .npz file, atomically.

    Arrays: "param/<name>", "adam.m/<name>", "adam.v/<name>" (host NumPy copies);
    "meta": one JSON string holding `meta` plus the Adam step count t.
    No pickles: load_checkpoint reads it with allow_pickle=False.
    """
    state = optimizer.state_dict()
    arrays = {f"param/{k}": backend.to_numpy(p) for k, p in params.items()}
    arrays.update({f"adam.m/{k}": backend.to_numpy(a) for k, a in state["m"].items()})
    arrays.update({f"adam.v/{k}": backend.to_numpy(a) for k, a in state["v"].items()})
    record = {"format": CHECKPOINT_FORMAT, **meta, "adam": {"t": state["t"], "lr": optimizer.lr}}
    arrays["meta"] = np.array(json.dumps(record))
    _atomic_write(Path(path), lambda f: np.savez(f, **arrays))


def load_checkpoint(path, backend):
    """Read a checkpoint written by save_checkpoint: (params, adam_state, meta).

    Arrays come back on `backend`, in its dtype; adam_state is what
    Adam.load_state_dict takes. A missing, truncated or foreign file raises
    CheckpointError, never a zipfile or NumPy traceback.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: run without --resume to start a new run there")
    try:
        if not zipfile.is_zipfile(path):
            raise ValueError("not an .npz (zip) file")
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"][()]))
            arrays = {key: np.array(f[key]) for key in f.files if key != "meta"}
        if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"unknown checkpoint format {meta.get('format')!r}")
        params, m, v = {}, {}, {}
        for key, a in arrays.items():
            group, name = key.split("/", 1)
            {"param": params, "adam.m": m, "adam.v": v}[group][name] = backend.asarray(a)
        adam_state = {"t": int(meta["adam"]["t"]), "m": m, "v": v}
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError,
            zipfile.BadZipFile, zlib.error) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise CheckpointError(
            f"checkpoint {path} is unreadable or corrupt ({reason}): "
            "delete it and start again without --resume, or use a new --out"
        ) from None
    return params, adam_state, meta


def check_resumable(meta: dict, config: VAEConfig, tconfig: TrainConfig, data: dict, path):
    """Raise CheckpointError naming every field where `meta` differs from this run.

    Compared: the whole model config, RESUME_FIELDS of the train config, and
    the data sizes. Anything else (epochs, evaluation settings) may change.
    """
    try:
        theirs = VAEConfig.from_dict(meta["config"]).to_dict()
        theirs_train = dict(meta["train_config"])
        if not isinstance(meta["epochs"], list) or len(meta["epochs"]) != meta["epoch"]:
            raise ValueError("the epoch history does not match the epoch count")
    except (KeyError, TypeError, ValueError, InputError) as e:
        raise CheckpointError(f"checkpoint {path} has no readable config or history "
                              f"({e}): use a new --out") from None
    pairs = [(k, theirs.get(k), v) for k, v in config.to_dict().items()]
    pairs += [(k, theirs_train.get(k), getattr(tconfig, k)) for k in RESUME_FIELDS]
    pairs += [(k, meta.get("data", {}).get(k), v) for k, v in data.items()]
    diffs = [f"{k}: {a!r} in the checkpoint, {b!r} now" for k, a, b in pairs if a != b]
    if diffs:
        raise CheckpointError(
            f"checkpoint {path} is from another configuration ({'; '.join(diffs)}): "
            "resume with the same settings, or pass a new --out to start a new run"
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
    x = backend.asarray(np.asarray(x))
    if not backend.xp.isdtype(x.dtype, "real floating"):
        raise InputError(f"{name} has dtype {x.dtype}: pass float pixels in [0, 1] "
                         "(uint8 images: tinyvae.data.to_unit_interval)")
    try:
        check_batch(x, params, config, check_values=True)
    except InputError as e:
        raise InputError(f"{name}: {e}") from None
    return x


def _start(config, tconfig, backend, ckpt_path, data, resume):
    """(params, Adam, finished epochs): fresh ones, or those saved in the checkpoint."""
    if not resume:
        backend.reseed()                      # init_params draws from stream (seed,)
        params = init_params(config, backend)
        return params, Adam(params, lr=tconfig.lr), []
    params, adam_state, meta = load_checkpoint(ckpt_path, backend)
    check_resumable(meta, config, tconfig, data, ckpt_path)
    optimizer = Adam(params, lr=tconfig.lr)
    optimizer.load_state_dict(adam_state)
    return params, optimizer, list(meta["epochs"])


def _epoch_record(epoch, train, test, seconds, eval_seconds) -> dict:
    """One entry of metrics.json's "epochs": nats per image, and seconds."""
    return {"epoch": epoch,
            "train_neg_elbo": train["neg_elbo"], "train_recon": train["recon"], "train_kl": train["kl"],
            "test_neg_elbo": test["neg_elbo"], "test_recon": test["recon"], "test_kl": test["kl"],
            "seconds": seconds, "eval_seconds": eval_seconds}


def _metrics(config, tconfig, backend, data, epochs, iw=None) -> dict:
    """The metrics.json record: settings, per-epoch numbers, the final test numbers."""
    out = {"config": config.to_dict(), "train_config": tconfig.to_dict(),
           "backend": backend.name, "dtype": backend.dtype_name, "data": data,
           "epochs": epochs}
    if epochs:
        last = epochs[-1]
        out.update(test_neg_elbo=last["test_neg_elbo"], test_recon=last["test_recon"],
                   test_kl=last["test_kl"])
    if iw is not None:
        out.update(iw)
    return out


def fit(x_train, x_test, config: VAEConfig, tconfig: TrainConfig, backend, out_dir,
        resume=False, overwrite=False, progress=None, on_epoch=None) -> FitResult:
    """Train for tconfig.epochs epochs, checkpointing and writing metrics.json after each.

    x_train (N, D), x_test (M, D): host float arrays in [0, 1]. `backend` must
    be seeded with tconfig.seed. With resume=True, continue from
    out_dir/checkpoint.npz (same config required) up to tconfig.epochs. A new
    run refuses to replace an existing checkpoint unless overwrite=True.
    progress: True/False, or None for a bar only on a terminal. on_epoch(record)
    is called after each epoch. At the end, if tconfig.iw_k > 0, the
    importance-weighted -log p(x) of the first iw_images test images.
    """
    if backend.seed != tconfig.seed:
        raise InputError(f"backend seed {backend.seed} differs from TrainConfig.seed {tconfig.seed}: "
                         "make it with get_backend(name, seed=tconfig.seed)")
    out_dir = Path(out_dir)
    ckpt_path = out_dir / CHECKPOINT_FILE
    data = {"n_train": int(np.shape(x_train)[0]), "n_test": int(np.shape(x_test)[0])}
    if not resume and not overwrite and ckpt_path.exists():
        raise CheckpointError(
            f"{out_dir} already holds a checkpoint from an earlier run: continue it with "
            "--resume, start over with --overwrite, or pass a new --out"
        )

    params, optimizer, epochs = _start(config, tconfig, backend, ckpt_path, data, resume)
    x_train = prepare_data(x_train, backend, config, params, "x_train")
    x_test = prepare_data(x_test, backend, config, params, "x_test")
    if tconfig.binarize:
        backend.reseed(STREAM_BINARIZE_TEST)
        x_test = binarize(x_test, backend)

    for epoch in range(len(epochs) + 1, tconfig.epochs + 1):
        backend.synchronize()
        t0 = time.perf_counter()
        train = train_epoch(params, optimizer, x_train, backend, config, tconfig, epoch, progress)
        backend.synchronize()
        t1 = time.perf_counter()
        test = evaluate(params, x_test, backend, config, tconfig.eval_batch_size)
        epochs.append(_epoch_record(epoch, train, test, t1 - t0, time.perf_counter() - t1))
        meta = {"config": config.to_dict(), "train_config": tconfig.to_dict(), "data": data,
                "epoch": epoch, "backend": backend.name, "dtype": backend.dtype_name,
                "rng": {"seed": tconfig.seed, "next_train_stream": [STREAM_TRAIN, epoch + 1]},
                "epochs": epochs}    # the run's whole random state is (seed, next epoch)
        save_checkpoint(ckpt_path, params, optimizer, meta, backend)
        write_json(out_dir / METRICS_FILE, _metrics(config, tconfig, backend, data, epochs))
        if on_epoch is not None:
            on_epoch(epochs[-1])

    iw = None
    if tconfig.iw_k > 0 and tconfig.iw_images > 0:
        x_iw = x_test[:min(tconfig.iw_images, x_test.shape[0]), :]
        iw = {"test_iw_nll": iw_nll(params, x_iw, backend, config, tconfig.iw_k),
              "iw_k": tconfig.iw_k, "iw_images": int(x_iw.shape[0])}
    metrics = _metrics(config, tconfig, backend, data, epochs, iw)
    write_json(out_dir / METRICS_FILE, metrics)
    return FitResult(params, metrics)
