"""python -m tinyvae.exercises: list, start, check, hint, solution, train. docs/exercises.md

Exit status: 0 pass (or done), 1 a failing check (or a capstone whose numbers differ),
2 an error, in one line (a bad name or flag, a file that does not load, a stub not yet
written, a wrong shape, NaN, inputs changed in place), 130 for Ctrl-C.
"""
from __future__ import annotations

import argparse
import difflib
import inspect
import os
import shlex
import sys
import textwrap
import time
from pathlib import Path

from ..checkpoint import atomic_write
from ..checks import Int
from ..errors import TinyVAEError
from .capstone import USED, one_epoch_neg_elbo
from .catalogue import BY_NAME, EXERCISES
from .checker import ERROR, PASS, check_file, exercise_path
from .stubs import stub_text

PROG = "python -m tinyvae.exercises"
DEFAULT_DIR = "exercises"


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line: the problem, and where the help is."""

    def error(self, message):
        self.exit(2, f"error: {message} ({PROG} --help)\n")


def exercise(text):
    """An exercise's name as a flag's type: the Exercise, or one line naming the ones there are."""
    if text in BY_NAME:
        return BY_NAME[text]
    close = difflib.get_close_matches(text, list(BY_NAME), n=1)
    raise argparse.ArgumentTypeError(f"no exercise {text!r}{f' (did you mean {close[0]}?)' if close else ''}; "
                                     f"the exercises: {', '.join(BY_NAME)}")


def _dir_flag(args) -> str:
    return "" if args.dir == DEFAULT_DIR else f" --dir {shlex.quote(args.dir)}"


def _refuse(message) -> int:
    print(f"error: {message}", file=sys.stderr)
    return ERROR


# ---- the commands --------------------------------------------------------------------------


def run_list(args) -> int:
    folder, upcoming = Path(args.dir), None
    for number, ex in enumerate(EXERCISES, start=1):
        started = exercise_path(folder, ex).exists()
        status = check_file(ex, folder, args.seed).note if started else "not started"
        print(f"{number:>2}  {ex.name:<17} {ex.function:<26} {status}")
        if upcoming is None and status != "passing":
            upcoming = f"{PROG} {'check' if started else 'start'} {ex.name}{_dir_flag(args)}"
    print(f"next: {upcoming}" if upcoming else f"all passing: {PROG} train{_dir_flag(args)}")
    return PASS


def run_start(args) -> int:
    ex, folder = args.name, Path(args.dir)
    path = exercise_path(folder, ex)
    if (path.exists() or path.is_symlink()) and not args.force:
        return _refuse(f"{path} exists and may hold your work: pass --force to replace it with a fresh stub")
    if folder.exists() and not folder.is_dir():
        return _refuse(f"{folder} is not a folder: pass another --dir")
    folder.mkdir(parents=True, exist_ok=True)
    text = stub_text(ex, _dir_flag(args)).encode("utf-8")
    atomic_write(path, lambda f: f.write(text))
    print(f"wrote {path}: write {ex.function} there, then: {PROG} check {ex.name}{_dir_flag(args)}")
    return PASS


def run_check(args) -> int:
    folder = Path(args.dir)
    chosen = [args.name] if args.name else [ex for ex in EXERCISES if exercise_path(folder, ex).exists()]
    if not chosen:
        return _refuse(f"no exercise started in {folder}: {PROG} start {EXERCISES[0].name}{_dir_flag(args)}")
    status, counts = PASS, [0, 0, 0]
    for ex in chosen:
        report = check_file(ex, folder, args.seed)
        print("\n".join(report.lines))
        status, counts[report.status] = max(status, report.status), counts[report.status] + 1
    if len(chosen) > 1:
        print(f"{counts[0]} passing, {counts[1] + counts[2]} failing, {len(EXERCISES) - len(chosen)} not started")
    return status


def run_hint(args) -> int:
    ex = args.name
    print(f"{ex.name}: {ex.title}, {ex.function}. Derivation: {ex.derivation}")
    print(ex.hint)
    if ex.mistakes:
        print("The check recognises these mistakes: " + "; ".join(m.what for m in ex.mistakes) + ".")
    return PASS


def _solution_sources(ex) -> str:
    """The reference's source, and that of what it calls when it wraps another function (Adam.step)."""
    root = Path(__file__).resolve().parents[2]
    blocks = []
    for f in (ex.reference, *ex.also_shown):
        where = Path(inspect.getsourcefile(f)).resolve()
        shown = where.relative_to(root).as_posix() if where.is_relative_to(root) else where.name
        blocks.append(f"# {shown}: {f.__qualname__}\n" + textwrap.dedent(inspect.getsource(f)))
    return "\n\n".join(blocks)


def run_solution(args) -> int:
    ex = args.name
    if not args.yes:
        if sys.stdin is None:
            return _refuse(f"solution {ex.name} asks before it shows the answer, and there is no stdin: pass --yes")
        if sys.stdin.isatty():
            print(f"Show tinyvae's own {ex.function}, the answer to this exercise? [y/N] ", end="", flush=True)
        answer = sys.stdin.readline()
        if not answer:
            return _refuse(f"solution {ex.name} asks before it shows the answer, and stdin ended: pass --yes")
        if answer.strip().lower() not in ("y", "yes"):
            print("not shown")
            return PASS
    print(_solution_sources(ex))
    return PASS


