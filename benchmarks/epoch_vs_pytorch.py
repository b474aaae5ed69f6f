"""Seconds per training epoch: tinyvae against PyTorch eager, side by side.

The model is the PyTorch example VAE (784-400-20-400-784, ReLU, Bernoulli
likelihood + KL, Adam lr 1e-3, batch 128) trained on MNIST. Each library runs
in a fresh process of its own, started by this one, and the processes take
turns one epoch at a time (the order alternates between rounds), on the same
data in the same batch order (benchmarks/harness.py). tinyvae's epoch is
tinyvae.train.steps, the loop fit runs: on the fast path where it applies
(tinyvae/fast/step.py, its loops compiled first and the seconds printed apart),
and in a second column on the plain path (fast=False: the core's step and
Adam's plain lines). Another column, the floor, times the
same sequence of matrix multiplies alone: what an epoch would cost if
everything but the multiplies (elementwise work, the optimizer, batching,
Python) were free, with this BLAS on this machine. Each epoch's minor page
faults (fresh memory taken from the operating system) are counted too.

    python benchmarks/epoch_vs_pytorch.py                      # NumPy vs PyTorch CPU
    python benchmarks/epoch_vs_pytorch.py --backend cupy       # CuPy vs PyTorch CUDA
    python benchmarks/epoch_vs_pytorch.py --accuracy           # test loss after 10 epochs
    python benchmarks/epoch_vs_pytorch.py --accuracy --plain   # also the plain path's, from the same start

The machine is measured as found: nothing here sets threads or BLAS options;
the settings in use are printed. Timings on a shared machine are noisy, so only
ratios taken within one run mean anything. PyTorch is optional: without it the
PyTorch column is skipped with a message. Results: docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import sys
from functools import partial

import numpy as np
from harness import (
    LR,
    TinyVAERun,
    TorchTraining,
    add_common_flags,
    fast_path_report,
    import_torch,
    load_data,
    machine_report,
    make_floor,
    make_run,
    print_ratios,
    side_by_side,
    time_epochs,
)

from tinyvae.backend import to_numpy
from tinyvae.core.vae import VAEConfig

# 784-400-[20|20]-400-784, ReLU, Bernoulli, nn.Linear's initialisation: the PyTorch example
CONFIG = VAEConfig(init="pytorch")
WARM_BATCHES = 20  # trained off the clock in each contestant's process before the timed epochs


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


def tinyvae_run(backend_name, x, seed, fast=True):
    """harness.TinyVAERun of this model; fast=False: the plain path, the core's step and Adam's plain lines."""
    return TinyVAERun(backend_name, x, CONFIG, seed=seed, fast=fast)


def pytorch_run(backend_name, x, seed):
    torch, device = import_torch(backend_name)
    return TorchRun(torch, device, x, seed=seed)


def speed(args, torch, x):
    common = (args.backend, args.limit, args.synthetic, args.seed, args.batch_size, WARM_BATCHES)
    makers = {"tinyvae": partial(make_run, tinyvae_run, *common),
              "tinyvae, plain": partial(make_run, tinyvae_run, *common, False),
              "matmul floor": partial(make_floor, args.backend, args.batch_size, CONFIG, WARM_BATCHES)}
    if torch is not None:
        makers["pytorch"] = partial(make_run, pytorch_run, *common)
    times = time_epochs(makers, args, x.shape[0], CONFIG,
                        " (forward + backward, no dx for the first layer)")
    print_ratios(times, floor_target=0.70, torch_target=0.70)


def accuracy(args, torch, device, x, x_test):
    """Train side by side for --epochs and print the test negative ELBO after each.

    Two PyTorch runs: one with PyTorch's default nn.Linear initialisation (the
    example as written), and one started from tinyvae's initial weights, which
    leaves only the engines different. With --plain, tinyvae a second time on
    its plain path (fast=False), from the same start: its numbers must not differ.
    """
    if x_test is None:
        sys.exit("--accuracy needs real MNIST (drop --synthetic)")
    tv = tinyvae_run(args.backend, x, args.seed)
    runs = {"tinyvae": tv}
    if args.plain:
        runs["tinyvae, plain"] = tinyvae_run(args.backend, x, args.seed, fast=False)
    if torch is not None:
        runs["pytorch"] = TorchRun(torch, device, x, seed=args.seed)
        initial = {k: to_numpy(v) for k, v in tv.params.items()}
        runs["pytorch, tinyvae init"] = TorchRun(torch, device, x, seed=args.seed, init_from=initial)
    print("test negative ELBO, nats/image (z sampled once per test image, mean over 10,000)")
    print(f"{'epoch':>5s}" + "".join(f"{k:>24s}" for k in runs))
    fmt = "{:24.6f}" if args.plain else "{:24.2f}"  # enough digits to see they agree
    epochs = side_by_side(runs, x.shape[0], args.epochs, args.batch_size, args.seed, x_test)
    for e, (losses, _) in enumerate(epochs, start=1):
        print(f"{e:5d}" + "".join(fmt.format(v) for v in losses.values()), flush=True)
    for name in list(runs)[1:]:
        print(f"tinyvae - {name} after {args.epochs} epoch(s): "
              f"{losses['tinyvae'] - losses[name]:+.2f} nats (target <= +0.5)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_flags(p, rounds=5, epochs=10)
    p.add_argument("--plain", "--plain-adam", dest="plain", action="store_true",
                   help="--accuracy with tinyvae's plain path as well (fast=False: the core's step and Adam's "
                        "plain lines); the speed run always has it")
    args = p.parse_args(argv)

    torch, device = import_torch(args.backend)
    for line in machine_report(torch, args.backend, device):
        print(line)
    for line in fast_path_report(args.backend):
        print(line)
    x, x_test = load_data(args.limit, args.synthetic)
    if args.accuracy:
        accuracy(args, torch, device, x, x_test)
    else:
        speed(args, torch, x)


if __name__ == "__main__":
    main()
