"""Dense layers and activations as forward/backward pairs.

Every pair follows one contract: out, cache = thing_forward(inputs...), then
dinputs... = thing_backward(dout, cache), where `dout` is dL/dout for the scalar loss L
downstream, and each backward returns dL/d(input) for the forward's inputs, in order.
Derivations: docs/gradients.md.
"""
from __future__ import annotations

from .xp import device_of, namespace_of


def affine_forward(x, W, b):
    """Dense layer: y = x W + b.

    Shapes: x (N, D), W (D, H), b (H,) -> y (N, H).
    Derivation: docs/gradients.md#affine
    """
    return x @ W + b, (x, W)


def affine_backward(dy, cache, need_dx=True):
    """Gradients of the dense layer: dx = dy W^T, dW = x^T dy, db = sum_n dy.

    Shapes: dy (N, H) -> dx (N, D) (None when `need_dx` is False: the first
    layer's input is data and needs no gradient), dW (D, H), db (H,).
    Derivation: docs/gradients.md#affine
    """
    x, W = cache
    xp = namespace_of(dy)
    dx = dy @ W.T if need_dx else None  # (N, H) @ (H, D) -> (N, D)
    dW = x.T @ dy                       # (D, N) @ (N, H) -> (D, H)
    db = xp.sum(dy, axis=0)             # (H,)
    return dx, dW, db


def identity_forward(x):
    """The 'linear' activation: y = x (a layer's output left as it is). docs/gradients.md#linear"""
    return x, None


def identity_backward(dy, cache):
    """dx = dy: the identity passes the gradient through unchanged. docs/gradients.md#linear"""
    return dy


def relu_forward(x):
    """ReLU: y = max(x, 0). Shapes: x (...) -> y (...). docs/gradients.md#relu"""
    xp = namespace_of(x)
    y = xp.maximum(x, 0.0)
    return y, y


def relu_backward(dy, cache):
    """dx = dy * [x > 0]; the cache is y, and y > 0 exactly where x > 0. docs/gradients.md#relu"""
    y = cache
    xp = namespace_of(dy)
    # a multiply by the 0/1 mask, not xp.where: docs/benchmarks.md#what-was-tried
    return dy * xp.astype(y > 0, dy.dtype)


def leaky_relu_forward(x, slope=0.01):
    """Leaky ReLU: y = x if x > 0 else slope * x. docs/gradients.md#leaky-relu"""
    xp = namespace_of(x)
    return xp.where(x > 0, x, slope * x), (x, slope)


def leaky_relu_backward(dy, cache):
    """dx = dy if x > 0 else slope * dy. docs/gradients.md#leaky-relu"""
    x, slope = cache
    xp = namespace_of(dy)
    return xp.where(x > 0, dy, slope * dy)


def tanh_forward(x):
    """y = tanh(x). docs/gradients.md#tanh"""
    xp = namespace_of(x)
    y = xp.tanh(x)
    return y, y


def tanh_backward(dy, cache):
    """dx = dy * (1 - y^2), with y = tanh(x). docs/gradients.md#tanh"""
    y = cache
    return dy * (1.0 - y * y)


def sigmoid(x):
    """sigma(x) = 1 / (1 + e^-x), computed without overflow for any x.

    For x >= 0 use 1 / (1 + e^-x); for x < 0 the same value as e^x / (1 + e^x).
    Both only ever exponentiate -|x| <= 0, so nothing overflows.
    """
    xp = namespace_of(x)
    e = xp.exp(-xp.abs(x))  # in (0, 1]
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_forward(x):
    """y = sigma(x). docs/gradients.md#sigmoid"""
    y = sigmoid(x)
    return y, y


def sigmoid_backward(dy, cache):
    """dx = dy * y * (1 - y), with y = sigma(x). docs/gradients.md#sigmoid"""
    y = cache
    return dy * y * (1.0 - y)


def softplus(x):
    """softplus(x) = log(1 + e^x), computed without overflow: max(x, 0) + log1p(e^-|x|)."""
    xp = namespace_of(x)
    return xp.maximum(x, 0.0) + xp.log1p(xp.exp(-xp.abs(x)))


def softplus_forward(x):
    """y = log(1 + e^x). docs/gradients.md#softplus"""
    return softplus(x), x


def softplus_backward(dy, cache):
    """dx = dy * sigma(x): the derivative of softplus is the sigmoid. docs/gradients.md#softplus"""
    x = cache
    return dy * sigmoid(x)


# name -> (forward, backward), the activations a layer can end in.
ACTIVATIONS = {
    "linear": (identity_forward, identity_backward),
    "relu": (relu_forward, relu_backward),
    "leaky_relu": (leaky_relu_forward, leaky_relu_backward),
    "leaky_relu_0.2": (lambda x: leaky_relu_forward(x, 0.2), leaky_relu_backward),  # DCGAN's slope, for D
    "tanh": (tanh_forward, tanh_backward),
    "sigmoid": (sigmoid_forward, sigmoid_backward),
    "softplus": (softplus_forward, softplus_backward),
}


def reshape_forward(x, shape):
    """Reshape each example: (N, *a) -> (N, *shape), the order of the values kept.

    The values are read in row-major (C) order, so a (N, 784) batch reshaped to
    (N, 28, 28, 1) is read row by row: HWC, as Keras's Flatten and Reshape do.
    Shapes: x (N, *a) -> y (N, *shape); cache: x's shape.
    Derivation: docs/gradients.md#reshape
    """
    xp = namespace_of(x)
    return xp.reshape(x, (x.shape[0], *shape)), tuple(x.shape)


def reshape_backward(dy, cache):
    """dx = dy reshaped back to x's shape: a reshape moves no value, so neither does its gradient.

    Shapes: dy (N, *shape) -> dx (N, *a). Derivation: docs/gradients.md#reshape
    """
    xp = namespace_of(dy)
    return xp.reshape(dy, cache)


def log_softmax_forward(a):
    """Log-probabilities of a categorical from logits: log pi_k = a_k - log sum_j e^{a_j}.

    Computed with the max shifted out (m = max_j a_j; log sum_j e^{a_j - m} + m),
    so it is finite for logits of any size (e.g. +-1e4).
    Shapes: a (N, K) -> log_pi (N, K); cache: pi = e^{log pi} (N, K).
    Derivation: docs/gradients.md#log-softmax
    """
    xp = namespace_of(a)
    shifted = a - xp.max(a, axis=1, keepdims=True)                           # (N, K), max 0
    log_pi = shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))  # (N, K)
    return log_pi, xp.exp(log_pi)


def log_softmax_backward(dlog_pi, cache):
    """da = dlog_pi - pi * sum_k dlog_pi_k  (the Jacobian of log-softmax is I - 1 pi^T per row).

    Shapes: dlog_pi (N, K) -> da (N, K). Derivation: docs/gradients.md#log-softmax
    """
    pi = cache
    xp = namespace_of(dlog_pi)
    return dlog_pi - pi * xp.sum(dlog_pi, axis=1, keepdims=True)


def one_hot(labels, n_classes, like):
    """Integer labels (N,) -> one-hot rows (N, K) in the dtype and on the device of `like`.

    Made by comparing with arange(K): the array API has no one_hot and no scatter.
    """
    xp = namespace_of(like)
    classes = xp.arange(n_classes, device=device_of(like))                  # (K,)
    return xp.astype(xp.reshape(labels, (-1, 1)) == classes, like.dtype)      # (N, K)
