"""Speed paths beside the plain core: each a drop-in with the core function's signature, and the
core function its test oracle (tests/test_fast_paths.py).

- fast.conv: the conv pairs run a few images at a time, within a budget of column entries;
- fast.optim: Adam's and SGD's update as one compiled loop (Numba) or one CUDA kernel (CuPy).

They are picked in one line each where the model is assembled: `nets.Conv.OP`, and
`Adam(fast=True)` / `SGD(fast=True)`. How they are built: docs/package.md#fast-paths-beside-the-plain-ones.
"""
