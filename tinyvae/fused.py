"""The optimizers' fast path on NumPy: the same arithmetic, in place, in chunks, on every core.

`Adam.step` and `SGD.step` (optim.py) are written formula by formula, and each
line makes a new parameter-sized array. When all the arrays are NumPy arrays
of one float dtype, `Adam(..., fast=True)` (the default) hands the update to
`fused_adam` here instead, and `SGD` to `fused_sgd`. A kernel performs the same
floating-point operations, in the same order, on every element, so the
parameters and the state come out the same bit for bit
(tests/test_fast_paths.py). What changes is where the work happens:

- in place (`out=`) and in scratch buffers allocated once, so a step makes no
  parameter-sized array;
- in chunks of CHUNK elements, shared between the calling thread and a small
  pool of worker threads of this module's own, one per CPU this process may
  run on (`os.sched_getaffinity`). NumPy releases the GIL inside each
  operation on a large array, so the chunks run at the same time.

Nothing here sets a thread count, a BLAS option or an environment variable;
the pool is started on the first fast step and is used by nothing else.
`fast=False` turns all of it off. CuPy and array-api-strict arrays never come
here: `Adam` and `SGD` run their plain lines on them. How it works:
docs/optimizers.md#the-fast-path-on-numpy; measurements and what did not pay:
docs/benchmarks.md.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

from .backend import is_numpy_array, namespace_of

CHUNK = 1 << 16       # elements per chunk: 256 KiB of float32 per array
MIN_PARALLEL = 1 << 17  # below this many elements in all, one thread does everything


def fusable(*dicts) -> bool:
    """True when every array in the dicts is a writable, C-contiguous NumPy array of one float dtype."""
    dtype = None
    for d in dicts:
        for a in d.values():
            if not (is_numpy_array(a) and a.dtype.kind == "f" and a.flags.c_contiguous and a.flags.writeable):
                return False
            if dtype is None:
                dtype = a.dtype
            elif a.dtype != dtype:
                return False
    return dtype is not None


# ---------------------------------------------------------------------------
# The kernels: one chunk of one parameter, 1-D views, updated in place
# ---------------------------------------------------------------------------


def adam_kernel(p, g, m, v, t, u, b1, b2, lr_t, eps_t):
    """Adam.step's lines for one chunk, in place; t and u are scratch of the chunk's size.

    Same operations in the same order as the plain lines (optim.py), so the
    same numbers:  m <- b1 m + (1 - b1) g,  v <- b2 v + (1 - b2) g g,
    p <- p - (lr_t m) / (sqrt(v) + eps_t).
    """
    xp = namespace_of(p)
    xp.multiply(m, b1, out=m)          # m *= b1
    xp.multiply(g, 1.0 - b1, out=t)    #      (1 - b1) g
    xp.add(m, t, out=m)                # m <- b1 m + (1 - b1) g
    xp.multiply(v, b2, out=v)          # v *= b2
    xp.multiply(g, 1.0 - b2, out=t)    #      (1 - b2) g
    xp.multiply(t, g, out=t)           #      (1 - b2) g g
    xp.add(v, t, out=v)                # v <- b2 v + (1 - b2) g^2
    xp.sqrt(v, out=t)                  #      sqrt(v)
    xp.add(t, eps_t, out=t)            #      sqrt(v) + eps_t
    xp.multiply(m, lr_t, out=u)        #      lr_t m
    xp.divide(u, t, out=u)             #      lr_t m / (sqrt(v) + eps_t)
    xp.subtract(p, u, out=p)           # p <- p - lr_t m / (sqrt(v) + eps_t)


def sgd_kernel(p, g, vel, t, u, lr, momentum):
    """SGD.step's lines for one chunk, in place: vel <- momentum vel + g, p <- p - lr vel."""
    xp = namespace_of(p)
    xp.multiply(vel, momentum, out=vel)   # vel *= momentum
    xp.add(vel, g, out=vel)               # vel <- momentum vel + g
    xp.multiply(vel, lr, out=t)           #        lr vel
    xp.subtract(p, t, out=p)              # p <- p - lr vel


