"""2-D convolution and transposed convolution as forward/backward pairs (NHWC).

Images are (N, H, W, C), kernels use Keras's layouts, padding is Keras/TF
'same'. Everything is built from two functions:

- `im2col` gathers, for every output pixel, the k*k*C input values its kernel
  sees into one row, by stacking k*k strided slices (one per kernel tap);
- `col2im` is its adjoint: it adds each row back onto the pixels it came from,
  by k*k strided-slice adds.

A conv is then im2col followed by one matrix multiply, and a transposed conv
is the same two pieces in the other order. Derivations:
docs/gradients.md#conv2d and docs/gradients.md#transposed-conv.
"""
from __future__ import annotations

from .backend import device_of, namespace_of


def same_padding(size, k, stride):
    """Keras/TF 'same' padding of one axis: (before, after), the odd pixel after.

    out = ceil(size / stride); total = max((out - 1) * stride + k - size, 0);
    before = total // 2, after = total - before. E.g. 28 -> 14 with k = 3,
    stride 2 gives (0, 1); 7 with k = 3, stride 1 gives (1, 1).
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def _tap(i, j, s, OH, OW):
    """The index of the pixels kernel tap (i, j) sees, one per output pixel.

    A strided slice of the padded image, (N, OH, OW, C). Its stops are exact
    (the last pixel read, plus one), never past the end: the array API leaves
    out-of-bounds stops unspecified and array-api-strict refuses them.
    """
    return (slice(None), slice(i, i + s * (OH - 1) + 1, s), slice(j, j + s * (OW - 1) + 1, s), slice(None))


def pad(x, pads):
    """x (N, H, W, C) with zeros around H and W: pads = ((top, bottom), (left, right))."""
    xp = namespace_of(x)
    (t, b), (l, r) = pads
    N, H, W, C = x.shape
    xpad = xp.zeros((N, H + t + b, W + l + r, C), dtype=x.dtype, device=device_of(x))
    xpad[:, t:t + H, l:l + W, :] = x
    return xpad


def im2col(xpad, k, s, OH, OW):
    """The patches of a padded image as rows: cols[(n, oh, ow), (i, j, c)] = xpad[n, s oh + i, s ow + j, c].

    Shapes: xpad (N, Hp, Wp, C) -> cols (N*OH*OW, k*k*C).
    """
    xp = namespace_of(xpad)
    taps = [xpad[_tap(i, j, s, OH, OW)] for i in range(k) for j in range(k)]  # k*k of (N, OH, OW, C)
    cols = xp.stack(taps, axis=3)                                            # (N, OH, OW, k*k, C)
    return xp.reshape(cols, (-1, k * k * xpad.shape[3]))


def col2im(cols, xpad_shape, k, s, OH, OW):
    """The adjoint of im2col: add each entry of cols back onto the pixel it was read from.

    xpad[n, s oh + i, s ow + j, c] += cols[(n, oh, ow), (i, j, c)], summed over
    every (oh, ow, i, j) that reads that pixel.
    Shapes: cols (N*OH*OW, k*k*C) -> xpad (N, Hp, Wp, C).
    """
    xp = namespace_of(cols)
    N, C = xpad_shape[0], xpad_shape[3]
    cols = xp.reshape(cols, (N, OH, OW, k * k, C))
    xpad = xp.zeros(xpad_shape, dtype=cols.dtype, device=device_of(cols))
    for t in range(k * k):
        i, j = divmod(t, k)
        # Within one tap the strided slice hits each pixel at most once, so
        # this += is exact; taps that overlap are summed by the loop.
        xpad[_tap(i, j, s, OH, OW)] += cols[:, :, :, t, :]
    return xpad


def conv2d_forward(x, W, b, stride):
    """2-D convolution, 'same' padding: y[n,oh,ow,f] = sum_{i,j,c} xpad[n, s oh + i, s ow + j, c] W[i,j,c,f] + b[f].

    Shapes: x (N, H, W, C), W (k, k, C, F), b (F,) -> y (N, ceil(H/s), ceil(W/s), F).
    Derivation: docs/gradients.md#conv2d
    """
    xp = namespace_of(x)
    N, H, Wd, C = x.shape
    k, F, s = W.shape[0], W.shape[3], stride
    pads = (same_padding(H, k, s), same_padding(Wd, k, s))
    OH, OW = -(-H // s), -(-Wd // s)
    xpad = pad(x, pads)
    cols = im2col(xpad, k, s, OH, OW)                      # (N OH OW, k k C)
    y = cols @ xp.reshape(W, (k * k * C, F)) + b           # (N OH OW, F)
    return xp.reshape(y, (N, OH, OW, F)), (cols, x.shape, xpad.shape, pads, W, s)


def conv2d_backward(dy, cache, need_dx=True):
    """Gradients of conv2d: dW = cols^T dy, dx = col2im(dy W^T) without the padding, db = sum dy.

    Shapes: dy (N, OH, OW, F) -> dx (N, H, W, C) (None when `need_dx` is
    False), dW (k, k, C, F), db (F,).
    Derivation: docs/gradients.md#conv2d
    """
    cols, x_shape, xpad_shape, pads, W, s = cache
    xp = namespace_of(dy)
    N, OH, OW, F = dy.shape
    k, C = W.shape[0], W.shape[2]
    dy2 = xp.reshape(dy, (-1, F))                                   # (N OH OW, F)
    dW = xp.reshape(cols.T @ dy2, W.shape)                          # (k k C, F)
    db = xp.sum(dy2, axis=0)
    dx = None
    if need_dx:
        dcols = dy2 @ xp.reshape(W, (k * k * C, F)).T               # (N OH OW, k k C)
        dxpad = col2im(dcols, xpad_shape, k, s, OH, OW)
        (t, _), (l, _) = pads
        dx = dxpad[:, t:t + x_shape[1], l:l + x_shape[2], :]
    return dx, dW, db


def conv2d_transpose_forward(x, W, b, stride):
    """Transposed convolution, Keras 'same': the input-gradient of conv2d, plus a bias.

    y = col2im(x W^T) cropped, where W is read as a conv kernel from the output
    (C_out channels) to the input (C_in channels).
    Shapes: x (N, H, W, C_in), W (k, k, C_out, C_in), b (C_out,) -> y (N, H*s, W*s, C_out).
    Derivation: docs/gradients.md#transposed-conv
    """
    xp = namespace_of(x)
    N, H, Wd, Cin = x.shape
    k, Cout, s = W.shape[0], W.shape[2], stride
    OH, OW = H * s, Wd * s
    pads = (same_padding(OH, k, s), same_padding(OW, k, s))
    (t, bt), (l, r) = pads
    xpad_shape = (N, OH + t + bt, OW + l + r, Cout)
    x2 = xp.reshape(x, (-1, Cin))                                   # (N H W, C_in)
    cols = x2 @ xp.reshape(W, (k * k * Cout, Cin)).T                # (N H W, k k C_out)
    ypad = col2im(cols, xpad_shape, k, s, H, Wd)
    y = ypad[:, t:t + OH, l:l + OW, :] + b
    return y, (x2, x.shape, pads, W, s)


def conv2d_transpose_backward(dy, cache, need_dx=True):
    """Gradients of the transposed conv: a conv2d forward of dy. dx = cols W, dW = cols^T x, db = sum dy.

    cols = im2col(pad(dy)). Shapes: dy (N, H*s, W*s, C_out) -> dx (N, H, W, C_in)
    (None when `need_dx` is False), dW (k, k, C_out, C_in), db (C_out,).
    Derivation: docs/gradients.md#transposed-conv
    """
    x2, x_shape, pads, W, s = cache
    xp = namespace_of(dy)
    N, H, Wd, Cin = x_shape
    k, Cout = W.shape[0], W.shape[2]
    cols = im2col(pad(dy, pads), k, s, H, Wd)                       # (N H W, k k C_out)
    dW = xp.reshape(cols.T @ x2, W.shape)                           # (k k C_out, C_in)
    db = xp.sum(dy, axis=(0, 1, 2))
    dx = None
    if need_dx:
        dx = xp.reshape(cols @ xp.reshape(W, (k * k * Cout, Cin)), x_shape)
    return dx, dW, db
