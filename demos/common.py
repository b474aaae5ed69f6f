"""What every demo script shares: its flags, its data, its runs, and how it ends.

    from common import add_common_flags, add_size_flags, flag, from_flags, main_wrapper, one_line_parser

    def build_parser():
        p = one_line_parser("demos/mnist_x.py", "Train X on MNIST.")
        add_common_flags(p, out="runs/mnist_x")          # --epochs --lr ... --out --resume --limit
        add_size_flags(p, 20, "latent dimensions")       # --latent-dim --hidden
        flag(p, "--beta", TrainConfig, "beta", default=1.0, help="...")   # checked by TrainConfig.RULES["beta"]
        return p

    @from_flags                         # a config error names the flags, not the fields
    def configs_from_args(args): ...

    def run(args) -> int:               # flags -> config, fit, pictures; returns 0
        config, tconfig = configs_from_args(args)
        backend, out, (x_train, y_train, x_test, y_test) = start_run(args, [config], tconfig, OUTPUT_FILES)
        ...

    main = main_wrapper(build_parser, run)
    if __name__ == "__main__":
        sys.exit(main())

The rules every demo then follows without repeating them:

- a flag's value is checked as it is parsed, by the same rule that checks the
  config field it sets (`flag`: `Config.RULES[field].parse` is its type), so
  `--lr 0` and `TrainConfig(lr=0)` are refused alike;
- an error from building a config out of the flags names the flags
  (`--corruption-level must be ...`, not `corruption_level must be ...`);
- a bad flag, or any error the user can fix (TinyVAEError), is one line on
  stderr starting "error: ", and exit status 2;
- Ctrl-C is one line saying what is saved (fit's message) and exit status 130;
- flags are never abbreviated (--epoch is an error, not --epochs);
- --resume and --overwrite cannot be given together.

Importing this module also puts the checkout that holds it first on sys.path,
so a demo runs the tinyvae beside it even when another copy is installed.
Python puts a script's own folder first on sys.path, so `import common` finds
this file; code that loads a demo by path (the tests) puts demos/ there first.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from contextlib import contextmanager
from functools import wraps
from pathlib import Path

# Run the code of the checkout this file lives in, even when another copy of
# tinyvae is installed (or none is).
CHECKOUT = Path(__file__).resolve().parents[1]
if (CHECKOUT / "tinyvae" / "__init__.py").is_file() and sys.path[:1] != [str(CHECKOUT)]:
    sys.path.insert(0, str(CHECKOUT))

from tqdm import tqdm  # noqa: E402

from tinyvae.backend import get_backend  # noqa: E402  (after the sys.path line)
from tinyvae.checkpoint import (CHECKPOINT_FILE, METRICS_FILE, hold_folder, load_checkpoint,  # noqa: E402
                                prepare_out_dir, remove_if_empty, write_json)
from tinyvae.checks import Int, check_params  # noqa: E402
from tinyvae.core.vae import VAEConfig  # noqa: E402
from tinyvae.data import SPLITS, load_mnist, to_unit_interval  # noqa: E402
from tinyvae.errors import CheckpointError, InputError, TinyVAEError  # noqa: E402
from tinyvae.train import Interrupted, TrainConfig, check_memory, fit  # noqa: E402

__all__ = ["CHECKOUT", "OneLineParser", "one_line_parser", "flag", "out_dir", "add_common_flags", "add_size_flags",
           "name_the_flags", "from_flags", "train_config", "mlp_shape", "shape_name", "mnist", "check_fits",
           "start_run", "print_epoch", "fit_each", "on_ctrl_c", "drawing_pictures", "say_wrote", "run_info", "finish",
           "saved_checkpoint", "load_run", "load_models", "train_or_load", "main_wrapper"]

FLAG_NAMES = "flag_names"   # the parsed namespace's {config field: flag} (flag fills it)


# ---------------------------------------------------------------------------
# The parser, and flags declared from the rules
# ---------------------------------------------------------------------------


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (exit 2), like every other error."""

    def error(self, message):
        self.exit(2, f"error: {message} (see --help)\n")


def one_line_parser(prog: str, description: str) -> OneLineParser:
    """A demo's parser: one-line errors, no abbreviated flags (--epoch is not --epochs), and a
    {config field: flag} table that every parse returns as args.flag_names (see from_flags)."""
    parser = OneLineParser(prog=prog, description=description, allow_abbrev=False)
    parser.flag_names = {}
    parser.set_defaults(**{FLAG_NAMES: parser.flag_names})
    return parser


