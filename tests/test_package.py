"""The shape of the package: a core that only computes, checks that run once, rules that agree."""
import ast
import sys
from pathlib import Path

import numpy as np
import pytest

import tinyvae
from tinyvae import api, checks, models
from tinyvae.core import vae
from tinyvae.core.ae import AEConfig
from tinyvae.core.m2 import M2Config
from tinyvae.core.sparse import SparseAEConfig
from tinyvae.core.nets import Conv, ConvTranspose, Dense
from tinyvae.core.vae import VAEConfig
from tinyvae.errors import InputError
from tinyvae.train import TrainConfig, train_epoch

from conftest import make

CORE = Path(tinyvae.__file__).parent / "core"
READING_PATH = ("__init__", "xp", "layers", "distributions", "nets", "vae", "optim")


def test_the_core_only_computes():
    """No raise, no error classes, no file or print in tinyvae/core: every function trusts its arguments."""
    for path in CORE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            assert not isinstance(node, ast.Raise), f"{path.name}:{node.lineno} raises"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("open", "print", "input"), f"{path.name}:{node.lineno} does I/O"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any("errors" in n or n in ("os", "pathlib", "json") for n in names), \
                    f"{path.name}:{node.lineno} imports {names}"


def test_the_reading_path_fits_in_one_sitting():
    lines = sum(len((CORE / f"{name}.py").read_text().splitlines()) for name in READING_PATH)
    assert lines <= 900, f"the reading path is {lines} lines"


def _tiny_data(be, config, n=40, seed=0):
    return be.asarray(np.random.default_rng(seed).random((n, config.input_dim)))


@pytest.mark.parametrize("config", [
    VAEConfig(input_dim=12, enc_hidden=(8,), dec_hidden=(8,), latent_dim=2),
    AEConfig(input_dim=12, enc_hidden=(8,), dec_hidden=(8,), latent_dim=2, corruption="mask", corruption_level=0.2),
], ids=["vae", "dae"])
def test_a_training_step_runs_no_check(config, monkeypatch):
    """A training epoch as fit runs it calls nothing in checks.py or api.py, and builds no layer spec."""
    be = make("numpy")
    params = vae.init_params(config, be)
    opt = tinyvae.core.optim.Adam(params)
    x = _tiny_data(be, config)
    shell = {str(Path(checks.__file__)), str(Path(api.__file__))}
    calls = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename in shell:
            calls.append(f"{Path(frame.f_code.co_filename).name}:{frame.f_code.co_name}")
    made = []
    monkeypatch.setattr(Dense, "__post_init__", lambda self: made.append(self))
    config.encoder_layers, config.decoder_layers         # built once, before the steps
    tconfig = TrainConfig(epochs=1, batch_size=8)
    sys.setprofile(profile)
    try:
        train_epoch(params, opt, x, be, config, tconfig, epoch=1, progress=False)
    finally:
        sys.setprofile(None)
    assert calls == [] and made == [], (calls, made)


def test_a_step_with_checks_would_be_seen(monkeypatch):
    """The probe above is not blind: a step that checks its batch is caught."""
    config = VAEConfig(input_dim=12, enc_hidden=(8,), dec_hidden=(8,), latent_dim=2)
    be = make("numpy")
    params = vae.init_params(config, be)
    x = _tiny_data(be, config)
    def checked_step(p, batch, be_, c, beta):                       # the VAE's step through the checked API
        eps = be_.normal((batch["x"].shape[0], c.latent_dim))
        parts, grads = api.loss_and_grads(p, batch["x"], eps, c, beta=beta, check_values=False)
        return {"loss": parts.loss}, grads
    checked = models.Model("vae", checked_step, models.vae_terms, models.vae_inputs)
    monkeypatch.setitem(models.MODELS, VAEConfig, checked)
    calls = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename == str(Path(checks.__file__)):
            calls.append(frame.f_code.co_name)
    tconfig, opt = TrainConfig(epochs=1, batch_size=8), tinyvae.core.optim.Adam(params)
    sys.setprofile(profile)
    try:
        train_epoch(params, opt, x, be, config, tconfig, epoch=1, progress=False)
    finally:
        sys.setprofile(None)
    assert "check_batch" in calls


NOT_FINITE = [float("nan"), float("inf"), -float("inf")]


@pytest.mark.parametrize("value", NOT_FINITE)
@pytest.mark.parametrize("make_it", [
    lambda v: M2Config(input_dim=6, alpha=v), lambda v: M2Config(input_dim=6, balance=v),
    lambda v: AEConfig(input_dim=6, corruption="gaussian", corruption_level=v),
    lambda v: AEConfig(input_dim=6, corruption="mask", corruption_level=v),
    lambda v: VAEConfig(likelihood="gaussian", gaussian_logvar=v),
    lambda v: TrainConfig(beta=v), lambda v: TrainConfig(lr=v),
    lambda v: tinyvae.Adam({"w": np.zeros(2)}, lr=v), lambda v: tinyvae.Adam({"w": np.zeros(2)}, eps=v),
    lambda v: tinyvae.Adam({"w": np.zeros(2)}, betas=(0.9, v)), lambda v: tinyvae.SGD({"w": np.zeros(2)}, momentum=v),
], ids=["m2-alpha", "m2-balance", "dae-gaussian", "dae-mask", "gaussian-logvar", "beta", "lr", "adam-lr",
        "adam-eps", "adam-beta2", "sgd-momentum"])
