"""2-D convolution and transposed convolution as forward/backward pairs (NHWC).

Images are (N, H, W, C), kernels use Keras's layouts, and padding is
Keras/TensorFlow 'same'. Everything is built from two functions:

- `im2col` copies, for every output pixel, the k*k*C input values its kernel
  sees into one row, by stacking k*k strided slices (one per kernel tap);
- `col2im` is its adjoint: it adds each column block back onto the pixels it
  was read from, by k*k strided-slice adds.

A conv is im2col followed by one matrix multiply; its input-gradient is the
same two steps the other way round (multiply, then col2im). A transposed conv
*is* that input-gradient, so it runs the pieces in the conv's backward order.

PyTorch and Keras, for porting weights and checking results:

- Keras `Conv2D` keeps W as (k, k, C, F), as here; PyTorch `Conv2d` keeps it as
  (F, C, k, k), on NCHW images: W_torch = W.permute(3, 2, 0, 1).
- Keras `Conv2DTranspose` keeps W as (k, k, C_out, C_in), as here; PyTorch
  `ConvTranspose2d` as (C_in, C_out, k, k): the same permute (3, 2, 0, 1).
- Keras 'same' pads asymmetrically when the padding is odd, the extra pixel
  after: 28 -> 14 with k = 3, stride 2 pads (0, 1). PyTorch's `padding=1` pads
  (1, 1): the same output size, but every window one pixel up and to the left,
  so the two disagree unless PyTorch pads with `F.pad(x, (0, 1, 0, 1))` first.

Derivations: docs/gradients.md#conv2d and docs/gradients.md#transposed-conv.
"""
from __future__ import annotations

from .xp import device_of, namespace_of