def flag(parser, name, config=None, field=None, *, rule=None, also=(), **kwargs):
    """Add the flag `name` whose values are checked by config.RULES[field] as they are parsed.

    `rule` instead: a rule from tinyvae.checks for a value no config field holds
    (--limit, a sweep's betas). The flag is recorded as the name of `field` (and
    of the fields in `also`) for error messages; the first flag of a field keeps it.
    Other keywords go to add_argument (default, help, metavar, nargs, dest).
    """
    rule = config.RULES[field] if rule is None else rule
    action = parser.add_argument(name, type=rule.parse, **kwargs)
    for f in ((field,) if field else ()) + tuple(also):
        parser.flag_names.setdefault(f, name)
    return action


def out_dir(text: str) -> Path:
    """A flag type: a folder name; the empty name (which would mean the current folder) is refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the output folder is an empty name; pass one, e.g. --out runs/mnist")
    return Path(text)


def add_common_flags(parser, out: str = "runs/mnist", epochs: int = 10, batch_size: int = 128,
                     lr: float = 1e-3):
    """Add the flags every demo has: --backend --epochs --batch-size --lr --seed --out
    --data-dir --resume --overwrite --limit. The defaults are the demo's to choose."""
    p = parser
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy",
                   help="array library: numpy (CPU) or cupy (GPU); default %(default)s")
    flag(p, "--epochs", TrainConfig, "epochs", default=epochs, metavar="N",
         help="train until N epochs are done, counting resumed ones; default %(default)s")
    flag(p, "--batch-size", TrainConfig, "batch_size", default=batch_size, metavar="B", help="default %(default)s")
    flag(p, "--lr", TrainConfig, "lr", default=lr, help="Adam learning rate; default %(default)s")
    flag(p, "--seed", TrainConfig, "seed", default=0, help="default %(default)s")
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
    flag(p, "--limit", rule=Int(1), default=None, metavar="N",
         help="use only the first N training and the first N test images, for quick runs")
    return p


def add_size_flags(parser, latent_dim, latent_help: str, models: str = "the model", hidden=(400,)):
    """Add --latent-dim L and --hidden H [H ...] (an MLP's hidden sizes; the decoders mirror them).
    hidden=None leaves --hidden unset when not given (a demo that refuses it for some models)."""
    flag(parser, "--latent-dim", VAEConfig, "latent_dim", default=latent_dim, metavar="L",
         help=f"{latent_help}; default {latent_dim}")
    shown = "400" if hidden is None else " ".join(str(h) for h in hidden)
    flag(parser, "--hidden", rule=Int(1), also=("enc_hidden", "dec_hidden"), nargs="+",
         default=None if hidden is None else list(hidden), metavar="H",
         help=f"encoder hidden sizes of {models}, e.g. 400 or 512 256; the decoders mirror them; default {shown}")
    return parser


# ---------------------------------------------------------------------------
# Flags -> configs
# ---------------------------------------------------------------------------


def name_the_flags(message: str, names: dict) -> str:
    """`message` with each config field of `names` (bare, or as Class.field) written as its flag."""
    if not names:
        return message
    fields = "|".join(re.escape(f) for f in sorted(names, key=len, reverse=True))
    return re.sub(rf"(?<![\w.-])(?:[A-Z]\w*\.)?({fields})(?![\w-])", lambda m: names[m.group(1)], message)


def from_flags(build):
    """Decorate a demo's configs_from_args(args, ...): an InputError raised while it builds
    the configs names the flags that set the fields (args.flag_names), in the same one line."""
    @wraps(build)
    def configs_from_args(args, *more, **kw):
        try:
            return build(args, *more, **kw)
        except InputError as e:
            raise type(e)(name_the_flags(str(e), getattr(args, FLAG_NAMES, {}))) from None
    return configs_from_args


def train_config(args, **more) -> TrainConfig:
    """The TrainConfig of the common flags (--epochs --batch-size --lr --seed) and `more`."""
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, **more)


def mlp_shape(args, **more) -> dict:
    """The VAEConfig/AEConfig fields of an MLP on MNIST from --hidden and --latent-dim: 784-H-L,
    the decoder mirrored, ReLU, Bernoulli, the PyTorch example's init; `more` overrides."""
    return {"input_dim": 784, "enc_hidden": tuple(args.hidden), "dec_hidden": tuple(reversed(args.hidden)),
            "latent_dim": args.latent_dim, "activation": "relu", "likelihood": "bernoulli", "init": "pytorch",
            **more}


