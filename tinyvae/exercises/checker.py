"""Checking a learner's function: load one file by path, run it on random cases, say what is wrong.

Per output (dx, dW, db, ...) the check prints the relative error against finite differences
(float64, the noise frozen) and against the package's own function, pass or fail, and the
entry where the learner's value is furthest from the reference's. A failing answer that
computes what a catalogued mistake computes gets that mistake's hint. Everything a learner
can get wrong before there are numbers to compare (a syntax error, the stub untouched, a
wrong number of outputs or shape, NaN, inputs changed in place) is one line.
Statuses: 0 pass, 1 fail, 2 error. docs/exercises.md#what-the-numbers-mean
"""
from __future__ import annotations

import importlib.util
import inspect
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..gradcheck import rel_error
from .catalogue import EXERCISES
from .mistakes import build

PASS_BELOW = 1e-6   # a correct float64 gradient reads 1e-12 to 1e-8 (docs/gradcheck.md#reading-rel_error)
PASS, FAIL, ERROR = 0, 1, 2


class LearnerError(Exception):
    """Something in the learner's file that stops the check before any number: one line."""


@dataclass
class Report:
    """What a check found: status (PASS, FAIL, ERROR), the lines to print, the learner's function."""

    status: int
    lines: list
    function: object = None

    @property
    def note(self) -> str:
        """A few words for `list`: passing, failing, or failing with why."""
        if self.status == PASS:
            return "passing"
        if self.status == ERROR and "not implemented yet" in self.lines[-1]:
            return "failing (not implemented yet)"
        return "failing" if self.status == FAIL else "failing (an error: run check)"


# ---- loading the learner's file ------------------------------------------------------------


def exercise_path(folder, exercise) -> Path:
    return Path(folder) / f"{exercise.name}.py"


def _line(error, filename):
    """The line of `filename` last seen in the error's traceback (the learner's line), or None."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == filename]
    return frames[-1].lineno if frames else None


def _filename(function) -> str:
    return getattr(getattr(function, "__code__", None), "co_filename", "")


def _message(error) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else "(no message)"


def load(exercise, folder):
    """The learner's function, from `folder`/<name>.py alone: compiled and run by path, nothing else imported
    from the folder, no bytecode written there, nothing added to sys.path or sys.modules."""
    path = exercise_path(folder, exercise)
    shown = str(path)
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LearnerError(f"not started: python -m tinyvae.exercises start {exercise.name}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise LearnerError(f"cannot read {shown}: {_message(e)}") from None
    spec = importlib.util.spec_from_file_location(f"tinyvae_exercise_{exercise.name}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        code = compile(source, shown, "exec", dont_inherit=True)
    except SyntaxError as e:
        raise LearnerError(f"{shown} line {e.lineno}: {type(e).__name__}: {e.msg}") from None
    except ValueError as e:                                  # a NUL byte, on older Pythons
        raise LearnerError(f"{shown}: {_message(e)}") from None
    try:
        exec(code, module.__dict__)
    except Exception as e:
        line = _line(e, shown)
        raise LearnerError(f"{shown}{f' line {line}' if line else ''}: {type(e).__name__}: {_message(e)}") from None
    function = getattr(module, exercise.function, None)
    if not callable(function):
        raise LearnerError(f"{shown} defines no function {exercise.function}: keep the name the stub gave it")
    return function


# ---- arrays in and out ---------------------------------------------------------------------


def _copy(obj):
    """A copy of every array inside tuples, lists and dicts; anything else is shared."""
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, (tuple, list)):
        return type(obj)(_copy(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _copy(v) for k, v in obj.items()}
    return obj


def _changed(before, after, label):
    """(label, index) of the first array entry that differs between the two, or None."""
    if isinstance(before, np.ndarray):
        if not isinstance(after, np.ndarray) or after.shape != before.shape:
            return label, "replaced"
        bad = np.argwhere(~((after == before) | (np.isnan(after) & np.isnan(before))))
        return (label, tuple(int(i) for i in bad[0])) if len(bad) else None
    if isinstance(before, (tuple, list, dict)):
        if type(after) is not type(before) or len(after) != len(before) or (
                isinstance(before, dict) and after.keys() != before.keys()):
            return label, "its items changed"
        keys = before.keys() if isinstance(before, dict) else range(len(before))
        for k in keys:
            found = _changed(before[k], after[k], f"{label}[{k!r}]")
            if found:
                return found
    return None


def _outputs(result, names, exercise):
    """The learner's return value as a list in the order of `names`, or a one-line LearnerError."""
    f, expected = exercise.function, ", ".join(names)
    if exercise.as_dict:
        if not isinstance(result, dict):
            raise LearnerError(f"{f} returned {_kind(result)}, expected a dict of gradients keyed like params "
                               f"({expected})")
        missing, extra = [n for n in names if n not in result], [k for k in result if k not in names]
        if missing or extra:
            raise LearnerError(f"{f}'s grads " + "; ".join(
                ([f"miss {', '.join(missing)}"] if missing else []) + ([f"have extra keys {', '.join(map(str, extra))}"]
                                                                       if extra else [])) + f" (expected {expected})")
        values = [result[n] for n in names]
    elif len(names) == 1:
        if isinstance(result, (tuple, list)):
            raise LearnerError(f"{f} returned {len(result)} values in a {type(result).__name__}, expected one array "
                               f"({expected})")
        values = [result]
    else:
        if not isinstance(result, (tuple, list)):
            raise LearnerError(f"{f} returned {_kind(result)}, expected {len(names)} values ({expected})")
        if len(result) != len(names):
            raise LearnerError(f"{f} returned {len(result)} values, expected {len(names)} ({expected})")
        values = list(result)
    for name, v in zip(names, values):
        if not isinstance(v, (np.ndarray, np.generic)):
            raise LearnerError(f"{f}: {name} is {_kind(v)}, expected a NumPy array")
    return [np.asarray(v) for v in values]


