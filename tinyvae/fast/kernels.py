"""The fast step's compiled loops (Numba): each a single pass over its arrays, in place of a chain
of NumPy operations or of k*k strided copies.

Each loop is written once here as plain Python over the elements, and `compiled(name)` hands it
to Numba on first use (`njit`, cached on disk, once per dtype). The outer loops are `prange`
loops in which every output element is written by one iteration only, so they may be shared
among Numba's threads, at Numba's own default thread count, without changing a number
(PARALLEL = True: the loops in SHARED). By default they run on the calling thread: on this
project's shared 2-core machine, Numba's OpenMP threads and OpenBLAS's took the cores from each
other and a conv step ran several times slower (docs/fast_path.md#threads). Nothing here sets a
thread count, an environment variable, a threading layer or a BLAS option.

Each loop does the additions, multiplies and comparisons of the core function it replaces, in
that function's order, on numbers of the arrays' own dtype (`x.dtype.type(0)`, never a Python
float that would make the loop float64), with no `fastmath`: the same numbers bit for bit
(tests/test_fast_step.py, each loop against the core on shapes drawn by hypothesis, with every
index bounds-checked, and a planted bug in each caught). Exp, log1p and the row sums stay with
NumPy, in fast/step.py, as in the core.

Indices: a loop indexes its arrays from 0 with `range` counters along the last axis, or through
views that start at 0, so the compiler can see no index is negative and runs the innermost loops
on SIMD registers. Activations are coded as ACT["linear"] = 0, ACT["relu"] = 1.
"""
from __future__ import annotations

import types

from numba import prange

ACT = {"linear": 0, "relu": 1}
PARALLEL = False   # True: the prange loops of SHARED shared among Numba's threads, at Numba's own default count
SHARED = ("im2col", "col2im", "bias_act", "act_backward_sum")   # the loops over a layer's output; the
# sampler's loops run over a (batch, latent) array too small to share
_compiled = {}


def compiled(name):
    """The loop called `name`, compiled on its first call (once per dtype), and cached on disk by Numba:
    parallel (prange shared among Numba's threads) when PARALLEL is set and the loop is in SHARED."""
    parallel = PARALLEL and name in SHARED
    key = (name, parallel)
    if key not in _compiled:
        import numba

        loop = globals()[name]
        if parallel:   # under a name of its own, so that Numba's disk cache keeps the two builds apart
            loop = types.FunctionType(loop.__code__, loop.__globals__, name + "_parallel")
            loop.__qualname__ = loop.__name__
        # error_model="numpy": no Python-style check before each division, which would
        # keep the compiler from running a loop on SIMD registers.
        _compiled[key] = numba.njit(parallel=parallel, cache=True, error_model="numpy")(loop)
    return _compiled[key]


# ---------------------------------------------------------------------------
# Convolutions: the columns built and folded back in one loop each
# ---------------------------------------------------------------------------


