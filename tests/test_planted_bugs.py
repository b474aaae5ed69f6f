"""Planted bugs in the conv layers and the flatten order: each must be caught.

Finite differences catch a wrong dW or db path and an activation undone in the
wrong order; they cannot see a consistent permutation such as flattening CHW
instead of HWC (the gradient of a permuted function is the permuted gradient),
so the flatten order is pinned against the layout Keras uses, by index.
"""
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyvae.core import conv, nets
from tinyvae.core.nets import Conv, ConvTranspose, Dense, Flatten, Reshape
from tinyvae.gradcheck import check_backward, max_error, numerical_gradient, rel_error

from conftest import BACKENDS, make, put


def mutant(module, old, new):
    """`module` (in tinyvae.core) with one line of its source changed: a planted bug."""
    path = Path(module.__file__)
    source = path.read_text()
    assert source.count(old) == 1, f"the line to mutate is gone: {old!r}"
    bad = types.ModuleType(f"tinyvae.core._{path.stem}_mutant")
    bad.__package__ = "tinyvae.core"
    sys.modules[bad.__name__] = bad
    exec(compile(source.replace(old, new), str(path), "exec"), bad.__dict__)
    return bad


def conv_errors(module, transpose, be=None):
    """rel_error of (dx, dW, db) of a conv pair of `module` against finite differences."""
    be = be or make("numpy")
    rng = np.random.default_rng(0)
    x = put(be, rng.standard_normal((2, 5, 4, 3)))
    W = put(be, rng.standard_normal((3, 3, 2, 3) if transpose else (3, 3, 3, 2)))
    b = put(be, rng.standard_normal(2))
    forward = module.conv2d_transpose_forward if transpose else module.conv2d_forward
    backward = module.conv2d_transpose_backward if transpose else module.conv2d_backward
    return check_backward(lambda x, W, b: forward(x, W, b, 2), backward, [x, W, b])


@pytest.mark.parametrize("transpose", [False, True], ids=["conv", "conv_transpose"])
def test_the_plain_conv_pairs_pass(transpose):
    assert max_error(conv_errors(conv, transpose)) < 1e-7


@pytest.mark.parametrize("old,new,transpose,which", [
    # dW from the wrong side of the product (the transpose of the right one, reshaped back)
    ("dW2 = im2col(xpad, k, s, OH, OW).T @ dy2", "dW2 = (dy2.T @ im2col(xpad, k, s, OH, OW)).T * 0.5", False, 1),
    # db averaged where it is summed
    ("    db = xp.sum(dy2, axis=0)                                     # (F,)",
     "    db = xp.mean(dy2, axis=0)                                    # (F,)", False, 2),
    # the transposed conv's dW from x and dy's columns the other way round
    ("dW2 = dcols.T @ xp.reshape(x, (-1, Cin))", "dW2 = dcols.T @ xp.reshape(x, (-1, Cin)) * 2.0", True, 1),
    # its db over one image only
    ("db = xp.sum(xp.reshape(dy, (-1, Cout)), axis=0)", "db = xp.sum(xp.reshape(dy[:1, ...], (-1, Cout)), axis=0)",
     True, 2),
], ids=["conv-dW-halved", "conv-db-mean", "convT-dW-doubled", "convT-db-one-image"])
def test_the_gradient_check_catches_a_wrong_dW_or_db_path(old, new, transpose, which):
    errors = conv_errors(mutant(conv, old, new), transpose)
    assert errors[which] > 1e-3, errors
    assert max_error(errors[:which] + errors[which + 1:]) < 1e-7    # only the planted path is wrong


def _net_grad_error(layers, in_shape, nets_module):
    """The largest rel_error of a network's parameter gradients (net_backward) against finite differences."""
    be, rng = make("numpy"), np.random.default_rng(3)
    params = {k: put(be, 0.5 * rng.standard_normal(s))
              for k, s in nets_module.param_shapes(layers, in_shape, "net").items()}
    x = put(be, rng.standard_normal((2, *in_shape)))
    out, caches = nets_module.net_forward(params, "net", layers, x)
    g_out = put(be, rng.standard_normal(tuple(out.shape)))
    grads = {}
    nets_module.net_backward(g_out, caches, "net", layers, grads)
    return max(rel_error(grads[k], numerical_gradient(
        lambda _: float(np.sum(nets_module.net_forward(params, "net", layers, x)[0] * g_out)), p))
        for k, p in params.items())


CONV_NET = (Reshape((4, 4, 1)), Conv(2, 3, 2, "tanh"), ConvTranspose(2, 3, 2, "sigmoid"), Flatten(), Dense(3, "tanh"))


def test_the_conv_layer_specs_pass():
    assert _net_grad_error(CONV_NET, (16,), nets) < 1e-7


