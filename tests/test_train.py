"""Training and evaluation on small synthetic data: exact resume, atomic and
checked checkpoints, metrics.json, the test numbers, and the dtype kept."""
import json
import math
import os

import numpy as np
import pytest

from tinyvae import train
from tinyvae.backend import get_backend
from tinyvae.errors import CheckpointError, InputError
from tinyvae.vae import VAEConfig
from tinyvae.train import (
    TrainConfig, binarize, evaluate, fit, iw_nll, load_checkpoint, save_checkpoint,
)

CONFIG = VAEConfig(input_dim=12, enc_hidden=(8,), dec_hidden=(8,), latent_dim=2)
TCONFIG = TrainConfig(epochs=2, batch_size=16, iw_k=8, iw_images=40, eval_batch_size=32)
EPOCH_NUMBERS = ("train_neg_elbo", "train_recon", "train_kl", "test_neg_elbo", "test_recon", "test_kl")


def synthetic(n, seed, d=12):
    """Pixels in [0, 1] with structure to learn: a sigmoid of 2 hidden factors, (n, d) float32."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    w = np.random.default_rng(99).standard_normal((2, d)) * 2.0
    return (1.0 / (1.0 + np.exp(-(z @ w)))).astype(np.float32)


X_TRAIN, X_TEST = synthetic(100, 0), synthetic(48, 1)


def run(out, tconfig=TCONFIG, config=CONFIG, resume=False, backend="numpy", x_train=X_TRAIN):
    be = get_backend(backend, seed=tconfig.seed)
    return fit(x_train, X_TEST, config, tconfig, be, out, resume=resume, progress=False)


def numbers(metrics):
    """Every per-epoch number except the timings, and the final ones."""
    per_epoch = [{k: e[k] for k in ("epoch", *EPOCH_NUMBERS)} for e in metrics["epochs"]]
    return per_epoch, metrics["test_neg_elbo"], metrics.get("test_iw_nll")


# ---- the run and its metrics ---------------------------------------------------


def test_metrics_json_has_every_number_and_they_add_up(tmp_path):
    result = run(tmp_path)
    with open(tmp_path / "metrics.json") as f:
        m = json.load(f)
    assert m == json.loads(json.dumps(result.metrics))
    assert VAEConfig.from_dict(m["config"]) == CONFIG
    assert TrainConfig.from_dict(m["train_config"]) == TCONFIG
    assert m["backend"] == "numpy" and m["dtype"] == "float32"
    assert [e["epoch"] for e in m["epochs"]] == [1, 2]
    for e in m["epochs"]:
        for key in (*EPOCH_NUMBERS, "seconds"):
            assert math.isfinite(e[key]), key
        assert e["seconds"] >= 0
        assert e["test_neg_elbo"] == pytest.approx(e["test_recon"] + e["test_kl"], rel=1e-6)
        assert e["train_neg_elbo"] == pytest.approx(e["train_recon"] + e["train_kl"], rel=1e-5)
        assert e["test_kl"] >= 0 and e["train_kl"] >= 0
    last = m["epochs"][-1]
    assert (m["test_neg_elbo"], m["test_recon"], m["test_kl"]) == (
        last["test_neg_elbo"], last["test_recon"], last["test_kl"])
    assert m["iw_k"] == 8 and m["iw_images"] == 40 and math.isfinite(m["test_iw_nll"])


def test_metrics_json_is_written_after_every_epoch(tmp_path):
    seen = []

    def on_epoch(record):
        with open(tmp_path / "metrics.json") as f:
            seen.append(len(json.load(f)["epochs"]))
        _, _, meta = load_checkpoint(tmp_path / "checkpoint.npz", get_backend("numpy"))
        assert meta["epoch"] == record["epoch"]

    be = get_backend("numpy", seed=0)
    fit(X_TRAIN, X_TEST, CONFIG, TCONFIG, be, tmp_path, progress=False, on_epoch=on_epoch)
    assert seen == [1, 2]


def test_iw_k_zero_skips_the_estimate(tmp_path):
    m = run(tmp_path, TrainConfig(epochs=1, batch_size=16, iw_k=0)).metrics
    assert "test_iw_nll" not in m and "iw_k" not in m


def test_training_lowers_the_test_loss(tmp_path):
    m = run(tmp_path, TrainConfig(epochs=6, batch_size=10, lr=1e-2, iw_k=0)).metrics
    test = [e["test_neg_elbo"] for e in m["epochs"]]
    assert test[-1] < test[0] - 0.2   # from 8.7 towards the floor of 6.1 (the pixels' entropy)


def test_float32_is_kept_in_params_optimizer_and_checkpoint(tmp_path):
    result = run(tmp_path)
    assert all(p.dtype == np.float32 for p in result.params.values())
    params, adam, _ = load_checkpoint(tmp_path / "checkpoint.npz", get_backend("numpy"))
    for group in (params, adam["m"], adam["v"]):
        assert set(group) == set(result.params)
        assert all(a.dtype == np.float32 for a in group.values())
    with np.load(tmp_path / "checkpoint.npz", allow_pickle=False) as f:
        assert all(f[k].dtype == np.float32 for k in f.files if k != "meta")


def test_array_api_strict_gives_the_numpy_numbers(tmp_path):
    """train.py uses only the array API standard: the strict backend runs it, same numbers."""
    tconfig = TrainConfig(epochs=1, batch_size=16, iw_k=4, iw_images=20, binarize=True)
    a = run(tmp_path / "np", tconfig).metrics
    b = run(tmp_path / "strict", tconfig, backend="array_api_strict").metrics
    for x, y in zip(numbers(a)[0], numbers(b)[0]):
        assert x == pytest.approx(y, rel=1e-5)
    assert a["test_iw_nll"] == pytest.approx(b["test_iw_nll"], rel=1e-5)


# ---- exact resume ------------------------------------------------------------------


@pytest.mark.parametrize("binarized", [False, True])
def test_resume_gives_bitwise_the_numbers_of_an_uninterrupted_run(tmp_path, binarized):
    two = TrainConfig(epochs=2, batch_size=16, iw_k=8, iw_images=40, binarize=binarized)
    straight = run(tmp_path / "straight", two)
    first = run(tmp_path / "resumed", TrainConfig(**{**two.to_dict(), "epochs": 1}))
    assert len(first.metrics["epochs"]) == 1
    resumed = run(tmp_path / "resumed", two, resume=True)

    assert numbers(resumed.metrics) == numbers(straight.metrics)   # floats compared exactly
    for name, p in straight.params.items():
        np.testing.assert_array_equal(resumed.params[name], p)
    be = get_backend("numpy")
    _, adam_a, meta_a = load_checkpoint(tmp_path / "straight" / "checkpoint.npz", be)
    _, adam_b, meta_b = load_checkpoint(tmp_path / "resumed" / "checkpoint.npz", be)
    assert adam_a["t"] == adam_b["t"] == 2 * math.ceil(100 / 16)
    for name in adam_a["m"]:
        np.testing.assert_array_equal(adam_a["m"][name], adam_b["m"][name])
        np.testing.assert_array_equal(adam_a["v"][name], adam_b["v"][name])
    assert meta_b["epoch"] == 2 and meta_b["rng"] == meta_a["rng"]


def test_resume_of_a_finished_run_trains_no_more(tmp_path):
    done = run(tmp_path)
    again = run(tmp_path, resume=True)
    assert numbers(again.metrics) == numbers(done.metrics)


@pytest.mark.parametrize("change, field", [
    ({"config": VAEConfig(input_dim=12, enc_hidden=(8,), dec_hidden=(8,), latent_dim=3)}, "latent_dim"),
    ({"config": VAEConfig(input_dim=12, enc_hidden=(8,), dec_hidden=(8,), latent_dim=2,
                          likelihood="gaussian")}, "likelihood"),
    ({"tconfig": TrainConfig(epochs=2, batch_size=32)}, "batch_size"),
    ({"tconfig": TrainConfig(epochs=2, batch_size=16, seed=1)}, "seed"),
    ({"tconfig": TrainConfig(epochs=2, batch_size=16, binarize=True)}, "binarize"),
    ({"x_train": X_TRAIN[:50]}, "n_train"),
])
def test_resume_with_another_config_names_the_difference(tmp_path, change, field):
    run(tmp_path, TrainConfig(epochs=1, batch_size=16, iw_k=0))
    with pytest.raises(CheckpointError) as e:
        run(tmp_path, resume=True, **change)
    message = str(e.value)
    assert field in message and "--out" in message and "\n" not in message


def test_resume_without_a_checkpoint_says_so(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        run(tmp_path, resume=True)


# ---- checkpoint files ----------------------------------------------------------------


def test_checkpoint_round_trip(tmp_path):
    be = get_backend("numpy", seed=3)
    result = run(tmp_path)
    params, adam, meta = load_checkpoint(tmp_path / "checkpoint.npz", be)
    for name, p in result.params.items():
        np.testing.assert_array_equal(params[name], p)
    assert VAEConfig.from_dict(meta["config"]) == CONFIG
    assert TrainConfig.from_dict(meta["train_config"]) == TCONFIG
    assert meta["epoch"] == 2 and meta["backend"] == "numpy"
    assert meta["rng"] == {"seed": 0, "next_train_stream": [train.STREAM_TRAIN, 3]}
    assert [e["epoch"] for e in meta["epochs"]] == [1, 2]


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    """A crash between writing and renaming leaves the old checkpoint whole, and no temp file."""
    result = run(tmp_path, TrainConfig(epochs=1, batch_size=16, iw_k=0))
    path = tmp_path / "checkpoint.npz"
    before = path.read_bytes()
    files_before = sorted(os.listdir(tmp_path))

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(train.os, "replace", crash)
    be = get_backend("numpy")
    params = {k: p + 1 for k, p in result.params.items()}
    optimizer = train.Adam(params)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, params, optimizer, {"epoch": 9}, be)
    with pytest.raises(OSError, match="disk full"):
        train.write_json(tmp_path / "metrics.json", {"broken": True})
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == files_before
    monkeypatch.undo()
    assert load_checkpoint(path, be)[2]["epoch"] == 1


def _truncated(path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _garbage(path):
    path.write_bytes(b"this is not a checkpoint" * 10)


def _empty(path):
    path.write_bytes(b"")


def _flipped_bytes(path):
    raw = bytearray(path.read_bytes())
    for i in range(200, len(raw) - 200, 97):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def _no_meta(path):
    np.savez(path, **{"param/enc.0.W": np.zeros((2, 2), np.float32)})


def _bad_meta(path):
    np.savez(path, meta=np.array("{not json"))


def _pickled(path):
    np.savez(path, meta=np.array([{"format": 1}], dtype=object))


@pytest.mark.parametrize("damage", [_truncated, _garbage, _empty, _flipped_bytes, _no_meta,
                                    _bad_meta, _pickled])
def test_corrupt_checkpoint_is_one_clear_error(tmp_path, damage):
    run(tmp_path, TrainConfig(epochs=1, batch_size=16, iw_k=0))
    damage(tmp_path / "checkpoint.npz")
    with pytest.raises(CheckpointError) as e:
        run(tmp_path, resume=True)
    message = str(e.value)
    assert "checkpoint" in message and "\n" not in message
    assert e.value.__cause__ is None and e.value.__suppress_context__


# ---- the pieces ------------------------------------------------------------------------


def test_evaluate_draws_the_same_eps_every_time(tmp_path):
    result = run(tmp_path, TrainConfig(epochs=1, batch_size=16, iw_k=0))
    be = get_backend("numpy", seed=0)
    x = be.asarray(X_TEST)
    a = evaluate(result.params, x, be, CONFIG, batch_size=32)
    be.normal((5, 5))                                    # the generator moves on ...
    b = evaluate(result.params, x, be, CONFIG, batch_size=32)
    assert a == b                                        # ... the test numbers do not
    assert a["neg_elbo"] == pytest.approx(result.metrics["test_neg_elbo"], rel=1e-6)


def test_iw_estimate_is_at_most_the_neg_elbo(tmp_path):
    """-log p(x) <= -ELBO; the k-sample estimate gets there in expectation, here on 48 images."""
    result = run(tmp_path, TrainConfig(epochs=3, batch_size=16, iw_k=0))
    be = get_backend("numpy", seed=0)
    x = be.asarray(X_TEST)
    neg_elbo = evaluate(result.params, x, be, CONFIG)["neg_elbo"]
    nll_1 = iw_nll(result.params, x, be, CONFIG, k=1)
    nll_100 = iw_nll(result.params, x, be, CONFIG, k=100, batch_size=20)
    assert math.isfinite(nll_100)
    assert nll_100 <= neg_elbo + 0.05
    assert nll_100 <= nll_1 + 0.05
    assert nll_1 == pytest.approx(neg_elbo, abs=0.1 * abs(neg_elbo))  # k = 1 is the ELBO itself


def test_binarize_samples_zeros_and_ones_with_mean_x():
    be = get_backend("numpy", seed=0)
    x = be.asarray(np.full((400, 50), 0.3))
    xb = binarize(x, be)
    assert xb.dtype == np.float32 and set(np.unique(xb)) <= {0.0, 1.0}
    assert float(np.mean(xb)) == pytest.approx(0.3, abs=0.01)


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"batch_size": 0}, {"lr": 0.0}, {"lr": float("nan")},
                                 {"iw_k": -1}, {"seed": -1}, {"batch_size": 2.5}])
def test_train_config_refuses_bad_values(bad):
    with pytest.raises(InputError):
        TrainConfig(**bad)


def test_fit_refuses_a_backend_with_another_seed(tmp_path):
    with pytest.raises(InputError, match="seed"):
        fit(X_TRAIN, X_TEST, CONFIG, TCONFIG, get_backend("numpy", seed=1), tmp_path)


@pytest.mark.parametrize("x, problem", [
    ((X_TRAIN * 255).astype(np.uint8), "dtype"),
    (X_TRAIN * 2, "[0, 1]"),
    (X_TRAIN[:, :5], "shape"),
])
def test_fit_refuses_bad_data_naming_it(tmp_path, x, problem):
    with pytest.raises(InputError) as e:
        run(tmp_path, x_train=x)
    assert "x_train" in str(e.value) and problem in str(e.value)


def test_a_new_run_never_replaces_an_earlier_checkpoint(tmp_path):
    run(tmp_path, TrainConfig(epochs=1, batch_size=16, iw_k=0))
    before = (tmp_path / "checkpoint.npz").read_bytes()
    with pytest.raises(CheckpointError) as e:
        run(tmp_path)
    msg = str(e.value)
    assert "--resume" in msg and "--overwrite" in msg and "\n" not in msg
    assert (tmp_path / "checkpoint.npz").read_bytes() == before
    be = get_backend("numpy", seed=0)
    fit(X_TRAIN, X_TEST, CONFIG, TCONFIG, be, tmp_path, overwrite=True, progress=False)
    assert (tmp_path / "checkpoint.npz").read_bytes() != before
