"""Seconds per training epoch: tinyvae against PyTorch eager, side by side.

The model is the PyTorch example VAE (784-400-20-400-784, ReLU, Bernoulli
likelihood + KL, Adam lr 1e-3, batch 128) trained on MNIST. Each library runs
in a fresh process of its own, started by this one, and the processes take
turns one epoch at a time (the order alternates between rounds), on the same
data in the same batch order. A third column, the floor, times the same
sequence of matrix multiplies alone: what an epoch would cost if everything
but the multiplies (elementwise work, the optimizer, batching, Python) were
free, with this BLAS on this machine. Each epoch's minor page faults (fresh
memory taken from the operating system) are counted too.

    python benchmarks/epoch_vs_pytorch.py                      # NumPy vs PyTorch CPU
    python benchmarks/epoch_vs_pytorch.py --backend cupy       # CuPy vs PyTorch CUDA
    python benchmarks/epoch_vs_pytorch.py --accuracy           # test loss after 10 epochs
    python benchmarks/epoch_vs_pytorch.py --plain-adam         # also tinyvae with Adam(fast=False)

The machine is measured as found: nothing here sets threads or BLAS options;
the settings in use are printed. Timings on a shared machine are noisy, so only
ratios taken within one run mean anything. PyTorch is optional: without it the
PyTorch column is skipped with a message. Results: docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from tinyvae.backend import get_backend  # noqa: E402
from tinyvae.vae import (  # noqa: E402
    VAEConfig,
    init_params,
    loss_and_grads,
    neg_elbo_terms,
)
from tinyvae.optim import Adam  # noqa: E402

# 784-400-[20|20]-400-784, ReLU, Bernoulli, nn.Linear's initialisation: the PyTorch example
CONFIG = VAEConfig(init="pytorch")
LR = 1e-3
PAUSE_S = 0.5  # idle seconds before each timed epoch


# ---------------------------------------------------------------------------
# What is counted: the matrix multiplies of one training step
# ---------------------------------------------------------------------------


def matmul_shapes(config: VAEConfig, n: int):
    """The matrix multiplies of one step on a batch of n images, as (m, k, q) shapes.

    Returns (forward, backward): forward is a list of (m, k, q), one per dense
    layer; backward a list of (kind, m, k, q), kind "dx" or "dW": dW for every
    layer, and dx for every layer but the first (its input is the data, which
    needs no gradient; PyTorch skips it too, since the images do not require
    grad). Listed in the order the step runs them.
    """
    stacks = [[config.input_dim, *config.enc_hidden, 2 * config.latent_dim],   # encoder, head fused
              [config.latent_dim, *config.dec_hidden, config.input_dim]]       # decoder
    fwd, bwd = [], []
    for sizes in stacks:
        for i in range(len(sizes) - 1):
            fwd.append((n, sizes[i], sizes[i + 1]))  # h (n, D) @ W (D, H)
    for s, sizes in reversed(list(enumerate(stacks))):
        for i in reversed(range(len(sizes) - 1)):
            D, H = sizes[i], sizes[i + 1]
            if not (s == 0 and i == 0):
                bwd.append(("dx", n, H, D))  # dy (n, H) @ W.T (H, D)
            bwd.append(("dW", D, n, H))      # x.T (D, n) @ dy (n, H)
    return fwd, bwd


def epoch_flops(config: VAEConfig, n_images: int, batch_size: int) -> float:
    """Matrix-multiply FLOPs (2 m k n each) of one epoch, forward and backward."""
    total = 0
    for start in range(0, n_images, batch_size):
        n = min(batch_size, n_images - start)
        fwd, bwd = matmul_shapes(config, n)
        total += sum(2 * m * k * q for m, k, q in fwd)
        total += sum(2 * m * k * q for _, m, k, q in bwd)
    return float(total)


def batch_sizes(n_images: int, batch_size: int):
    return [min(batch_size, n_images - s) for s in range(0, n_images, batch_size)]


# ---------------------------------------------------------------------------
# The three contestants, each one epoch per call
# ---------------------------------------------------------------------------


class TinyVAERun:
    """tinyvae trained the way training does it: take, draw eps, loss_and_grads, Adam."""

    def __init__(self, backend_name, x_host, seed=0, fast=True):
        self.be = get_backend(backend_name, seed=seed)
        self.xp = self.be.xp
        self.x = self.be.asarray(x_host)  # (N, 784) float32, on the device, once
        self.params = init_params(CONFIG, self.be)
        self.opt = Adam(self.params, lr=LR, fast=fast)  # fast: Adam's fast path on NumPy (fused.py)
        self.epochs = 0

    def epoch(self, perm, batch_size, limit=None):
        be, xp = self.be, self.xp
        self.epochs += 1
        be.reseed(self.epochs)  # as training does: each epoch's eps from its own stream
        idx = be.asarray(perm)  # one copy of the batch order to the device per epoch
        n_total = perm.shape[0] if limit is None else min(limit, perm.shape[0])
        total = be.zeros(())
        for start in range(0, n_total, batch_size):
            rows = idx[start:min(start + batch_size, n_total)]
            x = xp.take(self.x, rows, axis=0)                 # (B, 784)
            eps = be.normal((x.shape[0], CONFIG.latent_dim))  # (B, 20)
            parts, grads = loss_and_grads(self.params, x, eps, CONFIG, check_values=False)
            self.opt.step(self.params, grads)
            total = total + parts.loss * x.shape[0]           # summed on the device, as training does
        be.synchronize()
        return float(total) / n_total

    def test_neg_elbo(self, x_test_host, batch_size=1000):
        """Mean over the test images of recon + kl, z sampled once per image (nats)."""
        be, xp = self.be, self.xp
        be.reseed(10_000)
        total = 0.0
        for start in range(0, x_test_host.shape[0], batch_size):
            x = be.asarray(x_test_host[start:start + batch_size])
            eps = be.normal((x.shape[0], CONFIG.latent_dim))
            recon, kl = neg_elbo_terms(self.params, x, eps, CONFIG)
            total += float(xp.sum(recon + kl))
        return total / x_test_host.shape[0]


class TorchTraining:
    """What the PyTorch contestants share: the per-image -ELBO, an epoch of Adam steps in
    a given batch order, and the test -ELBO, in idiomatic eager code.

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
        gen = torch.Generator(device=self.device).manual_seed(10_000)
        total = 0.0
        with torch.no_grad():
            for start in range(0, x_test_host.shape[0], batch_size):
                x = torch.from_numpy(x_test_host[start:start + batch_size]).to(self.device)
                eps = torch.randn(x.shape[0], self.latent, device=self.device, generator=gen)
                total += float(self.neg_elbo(x, eps).sum())
        return total / x_test_host.shape[0]


