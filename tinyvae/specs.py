"""Layer specs as records and tables: the JSON form checkpoints keep, Keras-style summaries, the Keras presets.

    layer_to_dict(Conv(32, 3, 2, "relu")) == {"kind": "conv", "filters": 32, "kernel": 3, "stride": 2,
                                              "activation": "relu"}
"""
from __future__ import annotations

import math

from .checks import output_shape
from .core.nets import Conv, ConvTranspose, Dense, Flatten, Reshape
from .errors import InputError

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


def summary(layers, in_shape, name="network") -> str:
    """A Keras-style table: layer, output shape, parameter count; then the total."""
    output_shape(layers, in_shape, name)              # refuses, naming the layer, a network that does not fit
    rows, shape = [("Input", f"(None, {', '.join(map(str, in_shape))})", 0)], tuple(in_shape)
    for i, layer in enumerate(layers):
        params, shape = layer.shapes(shape)
        d = layer_to_dict(layer)
        args = ", ".join(f"{k}={tuple(v) if k == 'shape' else v!r}" for k, v in d.items() if k != "kind")
        rows.append((f"{i}: {type(layer).__name__}({args})", f"(None, {', '.join(map(str, shape))})",
                     sum(math.prod(s) for s in params.values())))
    w0, w1 = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    lines = [f"{name}", f"{'layer':<{w0}}  {'output shape':<{w1}}  {'params':>8}", "-" * (w0 + w1 + 12)]
    lines += [f"{a:<{w0}}  {b:<{w1}}  {c:>8,}" for a, b, c in rows]
    lines.append(f"total params: {sum(r[2] for r in rows):,}")
    return "\n".join(lines)


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
