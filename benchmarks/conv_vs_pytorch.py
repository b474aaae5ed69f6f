"""The Keras conv VAE: seconds per epoch and peak memory, tinyvae against PyTorch eager, side by side.

The model is the Keras example's (tinyvae.nets.keras_conv_encoder(2) and
keras_conv_decoder(): Conv 32 and 64, 3x3 stride 2, Dense 16, latent 2 |
Dense 7*7*64, ConvTranspose 64 and 32 stride 2, ConvTranspose 1; 134,165
parameters), Bernoulli likelihood from logits + KL, Adam lr 1e-3, batch 128.
The PyTorch model computes the same function: Keras's asymmetric 'same'
padding (F.pad, then a crop after each transposed conv) and HWC flattening, so
tinyvae's initial weights, permuted into PyTorch's layouts, give the same
loss; the run checks that first and prints the difference.

Three columns, one epoch at a time, taking turns on the same batch order, each
in a fresh process of its own (so that they share no allocator state; each
epoch's minor page faults are counted too): tinyvae, PyTorch, and the floor:
the same matrix multiplies alone (the im2col GEMMs of every conv and
transposed conv, and the dense layers), what an epoch would cost if everything
else were free. Peak memory: each library trains --memory-steps steps in a
fresh subprocess while a thread samples its resident memory every millisecond;
the peak's growth over the memory just before training is reported (the
library is imported and set up, the data and the model are there), and both
absolute figures are printed.

    python benchmarks/conv_vs_pytorch.py                  # timing and memory
    python benchmarks/conv_vs_pytorch.py --limit 12800    # a 100-step "epoch", quicker
    python benchmarks/conv_vs_pytorch.py --accuracy --epochs 30   # test -ELBO, both
    python benchmarks/conv_vs_pytorch.py --accuracy --keras-protocol   # Keras's training-loss figure
    python benchmarks/conv_vs_pytorch.py --backend cupy   # CuPy against PyTorch CUDA (needs a GPU)

On the GPU, peak memory is each library's caching allocator: the bytes CuPy's
memory pool holds, against PyTorch's peak reserved bytes, both as growth over
the figure just before training.

Nothing here sets threads or BLAS options; the settings in use are printed.
Results: docs/benchmarks.md#the-conv-vae.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))      # epoch_vs_pytorch beside it

from epoch_vs_pytorch import (  # noqa: E402
    batch_sizes,
    import_torch,
    load_data,
    machine_report,
    print_times,
    take_turns,
    TorchTraining,
    warmed_up,
)

from tinyvae import conv, nets  # noqa: E402
from tinyvae.backend import get_backend, to_numpy  # noqa: E402
from tinyvae.conv import same_padding  # noqa: E402
from tinyvae.optim import Adam  # noqa: E402
from tinyvae.vae import VAEConfig, init_params, loss_and_grads, neg_elbo_terms  # noqa: E402

LATENT = 2
CONFIG = VAEConfig(latent_dim=LATENT, encoder=nets.keras_conv_encoder(LATENT),
                   decoder=nets.keras_conv_decoder(), init="keras")  # as the demo
LR = 1e-3


# ---------------------------------------------------------------------------
# The matrix multiplies of one step (the floor)
# ---------------------------------------------------------------------------


def matmul_shapes(config, n):
    """Every GEMM of one training step on n images as (m, k, q): forward, then backward.

    Conv (H, W, C) -> (OH, OW, F): forward cols (n OH OW, k k C) @ W (k k C, F);
    backward dW = cols^T dy and dx = dy W^T. Transposed conv (H, W, C) -> (sH, sW, F):
    forward x (n H W, C) @ W^T (C, k k F); backward dx = cols(dy) @ W, dW = cols(dy)^T x.
    Dense: the usual three. No dx for the first layer with weights of the encoder.
    """
    shapes = []
    for prefix, layers, in_dim, _, _ in config.networks():
        shape = (in_dim,)
        first = True
        for layer in layers:
            _, out = layer.shapes(shape)
            if isinstance(layer, nets.Dense):
                m, k, q = n, shape[0], out[0]
            elif isinstance(layer, nets.Conv):
                m, k, q = n * out[0] * out[1], layer.kernel ** 2 * shape[2], out[2]
            elif isinstance(layer, nets.ConvTranspose):
                m, k, q = n * shape[0] * shape[1], shape[2], layer.kernel ** 2 * out[2]
            else:
                shape = out
                continue
            shapes.append((m, k, q))                        # forward
            shapes.append((k, m, q))                        # dW
            if not (prefix == "enc" and first):
                shapes.append((m, q, k))                    # dx
            first = False
            shape = out
    return shapes


def epoch_flops(n_images, batch_size):
    return float(sum(2 * m * k * q for n in batch_sizes(n_images, batch_size)
                     for m, k, q in matmul_shapes(CONFIG, n)))


class MatmulFloor:
    """The step's multiplies alone; on NumPy into preallocated outputs, on CuPy with its pooled `@`."""

    def __init__(self, batch_size, backend_name="numpy"):
        self.be = get_backend(backend_name, seed=0)
        self.batch_size, self.ops = batch_size, {}

    def epoch(self, n_images):
        be, on_numpy = self.be, self.be.name == "numpy"
        for n in batch_sizes(n_images, self.batch_size):
            if n not in self.ops:
                self.ops[n] = [(be.normal((m, k)), be.normal((k, q)), be.zeros((m, q)))
                               for m, k, q in matmul_shapes(CONFIG, n)]
            for a, b, out in self.ops[n]:
                if on_numpy:
                    np.matmul(a, b, out=out)
                else:
                    a @ b
        be.synchronize()