class TorchRun(TorchTraining):
    """The PyTorch example VAE, idiomatic eager code, on the same data and batch order.

    Differences from the example, both to match tinyvae's objective: the
    reconstruction term is binary_cross_entropy_with_logits (the numerically
    stable form of the example's BCE on sigmoid outputs), and the loss is
    averaged over the batch instead of summed (Adam is invariant to that scale
    up to its eps). Weights use PyTorch's default nn.Linear initialisation.
    """

    def __init__(self, torch, device, x_host, seed=0, init_from=None):
        self.torch = torch
        nn, F = torch.nn, torch.nn.functional
        self.F = F
        self.device = torch.device(device)
        torch.manual_seed(seed)
        D, H, L = CONFIG.input_dim, CONFIG.enc_hidden[0], CONFIG.latent_dim

        class VAE(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1 = nn.Linear(D, H)
                self.fc21 = nn.Linear(H, L)
                self.fc22 = nn.Linear(H, L)
                self.fc3 = nn.Linear(L, H)
                self.fc4 = nn.Linear(H, D)

            def encode(self, x):
                h1 = F.relu(self.fc1(x))
                return self.fc21(h1), self.fc22(h1)

            def decode(self, z):
                return self.fc4(F.relu(self.fc3(z)))  # logits

            def forward(self, x, eps):
                mu, logvar = self.encode(x)
                z = mu + torch.exp(0.5 * logvar) * eps
                return self.decode(z), mu, logvar

        self.model = VAE().to(self.device)
        if init_from is not None:  # tinyvae's initial weights, W (in, out) -> Linear.weight (out, in)
            self.load_tinyvae_params(init_from)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.x = torch.from_numpy(x_host).to(self.device)
        self.gen = torch.Generator(device=self.device).manual_seed(seed)
        self.latent = L

    def load_tinyvae_params(self, params):
        """Copy tinyvae parameters (NumPy arrays) into the nn.Linear layers."""
        torch, L = self.torch, CONFIG.latent_dim
        head_W, head_b = params["enc.1.W"], params["enc.1.b"]  # fused [mu | logvar] head
        pairs = {
            "fc1": (params["enc.0.W"], params["enc.0.b"]),
            "fc21": (head_W[:, :L], head_b[:L]),
            "fc22": (head_W[:, L:], head_b[L:]),
            "fc3": (params["dec.0.W"], params["dec.0.b"]),
            "fc4": (params["dec.1.W"], params["dec.1.b"]),
        }
        with torch.no_grad():
            for name, (W, b) in pairs.items():
                layer = getattr(self.model, name)
                layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
                layer.bias.copy_(torch.from_numpy(np.ascontiguousarray(b)))


class MatmulFloor:
    """The same matrix multiplies as one epoch of training, and nothing else.

    Same shapes, dtype and operand layouts (transposed views where tinyvae uses
    them); outputs go to preallocated arrays on NumPy, so not even allocation
    is counted.
    """

    def __init__(self, backend_name, batch_size, seed=0):
        self.be = get_backend(backend_name, seed=seed)
        self.batch_size = batch_size
        self.cache = {}

    def _operands(self, n):
        if n not in self.cache:
            be = self.be
            fwd, bwd = matmul_shapes(CONFIG, n)
            ops = []
            for m, k, q in fwd:
                ops.append((be.normal((m, k)), be.normal((k, q)), be.zeros((m, q))))
            for kind, m, k, q in bwd:
                if kind == "dx":  # dy (m, k) @ W.T, W stored (q, k)
                    a, b = be.normal((m, k)), be.normal((q, k)).T
                else:             # x.T, x stored (k, m); dy (k, q)
                    a, b = be.normal((k, m)).T, be.normal((k, q))
                ops.append((a, b, be.zeros((m, q))))
            self.cache[n] = ops
        return self.cache[n]

    def epoch(self, n_images):
        on_numpy = self.be.name == "numpy"
        for n in batch_sizes(n_images, self.batch_size):
            for a, b, out in self._operands(n):
                if on_numpy:
                    np.matmul(a, b, out=out)
                else:
                    a @ b  # CuPy's memory pool makes the allocation cheap
        self.be.synchronize()


def warmed_up(run, n_images, seed, batch_size, warm_batches):
    """Train `run` for `warm_batches` batches off the clock (BLAS threads, allocator, kernels);
    returns the epoch(perm) that take_turns times."""
    run.epoch(np.random.default_rng(seed).permutation(n_images), batch_size, limit=warm_batches * batch_size)
    return lambda perm: run.epoch(perm, batch_size)


def make_tinyvae(backend_name, limit, synthetic, seed, batch_size, fast=True):
    """Build, in a contestant's process: tinyvae on the data, warmed up; returns epoch(perm)."""
    x, _ = load_data(limit, synthetic)
    return warmed_up(TinyVAERun(backend_name, x, seed=seed, fast=fast), x.shape[0], seed, batch_size, 20)


def make_pytorch(backend_name, limit, synthetic, seed, batch_size):
    """Build, in a contestant's process: the PyTorch model, warmed up; returns epoch(perm)."""
    torch, device = import_torch(backend_name)
    x, _ = load_data(limit, synthetic)
    return warmed_up(TorchRun(torch, device, x, seed=seed), x.shape[0], seed, batch_size, 20)


def make_floor(backend_name, seed, batch_size):
    """Build, in a contestant's process: the matrix multiplies alone, warmed up; returns epoch(perm)."""
    floor = MatmulFloor(backend_name, batch_size, seed=seed)
    floor.epoch(20 * batch_size)
    return lambda perm: floor.epoch(perm.shape[0])


# ---------------------------------------------------------------------------
# Taking turns, each contestant in a process of its own
# ---------------------------------------------------------------------------


def _serve(make, conn):
    """A contestant's process: build it, then time one epoch per batch order received.

    Answers (seconds, minor page faults) per epoch; None ends it.
    """
    epoch = make()
    conn.send("ready")
    while (perm := conn.recv()) is not None:
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        epoch(perm)
        conn.send((time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults))


class Contestant:
    """One contestant in a fresh process of its own, started with `spawn`.

    In one shared process the libraries would share the C allocator, and how
    much freed memory glibc keeps for reuse depends on the largest blocks freed
    so far, by anyone: one library's epochs would make the other's faster or
    slower (docs/benchmarks.md#fresh-memory-page-faults). `make` is a picklable
    callable (a module-level function, or a partial of one) that builds the
    contestant in the child, warms it up and returns epoch(perm).
    """

    def __init__(self, name, make):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(make, child), daemon=True)
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