def test_the_validators_agree_nan_and_inf_are_refused_wherever_a_finite_number_is_meant(make_it, value):
    with pytest.raises(InputError) as e:
        make_it(value)
    assert "\n" not in str(e.value) and repr(value) in str(e.value)


def test_every_rule_of_every_config_refuses_nan_and_inf():
    """Not only the cases above: every Real rule of every checked class."""
    for cls in (VAEConfig, AEConfig, M2Config, TrainConfig, Dense, Conv, ConvTranspose):
        for name, rule in cls.RULES.items():
            if isinstance(rule, checks.Real):
                for v in NOT_FINITE:
                    with pytest.raises(InputError):
                        rule(v, name)


def test_numpy_scalars_become_python_numbers_so_records_stay_json():
    import json
    config = VAEConfig(likelihood="gaussian", gaussian_logvar=np.float32(-2), latent_dim=np.int64(3))
    assert type(config.gaussian_logvar) is float and type(config.latent_dim) is int
    json.dumps(config.to_dict())
    t = TrainConfig(lr=np.float64(1e-3), epochs=np.int32(2))
    assert type(t.lr) is float and type(t.epochs) is int
    json.dumps(t.to_dict())


def test_a_gaussian_logvar_that_would_overflow_is_refused():
    with pytest.raises(InputError, match=r"gaussian_logvar must be a finite number in \[-20, 20\]"):
        VAEConfig(likelihood="gaussian", gaussian_logvar=-1e5)


def test_the_same_rules_are_the_flags_types():
    import argparse
    rule = TrainConfig.RULES["lr"]
    assert rule.parse("0.01") == 0.01
    for text in ("0", "-1", "nan", "inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            rule.parse(text)
    assert TrainConfig.RULES["epochs"].parse("3") == 3


def test_one_float64_parameter_among_float32_ones_is_named():
    config = VAEConfig(input_dim=6, enc_hidden=(4,), dec_hidden=(4,), latent_dim=2)
    be = make("numpy", dtype="float32")
    params = vae.init_params(config, be)
    params["dec.0.W"] = params["dec.0.W"].astype(np.float64)
    x, eps = be.uniform((3, 6)), be.normal((3, 2))
    with pytest.raises(InputError, match="params mix dtypes.*dec.0.W"):
        tinyvae.loss_and_grads(params, x, eps, config)


@pytest.mark.parametrize("opt", [tinyvae.Adam, tinyvae.SGD])
def test_an_optimizer_step_refuses_gradients_that_do_not_fit(opt):
    params = {"W": np.zeros((3, 2)), "b": np.zeros(2)}
    o = opt(params)
    with pytest.raises(InputError, match=r"W \(2,\) \(the parameter is \(3, 2\)\)"):
        o.step(params, {"W": np.ones(2), "b": np.ones(2)})          # would broadcast silently
    with pytest.raises(InputError, match="missing b"):
        o.step(params, {"W": np.ones((3, 2))})
    assert not params["W"].any()                                     # nothing stepped


def test_configs_build_their_networks_once():
    config = VAEConfig(input_dim=6, enc_hidden=(4,), dec_hidden=(4,), latent_dim=2)
    assert config.encoder_layers is config.encoder_layers and config.decoder_layers is config.decoder_layers


def test_fit_has_no_per_model_branch():
    source = (Path(tinyvae.__file__).parent / "train.py").read_text()
    assert '== "m2"' not in source and '== "vae"' not in source and '"x_"' not in source
    assert set(models.MODELS) == {VAEConfig, AEConfig, M2Config, SparseAEConfig}


def test_gradient_checks_refuse_float32():
    """In float32 a correct gradient checks at ~1e-2: the checker refuses rather than return a number that misleads."""
    from tinyvae.core.layers import affine_backward, affine_forward
    from tinyvae.gradcheck import check_backward, check_model_gradients
    config = VAEConfig(input_dim=6, enc_hidden=(4,), dec_hidden=(4,), latent_dim=2)
    be = make("numpy", dtype="float32")
    params = vae.init_params(config, be)
    x, eps = be.uniform((3, 6)), be.normal((3, 2))
    with pytest.raises(InputError, match="check_model_gradients needs float64 arrays.*float32"):
        check_model_gradients(lambda q: (lambda r: (r[0].loss, r[1]))(vae.loss_and_grads(q, x, eps, config)), params)
    with pytest.raises(InputError, match="check_backward needs float64"):
        check_backward(affine_forward, affine_backward, [x, params["enc.0.W"], params["enc.0.b"]])


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_a_bad_seed_is_one_line(seed):
    from tinyvae.errors import BackendError
    with pytest.raises(BackendError, match="seed must be an integer >= 0"):
        tinyvae.get_backend("numpy", seed=seed)


def test_fit_without_an_output_folder_is_one_line():
    from tinyvae.train import fit
    config = VAEConfig(input_dim=6, enc_hidden=(4,), dec_hidden=(4,), latent_dim=2)
    x = np.random.default_rng(0).random((8, 6)).astype(np.float32)
    with pytest.raises(InputError, match="out_dir must be a folder name"):
        fit(x, x, config, TrainConfig(epochs=1), tinyvae.get_backend("numpy"), out_dir=None)
