"""The layer stack: shape inference, parameter shapes, the Keras presets, the
forward against hand-written layers, and net_backward against finite differences."""
import math

import numpy as np
import pytest

from conftest import BACKENDS, make, put
from tinyvae import checks, specs
from tinyvae.core import nets
from tinyvae.errors import InputError
from tinyvae.gradcheck import max_error, numerical_gradient, rel_error
from tinyvae.core.nets import Conv, ConvTranspose, Dense, Flatten, Reshape

TOL = 1e-6


def random_net_params(layers, in_shape, prefix, be, rng, scale=0.5):
    return {k: put(be, scale * rng.standard_normal(s))
            for k, s in nets.param_shapes(layers, in_shape, prefix).items()}


# A stack of every layer kind, small enough for finite differences.
EVERY_KIND = (Reshape((4, 4, 1)), Conv(2, 3, 2, "tanh"), ConvTranspose(3, 2, 2, "softplus"),
              Conv(2, 3, 1, "leaky_relu"), Flatten(), Dense(5, "sigmoid"), Dense(3))


@pytest.mark.parametrize("name", BACKENDS)
def test_dense_stack_matches_hand_written_forward(name):
    be, rng = make(name), np.random.default_rng(0)
    layers = nets.mlp((5, 4), 3, "relu")
    p = random_net_params(layers, (6,), "enc", be, rng)
    x = rng.standard_normal((2, 6))
    out, _ = nets.net_forward(p, "enc", layers, put(be, x))
    n = {k: be.to_numpy(v) for k, v in p.items()}
    h = np.maximum(x @ n["enc.0.W"] + n["enc.0.b"], 0.0)
    h = np.maximum(h @ n["enc.1.W"] + n["enc.1.b"], 0.0)
    expected = h @ n["enc.2.W"] + n["enc.2.b"]             # the last layer is linear
    np.testing.assert_allclose(be.to_numpy(out), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("layers,in_shape", [
    (nets.mlp((4,), 3, "tanh"), (5,)),
    (EVERY_KIND, (16,)),
    ((Reshape((3, 3, 2)), ConvTranspose(2, 3, 2, "relu"), Flatten()), (18,)),
], ids=["mlp", "every-kind", "convT-first"])
def test_net_backward_matches_finite_differences(name, layers, in_shape):
    """Every parameter gradient and the input gradient of a whole stack, eps-free, float64."""
    be, rng = make(name), np.random.default_rng(1)
    p = random_net_params(layers, in_shape, "net", be, rng)
    x = put(be, rng.uniform(-1, 1, (2, *in_shape)) + 0.05)   # clear of the ReLU kink at 0
    out, _ = nets.net_forward(p, "net", layers, x)
    g_out = put(be, rng.standard_normal(tuple(out.shape)))
    xp = be.xp

    def f(params, xin):
        return xp.sum(nets.net_forward(params, "net", layers, xin)[0] * g_out)

    _, caches = nets.net_forward(p, "net", layers, x)
    grads = {}
    dx = nets.net_backward(g_out, caches, "net", layers, grads)
    assert set(grads) == set(p)
    errors = {k: rel_error(grads[k], numerical_gradient(lambda _: f(p, x), p[k])) for k in p}
    errors["x"] = rel_error(dx, numerical_gradient(lambda xi: f(p, xi), x))
    assert max_error(errors) < TOL, errors


def test_net_backward_check_catches_a_wrong_layer_order():
    """Planted bug: undoing the layers first-to-last must fail the check."""
    be, rng = make("numpy"), np.random.default_rng(2)
    layers = nets.mlp((3,), 3, "tanh")
    p = random_net_params(layers, (3,), "net", be, rng)
    x = put(be, rng.standard_normal((2, 3)))
    out, caches = nets.net_forward(p, "net", layers, x)
    g_out = put(be, rng.standard_normal(tuple(out.shape)))
    grads, d = {}, g_out
    for i in range(len(layers)):                               # wrong: first layer first
        d, g = layers[i].backward(d, caches[i])
        grads.update({f"net.{i}.{k}": v for k, v in g.items()})
    numeric = numerical_gradient(lambda _: np.sum(nets.net_forward(p, "net", layers, x)[0] * g_out), p["net.0.W"])
    assert rel_error(grads["net.0.W"], numeric) > 1e-2


@pytest.mark.parametrize("name", BACKENDS)
def test_net_backward_skips_everything_below_the_first_weights_for_data(name):
    be, rng = make(name), np.random.default_rng(3)
    layers = (Reshape((4, 4, 1)), Conv(2, 3, 2, "relu"), Flatten(), Dense(2))
    p = random_net_params(layers, (16,), "enc", be, rng)
    x = put(be, rng.standard_normal((2, 16)))
    out, caches = nets.net_forward(p, "enc", layers, x)
    grads = {}
    assert nets.net_backward(out, caches, "enc", layers, grads, need_dx=False) is None
    assert set(grads) == set(p)


def test_keras_conv_vae_has_the_keras_parameter_count():
    enc = specs.keras_conv_encoder(2)
    dec = specs.keras_conv_decoder()
    n_enc = sum(math.prod(s) for s in nets.param_shapes(enc, (784,), "enc").values())
    n_dec = sum(math.prod(s) for s in nets.param_shapes(dec, (2,), "dec").values())
    assert (n_enc, n_dec) == (69_076, 65_089) and n_enc + n_dec == 134_165  # as Keras's summary counts
    assert checks.output_shape(enc, (784,)) == (4,) and checks.output_shape(dec, (2,)) == (784,)
    shapes = nets.param_shapes(enc, (784,), "enc")
    assert shapes["enc.1.W"] == (3, 3, 1, 32) and shapes["enc.4.W"] == (3136, 16) and shapes["enc.5.W"] == (16, 4)
    assert nets.param_shapes(dec, (2,), "dec")["dec.2.W"] == (3, 3, 64, 64)


def test_summary_lists_every_layer_and_the_total():
    text = specs.summary(specs.keras_conv_decoder(), (2,), "decoder")
    assert "ConvTranspose(filters=32, kernel=3, stride=2, activation='relu')" in text
    assert "(None, 28, 28, 32)" in text and "total params: 65,089" in text


@pytest.mark.parametrize("layers,in_shape,message", [
    ((Conv(4, 3, 2),), (784,), "layer 0 (Conv): Conv(4) needs (H, W, C) images"),
    ((Reshape((28, 28, 1)), Dense(4)), (784,), "layer 1 (Dense): Dense(4) needs a flat input"),
    ((Reshape((27, 28, 1)),), (784,), "Reshape(27, 28, 1) holds 756 values"),
])
def test_shape_mismatch_is_one_line_naming_the_layer(layers, in_shape, message):
    with pytest.raises(InputError) as e:
        checks.output_shape(layers, in_shape, "encoder")
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("bad", [lambda: Dense(0), lambda: Dense("16"), lambda: Dense(16, "gelu"),
                                 lambda: Conv(8, 3, 0), lambda: Reshape((7, -1))])
def test_bad_layer_arguments_are_one_line(bad):
    with pytest.raises(InputError):
        bad()


def test_layer_dicts_round_trip():
    for layer in (*specs.keras_conv_encoder(2), *specs.keras_conv_decoder()):
        d = specs.layer_to_dict(layer)
        assert specs.layer_from_dict(d) == layer
    with pytest.raises(InputError, match="not a layer description"):
        specs.layer_from_dict({"kind": "lstm"})