# ---------------------------------------------------------------------------
# tinyvae and PyTorch, one epoch per call
# ---------------------------------------------------------------------------


class TinyVAERun:
    def __init__(self, x_host, seed=0, backend_name="numpy"):
        self.be = get_backend(backend_name, seed=seed)
        self.x = self.be.asarray(x_host)
        self.be.reseed()
        self.params = init_params(CONFIG, self.be)
        self.opt = Adam(self.params, lr=LR)
        self.epochs = 0

    def epoch(self, perm, batch_size, limit=None):
        be, xp = self.be, self.be.xp
        self.epochs += 1
        be.reseed(1, self.epochs)
        idx = be.asarray(perm)
        n_total = perm.shape[0] if limit is None else min(limit, perm.shape[0])
        total = 0.0
        for start in range(0, n_total, batch_size):
            x = xp.take(self.x, idx[start:min(start + batch_size, n_total)], axis=0)
            eps = be.normal((x.shape[0], LATENT))
            parts, grads = loss_and_grads(self.params, x, eps, CONFIG, check_values=False)
            self.opt.step(self.params, grads)
            total = total + parts.loss * x.shape[0]   # summed on the device
        be.synchronize()
        return float(total) / n_total

    def test_neg_elbo(self, x_test, batch_size=1000):
        be = self.be
        be.reseed(10_000)
        total = 0.0
        for start in range(0, x_test.shape[0], batch_size):
            x = be.asarray(x_test[start:start + batch_size])
            recon, kl = neg_elbo_terms(self.params, x, be.normal((x.shape[0], LATENT)), CONFIG)
            total += float(be.xp.sum(recon + kl))
        return total / x_test.shape[0]