def take_turns(makers: dict, rounds: int, n: int, seed: int, pause_s: float = PAUSE_S) -> dict:
    """`rounds` epochs of each contestant, taking turns, the order reversed every other round.

    makers: {name: make}; every contestant gets the same batch order in a
    round. Returns {name: [(seconds, faults), ...]}, printing each round.
    """
    contestants = {}  # those started so far: all are closed at the end, whatever happens
    host_rng = np.random.default_rng(seed)
    results = {name: [] for name in makers}
    try:
        for name, make in makers.items():
            contestants[name] = Contestant(name, make)
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


# ---------------------------------------------------------------------------
# Reporting the machine as found (reading settings, never setting them)
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
        lines.append(
            f"torch     : {torch.__version__} on {device}, {torch.get_num_threads()} threads, {blas}"
        )
    return lines


def import_torch(backend_name):
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: its column is skipped "
              "(install PyTorch to compare against it).")
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


# ---------------------------------------------------------------------------
# The two modes
# ---------------------------------------------------------------------------


def speed(args, torch, device, x):
    n = x.shape[0]
    flops = epoch_flops(CONFIG, n, args.batch_size)
    common = (args.backend, args.limit, args.synthetic, args.seed, args.batch_size)
    makers = {"tinyvae": partial(make_tinyvae, *common)}
    if args.plain_adam:
        makers["tinyvae, fast=False"] = partial(make_tinyvae, *common, fast=False)
    makers["matmul floor"] = partial(make_floor, args.backend, args.seed, args.batch_size)
    if torch is not None:
        makers["pytorch"] = partial(make_pytorch, *common)
    results = take_turns(makers, args.rounds, n, args.seed)
    times = {name: [s for s, _ in r] for name, r in results.items()}

    print()
    print(f"{n} images/epoch, batch {args.batch_size}, {args.rounds} rounds, "
          f"{flops / 1e9:.1f} GFLOP of matrix multiplies per epoch (forward + backward, "
          f"no dx for the first layer)")
    print_times(results, flops, len(batch_sizes(n, args.batch_size)))
    tv_med = statistics.median(times["tinyvae"])
    fl_med = statistics.median(times["matmul floor"])
    print(f"floor / tinyvae (matmul efficiency, median): {fl_med / tv_med:.2f}   (target >= 0.75)")
    if "pytorch" in times:
        th_med = statistics.median(times["pytorch"])
        print(f"tinyvae / pytorch (median):                  {tv_med / th_med:.2f}   (target <= 0.70)")
        print(f"tinyvae / pytorch (min):                     "
              f"{min(times['tinyvae']) / min(times['pytorch']):.2f}")
    if "tinyvae, fast=False" in times:
        pl_med = statistics.median(times["tinyvae, fast=False"])
        print(f"tinyvae / tinyvae fast=False (median):       {tv_med / pl_med:.2f}")
        print(f"floor / tinyvae fast=False (median):         {fl_med / pl_med:.2f}")
        if "pytorch" in times:
            print(f"tinyvae fast=False / pytorch (median):       {pl_med / th_med:.2f}")