# ---------------------------------------------------------------------------
# Running a kernel over every parameter, in chunks, on the pool
# ---------------------------------------------------------------------------


_pool = None
_pool_lock = threading.Lock()


def _threads() -> int:
    """The CPUs this process may run on (its affinity mask), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _get_pool(workers: int) -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tinyvae-fused")
        return _pool


def _plan(sizes: dict, n_groups: int):
    """Split the parameters into chunks, and the chunks into n_groups runs of about equal size.

    sizes: {name: number of elements}. Returns a list of n_groups lists of
    (name, start, stop), each list contiguous in (name, start) order.
    """
    chunks = [(k, lo, min(lo + CHUNK, n)) for k, n in sizes.items() for lo in range(0, n, CHUNK)]
    total = sum(n for n in sizes.values())
    groups, done = [[] for _ in range(n_groups)], 0
    for k, lo, hi in chunks:
        groups[min(done * n_groups // max(total, 1), n_groups - 1)].append((k, lo, hi))
        done += hi - lo
    return [g for g in groups if g]


class ChunkRunner:
    """Runs an in-place kernel over dicts of arrays, chunk by chunk, split between threads.

    threads: how many threads share the work (the caller's included); None
    means one per CPU this process may use. 1 runs everything in the caller.
    """

    def __init__(self, threads=None):
        self.threads = _threads() if threads is None else int(threads)
        self._plans = {}    # (names, sizes) -> groups of chunks
        self._scratch = {}  # (dtype, group) -> two CHUNK-sized buffers

    def run(self, kernel, arrays: list, *scalars):
        """kernel(*chunks_of(arrays), t, u, *scalars) for every chunk; arrays[0] gives names and sizes."""
        first = arrays[0]
        sizes = {k: a.size for k, a in first.items()}
        key = tuple(sizes.items())
        if key not in self._plans:
            n = self.threads if sum(sizes.values()) >= MIN_PARALLEL else 1
            self._plans[key] = _plan(sizes, max(n, 1))
        groups = self._plans[key]
        flat = [{k: a.reshape(-1) for k, a in d.items()} for d in arrays]  # 1-D views, no copies
        like = next(iter(first.values()))
        jobs = [(flat, g, self._buffers(like, i)) for i, g in enumerate(groups)]
        if len(jobs) == 1:
            _run_group(kernel, *jobs[0], scalars)
            return
        pool = _get_pool(max(self.threads - 1, 1))
        futures = [pool.submit(_run_group, kernel, *job, scalars) for job in jobs[1:]]
        _run_group(kernel, *jobs[0], scalars)  # the caller takes the first share
        for f in futures:
            f.result()

    def _buffers(self, like, i):
        """Thread i's two scratch buffers, CHUNK elements of like's dtype, made once."""
        if (like.dtype, i) not in self._scratch:
            xp = namespace_of(like)
            self._scratch[(like.dtype, i)] = (xp.empty(CHUNK, dtype=like.dtype), xp.empty(CHUNK, dtype=like.dtype))
        return self._scratch[(like.dtype, i)]


def _run_group(kernel, flat, group, scratch, scalars):
    t, u = scratch
    for k, lo, hi in group:
        n = hi - lo
        kernel(*(d[k][lo:hi] for d in flat), t[:n], u[:n], *scalars)


def fused_adam(runner: ChunkRunner, params, grads, m, v, b1, b2, lr_t, eps_t):
    """Adam's update of every parameter through `adam_kernel` (see Adam.step for the formula)."""
    runner.run(adam_kernel, [params, grads, m, v], b1, b2, lr_t, eps_t)


def fused_sgd(runner: ChunkRunner, params, grads, velocity, lr, momentum):
    """SGD's update of every parameter through `sgd_kernel` (see SGD.step for the formula)."""
    runner.run(sgd_kernel, [params, grads, velocity], lr, momentum)