def shape_name(config) -> str:
    """'784-400-20': an MLP's sizes, input to latent."""
    return "-".join(map(str, (config.input_dim, *config.enc_hidden, config.latent_dim)))


# ---------------------------------------------------------------------------
# Before training: the data, and the checks that fail fast
# ---------------------------------------------------------------------------


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


def check_fits(args, configs, tconfig, backend, n_images=None):
    """Each config's memory against this machine's (start_run: before any data is read).

    A batch never holds more than the n_images there are (default: MNIST's
    training set, or --limit), as train.check_memory counts it in fit.
    """
    n_images = n_images or min(args.limit or SPLITS["train"].n, SPLITS["train"].n)
    for config in configs:
        check_memory(config, tconfig, backend, n_images=n_images)


def start_run(args, configs, tconfig, output_files):
    """The checks that fail fast, then the data: (backend, out folder, mnist(args)).

    Before any data is read: the backend (no CuPy, no GPU), each config's
    memory against this machine's (none when configs is empty), and an --out
    that can hold output_files.
    """
    backend = get_backend(args.backend, seed=args.seed)
    check_fits(args, configs, tconfig, backend)
    out = claim_out(args, args.out, output_files)
    return backend, out, mnist(args)


_CLAIMED = []   # the folders this demo holds: let go, and removed if still empty, when it ends


def claim_out(args, folder, output_files):
    """Check `folder` and hold it for this run: an earlier run's output_files there are refused unless
    --overwrite (or --resume) says so, and a second run on the folder is refused, naming this one."""
    out = prepare_out_dir(folder, output_files, overwrite=args.overwrite or getattr(args, "resume", False),
                          can_resume=hasattr(args, "resume"))
    _CLAIMED.append(hold_folder(out))
    return out


def _let_go():
    """Release every folder claim_out holds; remove those this run made and left empty (a failed start)."""
    while _CLAIMED:
        lock = _CLAIMED.pop()
        lock.release()
        remove_if_empty(lock.out_dir)


# ---------------------------------------------------------------------------
# Training, and what comes after it
# ---------------------------------------------------------------------------


def print_epoch(record: dict):
    """One line per epoch: the VAE's train and test -ELBO (test = recon + KL), or the
    autoencoder's reconstruction term, in nats per image; seconds."""
    if "test_neg_elbo" in record:
        numbers = (f"train -ELBO {record['train_neg_elbo']:8.2f}  test -ELBO {record['test_neg_elbo']:8.2f} "
                   f"= {record['test_recon']:7.2f} recon + {record['test_kl']:6.2f} KL")
    else:
        numbers = f"train recon {record['train_recon']:8.2f}  test recon {record['test_recon']:8.2f}"
    tqdm.write(f"epoch {record['epoch']:3d}  {numbers}  (nats/image)  {record['seconds']:6.1f} s")


def fit_each(args, runs, x_train, x_test, backend, out, on_epoch=print_epoch, labels=None):
    """Train each run {name: (heading, config, tconfig)} into out/name with fit, one after another.

    A heading is printed before its run (none if empty); labels = (y_train,
    y_test) go to the runs whose config is conditional. Returns ({name:
    FitResult}, {name: seconds}).
    """
    results, seconds = {}, {}
    for name, (heading, config, tconfig) in runs.items():
        if heading:
            print(f"{heading}:", flush=True)
        t = time.perf_counter()
        given = {"y_train": labels[0], "y_test": labels[1]} if labels and config.n_classes else {}
        results[name] = fit(x_train, x_test, config, tconfig, backend, out / name, resume=args.resume,
                            overwrite=args.overwrite, on_epoch=on_epoch, **given)
        seconds[name] = time.perf_counter() - t
    return results, seconds


