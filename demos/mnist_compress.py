"""Compress the binarized MNIST test set losslessly by bits-back coding with a VAE (BB-ANS).

    python demos/mnist_compress.py                                          # train 784-100-40, then compress
    python demos/mnist_compress.py --from runs/bin40 --out runs/compress40  # a VAE trained before

The test images are binarized once, pixel i on when U_i < x_i / 255 with U from
np.random.RandomState(--bits-seed). All of them go into one file, --out/mnist_test.bbans
(a small header, then the rANS message); it is read back, decompressed and checked
bit for bit. One table: bits per pixel of the file, and of the file less its initial
random bits; the model's test -ELBO on the same bits; gzip, bz2, lzma and PNG on the
same bits; the seconds each way. --decompress FILE --from DIR only decompresses a file
with the model in DIR and says whether it is the test set. docs/compression.md
"""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import math
import sys
import time
from pathlib import Path

import numpy as np

# common first: it puts this checkout's tinyvae first on sys.path (demos/common.py)
from common import (add_common_flags, add_size_flags, flag, from_flags, load_models, main_wrapper, mlp_shape, mnist,
                    one_line_parser, shape_name, start_run, train_config, train_or_load)
from tinyvae.backend import get_backend
from tinyvae.bitsback import Codec, Precisions, compress, decompress, read_file, write_file
from tinyvae.checkpoint import write_json
from tinyvae.checks import Int
from tinyvae.core.vae import VAEConfig
from tinyvae.errors import DataError, InputError

FILE, RECORD = "mnist_test.bbans", "compression.json"
OUTPUT_FILES = (FILE, RECORD)


def build_parser():
    p = one_line_parser("demos/mnist_compress.py", "Compress the binarized MNIST test set by bits-back coding "
                        "with a VAE, decompress it, and compare with gzip, bz2, lzma and PNG.")
    add_common_flags(p, out="runs/mnist_compress", epochs=100)
    add_size_flags(p, 40, "latent dimensions", hidden=(100,))
    p.add_argument("--from", dest="from_dir", type=Path, default=None, metavar="DIR",
                   help="compress with the VAE saved in DIR (DIR/vae/checkpoint.npz, or DIR/checkpoint.npz of "
                        "demos/mnist.py) instead of training one")
    p.add_argument("--decompress", type=Path, default=None, metavar="FILE",
                   help="only decompress FILE with the model of --from, and say whether it is the test set")
    flag(p, "--bits-seed", rule=Int(0), default=0, metavar="S", help="seed of the test set's binarization; "
         "default %(default)s")
    flag(p, "--lanes", rule=Int(1), default=100, metavar="N", help="images coded side by side; default %(default)s")
    flag(p, "--latent-bits", Precisions, "latent", default=8, metavar="B",
         help="2^B buckets of equal prior mass per latent dimension; default %(default)s")
    flag(p, "--posterior-bits", Precisions, "posterior", default=20, metavar="B",
         help="precision of q(z|x)'s integer CDF; default %(default)s")
    flag(p, "--pixel-bits", Precisions, "pixels", default=24, metavar="B",
         help="precision of the pixels' Bernoulli frequencies; default %(default)s")
    return p


@from_flags
def configs_from_args(args):
    """(VAEConfig, TrainConfig, Precisions): 784-H-L ReLU Bernoulli, trained on binarized pixels."""
    return (VAEConfig(**mlp_shape(args)), train_config(args, binarize=True, iw_k=0),
            Precisions(args.latent_bits, args.posterior_bits, args.pixel_bits))


def binarized_test_set(x_test, seed: int) -> np.ndarray:
    """Pixel on where U < x / 255, U ~ RandomState(seed).random_sample: (N, 784) float -> bool."""
    grey = np.rint(np.asarray(x_test, dtype=np.float64) * 255) / 255          # the uint8 pixels / 255
    return np.random.RandomState(seed).random_sample(grey.shape) < grey


def timed(f, *a, **kw):
    """(f(*a, **kw), wall seconds, CPU seconds of this process)."""
    t, c = time.perf_counter(), time.process_time()
    out = f(*a, **kw)
    return out, time.perf_counter() - t, time.process_time() - c


