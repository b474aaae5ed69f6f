"""What every demo script shares: its imports, its flags, and how it ends.

    from common import add_common_flags, add_size_flags, main_wrapper, one_line_parser, start_run

    def build_parser():
        p = one_line_parser("demos/mnist_x.py", "Train X on MNIST.")
        add_common_flags(p, out="runs/mnist_x")
        add_size_flags(p, 20, "latent dimensions")
        return p

    def run(args) -> int:               # flags -> config, fit, pictures; returns 0
        config, tconfig = ...           # from args
        backend, out, (x_train, y_train, x_test, y_test) = start_run(args, [config], tconfig, PICTURES)
        ...

    main = main_wrapper(build_parser, run)
    if __name__ == "__main__":
        sys.exit(main())

The rules every demo then follows without repeating them:

- a bad flag, or any error the user can fix (TinyVAEError), is one line on
  stderr starting "error: ", and exit status 2;
- Ctrl-C is one line saying what is saved (fit's message) and exit status 130;
- flags are never abbreviated (--epoch is an error, not --epochs), and each
  value is checked as it is parsed: integers with a lower bound, positive
  finite numbers, a non-empty --out;
- --resume and --overwrite cannot be given together.

Importing this module also puts the checkout that holds it first on sys.path,
so a demo runs the tinyvae beside it even when another copy is installed.
Python puts a script's own folder first on sys.path, so `import common` finds
this file; code that loads a demo by path (the tests) puts demos/ there first.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

# Run the code of the checkout this file lives in, even when another copy of
# tinyvae is installed (or none is).
CHECKOUT = Path(__file__).resolve().parents[1]
if (CHECKOUT / "tinyvae" / "__init__.py").is_file() and sys.path[:1] != [str(CHECKOUT)]:
    sys.path.insert(0, str(CHECKOUT))

from tinyvae.backend import get_backend  # noqa: E402  (after the sys.path line)
from tinyvae.checkpoint import prepare_out_dir  # noqa: E402
from tinyvae.data import load_mnist, to_unit_interval  # noqa: E402
from tinyvae.errors import TinyVAEError  # noqa: E402
from tinyvae.train import check_memory  # noqa: E402

__all__ = ["CHECKOUT", "OneLineParser", "one_line_parser", "int_at_least", "positive_float", "nonnegative_float",
           "out_dir", "add_common_flags", "add_size_flags", "train_config_kwargs", "mnist", "start_run", "main_wrapper"]


# ---------------------------------------------------------------------------
# The parser and the flag types
# ---------------------------------------------------------------------------


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (exit 2), like every other error."""

    def error(self, message):
        self.exit(2, f"error: {message} (see --help)\n")


def one_line_parser(prog: str, description: str) -> OneLineParser:
    """A demo's parser: one-line errors, and no abbreviated flags (--epoch is not --epochs)."""
    return OneLineParser(prog=prog, description=description, allow_abbrev=False)


def int_at_least(low: int):
    """A flag type: an integer >= low ('integer >= 1' in the error message)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


def positive_float(text: str) -> float:
    """A flag type: a positive finite number (nan, inf, 0 and negatives are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    """A flag type: a finite number >= 0 (e.g. a KL weight, where 0 is allowed)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def out_dir(text: str) -> Path:
    """A flag type: a folder name; the empty name (which would mean the current folder) is refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the output folder is an empty name; pass one, e.g. --out runs/mnist")
    return Path(text)


def add_common_flags(parser: argparse.ArgumentParser, out: str = "runs/mnist", epochs: int = 10,
                     batch_size: int = 128, lr: float = 1e-3) -> argparse.ArgumentParser:
    """Add the flags every demo has: --backend --epochs --batch-size --lr --seed --out
    --data-dir --resume --overwrite --limit. The defaults are the demo's to choose."""
    p = parser
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy",
                   help="array library: numpy (CPU) or cupy (GPU); default %(default)s")
    p.add_argument("--epochs", type=int_at_least(1), default=epochs, metavar="N",
                   help="train until N epochs are done, counting resumed ones; default %(default)s")
    p.add_argument("--batch-size", type=int_at_least(1), default=batch_size, metavar="B",
                   help="default %(default)s")
    p.add_argument("--lr", type=positive_float, default=lr,
                   help="Adam learning rate; default %(default)s")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="default %(default)s")
    p.add_argument("--out", type=out_dir, default=Path(out), metavar="DIR",
                   help="output folder: checkpoint.npz, metrics.json, *.png; default %(default)s")
    p.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                   help="folder holding the four MNIST IDX files; without it: the cache, then a download")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue from DIR/checkpoint.npz of --out (same settings required)")
    again.add_argument("--overwrite", action="store_true",
                       help="start a new run even if --out already holds a checkpoint (it is replaced "
                            "when the first epoch ends)")
    p.add_argument("--limit", type=int_at_least(1), default=None, metavar="N",
                   help="use only the first N training and the first N test images, for quick runs")
    return p


