"""The conv pairs of core/conv.py run over slices of the batch: the same numbers, less memory traffic.

im2col, col2im and their multiplies go a few images at a time, as many as fit in a
budget of column entries. On a CPU the budget is about 2 MB of float32, so that a
pass's columns are still in cache when the multiply reads them; built for the whole
batch at once they go out to memory and back. On a GPU there is no such cache to fit
and every pass costs a few dozen kernel launches, so a training batch goes in one pass
and the budget (256 MB of float32) only bounds the columns of a large evaluation batch.
Each pass computes what the core computes for its images; dW is summed over the passes
in order and db is summed over the whole batch at once, so the result is the core's up
to the rounding of dW's sum (bit for bit in one pass). Measurements: docs/benchmarks.md;
benchmarks/conv_layers.py --pass-entries times other budgets.
"""
from __future__ import annotations

from ..backend import on_gpu
from ..core import conv
from ..core.xp import device_of, namespace_of

COLUMN_ENTRIES_PER_PASS = 2**19
GPU_COLUMN_ENTRIES_PER_PASS = 2**26


def batch_slices(x, entries_per_image):
    """x's batch as slices of whole images within the pass budget of x's device; stops exact."""
    N = x.shape[0]
    budget = GPU_COLUMN_ENTRIES_PER_PASS if on_gpu(x) else COLUMN_ENTRIES_PER_PASS
    per_pass = max(1, budget // entries_per_image)
    return [slice(n, min(n + per_pass, N)) for n in range(0, N, per_pass)]


def in_passes(forward, backward, entries_per_image):
    """(forward, backward) with the core pair's signatures, run over batch_slices of the input."""

    def forward_in_passes(x, W, b, stride):
        xp = namespace_of(x)
        passes = batch_slices(x, entries_per_image(x.shape, W.shape, stride))
        if len(passes) == 1:
            y, cache = forward(x, W, b, stride)
            return y, [(passes[0], cache)]
        y, caches = None, []
        for p in passes:
            y_p, cache = forward(x[p, ...], W, b, stride)
            if y is None:
                y = xp.empty((x.shape[0], *y_p.shape[1:]), dtype=y_p.dtype, device=device_of(y_p))
            y[p, ...] = y_p
            caches.append((p, cache))
        return y, caches

    def backward_in_passes(dy, caches, need_dx=True):
        xp = namespace_of(dy)
        dx, dW = None, None
        for p, cache in caches:
            dx_p, dW_p, _ = backward(dy[p, ...], cache, need_dx)
            dW = dW_p if dW is None else dW + dW_p
            if need_dx and len(caches) == 1:
                dx = dx_p
            elif need_dx:
                if dx is None:
                    dx = xp.empty((dy.shape[0], *dx_p.shape[1:]), dtype=dx_p.dtype, device=device_of(dx_p))
                dx[p, ...] = dx_p
        db = xp.sum(xp.reshape(dy, (-1, dy.shape[-1])), axis=0)   # over the whole batch, as the core sums it
        return dx, dW, db

    return forward_in_passes, backward_in_passes


def conv_entries(x_shape, W_shape, stride):
    """Column entries per image of a conv: OH OW k k C."""
    _, H, Wd, C = x_shape
    k = W_shape[0]
    return -(-H // stride) * -(-Wd // stride) * k * k * C


def conv_transpose_entries(x_shape, W_shape, stride):
    """Column entries per image of a transposed conv: H W k k C_out."""
    _, H, Wd, _ = x_shape
    k, Cout = W_shape[0], W_shape[2]
    return H * Wd * k * k * Cout


CONV2D = in_passes(conv.conv2d_forward, conv.conv2d_backward, conv_entries)
CONV2D_TRANSPOSE = in_passes(conv.conv2d_transpose_forward, conv.conv2d_transpose_backward,
                             conv_transpose_entries)