def run_train(args) -> int:
    from ..core.vae import VAEConfig
    from ..data import load_mnist, to_unit_interval
    from ..train import TrainConfig

    folder = Path(args.dir)
    reports = {ex.name: check_file(ex, folder) for ex in EXERCISES if exercise_path(folder, ex).exists()}
    mine = {n: reports[n].function for n in USED if n in reports and reports[n].status == PASS}
    name = {ex.name: ex.function for ex in EXERCISES}
    print("yours (passing their checks): " + (", ".join(name[n] for n in mine) or "none yet"))
    print("tinyvae's (yours not started or not passing): " + (", ".join(name[n] for n in USED if n not in mine)
                                                              or "none"))
    print("not used by this model: " + ", ".join(ex.function for ex in EXERCISES if ex.name not in USED))
    data = load_mnist()
    x_train, x_test = data.x_train[:args.limit], data.x_test[:args.limit]
    config, tconfig = VAEConfig(init="pytorch"), TrainConfig(epochs=1, seed=args.seed)
    print(f"training the MNIST VAE (784-400-20, ReLU, Bernoulli, Adam lr {tconfig.lr:g}, batch {tconfig.batch_size}) "
          f"for one epoch on {len(x_train)} images, {args.dtype}, seed {args.seed}, continuous pixels")
    runs = ([("yours", mine)] if mine else []) + [("tinyvae's", {})]
    results = {}
    for label, functions in runs:
        start = time.perf_counter()
        try:
            results[label] = one_epoch_neg_elbo(to_unit_interval(x_train), to_unit_interval(x_test), config,
                                                tconfig, functions, args.dtype, progress=None)
        except Exception as e:
            if not functions:
                raise
            return _refuse(f"training with your pieces stopped: {type(e).__name__}: {' '.join(str(e).split())} "
                           f"(tinyvae's were put back; {PROG} check{_dir_flag(args)})")
        print(f"  {label:<10} test -ELBO {results[label]:.4f} nats per image on {len(x_test)} test images "
              f"({time.perf_counter() - start:.0f} s)")
    if not mine:
        print(f"none of your pieces passes its check yet: {PROG} list{_dir_flag(args)}")
        return PASS
    yours, theirs = results["yours"], results["tinyvae's"]
    if yours == theirs:
        print("the same number, bit for bit: your pieces compute what tinyvae's do")
        return PASS
    gap = abs(yours - theirs) / abs(theirs)
    if gap < 1e-6:
        print(f"the same up to rounding ({gap:.1e} apart): your pieces add up the same terms in another order")
        return PASS
    print(f"they differ by {gap:.1e}: a piece passes its check yet trains differently; check each one again")
    return 1


# ---- the command line ----------------------------------------------------------------------


def build_parser():
    parser = Parser(prog=PROG, description="Write every backward of the VAE yourself, checked in one command: "
                    "start an exercise, fill in the function, check it, then train the model with your pieces.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    folder = Parser(add_help=False)
    folder.add_argument("--dir", default=DEFAULT_DIR, metavar="DIR",
                        help="your exercises folder; default ./%(default)s")
    seeded = Parser(add_help=False)
    seeded.add_argument("--seed", type=Int(0).parse, default=0, help="draws the random cases; default %(default)s")
    named = Parser(add_help=False)
    named.add_argument("name", type=exercise, metavar="NAME", help=f"one of: {', '.join(BY_NAME)}")

    p = sub.add_parser("list", parents=[folder, seeded], help="every exercise in order, with its status")
    p.set_defaults(run=run_list)
    p = sub.add_parser("start", parents=[named, folder], help="write a stub into DIR/NAME.py")
    p.add_argument("--force", action="store_true", help="replace an existing file with a fresh stub")
    p.set_defaults(run=run_start)
    p = sub.add_parser("check", parents=[folder, seeded], help="check one exercise, or every started one")
    p.add_argument("name", type=exercise, nargs="?", metavar="NAME", help="one exercise; none: every started one")
    p.set_defaults(run=run_check)
    p = sub.add_parser("hint", parents=[named], help="the formula, the shapes, the known mistakes")
    p.set_defaults(run=run_hint)
    p = sub.add_parser("solution", parents=[named], help="tinyvae's own function (asks first)")
    p.add_argument("--yes", action="store_true", help="show it without asking")
    p.set_defaults(run=run_solution)
    p = sub.add_parser("train", parents=[folder],
                       help="train the MNIST VAE for one epoch with your passing pieces, and with tinyvae's")
    p.add_argument("--limit", type=Int(1).parse, default=None, metavar="N",
                   help="the first N training and test images only (faster); default all")
    p.add_argument("--seed", type=Int(0).parse, default=0, help="the run's seed, the same for both; default 0")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="float64 (default) makes the two numbers agree in every printed digit whenever "
                        "your pieces are right")
    p.set_defaults(run=run_train)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        args = build_parser().parse_args(["list", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.run(args)
    except BrokenPipeError:                       # `list | head`: the reader has gone, so say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return PASS
    except (TinyVAEError, OSError) as e:
        return _refuse(" ".join(str(e).split()) or type(e).__name__)
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
