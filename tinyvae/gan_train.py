"""Training the GAN: two Adam optimizers taking turns, one checkpoint, one metrics.json, a clean end.

This is the edge, not the core: the math is tinyvae/core/gan.py (each player's
loss_and_grads). Every minibatch runs one step of each player, in the usual order:

    z ~ N(0, I)                       (drawn here, on the run's stream)
    D step:  d, grads = d_loss_and_grads(params, x_batch, z)  ->  Adam_D updates dis.* only
    G step:  g_loss_and_grads(params, z, d.fakes)             ->  Adam_G updates gen.* only

The G step is on the same z and reuses the D step's pass through G (d.fakes): G has
not changed in between, so running it again would give the same numbers.

    config, tconfig = GANConfig(), GANTrainConfig(epochs=20)
    backend = get_backend("numpy", seed=tconfig.seed)
    result = fit_gan(x_train, x_test, config, tconfig, backend, out_dir="runs/gan")

The files, their atomic writes, the folder checks and lock, the random streams
and the way a run fails (one line; DivergenceError, OutputError, Interrupted)
are train.fit's, reused: checkpoint.npz holds both players' weights and both
Adams' moments (their names, gen.* and dis.*, never clash), so a resumed run
continues exactly (on NumPy bit for bit).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import numpy as np

from .checkpoint import (CHECKPOINT_FILE, METRICS_FILE, check_checkpoint, check_output_path, check_resumable,
                         checkpoint_bytes, hold_folder, load_checkpoint, prepare_out_dir, remove_if_empty,
                         save_checkpoint, write_json)
from .checks import Checked, Int, Real, check_batch
from .core import gan
from .core.gan import GANConfig
from .core.optim import Adam
from .core.vae import init_params, param_shapes
from .errors import CheckpointError, InputError
from .train import (STREAM_EVAL, STREAM_TRAIN, DivergenceError, FitResult, Interrupted, Progress, check_memory)

MODEL = "gan"                  # the checkpoint record's "model"
EVAL_IMAGES = 10000            # test images (and as many fakes) D is scored on after each epoch


@dataclass(frozen=True)
class GANTrainConfig(Checked):
    """How to train the GAN. Defaults: the usual recipe (Radford et al. 2016): Adam lr 2e-4, beta1 0.5."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-4               # both players
    beta1: float = 0.5
    beta2: float = 0.999
    seed: int = 0

    RULES = dict(epochs=Int(1), batch_size=Int(1), lr=Real(0, low_open=True, fix="2e-4 is the usual"),
                 beta1=Real(0, 1, high_open=True, fix="0.5 is the usual"),
                 beta2=Real(0, 1, high_open=True, fix="0.999 is the usual"), seed=Int(0))
    LABEL = "GANTrainConfig.{field}"

    eval_batch_size = 1000         # what train.check_memory reads of a TrainConfig


RESUME_FIELDS = ("batch_size", "lr", "beta1", "beta2", "seed")


class Players:
    """The two Adams as one optimizer for save_checkpoint: their states joined by parameter name."""

    def __init__(self, params: dict, tconfig: GANTrainConfig):
        betas = (tconfig.beta1, tconfig.beta2)
        self.lr = tconfig.lr
        self.gen, self.dis = gan.player(params, "gen"), gan.player(params, "dis")   # the same arrays
        self.adam = {name: Adam(weights, lr=tconfig.lr, betas=betas)
                     for name, weights in (("gen", self.gen), ("dis", self.dis))}

    def state_dict(self) -> dict:
        g, d = self.adam["gen"].state_dict(), self.adam["dis"].state_dict()
        return {"t": g["t"], "m": {**g["m"], **d["m"]}, "v": {**g["v"], **d["v"]}}

    def load_state_dict(self, state: dict):
        for prefix, adam in self.adam.items():
            adam.load_state_dict({"t": state["t"], "m": gan.player(state["m"], prefix),
                                  "v": gan.player(state["v"], prefix)})


