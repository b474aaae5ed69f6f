"""Arrays kept from one training step to the next, so that a step takes no fresh memory.

A Workspace belongs to one fast step (fast/step.py's FastVAEStep, which the model's adapter
holds); nothing here is module state. Each array is named by its role ("dec.2.y": the output of
layer 2 of the decoder, "cols": the columns of the current conv pass) and its dtype, and is kept
as one flat buffer: a request for a shape hands out the first entries of that buffer as a
C-contiguous view, so the last, smaller batch of an epoch uses the front of the same memory.
The buffer grows (a new one, the old dropped) when a request needs more.

The fast step writes only intermediates here. What it hands back (the loss, the gradients) is
always a fresh array, so a caller may keep a step's result while the next step overwrites
the workspace (tests/test_fast_step.py, test_a_step_never_hands_back_the_workspace).
"""
from __future__ import annotations

import math

import numpy as np


class Workspace:
    """Named scratch arrays of the fast step, one flat buffer per (name, dtype)."""

    def __init__(self):
        self._buffers = {}   # (name, dtype) -> 1-D array

    def get(self, name, shape, dtype):
        """An uninitialised C-contiguous array of `shape` and `dtype`: the front of the buffer called `name`.

        Every call with the same name and dtype returns a view of the same memory: what was
        written there on the last step is overwritten on this one.
        """
        key, size = (name, np.dtype(dtype)), math.prod(shape)
        buf = self._buffers.get(key)
        if buf is None or buf.shape[0] < size:
            buf = self._buffers[key] = np.empty(size, dtype)
        return buf[:size].reshape(shape)

    def nbytes(self) -> int:
        """Bytes held, over all buffers."""
        return sum(b.nbytes for b in self._buffers.values())
