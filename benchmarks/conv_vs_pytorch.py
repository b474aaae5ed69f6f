"""The Keras conv VAE: seconds per epoch and peak memory, tinyvae against PyTorch eager, side by side.

The model is the Keras example's (tinyvae.specs.keras_conv_encoder(2) and
keras_conv_decoder(): Conv 32 and 64, 3x3 stride 2, Dense 16, latent 2 |
Dense 7*7*64, ConvTranspose 64 and 32 stride 2, ConvTranspose 1; 134,165
parameters), Bernoulli likelihood from logits + KL, Adam lr 1e-3, batch 128.
The PyTorch model computes the same function: Keras's asymmetric 'same'
padding (F.pad, then a crop after each transposed conv) and HWC flattening, so
tinyvae's initial weights, permuted into PyTorch's layouts, give the same
loss; the run checks that first and prints the difference.

Four columns, one epoch at a time, taking turns on the same batch order, each
in a fresh process of its own with its minor page faults counted
(benchmarks/harness.py): tinyvae (tinyvae.train.steps, the loop fit runs, on the
fast path where it applies: tinyvae/fast/step.py), tinyvae's plain path (the
core's step and Adam's plain lines, fast=False), PyTorch, and the floor: the
same matrix multiplies alone (the im2col GEMMs of every conv and transposed
conv, and the dense layers). The fast path's compiled loops are compiled (or
loaded from Numba's disk cache) first, and the seconds that took are printed
apart. Peak memory: each
library trains --memory-steps steps in a fresh subprocess while a thread
samples its resident memory every millisecond; the peak's growth over the
memory just before training is reported (library imported, data and model
there), and both absolute figures are printed. On the GPU it is each library's
caching allocator: CuPy's pool against PyTorch's peak reserved bytes.

    python benchmarks/conv_vs_pytorch.py                  # timing and memory
    python benchmarks/conv_vs_pytorch.py --limit 12800    # a 100-step "epoch", quicker
    python benchmarks/conv_vs_pytorch.py --accuracy --epochs 30   # test -ELBO, both
    python benchmarks/conv_vs_pytorch.py --accuracy --plain --epochs 2   # the fast and plain paths' test -ELBO
    python benchmarks/conv_vs_pytorch.py --accuracy --keras-protocol   # Keras's training-loss figure
    python benchmarks/conv_vs_pytorch.py --backend cupy   # CuPy against PyTorch CUDA (needs a GPU)

Nothing here sets threads or BLAS options; the settings in use are printed.
Results: docs/benchmarks.md#the-conv-vae.
"""
from __future__ import annotations

import argparse
from functools import partial

import numpy as np
from harness import TinyVAERun as Run
from harness import (LR, TorchTraining, add_common_flags, add_pass_entries_flag, fast_path_report, import_torch,
                     load_data, machine_report, make_floor, make_run, memory_child, memory_runs, print_ratios,
                     set_pass_entries, side_by_side, time_epochs)
from harness import conv  # noqa: F401  tinyvae.fast.conv, whose budget --pass-entries sets (the tests read it here)

from tinyvae.backend import to_numpy
from tinyvae.core.conv import same_padding
from tinyvae.core.vae import VAEConfig, loss_and_grads
from tinyvae.fast.optim import available
from tinyvae.fast.step import compile_loops
from tinyvae.specs import keras_conv_decoder, keras_conv_encoder

LATENT = 2
CONFIG = VAEConfig(latent_dim=LATENT, encoder=keras_conv_encoder(LATENT),
                   decoder=keras_conv_decoder(), init="keras")  # as the demo
WARM_BATCHES = 5


class TinyVAERun(Run):
    """harness.TinyVAERun of this model; fast=False: the plain path, the core's step and Adam's plain lines."""

    def __init__(self, x_host, seed=0, backend_name="numpy", fast=True):
        super().__init__(backend_name, x_host, CONFIG, seed=seed, fast=fast)
        if fast and backend_name == "numpy" and available():
            compile_loops()   # the library's set-up, before a memory baseline (as `import torch` is PyTorch's)


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
            def same_conv(layer, h):                  # Keras 'same': the odd padding pixel after
                (a, b), (c, d) = (same_padding(h.shape[2], 3, layer.stride[0]),
                                  same_padding(h.shape[3], 3, layer.stride[1]))
                return layer(F.pad(h, (c, d, a, b)))

            @staticmethod
            def same_conv_t(layer, h):                # the adjoint: full transposed conv, then crop
                s = layer.stride[0]
                out = layer(h)
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


