"""What the benchmarks share: contestants that take turns, each in a process of its own; tinyvae's
epoch (tinyvae.train.steps, the loop fit runs); the matmul floor; the machine as found; memory; data.

The libraries compared share nothing only if they run apart: in one process the C
allocator's state would pass from one to the other (docs/benchmarks.md#fresh-memory-page-faults).
So each contestant is built, warmed up and timed in a fresh process of its own (Contestant),
and take_turns gives each one epoch at a time, on the same batch order, the order of turns
reversed every other round. A contestant is a picklable `make` (a module-level function, or a
partial of one) that builds it in the child and returns epoch(perm).

tinyvae's contestants train through tinyvae.train.steps, the one minibatch loop fit runs;
the PyTorch contestants (the twins in the scripts) keep their own loop: they are the reference.
Nothing here sets threads or BLAS options: the machine is measured, and reported, as found.
Importing this module puts the checkout on sys.path, so the scripts import it before tinyvae.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from tinyvae import models, train  # noqa: E402
from tinyvae.backend import get_backend  # noqa: E402
from tinyvae.core.nets import ConvTranspose, Dense  # noqa: E402
from tinyvae.core.optim import Adam  # noqa: E402
from tinyvae.core.vae import init_params  # noqa: E402
from tinyvae.fast import conv  # noqa: E402
from tinyvae.fast.optim import available  # noqa: E402
from tinyvae.fast.step import compile_loops  # noqa: E402

LR = 1e-3
PAUSE_S = 0.5        # idle seconds before each timed epoch
TEST_STREAM = 10_000  # the test -ELBO's noise: backend.reseed(TEST_STREAM)


# ---------------------------------------------------------------------------
# The machine as found, the data, the flags every timing script takes
# ---------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def numpy_blas() -> str:
    try:
        deps = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        text = f"{deps.get('name')} {deps.get('version')}"
    except Exception:  # older NumPy: no dict mode
        text = "unknown (numpy.show_config() has it)"
    try:
        import threadpoolctl  # optional; only read here

        pools = [f"{p['internal_api']} {p.get('version')} threads={p['num_threads']}"
                 for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
        if pools:
            text += " | in use: " + "; ".join(pools)
    except ImportError:
        pass
    return text


def machine_report(torch, backend_name, device) -> list[str]:
    lines = [
        f"machine   : {cpu_model()}, {os.cpu_count()} logical CPUs, "
        f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}",
        f"python    : {platform.python_version()}, numpy {np.__version__}, BLAS {numpy_blas()}",
    ]
    env = {k: v for k, v in os.environ.items()
           if k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS") or k.startswith("MALLOC_")}
    lines.append(f"env       : {env or 'no thread or allocator variables set'}")
    if backend_name == "cupy":
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        lines.append(f"gpu       : {props['name'].decode()}, cupy {cupy.__version__}")
    if torch is not None:
        blas = "MKL" if torch.backends.mkl.is_available() else "non-MKL"
        lines.append(f"torch     : {torch.__version__} on {device}, {torch.get_num_threads()} threads, {blas}")
    return lines


def import_torch(backend_name):
    """(torch, device name), or (None, None) with a line saying why its column is skipped."""
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: its column is skipped (install PyTorch to compare against it).")
        return None, None
    if backend_name == "cupy":
        if not torch.cuda.is_available():
            print("PyTorch has no CUDA device here: its column is skipped.")
            return None, None
        return torch, "cuda"
    return torch, "cpu"


def load_data(limit, synthetic):
    """Training (and test) pixels, float32 in [0, 1], on the host."""
    if synthetic:
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (max(limit, 1), 784), dtype=np.uint8)
        return (x / np.float32(255)).astype(np.float32), None
    from tinyvae.data import load_mnist, to_unit_interval

    d = load_mnist()
    return to_unit_interval(d.x_train[:limit]), to_unit_interval(d.x_test)


def fast_path_report(backend_name) -> list[str]:
    """The fast path's line of the report: its loops compiled (or loaded from Numba's cache) now, timed
    apart from the epochs; none off NumPy or without Numba, where the fast step does not run."""
    if backend_name != "numpy" or not available():
        return []
    return [f"fast path : its loops compiled (or loaded from Numba's disk cache) in {compile_loops():.2f} s"]


def print_ratios(times, floor_target, torch_target):
    """The ratios of time_epochs' {name: [seconds, ...]}: tinyvae and its plain path against the floor,
    PyTorch (when it ran) and each other, with the targets of the fast path (docs/benchmarks.md)."""
    med = {name: statistics.median(t) for name, t in times.items()}
    ratios = [("floor / tinyvae (median)", med["matmul floor"] / med["tinyvae"], f"   (target >= {floor_target:.2f})"),
              ("floor / tinyvae, plain (median)", med["matmul floor"] / med["tinyvae, plain"], "")]
    if "pytorch" in times:
        ratios += [("tinyvae / pytorch (median)", med["tinyvae"] / med["pytorch"], f"   (target <= {torch_target:.2f})"),
                   ("tinyvae / pytorch (min)", min(times["tinyvae"]) / min(times["pytorch"]), ""),
                   ("tinyvae, plain / pytorch (median)", med["tinyvae, plain"] / med["pytorch"], "")]
    ratios.append(("tinyvae / tinyvae, plain (median)", med["tinyvae"] / med["tinyvae, plain"], ""))
    for label, value, target in ratios:
        print(f"{label + ':':36s}{value:.2f}{target}")


def add_common_flags(p, rounds, epochs):
    """The flags of epoch_vs_pytorch.py and conv_vs_pytorch.py alike."""
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy",
                   help="tinyvae backend; PyTorch runs on CPU for numpy, on CUDA for cupy")
    p.add_argument("--rounds", type=int, default=rounds, help="timed epochs per contestant")
    p.add_argument("--limit", type=int, default=60000, help="training images per epoch")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--synthetic", action="store_true",
                   help="random pixels instead of MNIST (timing only; no download)")
    p.add_argument("--accuracy", action="store_true",
                   help="instead of timing, train side by side for --epochs and print the test loss")
    p.add_argument("--epochs", type=int, default=epochs, help="epochs for --accuracy")


def add_clock_flag(p):
    """--clock: CLOCKS' name for the contestants' epochs (take_turns' clock)."""
    p.add_argument("--clock", choices=tuple(CLOCKS), default="wall", help="wall seconds, or each contestant "
                   "process's CPU seconds (steadier on a busy machine, with OPENBLAS_NUM_THREADS=1)")


def add_pass_entries_flag(parser):
    """--pass-entries, read by set_pass_entries."""
    parser.add_argument("--pass-entries", type=float, default=None,
                        help=f"column entries per conv pass (default: tinyvae.fast.conv's budget for the "
                             f"device, {conv.COLUMN_ENTRIES_PER_PASS} on a CPU, {conv.GPU_COLUMN_ENTRIES_PER_PASS} "
                             "on a GPU; 1e12: the whole batch in one pass)")


def set_pass_entries(backend_name, entries):
    """The --pass-entries flag: the conv pass budget of the device in use (None: the default); returns it."""
    name = "GPU_COLUMN_ENTRIES_PER_PASS" if backend_name == "cupy" else "COLUMN_ENTRIES_PER_PASS"
    if entries:
        setattr(conv, name, int(entries))
    return getattr(conv, name)


# ---------------------------------------------------------------------------
# The floor: the matrix multiplies of the steps, and nothing else
# ---------------------------------------------------------------------------


def batch_sizes(n_images, batch_size):
    return [min(batch_size, n_images - s) for s in range(0, n_images, batch_size)]


def matmul_shapes(config, n):
    """One training step's matrix multiplies on n images, as (m, k, q, layout), in the order the step runs them.

    Forward, each layer with weights in turn: Dense h (n, D) @ W (D, H); Conv the im2col GEMM
    cols (n OH OW, k k C) @ W (k k C, F); ConvTranspose x (n H W, C) @ W^T (C, k k F). Then backward,
    last layer first: dx = dy W^T (none for the encoder's first layer: its input is the data, and
    PyTorch skips it too), then dW = cols^T dy. layout: which operand is a transposed view, as a
    dense layer's are ("nt": dy @ W.T, "tn": x.T @ dy); the conv GEMMs' operands are contiguous ("nn").
    """
    forward, backward = [], []
    for prefix, (layers, shape, _) in config.networks().items():
        first = True
        for layer in layers:
            _, out = layer.shapes(shape)
            if layer.PARAMS:
                dense = isinstance(layer, Dense)
                if dense:
                    m, k, q = n, shape[0], out[0]
                elif isinstance(layer, ConvTranspose):  # a subclass of Conv: asked first
                    m, k, q = n * shape[0] * shape[1], shape[2], layer.kernel ** 2 * out[2]
                else:                                   # Conv
                    m, k, q = n * out[0] * out[1], layer.kernel ** 2 * shape[2], out[2]
                forward.append((m, k, q, "nn"))
                dx = [] if prefix == "enc" and first else [(m, q, k, "nt" if dense else "nn")]
                backward[:0] = dx + [(k, m, q, "tn" if dense else "nn")]
                first = False
            shape = out
    return forward + backward


def epoch_flops(config, n_images, batch_size) -> float:
    """Matrix-multiply FLOPs (2 m k q each) of one epoch, forward and backward."""
    return float(sum(2 * m * k * q for n in batch_sizes(n_images, batch_size)
                     for m, k, q, _ in matmul_shapes(config, n)))


class MatmulFloor:
    """The matrix multiplies of an epoch of `config`, with matmul_shapes' shapes and operand layouts.

    On NumPy the outputs go to preallocated arrays, so not even allocation is
    counted; on CuPy its pooled `@` makes the allocation cheap.
    """

    def __init__(self, backend_name, batch_size, config, seed=0):
        self.be, self.batch_size, self.config, self.ops = get_backend(backend_name, seed=seed), batch_size, config, {}

    def _operands(self, n):
        if n not in self.ops:
            be = self.be
            self.ops[n] = [(be.normal((k, m)).T if layout == "tn" else be.normal((m, k)),
                            be.normal((q, k)).T if layout == "nt" else be.normal((k, q)),
                            be.zeros((m, q))) for m, k, q, layout in matmul_shapes(self.config, n)]
        return self.ops[n]

    def epoch(self, n_images):
        on_numpy = self.be.name == "numpy"
        for n in batch_sizes(n_images, self.batch_size):
            for a, b, out in self._operands(n):
                if on_numpy:
                    np.matmul(a, b, out=out)
                else:
                    a @ b
        self.be.synchronize()


def make_floor(backend_name, batch_size, config, warm_batches):
    """Build, in a contestant's process: the matrix multiplies alone, warmed up; returns epoch(perm)."""
    floor = MatmulFloor(backend_name, batch_size, config)
    floor.epoch(warm_batches * batch_size)
    return lambda perm: floor.epoch(perm.shape[0])


# ---------------------------------------------------------------------------
# tinyvae's training, and what the PyTorch twins share
# ---------------------------------------------------------------------------


class TinyVAERun:
    """tinyvae trained as fit trains it: each epoch is tinyvae.train.steps (take the batch, the model's
    train_step with its eps drawn there, Adam), its noise from the stream (train.STREAM_TRAIN, epoch)."""

    def __init__(self, backend_name, x_host, config, seed=0, fast=True):
        self.be = get_backend(backend_name, seed=seed)
        self.config, self.model = config, models.for_config(config, fast=fast)   # fast: tinyvae/fast/step.py
        self.x = self.be.asarray(x_host)  # (N, D) float32, on the device, once
        self.params = init_params(config, self.be)
        self.opt = Adam(self.params, lr=LR, fast=fast)  # and the compiled update (tinyvae/fast/optim.py)
        self.epochs = 0

    def epoch(self, perm, batch_size, limit=None):
        """One pass in the batch order `perm` (host ints), or over its first `limit` images; the mean loss."""
        be = self.be
        self.epochs += 1
        be.reseed(train.STREAM_TRAIN, self.epochs)
        order = be.asarray(perm[:limit])  # one copy of the batch order to the device per epoch
        total = be.zeros(())
        for nb, parts in train.steps(self.params, self.opt, self.model, self.config, be, self.x, order, batch_size):
            total = total + parts["loss"] * nb  # summed on the device, as training does
        be.synchronize()
        return float(total) / order.shape[0]

    def test_neg_elbo(self, x_test_host, batch_size=1000):
        """Mean over the test images of recon + kl, z sampled once per image (nats)."""
        be = self.be
        be.reseed(TEST_STREAM)
        total = 0.0
        for start in range(0, x_test_host.shape[0], batch_size):
            batch = {"x": be.asarray(x_test_host[start:start + batch_size]), "y": None}
            total += float(be.xp.sum(self.model.eval_terms(self.params, batch, be, self.config)["neg_elbo"]))
        return total / x_test_host.shape[0]


class TorchTraining:
    """What the PyTorch twins share: the per-image -ELBO, an epoch of Adam steps in a given batch
    order, and the test -ELBO, in idiomatic eager code.

    A subclass builds self.model (x, eps -> logits, mu, logvar), self.opt, self.x (the
    training images on self.device), self.gen (the noise's generator) and self.latent.
    """

    def neg_elbo(self, x, eps):
        """recon + kl per image (N,), nats."""
        logits, mu, logvar = self.model(x, eps)
        recon = self.F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)
        return recon + kl

    def epoch(self, perm, batch_size, limit=None):
        torch = self.torch
        self.model.train()
        idx = torch.from_numpy(perm).to(self.device)
        n_total = perm.shape[0] if limit is None else min(limit, perm.shape[0])
        total = torch.zeros((), device=self.device)
        for start in range(0, n_total, batch_size):
            x = self.x[idx[start:min(start + batch_size, n_total)]]
            eps = torch.randn(x.shape[0], self.latent, device=self.device, generator=self.gen)
            loss = self.neg_elbo(x, eps).mean()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            total += loss.detach() * x.shape[0]
        return float(total) / n_total  # the one host synchronisation of the epoch

    def test_neg_elbo(self, x_test_host, batch_size=1000):
        torch = self.torch
        self.model.eval()
        gen = torch.Generator(device=self.device).manual_seed(TEST_STREAM)
        total = 0.0
        with torch.no_grad():
            for start in range(0, x_test_host.shape[0], batch_size):
                x = torch.from_numpy(x_test_host[start:start + batch_size]).to(self.device)
                eps = torch.randn(x.shape[0], self.latent, device=self.device, generator=gen)
                total += float(self.neg_elbo(x, eps).sum())
        return total / x_test_host.shape[0]


