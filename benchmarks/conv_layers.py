"""Milliseconds per conv layer, forward + backward: tinyvae against PyTorch eager, side by side.

The layers are those of the Keras convolutional VAE example at batch 128,
float32 (encoder: two stride-2 convs; decoder: two stride-2 transposed convs
and a stride-1 one to a single channel), all with 3x3 kernels and 'same'
padding:

    conv   28->14,  1->32   (the first layer: no gradient for its input)
    conv   14->7,  32->64
    convT   7->14, 64->64
    convT  14->28, 64->32
    convT  28->28, 32->1

tinyvae runs the pairs its Conv and ConvTranspose layers run (tinyvae.fast.conv:
core/conv.py's conv2d and conv2d_transpose, a few images per pass) on NHWC
arrays. PyTorch runs `torch.nn.functional.conv2d` / `conv_transpose2d` on NCHW
tensors with autograd, written the way a PyTorch port would be: padding=1
(symmetric), with output_padding=1 for the stride-2 transposed convs. That has
the same shapes and the same multiply count as Keras's 'same' (whose padding at
stride 2 is (0, 1)), so the timings compare like with like. Both take turns
within each round (the order alternates); the figure is the median over rounds
of the mean over a few repeats.

    python benchmarks/conv_layers.py                      # NumPy vs PyTorch CPU
    python benchmarks/conv_layers.py --rounds 11          # steadier medians
    python benchmarks/conv_layers.py --pass-entries 1e9   # the whole batch in one pass
    python benchmarks/conv_layers.py --backend cupy       # CuPy vs PyTorch CUDA

The machine is measured as found (benchmarks/harness.py prints it, with the
load average and any thread variables): nothing here sets threads or BLAS
options. Timings on a shared machine are noisy; only ratios within one run mean
anything, and with a busy machine not even those (a multithreaded BLAS waits
for its second thread). PyTorch is optional: without it only tinyvae's column
is printed.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from harness import add_pass_entries_flag, import_torch, machine_report, set_pass_entries

from tinyvae.backend import get_backend
from tinyvae.fast.conv import CONV2D, CONV2D_TRANSPOSE

# name, kind, input side, input channels, output channels, kernel, stride, need_dx
LAYERS = [
    ("conv  28->14,  1->32", "conv", 28, 1, 32, 3, 2, False),
    ("conv  14->7,  32->64", "conv", 14, 32, 64, 3, 2, True),
    ("convT  7->14, 64->64", "convT", 7, 64, 64, 3, 2, True),
    ("convT 14->28, 64->32", "convT", 14, 64, 32, 3, 2, True),
    ("convT 28->28, 32->1", "convT", 28, 32, 1, 3, 1, True),
]


def layer_arrays(kind, side, c_in, c_out, k, stride, batch, rng):
    """NumPy float32 x (N, H, W, C_in), W in Keras layout, b, and dy for one layer."""
    out_side = -(-side // stride) if kind == "conv" else side * stride
    x = rng.standard_normal((batch, side, side, c_in), dtype=np.float32)
    shape = (k, k, c_in, c_out) if kind == "conv" else (k, k, c_out, c_in)
    W = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.1)
    b = rng.standard_normal((c_out,), dtype=np.float32)
    dy = rng.standard_normal((batch, out_side, out_side, c_out), dtype=np.float32)
    return x, W, b, dy


class TinyVAELayer:
    def __init__(self, be, kind, stride, need_dx, x, W, b, dy):
        self.be = be
        self.x, self.W, self.b, self.dy = (be.asarray(a) for a in (x, W, b, dy))
        self.stride, self.need_dx = stride, need_dx
        self.forward, self.backward = CONV2D if kind == "conv" else CONV2D_TRANSPOSE  # the pairs Conv layers run

    def step(self):
        y, cache = self.forward(self.x, self.W, self.b, self.stride)
        return y, self.backward(self.dy, cache, need_dx=self.need_dx)

    def sync(self):
        self.be.synchronize()

    def dtypes(self):
        y, grads = self.step()
        return {str(a.dtype) for a in (y, *grads) if a is not None}


class TorchLayer:
    def __init__(self, torch, device, kind, stride, need_dx, x, W, b, dy):
        self.torch, self.F, self.device = torch, torch.nn.functional, device
        nchw = (0, 3, 1, 2)
        # Keras W (k, k, C, F) -> Conv2d weight (F, C, k, k);
        # Keras W (k, k, C_out, C_in) -> ConvTranspose2d weight (C_in, C_out, k, k): the same permute.
        self.x = torch.from_numpy(x).permute(*nchw).contiguous().to(device).requires_grad_(need_dx)
        self.W = torch.from_numpy(W).permute(3, 2, 0, 1).contiguous().to(device).requires_grad_(True)
        self.b = torch.from_numpy(b).to(device).requires_grad_(True)
        self.dy = torch.from_numpy(dy).permute(*nchw).contiguous().to(device)
        self.kind, self.stride = kind, stride

    def step(self):
        F, s = self.F, self.stride
        for t in (self.x, self.W, self.b):
            t.grad = None
        if self.kind == "conv":
            y = F.conv2d(self.x, self.W, self.b, stride=s, padding=1)
        else:
            y = F.conv_transpose2d(self.x, self.W, self.b, stride=s, padding=1, output_padding=s - 1)
        y.backward(self.dy)
        return y

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()


def time_ms(runner, repeats):
    """Mean milliseconds of one forward + backward over `repeats` calls."""
    runner.sync()
    start = time.perf_counter()
    for _ in range(repeats):
        runner.step()
    runner.sync()
    return (time.perf_counter() - start) / repeats * 1e3


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=7, help="timed rounds per layer; the median is reported")
    p.add_argument("--repeats", type=int, default=5, help="forward + backward calls per timed round")
    add_pass_entries_flag(p)
    args = p.parse_args(argv)
    entries = set_pass_entries(args.backend, args.pass_entries)

    be = get_backend(args.backend, dtype="float32")
    torch, device = import_torch(args.backend)
    for line in machine_report(torch, args.backend, device):
        print(line)
    device = None if torch is None else torch.device(device)
    print(f"NumPy {np.__version__}, tinyvae backend {args.backend}, float32, batch {args.batch}, "
          f"passes of {entries} column entries, median of {args.rounds} rounds of {args.repeats} calls")
    print()
    header = f"{'layer (fwd + bwd)':22s} {'tinyvae ms':>11s} {'pytorch ms':>11s} {'ratio':>7s}"
    print(header)
    print("-" * len(header))

    rng = np.random.default_rng(0)
    totals = [0.0, 0.0]
    for name, kind, side, c_in, c_out, k, stride, need_dx in LAYERS:
        arrays = layer_arrays(kind, side, c_in, c_out, k, stride, args.batch, rng)
        runners = [TinyVAELayer(be, kind, stride, need_dx, *arrays)]
        if torch is not None:
            runners.append(TorchLayer(torch, device, kind, stride, need_dx, *arrays))
        dtypes = runners[0].dtypes()
        if dtypes != {"float32"}:
            print(f"  warning: tinyvae produced {sorted(dtypes)}, not float32 only")
        for r in runners:  # warm up: allocator, BLAS threads, caches
            time_ms(r, 2)
        times = [[] for _ in runners]
        for round_ in range(args.rounds):
            order = range(len(runners)) if round_ % 2 == 0 else reversed(range(len(runners)))
            for i in order:
                times[i].append(time_ms(runners[i], args.repeats))
        medians = [statistics.median(t) for t in times]
        for i, m in enumerate(medians):
            totals[i] += m
        if torch is not None:
            print(f"{name:22s} {medians[0]:11.2f} {medians[1]:11.2f} {medians[0] / medians[1]:7.2f}")
        else:
            print(f"{name:22s} {medians[0]:11.2f}")
    print("-" * len(header))
    if torch is not None:
        print(f"{'all five':22s} {totals[0]:11.2f} {totals[1]:11.2f} {totals[0] / totals[1]:7.2f}")
        print("ratio = tinyvae / pytorch (below 1: tinyvae is faster)")
    else:
        print(f"{'all five':22s} {totals[0]:11.2f}")


if __name__ == "__main__":
    main()