class TorchRun(TorchTraining):
    """The same conv VAE in idiomatic PyTorch eager code (NCHW inside), Keras padding and HWC flatten."""

    def __init__(self, torch, x_host, seed=0, init_from=None, device="cpu"):
        self.torch, nn, F = torch, torch.nn, torch.nn.functional
        self.F = F
        torch.manual_seed(seed)

        class KerasConvVAE(nn.Module):
            def __init__(self):
                super().__init__()
                self.c1, self.c2 = nn.Conv2d(1, 32, 3, 2), nn.Conv2d(32, 64, 3, 2)
                self.d1, self.head = nn.Linear(3136, 16), nn.Linear(16, 2 * LATENT)
                self.d2 = nn.Linear(LATENT, 3136)
                self.t1, self.t2 = nn.ConvTranspose2d(64, 64, 3, 2), nn.ConvTranspose2d(64, 32, 3, 2)
                self.t3 = nn.ConvTranspose2d(32, 1, 3, 1)

            @staticmethod
            def same_conv(conv, h):                   # Keras 'same': the odd padding pixel after
                (a, b), (c, d) = (same_padding(h.shape[2], 3, conv.stride[0]),
                                  same_padding(h.shape[3], 3, conv.stride[1]))
                return conv(F.pad(h, (c, d, a, b)))

            @staticmethod
            def same_conv_t(conv, h):                 # the adjoint: full transposed conv, then crop
                s = conv.stride[0]
                out = conv(h)
                (a, _), (c, _) = same_padding(h.shape[2] * s, 3, s), same_padding(h.shape[3] * s, 3, s)
                return out[:, :, a:a + h.shape[2] * s, c:c + h.shape[3] * s]

            def forward(self, x, eps):
                n = x.shape[0]
                h = x.view(n, 1, 28, 28)
                h = F.relu(self.same_conv(self.c1, h))
                h = F.relu(self.same_conv(self.c2, h))
                h = h.permute(0, 2, 3, 1).reshape(n, -1)          # HWC flatten, as Keras
                head = self.head(F.relu(self.d1(h)))
                mu, logvar = head[:, :LATENT], head[:, LATENT:]
                z = mu + torch.exp(0.5 * logvar) * eps
                h = F.relu(self.d2(z)).view(n, 7, 7, 64).permute(0, 3, 1, 2)
                h = F.relu(self.same_conv_t(self.t1, h))
                h = F.relu(self.same_conv_t(self.t2, h))
                logits = self.same_conv_t(self.t3, h).reshape(n, 784)
                return logits, mu, logvar

        self.device, self.latent = torch.device(device), LATENT
        self.model = KerasConvVAE().to(self.device)
        if init_from is not None:
            self.load(init_from)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.x = torch.from_numpy(x_host).to(self.device)
        self.gen = torch.Generator(device=self.device).manual_seed(seed)

    def load(self, p):
        """tinyvae's arrays into PyTorch's layouts: conv (k,k,C,F) -> (F,C,k,k); convT (k,k,Co,Ci) -> (Ci,Co,k,k)."""
        t = self.torch
        pairs = {"c1": ("enc.1", (3, 2, 0, 1)), "c2": ("enc.2", (3, 2, 0, 1)), "d1": ("enc.4", (1, 0)),
                 "head": ("enc.5", (1, 0)), "d2": ("dec.0", (1, 0)), "t1": ("dec.2", (3, 2, 0, 1)),
                 "t2": ("dec.3", (3, 2, 0, 1)), "t3": ("dec.4", (3, 2, 0, 1))}
        with t.no_grad():
            for name, (key, perm) in pairs.items():
                layer = getattr(self.model, name)
                layer.weight.copy_(t.from_numpy(np.ascontiguousarray(p[f"{key}.W"].transpose(perm))))
                layer.bias.copy_(t.from_numpy(np.ascontiguousarray(p[f"{key}.b"])))


def same_function_check(torch, x):
    """The two models compute the same loss from the same weights and eps (float32 rounding apart)."""
    tv = TinyVAERun(x[:64])
    th = TorchRun(torch, x[:64], init_from={k: to_numpy(v) for k, v in tv.params.items()})
    eps = np.random.default_rng(1).standard_normal((64, LATENT)).astype(np.float32)
    parts, _ = loss_and_grads(tv.params, tv.be.asarray(x[:64]), tv.be.asarray(eps), CONFIG)
    with torch.no_grad():
        theirs = float(th.neg_elbo(torch.from_numpy(x[:64]), torch.from_numpy(eps)).mean())
    return float(parts.loss), theirs


# ---------------------------------------------------------------------------
# Peak memory, each library alone in a fresh process
# ---------------------------------------------------------------------------


def _rss_bytes():
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