def make_run(build, backend_name, limit, synthetic, seed, batch_size, warm_batches, *options):
    """Build, in a contestant's process: build(backend_name, x, seed, *options) on the training images,
    warmed up; returns epoch(perm). `build` is a module-level function of a script (picklable)."""
    x, _ = load_data(limit, synthetic)
    return warmed_up(build(backend_name, x, seed, *options), x.shape[0], seed, batch_size, warm_batches)


def warmed_up(run, n_images, seed, batch_size, warm_batches):
    """Train `run` for `warm_batches` batches off the clock (BLAS threads, allocator, kernels);
    returns the epoch(perm) that take_turns times."""
    run.epoch(np.random.default_rng(seed).permutation(n_images), batch_size, limit=warm_batches * batch_size)
    return lambda perm: run.epoch(perm, batch_size)


def side_by_side(runs, n, epochs, batch_size, seed, x_test=None):
    """Train each of `runs` {name: run} for `epochs` epochs, the same batch order for all in each.

    Yields per epoch ({name: its test -ELBO, or with x_test None its epoch's mean training loss},
    {name: seconds of its epoch}).
    """
    host_rng = np.random.default_rng(seed)
    for _ in range(epochs):
        perm = host_rng.permutation(n)
        losses, secs = {}, {}
        for name, run in runs.items():
            t0 = time.perf_counter()
            train_loss = run.epoch(perm, batch_size)
            secs[name] = time.perf_counter() - t0
            losses[name] = train_loss if x_test is None else run.test_neg_elbo(x_test)
        yield losses, secs


