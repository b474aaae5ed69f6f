"""Layer specs as records and tables: the JSON form checkpoints keep (checks.layer_to_dict and
layer_from_dict, beside the rules that read them), Keras-style summaries, the Keras presets.

    layer_to_dict(Conv(32, 3, 2, "relu")) == {"kind": "conv", "filters": 32, "kernel": 3, "stride": 2,
                                              "activation": "relu"}
"""
from __future__ import annotations

import math

from .checks import layer_from_dict, layer_to_dict, output_shape  # noqa: F401  the records, read by the rules
from .core.batch_norm import BatchNorm
from .core.nets import Conv, ConvTranspose, Dense, Flatten, Reshape


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


def dcgan_generator(width=32, kernel=4, batch_norm=True, image=(28, 28, 1)):
    """A small DCGAN generator (Radford et al. 2016), ending in logits: z -> 7x7x(2 width) ->
    14x14xwidth -> 28x28x1, each upsampling a stride-2 transposed conv; batch norm before each ReLU."""
    h, w, c = image
    act, relu = ("linear", (BatchNorm("relu"),)) if batch_norm else ("relu", ())   # the ReLU after the norm, or in
    return (Dense((h // 4) * (w // 4) * 2 * width, act), *relu, Reshape((h // 4, w // 4, 2 * width)),
            ConvTranspose(width, kernel, 2, act), *relu, ConvTranspose(c, kernel, 2), Flatten())


def dcgan_discriminator(width=32, kernel=4, activation="leaky_relu_0.2", image=(28, 28, 1)):
    """dcgan_generator's mirror, ending in D's logit: 28x28x1 -> 14x14xwidth -> 7x7x(2 width) -> 1."""
    return (Reshape(image), Conv(width, kernel, 2, activation), Conv(2 * width, kernel, 2, activation),
            Flatten(), Dense(1))
