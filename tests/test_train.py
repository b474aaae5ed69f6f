"""Training and evaluation on small synthetic data: exact resume, atomic and
checked checkpoints, metrics.json, the test numbers, and the dtype kept."""
import json
import math
import os

import numpy as np
import pytest

from tinyvae import checkpoint, train
from tinyvae.core import vae
from tinyvae.backend import get_backend
from tinyvae.checkpoint import OutputError
from tinyvae.errors import CheckpointError, InputError
from tinyvae.train import (
    TrainConfig, binarize, evaluate, fit, iw_nll, load_checkpoint, save_checkpoint,
)
from tinyvae.core.vae import VAEConfig, iw_log_px, param_shapes

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

    monkeypatch.setattr(checkpoint.os, "replace", crash)
    be = get_backend("numpy")
    params = {k: p + 1 for k, p in result.params.items()}
    optimizer = train.Adam(params)
    with pytest.raises(OutputError, match="disk full.*the previous checkpoint.npz is unchanged"):
        save_checkpoint(path, params, optimizer, {"epoch": 9}, be)
    with pytest.raises(OutputError, match="disk full"):
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


# ---- hand-edited checkpoints: every array and field is checked on load --------------


def _rewrite(path, edit):
    """Load the checkpoint's arrays and meta, let edit(arrays, meta) change them, save it back."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: np.array(f[k]) for k in f.files}
    meta = json.loads(str(arrays.pop("meta")[()]))
    edit(arrays, meta)
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)


def _wrong_shape(arrays, meta):
    arrays["param/enc.0.W"] = arrays["param/enc.0.W"][:, :5]


def _missing_param(arrays, meta):
    del arrays["param/dec.1.b"]


def _extra_param(arrays, meta):
    arrays["param/dec.2.W"] = np.zeros((3, 3), np.float32)


def _adam_wrong_shape(arrays, meta):
    arrays["adam.v/dec.0.W"] = arrays["adam.v/dec.0.W"].T.copy()


def _nan_weight(arrays, meta):
    arrays["param/dec.0.W"][0, 0] = np.nan


def _inf_adam_state(arrays, meta):
    arrays["adam.m/enc.0.b"][0] = np.inf


def _integer_array(arrays, meta):
    arrays["param/enc.0.b"] = arrays["param/enc.0.b"].astype(np.int64)


def _epoch_a_string(arrays, meta):
    meta["epoch"] = "1"


def _epochs_not_a_list(arrays, meta):
    meta["epochs"] = {"1": meta["epochs"][0]}


def _epoch_record_nan(arrays, meta):
    meta["epochs"][0]["test_neg_elbo"] = "NaN"


def _adam_t_float(arrays, meta):
    meta["adam"]["t"] = 7.5


def _config_a_list(arrays, meta):
    meta["config"] = [1, 2]


def _config_unknown_field(arrays, meta):
    meta["config"]["depth"] = 3


@pytest.mark.parametrize("edit, words", [
    (_wrong_shape, "param/enc.0.W is (12, 5), the config makes (12, 8)"),
    (_missing_param, "param lacks dec.1.b"),
    (_extra_param, "param has unexpected dec.2.W"),
    (_adam_wrong_shape, "adam.v/dec.0.W is (8, 2), the config makes (2, 8)"),
    (_nan_weight, "param/dec.0.W holds NaN or inf weights"),
    (_inf_adam_state, "adam.m/enc.0.b holds NaN or inf Adam state"),
    (_integer_array, "not floating point"),
    (_epoch_a_string, "'epoch' is '1', not an integer"),
    (_epochs_not_a_list, "epoch history"),
    (_epoch_record_nan, "non-numeric or non-finite test_neg_elbo"),
    (_adam_t_float, "adam 't' is 7.5"),
    (_config_a_list, "meta 'config' is [1, 2]"),
    (_config_unknown_field, "unknown VAEConfig fields ['depth']"),
])
def test_hand_edited_checkpoint_is_one_clear_error(tmp_path, edit, words):
    run(tmp_path, TrainConfig(epochs=1, batch_size=16, iw_k=0))
    _rewrite(tmp_path / "checkpoint.npz", edit)
    with pytest.raises(CheckpointError) as e:
        run(tmp_path, resume=True)
    message = str(e.value)
    assert words in message and "checkpoint" in message and "\n" not in message
    assert e.value.__cause__ is None


def test_load_checkpoint_checks_shapes_when_given_them(tmp_path):
    run(tmp_path, TrainConfig(epochs=1, batch_size=16, iw_k=0))
    be = get_backend("numpy")
    params, _, _ = load_checkpoint(tmp_path / "checkpoint.npz", be, shapes=param_shapes(CONFIG))
    assert {k: p.shape for k, p in params.items()} == param_shapes(CONFIG)
    other = VAEConfig(input_dim=12, enc_hidden=(9,), dec_hidden=(8,), latent_dim=2)
    with pytest.raises(CheckpointError, match=r"param/enc.0.W is \(12, 8\), the config makes \(12, 9\)"):
        load_checkpoint(tmp_path / "checkpoint.npz", be, shapes=param_shapes(other))


# ---- the run's settings, refused before training --------------------------------------


def test_resume_asking_for_fewer_epochs_than_saved_is_refused(tmp_path):
    run(tmp_path)
    before = (tmp_path / "metrics.json").read_bytes()
    with pytest.raises(CheckpointError, match="already holds 2 epochs.*--epochs 3"):
        run(tmp_path, TrainConfig(epochs=1, batch_size=16, iw_k=8, iw_images=40), resume=True)
    assert (tmp_path / "metrics.json").read_bytes() == before


def test_resume_and_overwrite_together_are_refused(tmp_path):
    run(tmp_path, TrainConfig(epochs=1, batch_size=16, iw_k=0))
    before = (tmp_path / "checkpoint.npz").read_bytes()
    be = get_backend("numpy", seed=0)
    with pytest.raises(InputError, match="contradict"):
        fit(X_TRAIN, X_TEST, CONFIG, TCONFIG, be, tmp_path, resume=True, overwrite=True)
    assert (tmp_path / "checkpoint.npz").read_bytes() == before


def test_an_empty_out_dir_is_refused_not_taken_as_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputError, match="empty name"):
        fit(X_TRAIN, X_TEST, CONFIG, TCONFIG, get_backend("numpy", seed=0), "", progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", [{"epochs": "3"}, {"epochs": True}, {"lr": "0.1"}, {"lr": -1e-3},
                                 {"lr": float("inf")}, {"binarize": "yes"}, {"iw_k": 2.0},
                                 {"eval_batch_size": None}])
def test_train_config_refuses_wrong_types_in_one_line(bad):
    with pytest.raises(InputError) as e:
        TrainConfig(**bad)
    assert next(iter(bad)) in str(e.value) and "\n" not in str(e.value)


def test_train_config_from_dict_refuses_unknown_fields():
    with pytest.raises(InputError, match=r"unknown TrainConfig fields \['epoch'\]"):
        TrainConfig.from_dict({"epoch": 3})
    assert TrainConfig.from_dict(TCONFIG.to_dict()) == TCONFIG


def test_fit_refuses_data_that_is_not_a_2d_array(tmp_path):
    with pytest.raises(InputError, match="x_test has shape"):
        fit(X_TRAIN, None, CONFIG, TCONFIG, get_backend("numpy", seed=0), tmp_path)


# ---- memory: counted from the shapes, before anything is allocated ---------------------


def test_memory_needed_counts_every_copy_of_every_parameter():
    n_params = sum(math.prod(s) for s in param_shapes(CONFIG).values())
    units = 12 + 8 + 2 * 2 + 8 + 12                   # input, then each layer's output
    batch = max(TCONFIG.batch_size, TCONFIG.eval_batch_size)
    assert train.memory_needed(CONFIG, TCONFIG, 4) == 4 * (4 * n_params + 3 * batch * units)


def test_a_model_larger_than_memory_is_refused_before_allocating(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "_host_memory", lambda: 10_000)            # a 10 kB machine
    monkeypatch.setattr(train, "init_params", lambda *a: pytest.fail("allocated anyway"))
    with pytest.raises(InputError) as e:
        run(tmp_path / "run")
    message = str(e.value)
    need = train.memory_needed(CONFIG, TCONFIG, 4)
    assert f"needs about {checkpoint.format_bytes(need)} of memory" in message
    assert "more than this machine's 10.0 kB" in message and "\n" not in message
    assert not (tmp_path / "run").exists()


# ---- the importance-weighted estimate, chunked over k ------------------------------------


def _direct_iw_nll(params, x, eps, config):
    """-mean_n log (1/k) sum_j w_nj from log w computed once in float64, no chunks, no shift tricks shared."""
    be = get_backend("numpy", dtype="float64")
    p64 = {k: be.asarray(v) for k, v in params.items()}
    x64, eps64 = be.asarray(x), np.asarray(eps, np.float64)
    log_w = np.stack([iw_log_px(p64, x64, eps64[j:j + 1], config) for j in range(eps64.shape[0])])
    m = log_w.max(axis=0)                                              # (N,)
    return -float(np.mean(m + np.log(np.mean(np.exp(log_w - m), axis=0))))


@pytest.mark.parametrize("chunk_floats", [1, 12 * 5, 12 * 40 * 7])
def test_iw_nll_in_chunks_equals_the_one_big_draw(tmp_path, monkeypatch, chunk_floats):
    """Chunks along k draw the rows of the (k, B, L) draw in order and combine exactly."""
    result = run(tmp_path, TrainConfig(epochs=2, batch_size=16, iw_k=0))
    be = get_backend("numpy", seed=0)
    x, k = be.asarray(X_TEST[:40]), 50
    whole = iw_nll(result.params, x, be, CONFIG, k, batch_size=40)   # one chunk: 50 * 40 * 12 floats
    monkeypatch.setattr(train, "IW_CHUNK_FLOATS", chunk_floats)     # chunks of 1, 1 and 7 samples
    chunked = iw_nll(result.params, x, be, CONFIG, k, batch_size=40)
    assert chunked == pytest.approx(whole, rel=1e-6)
    be.reseed(train.STREAM_IW)
    eps = be.normal((k, 40, CONFIG.latent_dim))
    assert whole == pytest.approx(_direct_iw_nll(result.params, X_TEST[:40], eps, CONFIG), rel=1e-5)


def test_iw_nll_combines_chunks_whose_weights_are_hundreds_of_nats_apart(monkeypatch):
    """The logaddexp of chunk sums is exact even when one chunk's weights dwarf the other's."""
    be = get_backend("numpy", seed=0, dtype="float64")
    log_w = {0: np.array([-800.0]), 1: np.array([-100.0]), 2: np.array([-400.0])}
    calls = iter(range(3))

    def fake_iw_log_px(params, x, eps, config, y=None):          # one sample per chunk: log mean = log w
        return log_w[next(calls)]

    monkeypatch.setattr(train, "iw_log_px", fake_iw_log_px)
    monkeypatch.setattr(train, "IW_CHUNK_FLOATS", 1)
    got = iw_nll({}, be.asarray(np.zeros((1, 12))), be, CONFIG, k=3)
    want = -(np.logaddexp.reduce([-800.0, -100.0, -400.0]) - np.log(3))
    assert got == pytest.approx(want, rel=1e-14)


def test_iw_nll_memory_is_bounded_for_any_k(monkeypatch):
    """k = 10^7 samples of 4 images: no draw holds more than IW_CHUNK_FLOATS per layer."""
    be = get_backend("numpy", seed=0)
    seen = []

    def record(params, x, eps, config, y=None):
        seen.append(eps.shape)
        return np.zeros(x.shape[0], np.float32)

    monkeypatch.setattr(train, "iw_log_px", record)
    monkeypatch.setattr(train, "IW_CHUNK_FLOATS", 1 << 16)
    k = 10_000_000
    # every log w is 0, so -log p(x) = 0, up to float32 rounding of log k = 16.1
    assert iw_nll({}, be.asarray(X_TEST[:4]), be, CONFIG, k) == pytest.approx(0.0, abs=1e-5)
    assert sum(s[0] for s in seen) == k
    assert max(s[0] * s[1] * 12 for s in seen) <= 1 << 16       # kc * B * widest layer (12)


# ---- the reported numbers, pinned against direct computations ---------------------------


def _direct_neg_elbo_terms(params, x, eps):
    """CONFIG's VAE written out in float64 NumPy, apart from the engine: (recon, kl) per image."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    x, eps = np.asarray(x, np.float64), np.asarray(eps, np.float64)
    h = np.maximum(x @ p["enc.0.W"] + p["enc.0.b"], 0.0)                 # 12 -> 8, ReLU
    head = h @ p["enc.1.W"] + p["enc.1.b"]                                # 8 -> 2L
    mu, logvar = head[:, :2], head[:, 2:]
    z = mu + np.exp(0.5 * logvar) * eps
    g = np.maximum(z @ p["dec.0.W"] + p["dec.0.b"], 0.0)                  # L -> 8, ReLU
    a = g @ p["dec.1.W"] + p["dec.1.b"]                                   # 8 -> 12 logits
    recon = np.sum(np.logaddexp(0.0, a) - x * a, axis=1)                 # -log Bernoulli(x | sigmoid a)
    kl = 0.5 * np.sum(np.exp(logvar) + mu ** 2 - 1.0 - logvar, axis=1)
    return recon, kl


