"""Networks as sequences of small layer descriptions, and the two passes over them.

A network is a tuple of layer specs, read like Keras's Sequential:

    (Reshape((28, 28, 1)), Conv(32, 3, 2, "relu"), Conv(64, 3, 2, "relu"),
     Flatten(), Dense(16, "relu"), Dense(4))

A spec holds no arrays: it knows its parameter shapes and which forward/backward
pair to call. Layer i of network `prefix` owns params[f"{prefix}.{i}.W"] and ".b" (i
counts layers without parameters too, as nn.Sequential does). Shapes here are per
example: (784,) or (28, 28, 1). RULES are checked when a spec is made (checks.py).
Derivation of the two passes: docs/gradients.md#the-net-stack
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..checks import Checked, Int, OneOf, Sizes
from ..fast import conv as fast_conv
from .layers import ACTIVATIONS, affine_backward, affine_forward, reshape_backward, reshape_forward


class _Linear:
    """act(op(x, W) + b): the body of Dense, Conv and ConvTranspose. Params W, b."""

    PARAMS = ("W", "b")

    def forward(self, p, x):
        y, op_cache = self.OP[0](x, p["W"], p["b"], *self.op_args())
        y, act_cache = ACTIVATIONS[self.activation][0](y)
        return y, (op_cache, act_cache)

    def backward(self, dy, cache, need_dx=True):
        op_cache, act_cache = cache
        dy = ACTIVATIONS[self.activation][1](dy, act_cache)        # undo the activation
        dx, dW, db = self.OP[1](dy, op_cache, need_dx)             # undo y = op(x, W) + b
        return dx, {"W": dW, "b": db}


@dataclass(frozen=True)
class Dense(_Linear, Checked):
    """x (N, D) -> act(x W + b) (N, units). Params: W (D, units), b (units,)."""

    units: int
    activation: str = "linear"
    OP, IN_RANK, KIND = (affine_forward, affine_backward), 1, "dense"
    RULES = dict(units=Int(1), activation=OneOf(ACTIVATIONS))
    LABEL = "{cls} {field}"

    def op_args(self):
        return ()

    def shapes(self, in_shape):
        return {"W": (in_shape[0], self.units), "b": (self.units,)}, (self.units,)


@dataclass(frozen=True)
class Conv(_Linear, Checked):
    """x (N, H, W, C) -> act(conv(x, W) + b) (N, ceil(H/s), ceil(W/s), filters), Keras 'same' padding.

    Params: W (kernel, kernel, C, filters) (Keras's layout), b (filters,).
    """

    filters: int
    kernel: int = 3
    stride: int = 1
    activation: str = "linear"
    OP, IN_RANK, KIND = fast_conv.CONV2D, 3, "conv"   # conv.py's pair, a few images at a time (same numbers)
    RULES = dict(filters=Int(1), kernel=Int(1), stride=Int(1), activation=OneOf(ACTIVATIONS))
    LABEL = "{cls} {field}"

    def op_args(self):
        return (self.stride,)

    def shapes(self, in_shape):
        h, w, c = in_shape
        k, s = self.kernel, self.stride
        return {"W": (k, k, c, self.filters), "b": (self.filters,)}, (-(-h // s), -(-w // s), self.filters)


@dataclass(frozen=True)
class ConvTranspose(Conv):
    """x (N, H, W, C) -> act(convT(x, W) + b) (N, H*s, W*s, filters), Keras 'same' padding.

    Params: W (kernel, kernel, filters, C) (Keras's Conv2DTranspose layout), b (filters,).
    """

    OP, KIND = fast_conv.CONV2D_TRANSPOSE, "conv_transpose"

    def shapes(self, in_shape):
        h, w, c = in_shape
        k, s = self.kernel, self.stride
        return {"W": (k, k, self.filters, c), "b": (self.filters,)}, (h * s, w * s, self.filters)


@dataclass(frozen=True)
class Reshape(Checked):
    """x (N, *a) -> (N, *shape), values in row-major order (so (784,) -> (28, 28, 1) is HWC). No params."""

    shape: tuple
    PARAMS, KIND = (), "reshape"
    RULES = dict(shape=Sizes(scalar=True, fix="e.g. Reshape((28, 28, 1))"))
    LABEL = "Reshape shape"

    def shapes(self, in_shape):
        return {}, self.shape

    def forward(self, p, x):
        return reshape_forward(x, self.shape)

    def backward(self, dy, cache, need_dx=True):
        return (reshape_backward(dy, cache) if need_dx else None), {}


@dataclass(frozen=True)
class Flatten(Checked):
    """x (N, H, W, C) -> (N, H*W*C), in HWC order as Keras flattens (PyTorch flattens CHW). No params."""

    PARAMS, KIND, RULES = (), "flatten", {}

    def shapes(self, in_shape):
        return {}, (math.prod(in_shape),)

    def forward(self, p, x):
        return reshape_forward(x, (math.prod(x.shape[1:]),))

    backward = Reshape.backward


def param_shapes(layers, in_shape, prefix):
    """{f"{prefix}.{i}.{name}": shape} for every parameter of the network, in layer order."""
    shapes, shape = {}, tuple(in_shape)
    for i, layer in enumerate(layers):
        params, shape = layer.shapes(shape)
        shapes.update({f"{prefix}.{i}.{n}": s for n, s in params.items()})
    return shapes


def net_forward(params, prefix, layers, h):
    """Run `layers` in order; layer i's params are params[f"{prefix}.{i}.{name}"].

    Shapes: h (N, *in_shape) -> out (N, *out_shape). Returns (out, caches).
    Derivation: docs/gradients.md#the-net-stack
    """
    caches = []
    for i, layer in enumerate(layers):
        h, cache = layer.forward({n: params[f"{prefix}.{i}.{n}"] for n in layer.PARAMS}, h)
        caches.append(cache)
    return h, caches


def net_backward(dout, caches, prefix, layers, grads, need_dx=True):
    """Undo net_forward, last layer first; fills grads[f"{prefix}.{i}.{name}"]; returns d(input).

    need_dx=False: the input is data, so nothing below the first layer with
    parameters needs a gradient (for a conv that skips a whole col2im); returns None.
    Shapes: dout (N, *out_shape) -> dh (N, *in_shape).
    Derivation: docs/gradients.md#the-net-stack
    """
    first = next((i for i, layer in enumerate(layers) if layer.PARAMS), 0)
    for i in reversed(range(len(layers))):
        if not need_dx and i < first:
            return None
        dout, g = layers[i].backward(dout, caches[i], need_dx=need_dx or i > first)
        grads.update({f"{prefix}.{i}.{n}": v for n, v in g.items()})
    return dout


def mlp(hidden, out, activation="relu"):
    """(400,), 40 -> (Dense(400, 'relu'), Dense(40)): hidden layers, then a linear output layer."""
    return tuple(Dense(h, activation) for h in hidden) + (Dense(out),)