def memory_child(which, steps, batch_size, synthetic, backend_name="numpy"):
    """Runs in a subprocess: build the model, then train `steps` steps while a thread samples the
    resident memory every millisecond; prints the peak growth over the memory just before training.
    On a GPU (--backend cupy) the figures are the caching allocators' instead (gpu_pool_bytes)."""
    import threading

    torch, device = import_torch(backend_name) if which == "pytorch" else (None, None)
    if which == "tinyvae":
        # The library's own set-up happens before the baseline, as `import torch`
        # does for PyTorch: with Numba installed, the optimizers' fast path
        # imports and compiles its loop on the first step (about 150 MiB of JIT).
        w = {"w": np.zeros(1, np.float32)}
        Adam(w).step(w, {"w": np.ones(1, np.float32)})
    x, _ = load_data(steps * batch_size, synthetic)
    x = np.ascontiguousarray(x[:steps * batch_size])
    run = TinyVAERun(x, 0, backend_name) if which == "tinyvae" else TorchRun(torch, x, device=device)
    if backend_name == "cupy":
        before, _ = gpu_pool_bytes(which, torch)
        run.epoch(np.arange(x.shape[0]), batch_size)
        print(json.dumps({"before": before, "after": gpu_pool_bytes(which, torch)[1]}))
        return
    before, peak, done = _rss_bytes(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    run.epoch(np.arange(x.shape[0]), batch_size)
    done.set()
    sampler.join()
    print(json.dumps({"before": before, "after": max(peak[0], _rss_bytes())}))


def memory(args):
    out = {}
    for which in ("tinyvae", "pytorch"):
        cmd = [sys.executable, __file__, "--memory-child", which, "--memory-steps", str(args.memory_steps),
               "--batch-size", str(args.batch_size), "--backend", args.backend]
        cmd += ["--pass-entries", str(args.pass_entries)] if args.pass_entries else []
        cmd += ["--synthetic"] if args.synthetic else []
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            print(f"{which}: memory run failed: {run.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(run.stdout.strip().splitlines()[-1])
        out[which] = r["after"] - r["before"]
        what = "GPU memory pool" if args.backend == "cupy" else "resident memory"
        print(f"{which}: {what} {r['before'] / 2**20:.0f} MiB before training "
              f"(library, data and model), peak {r['after'] / 2**20:.0f} MiB")
    return out


# ---------------------------------------------------------------------------
# The modes
# ---------------------------------------------------------------------------


def add_pass_entries_flag(parser):
    """--pass-entries, read by set_pass_entries (this script and conv_layers.py)."""
    parser.add_argument("--pass-entries", type=float, default=None,
                        help=f"column entries per conv pass (default: tinyvae.conv's budget for the device, "
                             f"{conv.COLUMN_ENTRIES_PER_PASS} on a CPU, {conv.GPU_COLUMN_ENTRIES_PER_PASS} "
                             "on a GPU; 1e12: the whole batch in one pass)")


def set_pass_entries(backend_name, entries):
    """The --pass-entries flag: the conv pass budget of the device in use (None: the default)."""
    if entries:
        setattr(conv, "GPU_COLUMN_ENTRIES_PER_PASS" if backend_name == "cupy" else "COLUMN_ENTRIES_PER_PASS",
                int(entries))
    return conv.GPU_COLUMN_ENTRIES_PER_PASS if backend_name == "cupy" else conv.COLUMN_ENTRIES_PER_PASS


def make_tinyvae(backend_name, limit, synthetic, seed, batch_size, pass_entries):
    """Build, in a contestant's process: tinyvae's conv VAE, warmed up; returns epoch(perm)."""
    set_pass_entries(backend_name, pass_entries)  # a fresh process: the flag's value, set again
    x, _ = load_data(limit, synthetic)
    return warmed_up(TinyVAERun(x, seed, backend_name), x.shape[0], seed, batch_size, 5)


def make_pytorch(backend_name, limit, synthetic, seed, batch_size):
    """Build, in a contestant's process: the PyTorch conv VAE, warmed up; returns epoch(perm)."""
    torch, device = import_torch(backend_name)
    x, _ = load_data(limit, synthetic)
    return warmed_up(TorchRun(torch, x, seed, device=device), x.shape[0], seed, batch_size, 5)


def make_floor(backend_name, batch_size):
    """Build, in a contestant's process: the conv VAE's matrix multiplies alone; returns epoch(perm)."""
    floor = MatmulFloor(batch_size, backend_name)
    floor.epoch(5 * batch_size)
    return lambda perm: floor.epoch(perm.shape[0])


def speed(args, torch, x):
    n = x.shape[0]
    flops = epoch_flops(n, args.batch_size)
    common = (args.backend, args.limit, args.synthetic, args.seed, args.batch_size)
    makers = {"tinyvae": partial(make_tinyvae, *common, args.pass_entries),
              "matmul floor": partial(make_floor, args.backend, args.batch_size)}
    if torch is not None:
        makers["pytorch"] = partial(make_pytorch, *common)
    results = take_turns(makers, args.rounds, n, args.seed)
    times = {name: [s for s, _ in r] for name, r in results.items()}
    print()
    print(f"{n} images/epoch, batch {args.batch_size}, {args.rounds} rounds, "
          f"{flops / 1e9:.1f} GFLOP of matrix multiplies per epoch")
    print_times(results, flops, len(batch_sizes(n, args.batch_size)), width=14)
    tv_med = statistics.median(times["tinyvae"])
    print(f"floor / tinyvae (median):   {statistics.median(times['matmul floor']) / tv_med:.2f}")
    if "pytorch" in times:
        th_med = statistics.median(times["pytorch"])
        print(f"tinyvae / pytorch (median): {tv_med / th_med:.2f}   (target <= 0.80)")
        print(f"tinyvae / pytorch (min):    {min(times['tinyvae']) / min(times['pytorch']):.2f}")


def accuracy(args, torch, device, x, x_test):
    """Train for --epochs, printing the test -ELBO; --keras-protocol: the Keras example's figure instead.

    Keras's example trains on the 70,000 images of train and test together and
    logs, per epoch, the mean training loss over that epoch's batches (the
    weights moving under it). --keras-protocol does the same, so that its last
    line can be set beside Keras's 146.95 at epoch 30. It is a training loss,
    not a test figure: the test images are among the training images.
    """
    if args.keras_protocol:
        x = np.concatenate([x, x_test])
        header = (f"Keras's protocol: training on {x.shape[0]} images (train and test), mean training "
                  "-ELBO over each epoch's batches, nats/image (Keras logs 146.95 at epoch 30)")
        target = ""
    else:
        header = "test negative ELBO, nats/image (z sampled once per test image, mean over 10,000)"
        target = " (target within 1)"
    tv = TinyVAERun(x, args.seed, args.backend)
    runs = {} if args.only == "pytorch" else {"tinyvae": tv}
    if torch is not None and args.only != "tinyvae":
        runs["pytorch, tinyvae init"] = TorchRun(torch, x, args.seed, device=device,
                                                 init_from={k: to_numpy(v) for k, v in tv.params.items()})
    host_rng = np.random.default_rng(args.seed)
    print(header)
    print(f"{'epoch':>5s}" + "".join(f"{k:>24s}" for k in runs) + f"{'s/epoch each':>16s}")
    for e in range(1, args.epochs + 1):
        perm = host_rng.permutation(x.shape[0])
        losses, secs = {}, []
        for name, run in runs.items():
            t0 = time.perf_counter()
            train_loss = run.epoch(perm, args.batch_size)
            secs.append(time.perf_counter() - t0)
            losses[name] = train_loss if args.keras_protocol else run.test_neg_elbo(x_test)
        print(f"{e:5d}" + "".join(f"{v:24.2f}" for v in losses.values())
              + "  " + " / ".join(f"{s:.0f}" for s in secs), flush=True)
    if len(runs) > 1:
        print(f"tinyvae - pytorch after {args.epochs} epochs: "
              f"{losses['tinyvae'] - losses['pytorch, tinyvae init']:+.2f} nats{target}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy",
                   help="tinyvae backend; PyTorch runs on CPU for numpy, on CUDA for cupy")
    p.add_argument("--rounds", type=int, default=3, help="timed epochs per contestant")
    p.add_argument("--limit", type=int, default=60000, help="training images per epoch")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--synthetic", action="store_true", help="random pixels instead of MNIST (timing only)")
    p.add_argument("--memory-steps", type=int, default=20, help="steps of the peak-memory runs")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    p.add_argument("--accuracy", action="store_true", help="train both for --epochs, print the test loss")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--keras-protocol", action="store_true",
                   help="--accuracy as the Keras example measures: train on train+test, print the "
                        "epoch's mean training loss")
    p.add_argument("--only", choices=("tinyvae", "pytorch"),
                   help="--accuracy for one library alone (e.g. beside a demo run of the other)")
    add_pass_entries_flag(p)
    p.add_argument("--memory-child", choices=("tinyvae", "pytorch"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.keras_protocol and (not args.accuracy or args.synthetic):
        p.error("--keras-protocol goes with --accuracy on MNIST (not --synthetic)")
    entries = set_pass_entries(args.backend, args.pass_entries)
    if args.memory_child:
        return memory_child(args.memory_child, args.memory_steps, args.batch_size, args.synthetic, args.backend)
    torch, device = import_torch(args.backend)
    for line in machine_report(torch, args.backend, device):
        print(line)
    print(f"tinyvae   : {args.backend}, conv passes of at most {entries} column entries")
    x, x_test = load_data(args.limit, args.synthetic)
    if torch is not None:
        ours, theirs = same_function_check(torch, x)
        print(f"same function: tinyvae loss {ours:.5f}, pytorch loss {theirs:.5f} from the same weights "
              f"and eps (difference {abs(ours - theirs):.1e})")
    if args.accuracy:
        return accuracy(args, torch, device, x, x_test)
    speed(args, torch, x)
    if not args.no_memory:
        mem = memory(args)
        if mem:
            print(f"peak memory growth while training {args.memory_steps} steps (fresh process each): "
                  + ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in mem.items()))
            if len(mem) == 2 and mem["pytorch"] > 0:
                print(f"tinyvae / pytorch peak memory: {mem['tinyvae'] / mem['pytorch']:.2f}   (target <= 1.5)")


if __name__ == "__main__":
    main()