def test_evaluate_reports_the_direct_neg_elbo_recon_and_kl(tmp_path):
    """evaluate's numbers are mean recon and mean KL over all images, with STREAM_EVAL's eps, in order."""
    result = run(tmp_path, TrainConfig(epochs=2, batch_size=16, iw_k=0))
    be = get_backend("numpy", seed=0)
    got = evaluate(result.params, be.asarray(X_TEST), be, CONFIG, batch_size=20)   # 20 + 20 + 8
    be.reseed(train.STREAM_EVAL)
    eps = np.concatenate([be.normal((n, 2)) for n in (20, 20, 8)])
    recon, kl = _direct_neg_elbo_terms(result.params, X_TEST, eps)
    assert got["recon"] == pytest.approx(recon.mean(), rel=1e-5)
    assert got["kl"] == pytest.approx(kl.mean(), rel=1e-5)
    assert got["neg_elbo"] == pytest.approx(recon.mean() + kl.mean(), rel=1e-5)


def test_train_epoch_reports_the_image_weighted_mean_of_its_batches(tmp_path):
    """100 images in batches of 16 (the last holds 4): each batch's loss weighs by its size."""
    tconfig = TrainConfig(epochs=1, batch_size=16, iw_k=0)
    be = get_backend("numpy", seed=0)
    be.reseed()
    params = train.init_params(CONFIG, be)
    replay = {k: v.copy() for k, v in params.items()}
    got = train.train_epoch(params, train.Adam(params), be.asarray(X_TRAIN), be, CONFIG, tconfig, 1,
                            progress=False)
    be.reseed(train.STREAM_TRAIN, 1)                       # the epoch again, by hand
    order, optimizer, batches = be.permutation(100), train.Adam(replay), []
    for start in range(0, 100, 16):
        xb = X_TRAIN[order[start:start + 16]]
        eps = be.normal((len(xb), 2))
        recon, kl = _direct_neg_elbo_terms(replay, xb, eps)
        batches.append((len(xb), recon.mean() + kl.mean(), recon.mean(), kl.mean()))
        optimizer.step(replay, vae.loss_and_grads(replay, be.asarray(xb), eps, CONFIG)[1])
    sizes, means = np.array([b[0] for b in batches]), np.array([b[1:] for b in batches])
    want = dict(zip(("loss", "recon", "kl"), sizes @ means / 100))     # beta = 1: the loss is the -ELBO
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-5), key
    # the pin tells the weighting apart: a plain mean of the batch means is another number
    assert np.mean(means[:, 0]) != pytest.approx(want["loss"], rel=1e-4)


def test_without_a_terminal_long_work_prints_a_line_now_and_then_with_the_time_left(tmp_path, monkeypatch, capsys):
    """A log file sees progress too (a bar only draws on a terminal): every PROGRESS_SECONDS, one line."""
    monkeypatch.setattr(train, "PROGRESS_SECONDS", 0.0)
    monkeypatch.setattr(train, "IW_CHUNK_FLOATS", 1)          # one importance sample per chunk: 4 chunks
    be = get_backend("numpy", seed=0)
    fit(X_TRAIN, X_TEST, CONFIG, TrainConfig(epochs=1, batch_size=8, iw_k=4, iw_images=8), be, tmp_path)
    lines = capsys.readouterr().err.strip().splitlines()
    assert any(line.startswith("epoch 1: ") and "s left" in line for line in lines), lines
    assert any(line.startswith("log p(x), k=4: ") and "s left" in line for line in lines), lines
    fit(X_TRAIN, X_TEST, CONFIG, TrainConfig(epochs=1, batch_size=8, iw_k=4, iw_images=8), be, tmp_path,
        overwrite=True, progress=False)
    assert capsys.readouterr().err == ""
