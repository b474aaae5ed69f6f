"""Conv2d and the transposed conv: forwards against naive loops, every gradient
against finite differences (float64, shapes drawn by hypothesis, batch 1
included), the adjoint identity that ties the two together, Keras's 'same'
padding table, and PyTorch's layouts."""
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import BACKENDS, make, put
from tinyvae.core import conv
from tinyvae.fast import conv as fast_conv
from tinyvae.backend import on_gpu
from tinyvae.gradcheck import check_backward, max_error

TOL = 1e-6


# ---- the oracles: naive loops, written from the definition ----------------------------


def keras_same_before(size, k, s):
    """TF's rule for the padding before an axis: half the total, rounded down."""
    out = -(-size // s)
    return max((out - 1) * s + k - size, 0) // 2


def links(H, W, k, s):
    """Every (h, w, oh, ow, i, j): kernel tap (i, j) at output pixel (oh, ow) of a
    'same' conv of an H x W image reads input pixel (h, w). Pixels in the padding
    are skipped: they are zeros and add nothing."""
    t, l = keras_same_before(H, k, s), keras_same_before(W, k, s)
    for oh in range(-(-H // s)):
        for ow in range(-(-W // s)):
            for i in range(k):
                for j in range(k):
                    h, w = s * oh + i - t, s * ow + j - l
                    if 0 <= h < H and 0 <= w < W:
                        yield h, w, oh, ow, i, j


def naive_conv2d(x, W, b, s):
    """y[n, oh, ow, :] = b + sum over (i, j, c) of x[n, h, w, c] W[i, j, c, :]: six loops
    (n; oh, ow, i, j inside `links`; c), as the definition reads."""
    N, H, Wd, C = x.shape
    y = np.zeros((N, -(-H // s), -(-Wd // s), W.shape[3])) + b
    for n in range(N):
        for h, w, oh, ow, i, j in links(H, Wd, W.shape[0], s):
            for c in range(C):
                y[n, oh, ow, :] += x[n, h, w, c] * W[i, j, c, :]
    return y


def naive_conv2d_transpose(x, W, b, s):
    """The same links run backwards: each input pixel x[n, oh, ow] is scattered
    through W[i, j] (C_out, C_in) onto the output pixel (h, w) that tap reads."""
    N, H, Wd, C_in = x.shape
    y = np.zeros((N, H * s, Wd * s, W.shape[2])) + b
    for n in range(N):
        for h, w, oh, ow, i, j in links(H * s, Wd * s, W.shape[0], s):
            for c in range(C_in):
                y[n, h, w, :] += W[i, j, :, c] * x[n, oh, ow, c]
    return y


def random_case(seed, n, h, w, c, f, k, transpose=False):
    """float64 x, W (Keras layout), b for a conv (or transposed conv) from c to f channels."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c))
    W = rng.standard_normal((k, k, f, c) if transpose else (k, k, c, f))
    b = rng.standard_normal(f)
    return x, W, b


@contextmanager
def column_entries_per_pass(n):
    """Run the conv with passes of about n column entries, on any device: 1 means one image per pass."""
    saved = fast_conv.COLUMN_ENTRIES_PER_PASS, fast_conv.GPU_COLUMN_ENTRIES_PER_PASS
    fast_conv.COLUMN_ENTRIES_PER_PASS = fast_conv.GPU_COLUMN_ENTRIES_PER_PASS = n
    try:
        yield
    finally:
        fast_conv.COLUMN_ENTRIES_PER_PASS, fast_conv.GPU_COLUMN_ENTRIES_PER_PASS = saved


# Shapes drawn freely: 'same' works for any size, stride and kernel, odd sizes included.
shapes = dict(
    seed=st.integers(0, 2**32 - 1), n=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
    c=st.integers(1, 3), f=st.integers(1, 3), k=st.sampled_from([1, 2, 3]), s=st.sampled_from([1, 2]),
)


# ---- same padding ------------------------------------------------------------------------


@pytest.mark.parametrize("size, k, s, pads", [
    (28, 3, 2, (0, 1)),   # 28 -> 14: the odd pixel goes after
    (14, 3, 2, (0, 1)),   # 14 -> 7
    (7, 3, 1, (1, 1)),    # stride 1 keeps the size
    (28, 3, 1, (1, 1)),
    (7, 3, 2, (1, 1)),    # 7 -> 4: total 2
    (5, 2, 1, (0, 1)),
    (6, 2, 2, (0, 0)),    # k = s: the windows tile the image
    (5, 1, 2, (0, 0)),    # 1x1: never padded
    (1, 3, 2, (1, 1)),
    (8, 4, 2, (1, 1)),
    (9, 4, 2, (1, 2)),
])
def test_same_padding_matches_keras(size, k, s, pads):
    assert conv.same_padding(size, k, s) == pads


# ---- forwards against the loops -----------------------------------------------------------


@pytest.mark.parametrize("name", BACKENDS)
@given(**shapes, per_pass=st.sampled_from([1, 200, 2**19]))
def test_conv2d_forward_matches_naive_loops(name, seed, n, h, w, c, f, k, s, per_pass):
    be = make(name)
    x, W, b = random_case(seed, n, h, w, c, f, k)
    with column_entries_per_pass(per_pass):
        y, _ = conv.conv2d_forward(put(be, x), put(be, W), put(be, b), s)
    np.testing.assert_allclose(be.to_numpy(y), naive_conv2d(x, W, b, s), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", BACKENDS)
@given(**shapes, per_pass=st.sampled_from([1, 200, 2**19]))
def test_conv2d_transpose_forward_matches_naive_loops(name, seed, n, h, w, c, f, k, s, per_pass):
    be = make(name)
    x, W, b = random_case(seed, n, h, w, c, f, k, transpose=True)
    with column_entries_per_pass(per_pass):
        y, _ = conv.conv2d_transpose_forward(put(be, x), put(be, W), put(be, b), s)
    np.testing.assert_allclose(be.to_numpy(y), naive_conv2d_transpose(x, W, b, s), rtol=1e-12, atol=1e-12)


# ---- gradients ----------------------------------------------------------------------------


# The gradient checks perturb every entry of x, W and b twice (a few thousand
# forwards for the largest draws), so they take 10 examples each. They run the
# batch in one pass; test_results_do_not_depend_on_the_pass_size shows that
# several passes give the same gradients.
@pytest.mark.parametrize("name", BACKENDS)
@settings(max_examples=10)
@given(**shapes)
def test_conv2d_backward(name, seed, n, h, w, c, f, k, s):
    be = make(name)
    inputs = [put(be, a) for a in random_case(seed, n, h, w, c, f, k)]
    errors = check_backward(lambda x, W, b: conv.conv2d_forward(x, W, b, s), conv.conv2d_backward, inputs)
    assert max_error(errors) < TOL, errors


@pytest.mark.parametrize("name", BACKENDS)
@settings(max_examples=10)
@given(**shapes)
def test_conv2d_transpose_backward(name, seed, n, h, w, c, f, k, s):
    be = make(name)
    inputs = [put(be, a) for a in random_case(seed, n, h, w, c, f, k, transpose=True)]
    errors = check_backward(lambda x, W, b: conv.conv2d_transpose_forward(x, W, b, s),
                            conv.conv2d_transpose_backward, inputs)
    assert max_error(errors) < TOL, errors


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("transpose", [False, True])
def test_results_do_not_depend_on_the_pass_size(name, transpose, monkeypatch):
    """The batch is processed a few images at a time; passes of 1, 2 or 3 of the 5
    images, or all 5 at once, give the same y, dx, dW and db (dW and db add the
    passes in a different order: equal to rounding)."""
    be = make(name)
    x, W, b = (put(be, a) for a in random_case(6, 5, 6, 5, 2, 3, 3, transpose))
    forward, backward = fast_conv.CONV2D_TRANSPOSE if transpose else fast_conv.CONV2D
    # column entries per image: (6 x 5 pixels, 3 channels out) or (3 x 3 pixels, 2 channels in), 3 x 3 taps each
    per_image = 6 * 5 * 3 * 9 if transpose else 3 * 3 * 2 * 9
    results = []
    for images in (1, 2, 3, 5):
        monkeypatch.setattr(fast_conv, "COLUMN_ENTRIES_PER_PASS", images * per_image)
        monkeypatch.setattr(fast_conv, "GPU_COLUMN_ENTRIES_PER_PASS", images * per_image)
        assert len(fast_conv.batch_slices(x, per_image)) == -(-5 // images)
        y, cache = forward(x, W, b, 2)
        results.append([be.to_numpy(a) for a in (y, *backward(y * y, cache))])
    for other in results[1:]:
        for got, want in zip(other, results[0]):
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("name", BACKENDS)
def test_a_training_batch_is_split_on_a_cpu_and_whole_on_a_gpu(name):
    """The pass budget is the device's: the Keras model's widest layer (the transposed
    conv to 28 x 28 x 32) on a batch of 128 goes in cache-sized passes on a CPU,
    and in one pass on a GPU, where each pass is more kernel launches."""
    be = make(name, dtype="float32")
    dy = be.zeros((128, 28, 28, 32))
    per_image = 14 * 14 * 3 * 3 * 32                 # column entries of one image
    passes = fast_conv.batch_slices(dy, per_image)
    assert sum(p.stop - p.start for p in passes) == 128
    if on_gpu(dy):
        assert len(passes) == 1
    else:
        assert len(passes) == -(-128 // (fast_conv.COLUMN_ENTRIES_PER_PASS // per_image)) > 1


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("transpose", [False, True])
def test_conv_backward_skips_dx_for_data(name, transpose):
    be = make(name)
    x, W, b = (put(be, a) for a in random_case(0, 2, 5, 6, 2, 3, 3, transpose))
    forward, backward = fast_conv.CONV2D_TRANSPOSE if transpose else fast_conv.CONV2D
    y, cache = forward(x, W, b, 2)
    dx, dW, db = backward(y, cache)
    skipped = backward(y, cache, need_dx=False)
    assert skipped[0] is None and dx.shape == x.shape
    np.testing.assert_array_equal(be.to_numpy(skipped[1]), be.to_numpy(dW))
    np.testing.assert_array_equal(be.to_numpy(skipped[2]), be.to_numpy(db))


@pytest.mark.parametrize("name", BACKENDS)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 3), h=st.integers(1, 6), w=st.integers(1, 6),
       c=st.integers(1, 3), f=st.integers(1, 3), k=st.sampled_from([1, 2, 3]), s=st.sampled_from([1, 2]))
def test_transposed_conv_is_the_adjoint_of_conv(name, seed, n, h, w, c, f, k, s):
    """<conv(x; W), g> = <x, convT(g; W)> with no bias, for x of size (h s, w s):
    the transposed conv is the conv's input-gradient, the same W read the other way."""
    be = make(name)
    x, W, _ = random_case(seed, n, h * s, w * s, c, f, k)
    g = np.random.default_rng(seed + 1).standard_normal((n, h, w, f))
    zeros_f, zeros_c = np.zeros(f), np.zeros(c)
    y, _ = conv.conv2d_forward(put(be, x), put(be, W), put(be, zeros_f), s)           # (n, h, w, f)
    xt, _ = conv.conv2d_transpose_forward(put(be, g), put(be, W), put(be, zeros_c), s)  # (n, h s, w s, c)
    lhs = float(np.sum(be.to_numpy(y) * g))
    rhs = float(np.sum(x * be.to_numpy(xt)))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs)), (lhs, rhs)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("transpose", [False, True])
def test_conv_keeps_the_dtype(name, dtype, transpose):
    """float32 in, float32 out: no silent float64 in the forward, the cache or the gradients."""
    be = make(name, dtype=dtype)
    x, W, b = (be.asarray(a) for a in random_case(0, 2, 6, 6, 3, 2, 3, transpose))
    forward, backward = fast_conv.CONV2D_TRANSPOSE if transpose else fast_conv.CONV2D
    y, cache = forward(x, W, b, 2)
    grads = backward(y, cache)
    assert {str(a.dtype).split(".")[-1] for a in (y, *grads)} == {dtype}


# ---- a planted bug: the gradient check must catch it ----------------------------------------


def naive_conv2d_backward(x, W, s, dy, bug=None):
    """dx, dW, db of naive_conv2d by the same loops, optionally with a planted bug:
    'flipped' reads the kernel rotated by 180 degrees for dx (the classic mix-up
    of correlation and convolution); 'offset' sends each tap's dx one row down."""
    N, H, Wd, _ = x.shape
    k = W.shape[0]
    dx, dW = np.zeros_like(x), np.zeros_like(W)
    for n in range(N):
        for h, w, oh, ow, i, j in links(H, Wd, k, s):
            tap = W[k - 1 - i, k - 1 - j] if bug == "flipped" else W[i, j]
            hx = h + 1 if bug == "offset" else h
            if hx < H:
                dx[n, hx, w] += tap @ dy[n, oh, ow]
            dW[i, j] += np.outer(x[n, h, w], dy[n, oh, ow])
    return dx, dW, dy.sum(axis=(0, 1, 2))


@pytest.mark.parametrize("bug", [None, "flipped", "offset"])
def test_gradient_check_catches_a_flipped_kernel_and_a_tap_offset(bug):
    """The loops above pass the check without a bug, and fail it with either one."""
    be = make("numpy")
    x, W, b = random_case(3, 2, 5, 5, 2, 3, 3)

    def forward(x, W, b):
        return conv.conv2d_forward(x, W, b, 2)[0], (x, W)

    def backward(dy, cache):
        x, W = cache
        return naive_conv2d_backward(x, W, 2, dy, bug)

    errors = check_backward(forward, backward, [put(be, a) for a in (x, W, b)])
    if bug is None:
        assert max_error(errors) < TOL, errors
    else:
        assert errors[0] > 1e-2, errors  # dx is wrong, and the check says so
        assert max(errors[1:]) < TOL, errors


def taps_reversed(cols, k):
    """cols (M, k*k*C) with its k*k tap blocks in reverse order: tap (i, j) becomes
    (k-1-i, k-1-j), the kernel rotated by 180 degrees."""
    M = cols.shape[0]
    return np.reshape(np.reshape(cols, (M, k * k, -1))[:, ::-1, :], (M, -1))


@pytest.mark.parametrize("flipped", [False, True])
@pytest.mark.parametrize("transpose", [False, True])
def test_gradient_check_catches_a_flipped_kernel_in_the_engine(flipped, transpose, monkeypatch):
    """The same bug planted in conv.py itself: the backward's col2im (conv) or
    im2col (transposed conv) reads the taps in reverse; the forward is untouched."""
    be = make("numpy")
    im2col, col2im = conv.im2col, conv.col2im

    def flipped_im2col(xpad, k, s, OH, OW):
        return taps_reversed(im2col(xpad, k, s, OH, OW), k)

    def flipped_col2im(cols, xpad_shape, k, s, OH, OW):
        return col2im(taps_reversed(cols, k), xpad_shape, k, s, OH, OW)

    if flipped:
        monkeypatch.setattr(conv, *(("im2col", flipped_im2col) if transpose else ("col2im", flipped_col2im)))
    forward, backward = fast_conv.CONV2D_TRANSPOSE if transpose else fast_conv.CONV2D
    x, W, b = (put(be, a) for a in random_case(7, 2, 4, 5, 2, 3, 3, transpose))
    errors = check_backward(lambda x, W, b: forward(x, W, b, 2), backward, [x, W, b])
    if flipped:
        assert errors[0] > 1e-2, errors  # dx is wrong, and the check says so
    else:
        assert max_error(errors) < TOL, errors


# ---- PyTorch: the layouts the docstrings describe -------------------------------------------


def torch_same_conv2d(torch, x, W, b, s):
    """Keras 'same' in PyTorch: explicit (possibly asymmetric) F.pad, NHWC <-> NCHW,
    Keras W (k, k, C, F) -> Conv2d weight (F, C, k, k)."""
    F = torch.nn.functional
    H, Wd, k = x.shape[1], x.shape[2], W.shape[0]
    (t, bt), (l, r) = conv.same_padding(H, k, s), conv.same_padding(Wd, k, s)
    xt = F.pad(torch.from_numpy(x).permute(0, 3, 1, 2), (l, r, t, bt))
    y = F.conv2d(xt, torch.from_numpy(W).permute(3, 2, 0, 1), torch.from_numpy(b), stride=s)
    return y.permute(0, 2, 3, 1).numpy()


def torch_same_conv2d_transpose(torch, x, W, b, s):
    """Keras 'same' transposed conv in PyTorch: the full transposed conv, cropped by the
    padding of the conv it undoes. Keras W (k, k, C_out, C_in) -> ConvTranspose2d
    weight (C_in, C_out, k, k)."""
    F = torch.nn.functional
    OH, OW, k = x.shape[1] * s, x.shape[2] * s, W.shape[0]
    (t, _), (l, _) = conv.same_padding(OH, k, s), conv.same_padding(OW, k, s)
    full = F.conv_transpose2d(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(W).permute(3, 2, 0, 1),
                              stride=s)                                    # (N, C_out, (H-1)s + k, ...)
    full = F.pad(full, (0, max(l + OW - full.shape[3], 0), 0, max(t + OH - full.shape[2], 0)))
    y = full[:, :, t:t + OH, l:l + OW] + torch.from_numpy(b)[:, None, None]
    return y.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("k, s, h, w", [(3, 2, 7, 6), (3, 1, 5, 5), (2, 2, 5, 4), (1, 2, 3, 3), (3, 2, 1, 2)])
def test_conv_matches_pytorch_with_keras_padding(k, s, h, w):
    torch = pytest.importorskip("torch")
    x, W, b = random_case(1, 2, h, w, 3, 4, k)
    y, _ = conv.conv2d_forward(x, W, b, s)
    np.testing.assert_allclose(y, torch_same_conv2d(torch, x, W, b, s), rtol=1e-12, atol=1e-12)
    xt, Wt, bt = random_case(2, 2, h, w, 3, 4, k, transpose=True)
    yt, _ = conv.conv2d_transpose_forward(xt, Wt, bt, s)
    np.testing.assert_allclose(yt, torch_same_conv2d_transpose(torch, xt, Wt, bt, s), rtol=1e-12, atol=1e-12)


def test_pytorch_symmetric_padding_is_not_keras_same_at_stride_2():
    """padding=1 gives PyTorch's 28 -> 14 the same shape as Keras's, but pads (1, 1),
    not (0, 1): the windows sit one pixel apart, so the outputs differ."""
    torch = pytest.importorskip("torch")
    x, W, b = random_case(4, 1, 8, 8, 2, 3, 3)
    y, _ = conv.conv2d_forward(x, W, b, 2)
    yt = torch.nn.functional.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(W).permute(3, 2, 0, 1),
                                    torch.from_numpy(b), stride=2, padding=1).permute(0, 2, 3, 1).numpy()
    assert yt.shape == y.shape
    assert np.abs(yt - y).max() > 0.1


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("transpose", [False, True])
def test_the_fast_pairs_are_the_core_pairs(name, transpose, monkeypatch):
    """fast.conv's forward_in_passes / backward_in_passes against core.conv's whole-batch pair, their oracle:
    bit for bit in one pass, to rounding (dW summed per pass) in one image per pass."""
    be = make(name)
    x, W, b = (put(be, a) for a in random_case(7, 5, 6, 5, 2, 3, 3, transpose))
    core = (conv.conv2d_transpose_forward, conv.conv2d_transpose_backward) if transpose else \
        (conv.conv2d_forward, conv.conv2d_backward)
    forward_in_passes, backward_in_passes = fast_conv.CONV2D_TRANSPOSE if transpose else fast_conv.CONV2D
    y, cache = core[0](x, W, b, 2)
    want = [be.to_numpy(a) for a in (y, *core[1](y * y, cache))]
    for entries, exact in ((2**26, True), (1, False)):                  # one pass; one image per pass
        monkeypatch.setattr(fast_conv, "COLUMN_ENTRIES_PER_PASS", entries)
        monkeypatch.setattr(fast_conv, "GPU_COLUMN_ENTRIES_PER_PASS", entries)
        y_f, cache_f = forward_in_passes(x, W, b, 2)
        got = [be.to_numpy(a) for a in (y_f, *backward_in_passes(y_f * y_f, cache_f))]
        for g, w in zip(got, want):
            if exact:
                np.testing.assert_array_equal(g, w)
            else:
                np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