def _kind(value) -> str:
    if value is None:
        return "None"
    if isinstance(value, np.ndarray):
        return f"one array of shape {value.shape}"
    return f"a {type(value).__name__}"


def _call(exercise, function, trial, arg_names):
    """The learner's outputs on one case, after the checks that make one line each."""
    before = _copy(trial.args)
    try:
        with np.errstate(all="ignore"):
            result = function(*trial.args)
    except NotImplementedError:
        raise LearnerError(f"not implemented yet: {exercise.function} in {_filename(function)} "
                           "(write its body in place of `raise NotImplementedError`)") from None
    except Exception as e:
        line = _line(e, _filename(function))
        where = f" at {_filename(function)} line {line}" if line else ""
        raise LearnerError(f"{exercise.function} raised {type(e).__name__}{where} (case {trial.size}): "
                           f"{_message(e)}") from None
    for name, b, a in zip(arg_names, before, trial.args):
        found = _changed(b, a, name)
        if found:
            at = found[1] if isinstance(found[1], str) else f"entry {_index(found[1])}"
            raise LearnerError(f"{exercise.function} changed its argument {found[0]} in place ({at}): "
                               "compute new arrays and leave its inputs as they were")
    return _outputs(result, trial.names, exercise)


def _reference(function, trial, exercise):
    with np.errstate(all="ignore"):
        return _outputs(function(*_copy(trial.args)), trial.names, exercise)


# ---- the check -----------------------------------------------------------------------------


def draw(exercise, seed=0):
    """The exercise's cases: 0 to 2 with finite differences (case 0 a batch of 1), 3 larger, the reference only."""
    rng = np.random.default_rng([seed, EXERCISES.index(exercise)])
    sizes = (1, int(rng.integers(2, 4)), int(rng.integers(3, 6)), int(rng.integers(8, 17)))
    trials = [exercise.draw(rng, N, i) for i, N in enumerate(sizes)]
    trials[-1].numeric = None
    return trials


def _same(mine, theirs, trial):
    return all(a.shape == b.shape and rel_error(a - trial.baseline.get(i, 0), b - trial.baseline.get(i, 0)) < PASS_BELOW
               for i, (a, b) in enumerate(zip(mine, theirs)))


def known_mistake(exercise, trials, mine):
    """The catalogued mistake whose outputs equal the learner's on every case, or None."""
    for mistake in exercise.mistakes:
        wrong = build(exercise, mistake)
        try:
            if all(_same(m, _reference(wrong, t, exercise), t) for t, m in zip(trials, mine)):
                return mistake
        except LearnerError:
            continue
    return None


def _index(idx) -> str:
    return "[" + ", ".join(str(int(i)) for i in idx) + "]"


def _shape_problem(trials, mine, expected):
    """{output: (case, got, expected)} for each output whose shape is wrong in some case."""
    found = {}
    for trial, m, e in zip(trials, mine, expected):
        for out, a, b in zip(trial.names, m, e):
            if a.shape != b.shape and out not in found:
                found[out] = (trial.size, a.shape, b.shape)
    return found


