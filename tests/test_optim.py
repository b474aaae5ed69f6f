"""Optimizers against their formulas, written out independently in NumPy."""
import numpy as np
import pytest

from conftest import BACKENDS, make
from tinyvae.errors import InputError
from tinyvae import SGD, Adam


def _setup(be, seed=0):
    rng = np.random.default_rng(seed)
    p0 = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
    gs = [{k: rng.standard_normal(v.shape) for k, v in p0.items()} for _ in range(4)]
    params = {k: be.asarray(v) for k, v in p0.items()}
    return p0, gs, params


@pytest.mark.parametrize("name", BACKENDS)
def test_adam_matches_algorithm_1_with_bias_correction(name):
    be = make(name)
    p0, gs, params = _setup(be)
    lr, b1, b2, eps = 1e-2, 0.8, 0.95, 1e-8
    opt = Adam(params, lr=lr, betas=(b1, b2), eps=eps)
    expect = {k: v.copy() for k, v in p0.items()}
    m = {k: np.zeros_like(v) for k, v in p0.items()}
    v = {k: np.zeros_like(x) for k, x in p0.items()}
    for t, g in enumerate(gs, start=1):
        opt.step(params, {k: be.asarray(x) for k, x in g.items()})
        for k in p0:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
            m_hat = m[k] / (1 - b1 ** t)
            v_hat = v[k] / (1 - b2 ** t)
            expect[k] = expect[k] - lr * m_hat / (np.sqrt(v_hat) + eps)
        for k in p0:
            np.testing.assert_allclose(be.to_numpy(params[k]), expect[k], rtol=1e-12, atol=1e-14)
    state = opt.state_dict()
    assert state["t"] == 4
    for k in p0:   # the saved moments under their own names: m the mean of g, v the mean of g^2
        np.testing.assert_allclose(be.to_numpy(state["m"][k]), m[k], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(be.to_numpy(state["v"][k]), v[k], rtol=1e-12, atol=1e-14)


def test_adam_first_step_moves_each_weight_by_lr():
    """After bias correction, step 1 is lr * g / |g| (up to eps): no startup shrinkage."""
    params = {"w": np.array([1.0, -2.0, 3.0])}
    Adam(params, lr=0.1).step(params, {"w": np.array([5.0, -0.01, 1e3])})
    np.testing.assert_allclose(params["w"], [0.9, -1.9, 2.9], rtol=1e-6)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_with_momentum_matches_its_formula(name, momentum):
    be = make(name)
    p0, gs, params = _setup(be)
    lr = 0.05
    opt = SGD(params, lr=lr, momentum=momentum)
    expect = {k: v.copy() for k, v in p0.items()}
    vel = {k: np.zeros_like(v) for k, v in p0.items()}
    for g in gs:
        opt.step(params, {k: be.asarray(x) for k, x in g.items()})
        for k in p0:
            vel[k] = momentum * vel[k] + g[k]
            expect[k] = expect[k] - lr * vel[k]
        for k in p0:
            np.testing.assert_allclose(be.to_numpy(params[k]), expect[k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("opt_cls", [Adam, SGD])
def test_optimizer_state_round_trips(opt_cls):
    """Restoring the state mid-run gives exactly the same trajectory."""
    be = make("numpy")
    p0, gs, params = _setup(be)
    a = opt_cls(params)
    for g in gs[:2]:
        a.step(params, g)
    saved_params = {k: v.copy() for k, v in params.items()}
    saved_state = {k: ({n: x.copy() for n, x in s.items()} if isinstance(s, dict) else s)
                   for k, s in a.state_dict().items()}
    for g in gs[2:]:
        a.step(params, g)
    b = opt_cls(saved_params)
    b.load_state_dict(saved_state)
    for g in gs[2:]:
        b.step(saved_params, g)
    for k in params:
        np.testing.assert_array_equal(params[k], saved_params[k])


BAD_SETTINGS = [  # (optimizer, keyword arguments, what the message must name)
    (Adam, {"lr": float("nan")}, "Adam lr"),
    (Adam, {"lr": -1e-3}, "Adam lr"),
    (Adam, {"lr": 0.0}, "Adam lr"),
    (Adam, {"lr": float("inf")}, "Adam lr"),
    (Adam, {"lr": "1e-3"}, "Adam lr"),
    (Adam, {"lr": True}, "Adam lr"),
    (Adam, {"betas": (1.0, 0.999)}, "Adam betas[0]"),
    (Adam, {"betas": (-0.1, 0.999)}, "Adam betas[0]"),
    (Adam, {"betas": (0.9, 1.0)}, "Adam betas[1]"),
    (Adam, {"betas": (0.9, float("nan"))}, "Adam betas[1]"),
    (Adam, {"betas": 0.9}, "Adam betas"),
    (Adam, {"betas": (0.9, 0.99, 0.999)}, "Adam betas"),
    (Adam, {"eps": 0.0}, "Adam eps"),
    (Adam, {"eps": -1e-8}, "Adam eps"),
    (Adam, {"eps": float("nan")}, "Adam eps"),
    (SGD, {"lr": float("nan")}, "SGD lr"),
    (SGD, {"lr": -0.01}, "SGD lr"),
    (SGD, {"momentum": 1.0}, "SGD momentum"),
    (SGD, {"momentum": -0.5}, "SGD momentum"),
    (SGD, {"momentum": float("inf")}, "SGD momentum"),
]


@pytest.mark.parametrize("opt_cls, kwargs, names", BAD_SETTINGS)
def test_bad_settings_raise_one_line_naming_the_fix(opt_cls, kwargs, names):
    params = {"w": np.zeros(3)}
    with pytest.raises(InputError) as e:
        opt_cls(params, **kwargs)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(names) and "pass e.g." in msg, msg
    given = next(iter(kwargs.values()))
    bad = [b for b in given if not 0 <= b < 1] if names.startswith("Adam betas[") else [given]
    assert repr(bad[0]) in msg, msg  # the value that was given


@pytest.mark.parametrize("opt_cls, kwargs", [
    (Adam, {"lr": 1, "betas": (0, 0), "eps": 1e-12}),
    (Adam, {"lr": np.float32(1e-3), "betas": [0.5, 0.999999]}),
    (SGD, {"lr": 10, "momentum": 0}),
    (SGD, {"momentum": 0.999}),
])
def test_edge_settings_in_range_are_accepted(opt_cls, kwargs):
    opt = opt_cls({"w": np.zeros(3)}, **kwargs)
    assert type(opt.lr) is float and opt.lr == float(kwargs.get("lr", opt.lr))
