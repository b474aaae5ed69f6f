"""The file `start` writes: the function's signature and docstring (formula, shapes, derivation),
the forward it undoes, and a body that raises NotImplementedError. Made from the reference's own
signature and docstring and the forward's own source, so it cannot drift from the package."""
from __future__ import annotations

import inspect
import textwrap

from .catalogue import EXERCISES


def _docstring(text: str) -> str:
    """`text` as a function's docstring, indented four spaces."""
    quote = 'r"""' if "\\" in text else '"""'
    body = textwrap.indent(text, "    ").strip()
    return f"    {quote}{body}\n    \"\"\"\n" if "\n" in text else f"    {quote}{body}\"\"\"\n"


def stub_text(exercise, dir_flag: str = "") -> str:
    """The stub for `exercise`; dir_flag (' --dir DIR' or '') goes into the commands it shows."""
    number = EXERCISES.index(exercise) + 1
    given = "\n\n".join(textwrap.dedent(inspect.getsource(f)).strip() + "\n" for f in exercise.given)
    doc = exercise.doc or inspect.getdoc(exercise.reference)
    run = "python -m tinyvae.exercises"
    where = ("The forward it undoes is given above it, as tinyvae has it: read it for what\n"
             "the cache holds (the check runs tinyvae's own copy, so editing this one\nchanges nothing). "
             if exercise.given else "")
    parts = [
        f'"""Exercise {number} of {len(EXERCISES)}, {exercise.name}: {exercise.title}.\n\n'
        f"Write {exercise.function} at the end of this file, in place of its\n"
        f"`raise NotImplementedError`. {where}Then:\n\n"
        f"    {run} check {exercise.name}{dir_flag}\n"
        f"    {run} hint {exercise.name}{dir_flag}\n\n"
        f"Derivation: {exercise.derivation}. How to read the check: docs/exercises.md\n"
        '"""\n' + exercise.imports,
    ]
    if given:
        parts.append(f"\n# ---- given: the forward ----\n\n{given}")
    signature = f"def {exercise.function}{inspect.signature(exercise.reference)}:\n"
    parts.append(f"\n# ---- yours ----\n\n{signature}{_docstring(doc)}"
                 f"    raise NotImplementedError(\"{exercise.function}\")\n")
    return "\n".join(parts)