def same_padding(size, k, stride):
    """Keras/TF 'same' padding of one axis: (before, after), the odd pixel after.

    out = ceil(size / stride); total = max((out - 1) * stride + k - size, 0);
    before = total // 2, after = total - before. E.g. 28 -> 14 with k = 3,
    stride 2 gives (0, 1); 7 with k = 3, stride 1 gives (1, 1).
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def zero_pad(x, pads):
    """x (N, H, W, C) with zeros around H and W; pads = ((top, bottom), (left, right))."""
    xp = namespace_of(x)
    (t, b), (l, r) = pads
    N, H, W, C = x.shape
    xpad = xp.zeros((N, H + t + b, W + l + r, C), dtype=x.dtype, device=device_of(x))
    xpad[:, t:t + H, l:l + W, :] = x
    return xpad


def _tap(i, j, s, OH, OW):
    """Index of the pixels kernel tap (i, j) reads, one per output pixel: a strided slice, (N, OH, OW, C).

    The stops are exact (the last pixel read, plus one), never past the end:
    the array API leaves out-of-bounds stops unspecified and array-api-strict
    refuses them.
    """
    return (slice(None), slice(i, i + s * (OH - 1) + 1, s), slice(j, j + s * (OW - 1) + 1, s), slice(None))


def im2col(xpad, k, s, OH, OW):
    """The windows of a padded image as rows: cols[(n, oh, ow), (i, j, c)] = xpad[n, s oh + i, s ow + j, c].

    Shapes: xpad (N, Hp, Wp, C) -> cols (N*OH*OW, k*k*C).
    """
    xp = namespace_of(xpad)
    taps = [xpad[_tap(i, j, s, OH, OW)] for i in range(k) for j in range(k)]  # k*k of (N, OH, OW, C)
    cols = xp.stack(taps, axis=3)                                             # (N, OH, OW, k*k, C)
    return xp.reshape(cols, (-1, k * k * xpad.shape[3]))


def col2im(cols, xpad_shape, k, s, OH, OW):
    """The adjoint of im2col: xpad[n, s oh + i, s ow + j, c] += cols[(n, oh, ow), (i, j, c)], over all (oh, ow, i, j).

    Every column is added back onto the pixel it was read from.
    Shapes: cols (N*OH*OW, k*k*C) -> xpad (N, Hp, Wp, C), zero where no window reads.
    """
    xp = namespace_of(cols)
    N, C = xpad_shape[0], xpad_shape[3]
    cols = xp.reshape(cols, (N, OH, OW, k * k, C))
    xpad = xp.zeros(xpad_shape, dtype=cols.dtype, device=device_of(cols))
    for t in range(k * k):
        i, j = divmod(t, k)
        # Within one tap the strided slice meets each pixel at most once, so this
        # += is exact; pixels that several taps read are summed by the loop.
        xpad[_tap(i, j, s, OH, OW)] += cols[:, :, :, t, :]
    return xpad


def conv2d_forward(x, W, b, stride):
    """2-D convolution, 'same' padding: y[n,oh,ow,f] = b[f] + sum_{i,j,c} xpad[n, s oh + i, s ow + j, c] W[i,j,c,f].

    Computed as y = im2col(xpad) @ W2 + b, with W2 = W reshaped to (k*k*C, F).
    The cache keeps the padded input; the backward builds the columns again
    rather than keeping them (2.25 times the input at stride 2, 9 at stride 1).
    Shapes: x (N, H, W, C), W (k, k, C, F), b (F,) -> y (N, ceil(H/s), ceil(W/s), F).
    Derivation: docs/gradients.md#conv2d
    """
    xp = namespace_of(x)
    N, H, Wd, C = x.shape
    k, F, s = W.shape[0], W.shape[3], stride
    OH, OW = -(-H // s), -(-Wd // s)
    pads = (same_padding(H, k, s), same_padding(Wd, k, s))
    xpad = zero_pad(x, pads)                                     # (N, Hp, Wp, C)
    cols = im2col(xpad, k, s, OH, OW)                            # (N OH OW, k k C)
    y = cols @ xp.reshape(W, (k * k * C, F)) + b                 # (N OH OW, F)
    return xp.reshape(y, (N, OH, OW, F)), (xpad, W, x.shape, pads, s)


def conv2d_backward(dy, cache, need_dx=True):
    """Gradients of conv2d: dW2 = cols^T dy2, db = sum of dy, dx = col2im(dy2 W2^T) without the padding.

    Shapes: dy (N, OH, OW, F) -> dx (N, H, W, C) (None when `need_dx` is
    False: the first layer's input is data), dW (k, k, C, F), db (F,).
    Derivation: docs/gradients.md#conv2d
    """
    xpad, W, x_shape, pads, s = cache
    xp = namespace_of(dy)
    _, OH, OW, F = dy.shape
    k, C = W.shape[0], W.shape[2]
    (t, _), (l, _) = pads
    H, Wd = x_shape[1], x_shape[2]
    dy2 = xp.reshape(dy, (-1, F))                                # (N OH OW, F)
    dW2 = im2col(xpad, k, s, OH, OW).T @ dy2                     # cols^T dy2: (k k C, F)
    db = xp.sum(dy2, axis=0)                                     # (F,)
    dx = None
    if need_dx:
        dcols = dy2 @ xp.reshape(W, (k * k * C, F)).T            # (N OH OW, k k C)
        dx = col2im(dcols, xpad.shape, k, s, OH, OW)[:, t:t + H, l:l + Wd, :]  # the padding's gradient dropped
    return dx, xp.reshape(dW2, W.shape), db


def conv2d_transpose_forward(x, W, b, stride):
    """Transposed convolution, Keras 'same': the input-gradient of a conv2d, plus a bias.

    y = crop(col2im(x2 W2^T)) + b, with x2 = x as (N*H*W, C_in) and W2 = W as
    (k*k*C_out, C_in): conv2d_backward's dx, with x in the place of dy and W
    read as the kernel of a conv from the (H*s, W*s, C_out) output down to x.
    Shapes: x (N, H, W, C_in), W (k, k, C_out, C_in), b (C_out,) -> y (N, H*s, W*s, C_out).
    Derivation: docs/gradients.md#transposed-conv
    """
    xp = namespace_of(x)
    N, H, Wd, Cin = x.shape
    k, Cout, s = W.shape[0], W.shape[2], stride
    OH, OW = H * s, Wd * s
    pads = (same_padding(OH, k, s), same_padding(OW, k, s))
    (t, bt), (l, r) = pads
    cols = xp.reshape(x, (-1, Cin)) @ xp.reshape(W, (k * k * Cout, Cin)).T   # x2 W2^T: (N H W, k k C_out)
    ypad = col2im(cols, (N, OH + t + bt, OW + l + r, Cout), k, s, H, Wd)     # (N, OH + pads, OW + pads, C_out)
    return ypad[:, t:t + OH, l:l + OW, :] + b, (x, W, pads, s)              # crop the padding, add the bias


def conv2d_transpose_backward(dy, cache, need_dx=True):
    """Gradients of the transposed conv, a conv2d forward of dy: dx2 = dcols W2, dW2 = dcols^T x2, db = sum of dy.

    dcols = im2col(pad(dy)), (N*H*W, k*k*C_out).
    Shapes: dy (N, H*s, W*s, C_out) -> dx (N, H, W, C_in) (None when
    `need_dx` is False), dW (k, k, C_out, C_in), db (C_out,).
    Derivation: docs/gradients.md#transposed-conv
    """
    x, W, pads, s = cache
    xp = namespace_of(dy)
    _, H, Wd, Cin = x.shape
    k, Cout = W.shape[0], W.shape[2]
    dcols = im2col(zero_pad(dy, pads), k, s, H, Wd)                         # (N H W, k k C_out)
    dW2 = dcols.T @ xp.reshape(x, (-1, Cin))                                # (k k C_out, C_in)
    db = xp.sum(xp.reshape(dy, (-1, Cout)), axis=0)                         # (C_out,)
    dx = xp.reshape(dcols @ xp.reshape(W, (k * k * Cout, Cin)), x.shape) if need_dx else None
    return dx, xp.reshape(dW2, W.shape), db