# ---------------------------------------------------------------------------
# Taking turns, each contestant in a process of its own
# ---------------------------------------------------------------------------


CLOCKS = {"wall": time.perf_counter,  # seconds on the wall clock
          "cpu": time.process_time}    # the contestant process's CPU seconds, user + system, all its threads


def _serve(make, conn, clock="wall"):
    """A contestant's process: build it, then time one epoch per batch order received, on CLOCKS[clock].

    Answers (seconds, minor page faults) per epoch; None ends it.
    """
    epoch, now = make(), CLOCKS[clock]
    conn.send("ready")
    while (perm := conn.recv()) is not None:
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = now()
        epoch(perm)
        conn.send((now() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults))


class Contestant:
    """One contestant in a fresh process of its own, started with `spawn`.

    In one shared process the libraries would share the C allocator, and how
    much freed memory glibc keeps for reuse depends on the largest blocks freed
    so far, by anyone: one library's epochs would make the other's faster or
    slower. `make` is a picklable callable that builds the contestant in the
    child, warms it up and returns epoch(perm); `clock` names the clock its epochs are timed on (CLOCKS).
    """

    def __init__(self, name, make, clock="wall"):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(make, child, clock), daemon=True)
        self.process.start()
        child.close()  # the child's end lives in the child now: its exit closes the pipe
        try:
            self.conn.recv()  # "ready": built and warmed up, off the clock
        except EOFError:
            self.process.join()
            raise RuntimeError(f"{name}: its process ended (exit code {self.process.exitcode}) "
                               "before it was ready; its error is printed above") from None

    def epoch(self, perm):
        """One timed epoch in the child: (seconds, minor page faults)."""
        self.conn.send(perm)
        return self.conn.recv()

    def close(self):
        if self.process.is_alive():
            self.conn.send(None)
        self.process.join()