def im2col(x, k, s, top, left, OH, OW, n0, cols):
    """The windows of images n0 .. n0 + P - 1 of x as rows, zeros where a window reaches the padding:

    cols[(n - n0, oh, ow), (i, j, c)] = x[n, s oh + i - top, s ow + j - left, c], or 0 outside x.
    core/conv.py's im2col of the padded image, without making the padded image.
    Shapes: x (N, H, W, C); cols (P OH OW, k k C), written; P = cols rows / (OH OW).
    """
    H, W, C = x.shape[1], x.shape[2], x.shape[3]
    taps = cols.reshape((cols.shape[0], k, k, C))
    for r in prange(cols.shape[0] // OW):               # one (image, output row) each
        n, oh, row0 = n0 + r // OH, r % OH, r * OW
        for i in range(k):
            h = s * oh + i - top
            for j in range(k):
                lo, hi = 0, 0                           # the windows whose tap (i, j) is inside x:
                if 0 <= h < H:                          # 0 <= s ow + j - left < W
                    lo = min(OW, max(0, (left - j + s - 1) // s))
                    hi = max(lo, min(OW, (W - 1 + left - j) // s + 1))
                for ow in range(lo):
                    for c in range(C):
                        taps[row0 + ow, i, j, c] = 0
                if C == 1:                              # one channel: no inner loop to set up
                    for ow in range(lo, hi):
                        taps[row0 + ow, i, j, 0] = x[n, h, s * ow + j - left, 0]
                else:
                    for ow in range(lo, hi):
                        w = s * ow + j - left
                        for c in range(C):
                            taps[row0 + ow, i, j, c] = x[n, h, w, c]
                for ow in range(hi, OW):
                    for c in range(C):
                        taps[row0 + ow, i, j, c] = 0


def col2im(cols, k, s, top, left, H, W, n0, out, bias, act, mask):
    """The adjoint of im2col, each output pixel summing the columns read from it, then the layer's end:

    out[n, y, x, c] = act(sum over taps (i, j) in order, with s h + i = y + top and s w + j = x + left,
                          of cols[(n - n0, h, w), (i, j, c)]  + bias[c])  * [mask[n, y, x, c] > 0]
    for the images n0 .. n0 + P - 1. Each pixel's sum starts from 0 and takes the taps in
    core/conv.py's col2im order, so it is that function's output, cropped. bias and mask are used
    when they have entries (pass empty arrays otherwise): the transposed conv's bias and activation,
    or the ReLU below a conv's input gradient.
    Shapes: cols (P H W, k k C); out (N, Y, X, C), written for those images; bias (C,) or (0,);
    mask like out or (0, 0, 0, 0).
    """
    Y, X, C = out.shape[1], out.shape[2], out.shape[3]
    P = cols.shape[0] // (H * W)
    use_bias, use_mask = bias.shape[0] > 0, mask.shape[0] > 0
    zero, one = out.dtype.type(0), out.dtype.type(1)   # of out's dtype: no float64 creeps in
    taps = cols.reshape((cols.shape[0], k * k, C))      # (P H W, k k, C)
    for r in prange(P * Y):                             # one (image, output row) each
        p, y = r // Y, r % Y
        n = n0 + p
        o = out[n, y]                                   # (X, C)
        for x in range(X):
            for c in range(C):
                o[x, c] = zero
        i, h = (y + top) % s, (y + top) // s           # tap rows i, i + s, ... read row y from input rows h, h - 1, ...
        while i < k:                                    # the taps in order, i then j: each pixel's sum in core order
            if 0 <= h < H:
                base = (p * H + h) * W
                for j in range(k):
                    x0 = (j - left) % s                 # the first pixel tap column j reaches, from input column w
                    w = (x0 + left - j) // s
                    if w < 0:
                        x0, w = x0 - w * s, 0
                    t = i * k + j
                    if C == 1:                          # one channel: no inner loop to set up
                        for x in range(x0, min(X, x0 + (W - w) * s), s):
                            o[x, 0] += taps[base + w, t, 0]
                            w += 1
                    else:
                        for x in range(x0, min(X, x0 + (W - w) * s), s):
                            for c in range(C):
                                o[x, c] += taps[base + w, t, c]
                            w += 1
            i, h = i + s, h - 1
        if use_bias and act == 1:                       # the row's end, each case its own loop
            for x in range(X):
                for c in range(C):
                    v = o[x, c] + bias[c]
                    o[x, c] = zero if v < zero else v   # max(v, 0) as NumPy takes it (NaN kept)
        elif use_bias:
            for x in range(X):
                for c in range(C):
                    o[x, c] += bias[c]
        elif act == 1:
            for x in range(X):
                for c in range(C):
                    v = o[x, c]
                    o[x, c] = zero if v < zero else v
        if use_mask:
            m = mask[n, y]
            for x in range(X):
                for c in range(C):
                    o[x, c] *= one if m[x, c] > zero else zero


# ---------------------------------------------------------------------------
# A layer's end and its undoing: bias + activation, and the activation's backward with the bias sum
# ---------------------------------------------------------------------------


def bias_act(y, b, act):
    """y <- act(y + b) in place, row by row: core's `op(x, W) + b`, then the activation.

    Shapes: y (M, F), b (F,).
    """
    F, zero = y.shape[1], y.dtype.type(0)
    for r in prange(y.shape[0]):
        for c in range(F):
            v = y[r, c] + b[c]
            if act == 1 and v < zero:
                v = zero
            y[r, c] = v


def act_backward_sum(dy, y, act, db, block):
    """The activation undone in place and the bias gradient, in one pass:

    dy <- dy * [y > 0] (ReLU; left as it is for 'linear'), then db[c] = sum_r dy[r, c], summed row
    after row from row 0, as NumPy sums a C-ordered (M, F) array over axis 0 (F > 1; NumPy sums a
    single column pairwise). The columns go `block` at a time: all of them on one core; a cache
    line's worth per share when the threads share them. (Each share works on views of its columns,
    indexed from 0: indices the compiler can see are never negative, so it runs them on SIMD registers.)
    Shapes: dy, y (M, F); db (F,), written.
    """
    M, F = dy.shape
    zero, one = dy.dtype.type(0), dy.dtype.type(1)
    for cb in prange((F + block - 1) // block):
        c0 = cb * block
        d, m, total = dy[:, c0:c0 + block], y[:, c0:c0 + block], db[c0:c0 + block]   # this share's columns
        B = d.shape[1]
        if act == 1:
            for c in range(B):
                d[0, c] *= one if m[0, c] > zero else zero     # dout * [y > 0], as core/layers.py's relu_backward
                total[c] = d[0, c]
            for r in range(1, M):
                for c in range(B):
                    d[r, c] *= one if m[r, c] > zero else zero
                    total[c] += d[r, c]
        else:
            for c in range(B):
                total[c] = d[0, c]
            for r in range(1, M):
                for c in range(B):
                    total[c] += d[r, c]


# ---------------------------------------------------------------------------
# The sampler and the KL, forward and back, in one loop each
# ---------------------------------------------------------------------------


def sample_kl(head, eps, std, var, z, terms):
    """The sample and each image's KL terms from head = [mu | logvar]:

    z = mu + std eps,  terms = mu^2 + var - 1 - logvar  (summed over each row by the caller, with NumPy,
    as core/distributions.py's kl_normal_forward sums them), std = e^(logvar / 2) and var = e^logvar
    coming in from NumPy's exp, as the core takes them. Shapes: head (N, 2L); eps, std, var, z, terms (N, L).
    """
    N, L = eps.shape
    one = head.dtype.type(1)
    for n in prange(N):
        for j in range(L):
            mu, logvar = head[n, j], head[n, L + j]
            z[n, j] = mu + std[n, j] * eps[n, j]
            terms[n, j] = mu * mu + var[n, j] - one - logvar


def sample_kl_grads(dz, eps, std, head, var, dkl, dhead):
    """dhead = [dmu | dlogvar] through the sample and the KL, each image's KL weighted by dkl[n]:

    dmu = dz + mu dkl,  dlogvar = 0.5 dz eps std + 0.5 (var - 1) dkl: core/distributions.py's
    reparameterize_backward and kl_normal_backward, and their sum, in their order.
    Shapes: dz, eps, std, var (N, L); head, dhead (N, 2L); dkl (N,).
    """
    N, L = eps.shape
    half, one = head.dtype.type(0.5), head.dtype.type(1)
    for n in prange(N):
        w = dkl[n]
        for j in range(L):
            dhead[n, j] = dz[n, j] + head[n, j] * w
            dhead[n, L + j] = half * dz[n, j] * eps[n, j] * std[n, j] + half * (var[n, j] - one) * w