def accuracy(args, torch, device, x, x_test):
    """Train side by side for --epochs and print the test negative ELBO after each.

    Two PyTorch runs: one with PyTorch's default nn.Linear initialisation (the
    example as written), and one started from tinyvae's initial weights, which
    leaves only the engines different. With --plain-adam, tinyvae a second time
    with Adam(fast=False), from the same start: its numbers must not differ.
    """
    if x_test is None:
        sys.exit("--accuracy needs real MNIST (drop --synthetic)")
    n = x.shape[0]
    tv = TinyVAERun(args.backend, x, seed=args.seed)
    runs = {"tinyvae": tv}
    if args.plain_adam:
        runs["tinyvae, fast=False"] = TinyVAERun(args.backend, x, seed=args.seed, fast=False)
    if torch is not None:
        from tinyvae.backend import to_numpy

        runs["pytorch"] = TorchRun(torch, device, x, seed=args.seed)
        initial = {k: to_numpy(v) for k, v in tv.params.items()}
        runs["pytorch, tinyvae init"] = TorchRun(torch, device, x, seed=args.seed, init_from=initial)
    host_rng = np.random.default_rng(args.seed)
    print("test negative ELBO, nats/image (z sampled once per test image, mean over 10,000)")
    print(f"{'epoch':>5s}" + "".join(f"{k:>24s}" for k in runs))
    fmt = "{:24.6f}" if args.plain_adam else "{:24.2f}"  # enough digits to see they agree
    for e in range(1, args.epochs + 1):
        perm = host_rng.permutation(n)  # the same batch order for all
        losses = {}
        for name, run in runs.items():
            run.epoch(perm, args.batch_size)
            losses[name] = run.test_neg_elbo(x_test)
        print(f"{e:5d}" + "".join(fmt.format(v) for v in losses.values()), flush=True)
    for name in list(runs)[1:]:
        print(f"tinyvae - {name} after {args.epochs} epoch(s): "
              f"{losses['tinyvae'] - losses[name]:+.2f} nats (target <= +0.5)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy",
                   help="tinyvae backend; PyTorch runs on CPU for numpy, on CUDA for cupy")
    p.add_argument("--rounds", type=int, default=5, help="timed epochs per contestant")
    p.add_argument("--limit", type=int, default=60000, help="training images per epoch")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--synthetic", action="store_true",
                   help="random pixels instead of MNIST (timing only; no download)")
    p.add_argument("--accuracy", action="store_true",
                   help="instead of timing, train both for --epochs and print the test loss")
    p.add_argument("--epochs", type=int, default=10, help="epochs for --accuracy")
    p.add_argument("--plain-adam", action="store_true",
                   help="add tinyvae with Adam(fast=False), its plain lines, as one more contestant")
    args = p.parse_args(argv)

    torch, device = import_torch(args.backend)
    for line in machine_report(torch, args.backend, device):
        print(line)
    x, x_test = load_data(args.limit, args.synthetic)
    if args.accuracy:
        accuracy(args, torch, device, x, x_test)
    else:
        speed(args, torch, device, x)


if __name__ == "__main__":
    main()