def test_the_gradient_check_catches_the_activation_applied_before_the_conv():
    """A layer is act(conv(x)): applying the activation to the input first (the wrong order) is caught.
    The shapes are kept (stride 1, as many filters as channels) so that only the order is wrong."""
    bad = mutant(nets, '        y, op_cache = self.OP[0](x, p["W"], p["b"], *self.op_args())\n'
                       '        y, act_cache = ACTIVATIONS[self.activation][0](y)',
                 '        y, act_cache = ACTIVATIONS[self.activation][0](x)\n'
                 '        y, op_cache = self.OP[0](y, p["W"], p["b"], *self.op_args())')
    layers = (bad.Reshape((4, 4, 2)), bad.Conv(2, 3, 1, "tanh"), bad.ConvTranspose(2, 3, 1, "sigmoid"),
              bad.Flatten(), bad.Dense(3))
    good = (Reshape((4, 4, 2)), Conv(2, 3, 1, "tanh"), ConvTranspose(2, 3, 1, "sigmoid"), Flatten(), Dense(3))
    assert _net_grad_error(good, (32,), nets) < 1e-7
    assert _net_grad_error(layers, (32,), bad) > 1e-3


def keras_flatten(x):
    """Keras's Flatten of NHWC images, by index: out[n, (h W + w) C + c] = x[n, h, w, c]."""
    N, H, W, C = x.shape
    out = np.empty((N, H * W * C))
    for n, h, w, c in np.ndindex(N, H, W, C):
        out[n, (h * W + w) * C + c] = x[n, h, w, c]
    return out


@pytest.mark.parametrize("name", BACKENDS)
@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 4), st.integers(1, 4), st.integers(1, 3)))
def test_flatten_and_reshape_keep_the_keras_hwc_order(name, shape):
    be = make(name)
    x = np.random.default_rng(0).standard_normal(shape)
    flat = be.to_numpy(Flatten().forward({}, put(be, x))[0])
    np.testing.assert_array_equal(flat, keras_flatten(x))
    back = be.to_numpy(Reshape(shape[1:]).forward({}, put(be, flat))[0])
    np.testing.assert_array_equal(back, x)


class ChwFlatten(Flatten):
    """The planted bug finite differences cannot see: flatten in PyTorch's CHW order, its backward to match."""

    def forward(self, p, x):
        chw = np.transpose(x, (0, 3, 1, 2))                                  # (N, C, H, W)
        return chw.reshape(x.shape[0], -1), chw.shape

    def backward(self, dy, cache, need_dx=True):
        return np.transpose(dy.reshape(cache), (0, 2, 3, 1)), {}


def test_a_chw_flatten_passes_finite_differences_but_not_the_pinned_order():
    x = np.random.default_rng(1).standard_normal((2, 3, 2, 2))
    assert not np.array_equal(ChwFlatten().forward({}, x)[0], keras_flatten(x))   # the pinned order catches it
    layers = (Reshape((2, 2, 2)), Conv(2, 3, 1, "tanh"), ChwFlatten(), Dense(3))
    assert _net_grad_error(layers, (8,), nets) < 1e-7                               # finite differences cannot


@pytest.mark.parametrize("name", BACKENDS)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 2), h=st.integers(1, 7), w=st.integers(1, 7),
       c=st.integers(1, 3), k=st.integers(1, 4), s=st.integers(1, 3))
def test_col2im_is_the_adjoint_of_im2col(name, seed, n, h, w, c, k, s):
    """<im2col(x), cols> = <x, col2im(cols)> for every padded image x and columns cols: the identity
    docs/gradients.md#conv2d states, which makes conv2d_backward's dx the true gradient."""
    be, rng = make(name), np.random.default_rng(seed)
    OH, OW = -(-h // s), -(-w // s)
    pads = (conv.same_padding(h, k, s), conv.same_padding(w, k, s))
    xpad_shape = (n, h + sum(pads[0]), w + sum(pads[1]), c)
    x = put(be, rng.standard_normal(xpad_shape))
    cols = put(be, rng.standard_normal((n * OH * OW, k * k * c)))
    left = float(be.xp.sum(conv.im2col(x, k, s, OH, OW) * cols))
    right = float(be.xp.sum(x * conv.col2im(cols, xpad_shape, k, s, OH, OW)))
    assert left == pytest.approx(right, rel=1e-12, abs=1e-12)


def test_the_adjoint_check_catches_a_col2im_that_drops_a_tap():
    bad = mutant(conv, "    for t in range(k * k):", "    for t in range(k * k - 1):")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 7, 7, 2))                                # padded: (3 - 1) 2 + 3 = 7
    cols = rng.standard_normal((9, 18))
    left = np.sum(conv.im2col(x, 3, 2, 3, 3) * cols)
    assert abs(left - np.sum(x * bad.col2im(cols, x.shape, 3, 2, 3, 3))) > 1e-3