def train_epoch(params, players: Players, x, backend, config: GANConfig, tconfig: GANTrainConfig, epoch: int,
                progress=None) -> dict:
    """One pass over x (N, D) in shuffled minibatches, a D step then a G step on each.

    Returns the image-weighted means over the pass: d_loss (= d_real + d_fake), d_real
    (-log D(x)), d_fake (-log(1 - D(G(z)))), g_loss (-log D(G(z'))), nats per image, and
    D's accuracy on the batch's real images and fakes (acc_real, acc_fake), each taken
    before that step's update. The stream (STREAM_TRAIN, epoch) gives the order and every z;
    each batch's z serves both players' steps.
    """
    xp = backend.xp
    n, bs, L = x.shape[0], tconfig.batch_size, config.latent_dim
    backend.reseed(STREAM_TRAIN, epoch)
    order = backend.asarray(backend.permutation(n))
    totals, seen = {}, 0
    with Progress(-(-n // bs), f"epoch {epoch}", "step", progress) as bar:
        for start in range(0, n, bs):
            stop = min(start + bs, n)
            stop -= (stop - start) % config.pack                                    # whole packs only (PacGAN)
            if stop == start:
                continue
            xb = xp.take(x, order[start:stop], axis=0)                              # (B, D)
            B = xb.shape[0]
            z = backend.normal((B, L))                                              # (B, L)
            d, d_grads = gan.d_loss_and_grads(params, xb, z, config)
            players.adam["dis"].step(players.dis, d_grads)
            g, g_grads = gan.g_loss_and_grads(params, z, config, d.fakes)           # G unchanged: its pass reused
            players.adam["gen"].step(players.gen, g_grads)
            parts = {"d_loss": d.loss, "d_real": d.real, "d_fake": d.fake, "acc_real": d.acc_real,
                     "acc_fake": d.acc_fake, "g_loss": g.loss}
            for k, v in parts.items():
                totals[k] = totals.get(k, 0.0) + v * B
            seen += B
            bar.update(1)
    return {k: float(v) / seen for k, v in totals.items()}


def d_accuracy(params, x, backend, config: GANConfig, batch_size=1000) -> dict:
    """D's accuracy on the images x (N, D) (D(x) > 1/2) and on as many fresh fakes (D(G(z)) < 1/2).

    The fakes' z come from the fixed stream STREAM_EVAL, so epochs compare. With config.pack = k,
    D judges packs of k images: the shares are of packs, the last N mod k images left out.
    """
    xp, k = backend.xp, config.pack
    n = x.shape[0] - x.shape[0] % k
    backend.reseed(STREAM_EVAL)
    real = fake = 0.0
    batch_size -= batch_size % k
    for start in range(0, n, batch_size):
        xb = x[start:min(start + batch_size, n), :]
        fakes = gan.generate(params, backend.normal((xb.shape[0], config.latent_dim)), config)
        real += float(xp.sum(xp.astype(gan.discriminate(params, xb, config) > 0, xb.dtype)))
        fake += float(xp.sum(xp.astype(gan.discriminate(params, fakes, config) < 0, xb.dtype)))
    return {"acc_real": real / (n // k), "acc_fake": fake / (n // k)}


def _check_data(x, name, backend, config, params):
    """Host pixels (N, D) in [0, 1] onto the backend, checked once."""
    shape = np.shape(x)
    if len(shape) != 2:
        raise InputError(f"{name} has shape {shape}, expected (N, D): one flattened image per row")
    xb = backend.asarray(x)
    check_batch(xb, params, config, name=name)
    return xb


def _start(config, tconfig, backend, ckpt_path, data, resume):
    """(params, Players, finished epochs): fresh, or as the checkpoint holds them, all checked."""
    if not resume:
        backend.reseed()
        params = init_params(config, backend)
        return params, Players(params, tconfig), []
    params, state, meta = load_checkpoint(ckpt_path, backend)
    if meta.get("model") != MODEL:
        raise CheckpointError(f"checkpoint {ckpt_path} holds a {meta.get('model', 'vae')!r} model, not a GAN: "
                              "resume it with its own demo, or pass a new --out")
    check_resumable(meta, config, {k: getattr(tconfig, k) for k in RESUME_FIELDS}, data, ckpt_path)
    check_checkpoint({"param": params, "adam.m": state["m"], "adam.v": state["v"]}, param_shapes(config), ckpt_path)
    if meta["epoch"] > tconfig.epochs:
        raise CheckpointError(f"{ckpt_path} already holds {meta['epoch']} epochs, more than the {tconfig.epochs} "
                              f"asked for (--epochs): pass --epochs {meta['epoch']} or more")
    players = Players(params, tconfig)
    players.load_state_dict(state)
    return params, players, list(meta["epochs"])


def fit_gan(x_train, x_test, config: GANConfig, tconfig: GANTrainConfig, backend, out_dir, resume=False,
            overwrite=False, progress=None, on_epoch=None) -> FitResult:
    """Train the GAN for tconfig.epochs epochs, saving checkpoint.npz and metrics.json after each.

    x_train (N, D), x_test (M, D): host float pixels in [0, 1]; the test images
    score D after each epoch (d_accuracy). on_epoch(record, params) is called
    after each saved epoch (the demo draws its sample grid there). resume,
    overwrite, progress and the ways a run fails: as train.fit.
    """
    if not isinstance(out_dir, (str, os.PathLike)):
        raise InputError(f"out_dir must be a folder name, got {out_dir!r}: pass e.g. out_dir='runs/gan'")
    if backend.seed != tconfig.seed:
        raise InputError(f"backend seed {backend.seed} differs from GANTrainConfig.seed {tconfig.seed}: "
                         "make it with get_backend(name, seed=tconfig.seed)")
    if resume and overwrite:
        raise InputError("resume and overwrite contradict each other: pass only one")
    if tconfig.batch_size % config.pack:
        raise InputError(f"batch_size {tconfig.batch_size} is not a multiple of pack {config.pack}: D judges "
                         f"{config.pack} images at a time; make the batch size a multiple of it")
    data = {"n_train": int(np.shape(x_train)[0]), "n_test": int(np.shape(x_test)[0])}
    check_memory(config, tconfig, backend, n_images=max(data.values()))
    ckpt_path = check_output_path(out_dir) / CHECKPOINT_FILE
    if not resume and not overwrite and ckpt_path.exists():
        raise CheckpointError(f"{ckpt_path.parent} already holds a checkpoint from an earlier run: continue it "
                              "with --resume, start over with --overwrite, or pass a new --out")
    size = checkpoint_bytes(param_shapes(config), 8 if backend.dtype_name == "float64" else 4)
    out_dir = prepare_out_dir(out_dir, (CHECKPOINT_FILE, METRICS_FILE), need_bytes=2 * size,
                              overwrite=resume or overwrite)
    try:
        with hold_folder(out_dir):
            return _run(x_train, x_test, config, tconfig, backend, out_dir, resume, progress, on_epoch, data)
    finally:
        remove_if_empty(out_dir)


def _metrics(config, tconfig, backend, data, epochs) -> dict:
    out = {"model": MODEL, "config": config.to_dict(), "train_config": tconfig.to_dict(),
           "backend": backend.name, "dtype": backend.dtype_name, "data": data, "epochs": epochs}
    if epochs:
        out.update({k: v for k, v in epochs[-1].items() if k.startswith("test_")})
    return out


def _run(x_train, x_test, config, tconfig, backend, out_dir, resume, progress, on_epoch, data) -> FitResult:
    ckpt_path = out_dir / CHECKPOINT_FILE
    params, players, epochs = _start(config, tconfig, backend, ckpt_path, data, resume)
    x_train = _check_data(x_train, "x_train", backend, config, params)
    x_test = _check_data(x_test[:EVAL_IMAGES], "x_test", backend, config, params)
    epoch = len(epochs) + 1
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        try:
            for epoch in range(len(epochs) + 1, tconfig.epochs + 1):
                backend.synchronize()
                t0 = time.perf_counter()
                train = train_epoch(params, players, x_train, backend, config, tconfig, epoch, progress)
                backend.synchronize()
                t1 = time.perf_counter()
                test = d_accuracy(params, x_test, backend, config)
                record = {"epoch": epoch, **{f"train_{k}": v for k, v in train.items()},
                          **{f"test_{k}": v for k, v in test.items()},
                          "seconds": t1 - t0, "eval_seconds": time.perf_counter() - t1}
                finite = all(bool(backend.xp.all(backend.xp.isfinite(p))) for p in params.values())
                if not (finite and all(math.isfinite(v) for v in record.values())):
                    kept = f"epochs 1-{epoch - 1} are saved in {ckpt_path}" if epoch > 1 else "nothing was saved"
                    raise DivergenceError(f"the GAN diverged in epoch {epoch} (D loss {record['train_d_loss']:.4g}, "
                                          f"G loss {record['train_g_loss']:.4g}): {kept}; start again with a "
                                          f"smaller --lr than {tconfig.lr:g}")
                epochs.append(record)
                meta = {"model": MODEL, "config": config.to_dict(), "train_config": tconfig.to_dict(),
                        "data": data, "epoch": epoch, "backend": backend.name, "dtype": backend.dtype_name,
                        "rng": {"seed": tconfig.seed, "next_train_stream": [STREAM_TRAIN, epoch + 1]},
                        "epochs": epochs}
                save_checkpoint(ckpt_path, params, players, meta, backend)
                write_json(out_dir / METRICS_FILE, _metrics(config, tconfig, backend, data, epochs))
                if on_epoch is not None:
                    on_epoch(record, params)
        except KeyboardInterrupt:
            saved = len(epochs)
            where = (f"epochs 1-{saved} are saved in {ckpt_path}; continue with --resume" if saved
                     else "nothing of this run was saved; start it again")
            raise Interrupted(f"interrupted in epoch {epoch}: {where}") from None
    return FitResult(params, _metrics(config, tconfig, backend, data, epochs))


def load_saved(path, backend, model: str, config_class, what: str, fix: str):
    """(params, config, meta) of a checkpoint whose record says `model`, its arrays checked against its config.

    Anything else there (another model's run, a config that cannot be read) is one CheckpointError
    line: "{path} holds a 'vae' model, not {what}: {fix}".
    """
    params, _, meta = load_checkpoint(path, backend)
    if meta.get("model") != model:
        raise CheckpointError(f"{path} holds a {meta.get('model', 'vae')!r} model, not {what}: {fix}")
    try:
        config = config_class.from_dict(meta["config"])
    except (InputError, TypeError) as e:
        raise CheckpointError(f"{path} holds no readable {config_class.__name__} ({e}): {fix}") from None
    check_checkpoint({"param": params}, param_shapes(config), path)
    return params, config, meta


def load_gan(path, backend):
    """(params, config, meta) of a GAN checkpoint written by fit_gan, every array checked."""
    return load_saved(path, backend, MODEL, GANConfig, "a GAN", "pass the folder of a run of demos/mnist_gan.py")