def tinyvae_run(backend_name, x, seed, pass_entries, fast=True):
    set_pass_entries(backend_name, pass_entries)  # a fresh process: the flag's value, set again
    return TinyVAERun(x, seed, backend_name, fast)


def pytorch_run(backend_name, x, seed):
    torch, device = import_torch(backend_name)
    return TorchRun(torch, x, seed, device=device)


def speed(args, torch, x):
    common = (args.backend, args.limit, args.synthetic, args.seed, args.batch_size, WARM_BATCHES)
    makers = {"tinyvae": partial(make_run, tinyvae_run, *common, args.pass_entries),
              "tinyvae, plain": partial(make_run, tinyvae_run, *common, args.pass_entries, False),
              "matmul floor": partial(make_floor, args.backend, args.batch_size, CONFIG, WARM_BATCHES)}
    if torch is not None:
        makers["pytorch"] = partial(make_run, pytorch_run, *common)
    print_ratios(time_epochs(makers, args, x.shape[0], CONFIG, width=16), floor_target=0.60, torch_target=0.80)


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
    if args.plain and args.only != "pytorch":
        runs["tinyvae, plain"] = TinyVAERun(x, args.seed, args.backend, fast=False)
    if torch is not None and args.only != "tinyvae":
        runs["pytorch, tinyvae init"] = TorchRun(torch, x, args.seed, device=device,
                                                 init_from={k: to_numpy(v) for k, v in tv.params.items()})
    print(header)
    print(f"{'epoch':>5s}" + "".join(f"{k:>24s}" for k in runs) + f"{'s/epoch each':>16s}")
    epochs = side_by_side(runs, x.shape[0], args.epochs, args.batch_size, args.seed,
                          None if args.keras_protocol else x_test)
    for e, (losses, secs) in enumerate(epochs, start=1):
        print(f"{e:5d}" + "".join(f"{v:24.2f}" for v in losses.values())
              + "  " + " / ".join(f"{s:.0f}" for s in secs.values()), flush=True)
    for name in list(runs)[1:] if "tinyvae" in runs else []:
        same = " (the same number)" if losses[name] == losses["tinyvae"] else ""
        print(f"tinyvae - {name} after {args.epochs} epochs: {losses['tinyvae'] - losses[name]:+.2f} nats"
              f"{target if name.startswith('pytorch') else same}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_flags(p, rounds=3, epochs=30)
    p.add_argument("--memory-steps", type=int, default=20, help="steps of the peak-memory runs")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    p.add_argument("--keras-protocol", action="store_true",
                   help="--accuracy as the Keras example measures: train on train+test, print the "
                        "epoch's mean training loss")
    p.add_argument("--only", choices=("tinyvae", "pytorch"),
                   help="--accuracy for one library alone (e.g. beside a demo run of the other)")
    p.add_argument("--plain", action="store_true",
                   help="--accuracy with tinyvae's plain path as well (fast=False), from the same start")
    add_pass_entries_flag(p)
    p.add_argument("--memory-child", choices=("tinyvae", "pytorch"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.keras_protocol and (not args.accuracy or args.synthetic):
        p.error("--keras-protocol goes with --accuracy on MNIST (not --synthetic)")
    entries = set_pass_entries(args.backend, args.pass_entries)
    if args.memory_child:
        build = partial(tinyvae_run, pass_entries=args.pass_entries) if args.memory_child == "tinyvae" else pytorch_run
        return memory_child(build, args.memory_child, args)
    torch, device = import_torch(args.backend)
    for line in machine_report(torch, args.backend, device):
        print(line)
    print(f"tinyvae   : {args.backend}, conv passes of at most {entries} column entries")
    for line in fast_path_report(args.backend):
        print(line)
    x, x_test = load_data(args.limit, args.synthetic)
    if torch is not None:
        ours, theirs = same_function_check(torch, x)
        print(f"same function: tinyvae loss {ours:.5f}, pytorch loss {theirs:.5f} from the same weights "
              f"and eps (difference {abs(ours - theirs):.1e})")
    if args.accuracy:
        return accuracy(args, torch, device, x, x_test)
    speed(args, torch, x)
    if not args.no_memory:
        mem = memory_runs(__file__, args)
        if mem:
            print(f"peak memory growth while training {args.memory_steps} steps (fresh process each): "
                  + ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in mem.items()))
            if len(mem) == 2 and mem["pytorch"] > 0:
                print(f"tinyvae / pytorch peak memory: {mem['tinyvae'] / mem['pytorch']:.2f}   (target <= 1.5)")


if __name__ == "__main__":
    main()