def _not_finite(trials, mine, function_name):
    for trial, m in zip(trials, mine):
        for out, a in zip(trial.names, m):
            if not np.all(np.isfinite(a)):
                bad = np.argwhere(~np.isfinite(a))[0]
                raise LearnerError(f"{function_name}: {out}{_index(bad)} is {a[tuple(bad)]} (case {trial.size}): "
                                   "look for a log of 0, a division by 0, or an exp that overflows")


def _row(j, trials, numeric, mine, expected):
    """Output j's numbers over the cases: the finite-difference error (None: there are none), the reference
    error, and the worst entry as (its size, index, shape, yours, tinyvae's)."""
    fd = None if all(n is None for n in numeric) else 0.0
    ref, worst = 0.0, None
    for trial, n, m, e in zip(trials, numeric, mine, expected):
        base = trial.baseline.get(j, 0)
        if n is not None:
            fd = max(fd, rel_error(m[j], n[j]))
        r = rel_error(m[j] - base, e[j] - base)
        diff = np.abs(m[j] - e[j])
        size = float(diff.max()) if diff.size else 0.0
        if worst is None or r > ref or (r == ref and size > worst[0]):
            ref = max(ref, r)
            at = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.size else ()
            worst = (size, at, m[j].shape, m[j], e[j])
    return fd, ref, worst


def check_function(exercise, function, seed=0) -> Report:
    """Check `function` as the exercise's answer: a Report whose lines say, per output, what was found."""
    name = exercise.name
    trials = draw(exercise, seed)
    arg_names = list(inspect.signature(exercise.reference).parameters)
    numeric, expected, mine = [], [], []
    try:
        for trial in trials:
            numeric.append(trial.numeric() if trial.numeric else None)      # before the learner's call
            expected.append(_reference(exercise.reference, trial, exercise))
            mine.append(_call(exercise, function, trial, arg_names))
        shapes = _shape_problem(trials, mine, expected)
        mistake = known_mistake(exercise, trials, mine) if shapes else None
        if shapes and not mistake:
            out, (size, got, want) = next(iter(shapes.items()))
            transposed = ": its transpose" if len(got) > 1 and got == want[::-1] else ""
            raise LearnerError(f"{exercise.function}: {out} has shape {got}, expected {want}{transposed} "
                               f"(case {size})")
        _not_finite(trials, mine, exercise.function)
    except LearnerError as e:
        return Report(ERROR, [f"{name}: {e}"], function)

    lines = [f"{name}: {exercise.function} on {len(trials)} random float64 cases ({'; '.join(t.size for t in trials)})"]
    width = max(len(n) for n in trials[0].names)
    worst_of = {}
    for j, out in enumerate(trials[0].names):
        if out in shapes:
            size, got, want = shapes[out]
            lines.append(f"  {out:<{width}}  shape {got}, expected {want} (case {size})  FAIL")
            continue
        fd, ref, worst = _row(j, trials, numeric, mine, expected)
        ok = (fd is None or fd < PASS_BELOW) and ref < PASS_BELOW
        if not ok:
            worst_of[out] = worst
        where = f"{out}{_index(worst[1])} of {worst[2]}" if worst[0] > 0 else "- (equal)"
        lines.append(f"  {out:<{width}}  finite differences {'   -   ' if fd is None else f'{fd:.1e}'}  "
                     f"reference {ref:.1e}  {'pass' if ok else 'FAIL'}  worst entry {where}")
    if not worst_of and not shapes:
        return Report(PASS, lines + [f"{name}: pass"], function)
    mistake = mistake or known_mistake(exercise, trials, mine)
    if mistake:
        return Report(FAIL, lines + [f"{name}: known mistake, {mistake.what}: {mistake.hint}"], function)
    out = max(worst_of, key=lambda k: worst_of[k][0])
    _, at, _, m, e = worst_of[out]
    return Report(FAIL, lines + [f"{name}: wrong, and not a mistake the catalogue knows: the worst entry is {out}"
                                 f"{_index(at)} = {m[at]:.6g}, expected {e[at]:.6g} "
                                 f"(python -m tinyvae.exercises hint {name})"], function)


def check_file(exercise, folder, seed=0) -> Report:
    """Load `folder`/<name>.py by path and check its function."""
    try:
        function = load(exercise, folder)
    except LearnerError as e:
        return Report(ERROR, [f"{exercise.name}: {e}"])
    return check_function(exercise, function, seed)