def take_turns(makers: dict, rounds: int, n: int, seed: int, pause_s: float = PAUSE_S, clock="wall") -> dict:
    """`rounds` epochs of each contestant, taking turns, the order reversed every other round.

    makers: {name: make}; every contestant gets the same batch order in a
    round. Returns {name: [(seconds, faults), ...]}, printing each round;
    the seconds are on the clock CLOCKS[clock] of each contestant's process.
    """
    contestants = {}  # those started so far: all are closed at the end, whatever happens
    host_rng = np.random.default_rng(seed)
    results = {name: [] for name in makers}
    try:
        for name, make in makers.items():
            contestants[name] = Contestant(name, make, clock)
        for r in range(rounds):
            perm = host_rng.permutation(n)  # one batch order per round, shared by all
            order = list(contestants.items())
            if r % 2:
                order.reverse()
            for name, contestant in order:
                # Idle a moment first: BLAS and OpenMP worker threads spin for a while
                # after their last call, and would otherwise steal a core from the next run.
                time.sleep(pause_s)
                results[name].append(contestant.epoch(perm))
            print(f"round {r + 1}/{rounds}: " + ", ".join(
                f"{k} {v[-1][0]:.3f} s" for k, v in results.items()), flush=True)
    finally:
        for contestant in contestants.values():
            contestant.close()
    return results


