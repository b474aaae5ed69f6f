"""Networks as sequences of small layer descriptions, and the two passes over them.

A network is a tuple of layer specs, read like Keras's Sequential:

    (Reshape((28, 28, 1)), Conv(32, 3, 2, "relu"), Conv(64, 3, 2, "relu"),
     Flatten(), Dense(16, "relu"), Dense(4))

A spec holds no arrays: it knows its parameter shapes for a given input shape,
and which forward/backward pair to call (layers.py, conv.py). The parameters
live in one flat dict, layer i of network `prefix` owning params[f"{prefix}.{i}.W"]
and params[f"{prefix}.{i}.b"] (i counts layers without parameters too, as
nn.Sequential does), so Adam and the checkpoint see plain named arrays.

Shapes here are per example, without the batch axis: (784,) or (28, 28, 1).
Derivation of the two passes: docs/gradients.md#the-net-stack
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from . import conv
from .errors import InputError
from .layers import ACTIVATIONS, affine_backward, affine_forward, reshape_backward, reshape_forward


def _check_activation(activation):
    if activation not in ACTIVATIONS:
        raise InputError(f"unknown activation {activation!r}: choose one of {', '.join(ACTIVATIONS)}")


def _check_positive_int(value, what):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{what} must be a positive integer, got {value!r}")


# ---------------------------------------------------------------------------
# The layer specs
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Dense:
    """x (N, D) -> act(x W + b) (N, units). Params: W (D, units), b (units,)."""

    units: int
    activation: str = "linear"
    PARAMS = ("W", "b")

    def __post_init__(self):
        _check_positive_int(self.units, "Dense units")
        _check_activation(self.activation)

    def shapes(self, in_shape):
        if len(in_shape) != 1:
            raise InputError(f"Dense({self.units}) needs a flat input, got {in_shape}: put Flatten() before it")
        return {"W": (in_shape[0], self.units), "b": (self.units,)}, (self.units,)

    def forward(self, p, x):
        y, affine_cache = affine_forward(x, p["W"], p["b"])       # (N, units)
        y, act_cache = ACTIVATIONS[self.activation][0](y)
        return y, (affine_cache, act_cache)

    def backward(self, dy, cache, need_dx=True):
        affine_cache, act_cache = cache
        dy = ACTIVATIONS[self.activation][1](dy, act_cache)       # undo the activation
        dx, dW, db = affine_backward(dy, affine_cache, need_dx)   # undo y = x W + b
        return dx, {"W": dW, "b": db}


@dataclass(frozen=True)
class Conv:
    """x (N, H, W, C) -> act(conv(x, W) + b) (N, ceil(H/s), ceil(W/s), filters), 'same' padding.

    Params: W (kernel, kernel, C, filters) (Keras's layout), b (filters,).
    """

    filters: int
    kernel: int = 3
    stride: int = 1
    activation: str = "linear"
    PARAMS = ("W", "b")

    def __post_init__(self):
        for name in ("filters", "kernel", "stride"):
            _check_positive_int(getattr(self, name), f"Conv {name}")
        _check_activation(self.activation)

    def shapes(self, in_shape):
        if len(in_shape) != 3:
            raise InputError(f"Conv({self.filters}) needs (H, W, C) images, got {in_shape}: "
                             "put Reshape((H, W, C)) before it")
        h, w, c = in_shape
        k, s = self.kernel, self.stride
        out = (-(-h // s), -(-w // s), self.filters)
        return {"W": (k, k, c, self.filters), "b": (self.filters,)}, out

    def forward(self, p, x):
        y, conv_cache = conv.conv2d_forward(x, p["W"], p["b"], self.stride)
        y, act_cache = ACTIVATIONS[self.activation][0](y)
        return y, (conv_cache, act_cache)

    def backward(self, dy, cache, need_dx=True):
        conv_cache, act_cache = cache
        dy = ACTIVATIONS[self.activation][1](dy, act_cache)                # undo the activation
        dx, dW, db = conv.conv2d_backward(dy, conv_cache, need_dx=need_dx)  # undo the convolution
        return dx, {"W": dW, "b": db}


@dataclass(frozen=True)
class ConvTranspose:
    """x (N, H, W, C) -> act(convT(x, W) + b) (N, H*s, W*s, filters), Keras 'same' padding.

    Params: W (kernel, kernel, filters, C) (Keras's Conv2DTranspose layout), b (filters,).
    """

    filters: int
    kernel: int = 3
    stride: int = 1
    activation: str = "linear"
    PARAMS = ("W", "b")

    def __post_init__(self):
        for name in ("filters", "kernel", "stride"):
            _check_positive_int(getattr(self, name), f"ConvTranspose {name}")
        _check_activation(self.activation)

    def shapes(self, in_shape):
        if len(in_shape) != 3:
            raise InputError(f"ConvTranspose({self.filters}) needs (H, W, C) images, got {in_shape}: "
                             "put Reshape((H, W, C)) before it")
        h, w, c = in_shape
        k, s = self.kernel, self.stride
        return {"W": (k, k, self.filters, c), "b": (self.filters,)}, (h * s, w * s, self.filters)

    def forward(self, p, x):
        y, conv_cache = conv.conv2d_transpose_forward(x, p["W"], p["b"], self.stride)
        y, act_cache = ACTIVATIONS[self.activation][0](y)
        return y, (conv_cache, act_cache)

    def backward(self, dy, cache, need_dx=True):
        conv_cache, act_cache = cache
        dy = ACTIVATIONS[self.activation][1](dy, act_cache)                          # undo the activation
        dx, dW, db = conv.conv2d_transpose_backward(dy, conv_cache, need_dx=need_dx)  # undo the convolution
        return dx, {"W": dW, "b": db}


@dataclass(frozen=True)
class Reshape:
    """x (N, *a) -> (N, *shape), values in row-major order (so (784,) -> (28, 28, 1) is HWC). No params."""

    shape: tuple
    PARAMS = ()

    def __post_init__(self):
        shape = tuple(self.shape) if isinstance(self.shape, (tuple, list)) else (self.shape,)
        for s in shape:
            _check_positive_int(s, "Reshape sizes")
        object.__setattr__(self, "shape", shape)

    def shapes(self, in_shape):
        if math.prod(in_shape) != math.prod(self.shape):
            raise InputError(f"Reshape{self.shape} holds {math.prod(self.shape)} values but its input "
                             f"{in_shape} holds {math.prod(in_shape)}")
        return {}, self.shape

    def forward(self, p, x):
        return reshape_forward(x, self.shape)

    def backward(self, dy, cache, need_dx=True):
        return (reshape_backward(dy, cache) if need_dx else None), {}


@dataclass(frozen=True)
class Flatten:
    """x (N, H, W, C) -> (N, H*W*C), in HWC order as Keras flattens (PyTorch flattens CHW). No params."""

    PARAMS = ()

    def shapes(self, in_shape):
        return {}, (math.prod(in_shape),)

    def forward(self, p, x):
        return reshape_forward(x, (math.prod(x.shape[1:]),))

    def backward(self, dy, cache, need_dx=True):
        return (reshape_backward(dy, cache) if need_dx else None), {}


LAYER_KINDS = {"dense": Dense, "conv": Conv, "conv_transpose": ConvTranspose,
               "reshape": Reshape, "flatten": Flatten}
_KIND_OF = {cls: kind for kind, cls in LAYER_KINDS.items()}


def layer_to_dict(layer) -> dict:
    """{"kind": "conv", "filters": 32, ...}: the JSON form stored in checkpoints and metrics."""
    fields = {name: getattr(layer, name) for name in layer.__dataclass_fields__}
    if "shape" in fields:
        fields["shape"] = list(fields["shape"])
    return {"kind": _KIND_OF[type(layer)], **fields}


def layer_from_dict(d):
    """The inverse of layer_to_dict; a spec passes through unchanged."""
    if type(d) in _KIND_OF:
        return d
    if not isinstance(d, dict) or d.get("kind") not in LAYER_KINDS:
        raise InputError(f"not a layer description: {d!r}: use one of {', '.join(LAYER_KINDS)} "
                         "as 'kind', or a spec such as Dense(400, 'relu')")
    fields = {k: v for k, v in d.items() if k != "kind"}
    try:
        return LAYER_KINDS[d["kind"]](**fields)
    except TypeError as e:
        raise InputError(f"layer {d!r}: {e}") from None


# ---------------------------------------------------------------------------
# Shapes, parameters, summary
# ---------------------------------------------------------------------------


def infer_shapes(layers, in_shape, name="network"):
    """[(param shapes, output shape)] of each layer for one example of `in_shape`.

    Raises InputError naming the layer where the shapes stop fitting.
    """
    rows, shape = [], tuple(in_shape)
    for i, layer in enumerate(layers):
        try:
            params, shape = layer.shapes(shape)
        except InputError as e:
            raise InputError(f"{name} layer {i} ({type(layer).__name__}): {e}") from None
        rows.append((params, shape))
    return rows


def output_shape(layers, in_shape, name="network"):
    """The shape one example of `in_shape` has after `layers`."""
    rows = infer_shapes(layers, in_shape, name)
    return rows[-1][1] if rows else tuple(in_shape)


def param_shapes(layers, in_shape, prefix):
    """{f"{prefix}.{i}.{name}": shape} for every parameter of the network, in layer order."""
    return {f"{prefix}.{i}.{n}": shape
            for i, (params, _) in enumerate(infer_shapes(layers, in_shape, prefix))
            for n, shape in params.items()}


def summary(layers, in_shape, name="network") -> str:
    """A Keras-style table: layer, output shape, parameter count; then the total."""
    rows = [("Input", f"(None, {', '.join(map(str, in_shape))})", 0)]
    for i, (layer, (params, shape)) in enumerate(zip(layers, infer_shapes(layers, in_shape, name))):
        d = layer_to_dict(layer)
        args = ", ".join(f"{k}={tuple(v) if k == 'shape' else v!r}" for k, v in d.items() if k != "kind")
        rows.append((f"{i}: {type(layer).__name__}({args})", f"(None, {', '.join(map(str, shape))})",
                     sum(math.prod(s) for s in params.values())))
    w0, w1 = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    lines = [f"{name}", f"{'layer':<{w0}}  {'output shape':<{w1}}  {'params':>8}", "-" * (w0 + w1 + 12)]
    lines += [f"{a:<{w0}}  {b:<{w1}}  {c:>8,}" for a, b, c in rows]
    lines.append(f"total params: {sum(r[2] for r in rows):,}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# The two passes
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------


def mlp(hidden, out, activation="relu"):
    """(400,), 40 -> (Dense(400, 'relu'), Dense(40)): hidden layers, then a linear output layer."""
    return tuple(Dense(h, activation) for h in hidden) + (Dense(out),)


def keras_conv_encoder(latent_dim, image=(28, 28, 1)):
    """The Keras example's encoder, its two heads fused: 28x28 -> 14x14x32 -> 7x7x64 -> 16 -> [mu | logvar]."""
    return (Reshape(image), Conv(32, 3, 2, "relu"), Conv(64, 3, 2, "relu"),
            Flatten(), Dense(16, "relu"), Dense(2 * latent_dim))


def keras_conv_decoder(image=(28, 28, 1)):
    """The Keras example's decoder, ending in logits (no sigmoid): z -> 7x7x64 -> 14x14x64 -> 28x28x32 -> 28x28x1."""
    h, w, c = image
    return (Dense((h // 4) * (w // 4) * 64, "relu"), Reshape((h // 4, w // 4, 64)),
            ConvTranspose(64, 3, 2, "relu"), ConvTranspose(32, 3, 2, "relu"),
            ConvTranspose(c, 3, 1), Flatten())