@contextmanager
def on_ctrl_c(message: str):
    """Ctrl-C in the block (after training: tables, pictures) becomes Interrupted(message), one line."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(message) from None


def drawing_pictures(out, epochs: int):
    """on_ctrl_c for a one-model demo drawing its pictures after fit has saved everything."""
    return on_ctrl_c(f"interrupted while drawing the pictures: all {epochs} epochs and metrics.json are "
                     f"saved in {out}; --resume draws them again")


def say_wrote(out, names, seconds=None):
    """'wrote DIR/: checkpoint.npz, metrics.json, x.png' (and '  (12 s)')."""
    print(f"wrote {out}/: " + ", ".join(map(str, names)) + ("" if seconds is None else f"  ({seconds:.0f} s)"))


def run_info(backend, x_train, x_test) -> dict:
    """metrics.json's record of where and on what a several-model demo ran."""
    return {"backend": backend.name, "dtype": backend.dtype_name,
            "data": {"n_train": int(x_train.shape[0]), "n_test": int(x_test.shape[0])}}


def finish(out: Path, record: dict, folders, pictures, t0: float):
    """Write a several-model demo's metrics.json (record, its "seconds" completed by the total)
    and say what is in --out: 'wrote DIR/: a/, b/, metrics.json, x.png  (12 s)'."""
    record["seconds"]["total"] = time.perf_counter() - t0
    write_json(out / METRICS_FILE, record)
    say_wrote(out, [*(f"{n}/" for n in folders), METRICS_FILE, *pictures], record["seconds"]["total"])


# ---------------------------------------------------------------------------
# A saved run, for --from
# ---------------------------------------------------------------------------


def saved_checkpoint(directory: Path, model: str) -> Path:
    """The checkpoint of `model` in a run folder: DIR/model/checkpoint.npz, else DIR/checkpoint.npz
    (a one-model demo's run, e.g. demos/mnist.py)."""
    for path in (directory / model / CHECKPOINT_FILE, directory / CHECKPOINT_FILE):
        if path.is_file():
            return path
    raise CheckpointError(f"no checkpoint in {directory} (looked for {model}/{CHECKPOINT_FILE} and "
                          f"{CHECKPOINT_FILE}): train one first, without --from")


def load_run(path: Path, config_class, backend):
    """(params, config, meta) of a saved model, its arrays checked against its config."""
    params, _, meta = load_checkpoint(path, backend)
    try:
        config = config_class.from_dict(meta["config"])
        check_params(params, config)
    except InputError as e:
        raise CheckpointError(f"checkpoint {path} does not hold a {config_class.__name__} model ({e}): "
                              "pass the folder of a run of this demo or of demos/mnist.py") from None
    return params, config, meta


def load_models(source: Path, classes: dict, backend) -> dict:
    """The models a run folder holds, for --from: {name: (params, config, meta, path)}.

    classes: {name: config class}, the first one required (DIR/name/checkpoint.npz,
    else DIR/checkpoint.npz, as a one-model demo writes it), the others read from
    DIR/name/checkpoint.npz where it is there.
    """
    first, *others = classes
    paths = {first: saved_checkpoint(source, first)}
    paths.update({n: source / n / CHECKPOINT_FILE for n in others if (source / n / CHECKPOINT_FILE).is_file()})
    return {n: (*load_run(path, classes[n], backend), path) for n, path in paths.items()}


def train_or_load(args, runs, x_train, x_test, backend, out: Path, source=None, on_epoch=print_epoch):
    """({name: (params, config)}, {name: (meta, path)}): the runs ({name: (heading, config, tconfig)})
    trained into out/name by fit_each, or, given source (a --from folder), the models saved there
    instead (load_models: the first run's required, the others where there; no meta when trained).

    Training refuses, before the first model, an out that already holds any of
    them unless --resume or --overwrite; loading, an out that holds the
    checkpoint it reads (its metrics.json would be replaced).
    """
    if source is None:
        if not (args.resume or args.overwrite) and any((out / name / CHECKPOINT_FILE).exists() for name in runs):
            raise CheckpointError(f"{out} already holds trained models: score them with --from {out}, "
                                  "finish their training with --resume, retrain with --overwrite, "
                                  "or pass a new --out")
        results, _ = fit_each(args, runs, x_train, x_test, backend, out, on_epoch)
        return {name: (r.params, runs[name][1]) for name, r in results.items()}, {}
    loaded = load_models(source, {name: type(config) for name, (_, config, _) in runs.items()}, backend)
    if next(iter(loaded.values()))[3].parent.resolve() == Path(out).resolve():
        raise InputError(f"--out {out} holds the checkpoint being scored, and its metrics.json "
                         "would be replaced: pass another --out")
    return ({name: (params, config) for name, (params, config, _, _) in loaded.items()},
            {name: (meta, path) for name, (_, _, meta, path) in loaded.items()})


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
            try:
                return run(args)
            finally:
                _let_go()
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