def png_codec():
    """(encode, decode) of one 1-bit PNG holding all the images in a square grid (Pillow), or None."""
    try:
        from PIL import Image
    except ImportError:
        return None

    def encode(bits):
        n, cols = bits.shape[0], math.ceil(math.sqrt(bits.shape[0]))
        rows = -(-n // cols)
        grid = np.zeros((rows * cols, 784), dtype=bool)
        grid[:n] = bits
        grid = grid.reshape(rows, cols, 28, 28).transpose(0, 2, 1, 3).reshape(rows * 28, cols * 28)
        buffer = io.BytesIO()
        Image.fromarray(grid).save(buffer, format="PNG", optimize=True)
        return buffer.getvalue()

    def decode(data, n):
        grid = np.array(Image.open(io.BytesIO(data)), dtype=bool)
        rows, cols = grid.shape[0] // 28, grid.shape[1] // 28
        return grid.reshape(rows, 28, cols, 28).transpose(0, 2, 1, 3).reshape(rows * cols, 784)[:n]
    return encode, decode


def baselines(bits) -> dict:
    """{name: (bytes, s compress, s decompress)} of general-purpose compressors on the same bits, each
    checked to decode them back: gzip, bz2, lzma on np.packbits of the whole set, one stream; PNG."""
    data, rows = np.packbits(bits).tobytes(), {}
    for name, module in (("gzip", gzip), ("bz2", bz2), ("lzma", lzma)):
        packed, t_c, _ = timed(module.compress, data)
        back, t_d, _ = timed(module.decompress, packed)
        assert back == data, name
        rows[name] = (len(packed), t_c, t_d)
    png = png_codec()
    if png is not None:
        packed, t_c, _ = timed(png[0], bits)
        back, t_d, _ = timed(png[1], packed, bits.shape[0])
        assert np.array_equal(back, bits), "PNG"
        rows["PNG (Pillow), one 1-bit image"] = (len(packed), t_c, t_d)
    return rows


def print_table(header, rows, footer):
    """rows: (method, bits per pixel, bytes or None, s compress or None, s decompress or None)."""
    print(header)
    print(f"{'method':44s} {'bits/pixel':>10s} {'bytes':>10s} {'compress s':>11s} {'decompress s':>13s}")
    for method, bpp, size, t_c, t_d in rows:
        cells = [f"{size:,}" if size is not None else "", *(f"{t:.1f}" if t is not None else "" for t in (t_c, t_d))]
        print(f"{method:44s} {bpp:10.4f} {cells[0]:>10s} {cells[1]:>11s} {cells[2]:>13s}")
    print(footer)


def compress_test_set(args) -> int:
    config, tconfig, precisions = configs_from_args(args)
    backend, out, (x_train, _, x_test, _) = start_run(args, [] if args.from_dir else [config], tconfig,
                                                      OUTPUT_FILES)
    models, saved = train_or_load(args, {"vae": ("training the VAE on binarized MNIST", config, tconfig)},
                                  x_train, x_test, backend, out, args.from_dir)
    params, config = models["vae"]
    model = saved["vae"][1] if saved else out / "vae"
    bits = binarized_test_set(x_test, args.bits_seed)
    codec = Codec(params, config, backend)
    packed, t_c, cpu_c = timed(compress, bits, codec, precisions, lanes=args.lanes, seed=args.seed)
    path = write_file(out / FILE, packed)
    back, t_d, cpu_d = timed(lambda: decompress(read_file(path), codec))
    if not np.array_equal(back, bits):
        raise DataError(f"{path} did not decompress to the images it was made from")
    neg_elbo = float(np.mean(codec.neg_elbo_bits(bits, seed=args.seed)))                    # bits per image
    n, pixels, file_bytes = bits.shape[0], bits.size, path.stat().st_size
    others = baselines(bits)
    rows = [("bits-back: the file", 8 * file_bytes / pixels, file_bytes, t_c, t_d),
            ("bits-back: the file less the initial bits", packed.net_bits / pixels, None, None, None),
            ("the model's test -ELBO on the same bits", n * neg_elbo / pixels, None, None, None),
            *((name, 8 * size / pixels, size, tc, td) for name, (size, tc, td) in others.items())]
    cost = {k: float(np.mean(getattr(packed.trace, k))) for k in ("pixels", "prior", "back", "net")}
    print_table(f"MNIST test set: {n} images binarized with RandomState({args.bits_seed}), {pixels:,} bits; "
                f"model {shape_name(config)} ({model}), precisions {precisions.latent}/{precisions.posterior}/"
                f"{precisions.pixels}, {args.lanes} lanes", rows,
                f"lossless: all {n} images decompressed bit for bit, and the {packed.initial_bits:,} initial "
                f"bits came back; the file is {100 * (8 * file_bytes / pixels) / (neg_elbo / 784) - 100:+.1f}% "
                f"from the -ELBO, less its initial bits {100 * packed.net_bits / (n * neg_elbo) - 100:+.1f}%; "
                f"bits-back took {t_c + t_d:.1f} s both ways ({cpu_c + cpu_d:.1f} s of CPU)\n"
                f"an image on average: {cost['pixels']:.1f} bits for its pixels given z + {cost['prior']:.1f} for z "
                f"under the prior - {cost['back']:.1f} bits back = {cost['net']:.1f} bits")
    write_json(out / RECORD, {
        "images": n, "bits_seed": args.bits_seed, "model": str(model), "model_sha256": packed.model,
        "precisions": precisions.to_dict(), "lanes": args.lanes, "file_bytes": file_bytes,
        "initial_bits": packed.initial_bits, "net_bits": packed.net_bits, "neg_elbo_bits_per_image": neg_elbo,
        "bits_per_image": cost,
        "bits_per_pixel": {method: bpp for method, bpp, *_ in rows},
        "seconds": {"compress": t_c, "decompress": t_d, "cpu_compress": cpu_c, "cpu_decompress": cpu_d,
                    **{k: v[1:] for k, v in others.items()}}})
    print(f"wrote {out}/: {FILE}, {RECORD}")
    return 0


def decompress_file(args) -> int:
    if args.from_dir is None:
        raise InputError("--decompress needs --from DIR, the run whose model compressed the file")
    backend = get_backend(args.backend, seed=args.seed)
    params, config, _, ckpt = load_models(args.from_dir, {"vae": VAEConfig}, backend)["vae"]
    packed = read_file(args.decompress)
    x, seconds, _ = timed(decompress, packed, Codec(params, config, backend))
    test = binarized_test_set(mnist(args)[2], args.bits_seed)
    same = x.shape[0] <= test.shape[0] and np.array_equal(x, test[:x.shape[0]])
    print(f"decompressed {x.shape[0]} images from {args.decompress} with {ckpt} in {seconds:.1f} s; they "
          f"{'are' if same else 'are not'} the first {x.shape[0]} MNIST test images binarized with "
          f"--bits-seed {args.bits_seed}")
    return 0


def run(args) -> int:
    if args.from_dir is not None and args.resume:
        raise InputError("--from compresses with a saved model, --resume trains one: pass one or the other")
    return decompress_file(args) if args.decompress is not None else compress_test_set(args)


main = main_wrapper(build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