def print_times(results: dict, flops: float, steps: int, width: int = 20):
    """The table: min and median seconds, GFLOP/s of the median, minor page faults per step."""
    print(f"{'':{width}s}{'min s':>8s}{'median s':>10s}{'GFLOP/s':>9s}{'faults/step':>13s}")
    for name, r in results.items():
        t = [s for s, _ in r]
        faults = statistics.median(f for _, f in r) / steps
        med = statistics.median(t)
        print(f"{name:{width}s}{min(t):8.3f}{med:10.3f}{flops / med / 1e9:9.1f}{faults:13.0f}")


def time_epochs(makers, args, n, config, what="", width=20) -> dict:
    """take_turns over `makers` on n images per epoch, then the table; returns {name: [seconds, ...]}."""
    flops = epoch_flops(config, n, args.batch_size)
    results = take_turns(makers, args.rounds, n, args.seed)
    print()
    print(f"{n} images/epoch, batch {args.batch_size}, {args.rounds} rounds, "
          f"{flops / 1e9:.1f} GFLOP of matrix multiplies per epoch{what}")
    print_times(results, flops, len(batch_sizes(n, args.batch_size)), width)
    return {name: [s for s, _ in r] for name, r in results.items()}


# ---------------------------------------------------------------------------
# Peak memory
# ---------------------------------------------------------------------------