def add_size_flags(parser: argparse.ArgumentParser, latent_dim: int, latent_help: str,
                   models: str = "the model") -> argparse.ArgumentParser:
    """Add --latent-dim L (default latent_dim) and --hidden H [H ...] (default 400): an MLP's sizes."""
    parser.add_argument("--latent-dim", type=int_at_least(1), default=latent_dim, metavar="L",
                        help=f"{latent_help}; default %(default)s")
    parser.add_argument("--hidden", type=int_at_least(1), nargs="+", default=[400], metavar="H",
                        help=f"encoder hidden sizes of {models}; the decoders mirror them; default 400")
    return parser


def train_config_kwargs(args) -> dict:
    """The TrainConfig fields the common flags set: epochs, batch_size, lr, seed."""
    return {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed}


def mnist(args):
    """(x_train, y_train, x_test, y_test) for the flags: float32 pixels in [0, 1] (N, 784), int labels.

    From --data-dir, else the cache, else a download (tinyvae.data.load_mnist);
    --limit N keeps the first N images of each split, so a quick run is quick
    to evaluate too.
    """
    d = load_mnist(data_dir=args.data_dir)
    n = args.limit
    return (to_unit_interval(d.x_train[:n]), d.y_train[:n],
            to_unit_interval(d.x_test[:n]), d.y_test[:n])


def start_run(args, configs, tconfig, output_files):
    """The checks that fail fast, then the data: (backend, out folder, mnist(args)).

    Before any data is read: the backend (no CuPy, no GPU), each config's
    memory against this machine's, and an --out that can hold output_files.
    """
    backend = get_backend(args.backend, seed=args.seed)
    for config in configs:
        check_memory(config, tconfig, backend)
    out = prepare_out_dir(args.out, output_files)
    return backend, out, mnist(args)


# ---------------------------------------------------------------------------
# How a demo ends
# ---------------------------------------------------------------------------


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main_wrapper(build_parser, run):
    """The demo's main(argv=None) -> exit status: parse the flags, call run(args), end in one line.

    0 (or what run returns) on success; 2 with "error: ..." on stderr for a bad
    flag, a TinyVAEError, an OSError (say, a picture that cannot be written)
    or a MemoryError; 130 for Ctrl-C, with the message of fit's Interrupted
    (which epochs are saved) when it came from there. Anything else is a bug
    and keeps its traceback.
    """
    def main(argv=None) -> int:
        args = build_parser().parse_args(argv)
        try:
            return run(args)
        except TinyVAEError as e:
            message = f"error: {_one_line(e)}"
        except MemoryError as e:
            message = (f"error: out of memory ({_one_line(e)}): use smaller layers, "
                       "a smaller --batch-size, or the other --backend")
        except OSError as e:
            message = f"error: {_one_line(e)}"
        except KeyboardInterrupt as e:
            print(_one_line(e) if str(e) else "interrupted (Ctrl-C)", file=sys.stderr)
            return 130
        print(message, file=sys.stderr)
        return 2
    main.__doc__ = f"The command line of {build_parser().prog}: parse flags, run, return the exit status."
    return main