def rss_bytes():
    """This process's resident memory now (Linux /proc), in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def gpu_pool_bytes(which, torch):
    """A GPU library's caching allocator: (bytes held now, peak bytes held so far).

    CuPy's pool keeps what it has taken until told to free it, so what it holds
    at the end is its peak; PyTorch keeps its own peak of reserved bytes.
    """
    if which == "pytorch":
        torch.cuda.synchronize()
        return torch.cuda.memory_reserved(), torch.cuda.max_memory_reserved()
    import cupy

    cupy.cuda.get_current_stream().synchronize()
    held = cupy.get_default_memory_pool().total_bytes()
    return held, held


def peak_memory(work, which, torch=None, backend_name="numpy"):
    """(bytes before, peak bytes) around work(): the resident memory, sampled every millisecond by a
    thread; on a GPU (cupy) the caching allocator's bytes instead (gpu_pool_bytes)."""
    if backend_name == "cupy":
        before, _ = gpu_pool_bytes(which, torch)
        work()
        return before, gpu_pool_bytes(which, torch)[1]
    before, peak, done = rss_bytes(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    work()
    done.set()
    sampler.join()
    return before, max(peak[0], rss_bytes())


def memory_runs(script, args) -> dict:
    """Peak memory, each library alone: `script --memory-child tinyvae|pytorch` in a fresh process, which
    trains --memory-steps steps under peak_memory and prints its figures as JSON; prints both figures
    of each and returns {library: growth in bytes}."""
    out = {}
    for which in ("tinyvae", "pytorch"):
        cmd = [sys.executable, script, "--memory-child", which, "--memory-steps", str(args.memory_steps),
               "--batch-size", str(args.batch_size), "--backend", args.backend]
        cmd += ["--pass-entries", str(args.pass_entries)] if args.pass_entries else []
        cmd += ["--synthetic"] if args.synthetic else []
        run = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if run.returncode != 0:
            print(f"{which}: memory run failed: {run.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(run.stdout.strip().splitlines()[-1])
        out[which] = r["after"] - r["before"]
        what = "GPU memory pool" if args.backend == "cupy" else "resident memory"
        print(f"{which}: {what} {r['before'] / 2**20:.0f} MiB before training "
              f"(library, data and model), peak {r['after'] / 2**20:.0f} MiB")
    return out


def memory_child(build, which, args):
    """Runs in the process memory_runs starts: the library set up, then build(backend_name, x, 0) on
    --memory-steps batches of images, trained one pass under peak_memory; prints the figures as JSON."""
    torch = import_torch(args.backend)[0] if which == "pytorch" else None
    if which == "tinyvae":
        # The library's own set-up happens before the baseline, as `import torch`
        # does for PyTorch: with Numba installed, the optimizers' fast path
        # imports and compiles its loop on the first step (about 150 MiB of JIT).
        w = {"w": np.zeros(1, np.float32)}
        Adam(w).step(w, {"w": np.ones(1, np.float32)})
    n = args.memory_steps * args.batch_size
    x = np.ascontiguousarray(load_data(n, args.synthetic)[0][:n])
    run = build(args.backend, x, 0)
    before, after = peak_memory(lambda: run.epoch(np.arange(x.shape[0]), args.batch_size), which, torch,
                                args.backend)
    print(json.dumps({"before": before, "after": after}))
