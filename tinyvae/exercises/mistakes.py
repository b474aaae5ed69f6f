"""The catalogue's wrong implementations, built from its data: the reference's source with a mistake's edits.

`build(exercise, mistake)` reads the source of the function the exercise's mistakes edit (the
reference, or Adam.step for Adam), replaces each (old, new) line fragment, which must occur
exactly once, and compiles the result among that function's own module globals. So each known
mistake is one wrong line beside the right one, and stays in step with the package's code:
an edit whose line has gone is an error (tests/test_exercises.py builds every one).
"""
from __future__ import annotations

import __future__
import functools
import inspect
import textwrap


class StaleCatalogue(RuntimeError):
    """A mistake's edit names a line the reference no longer has."""


def edited_source(function, edits) -> str:
    """The dedented source of `function` with each (old, new) applied; old must occur once."""
    source = textwrap.dedent(inspect.getsource(function))
    for old, new in edits:
        if source.count(old) != 1:
            raise StaleCatalogue(f"{function.__qualname__} has {source.count(old)} copies of {old!r}, "
                                 "not one: update the mistake's edit in tinyvae/exercises/catalogue.py")
        source = source.replace(old, new)
    return source


@functools.cache
def build(exercise, mistake):
    """The wrong implementation `mistake` describes, with the signature of the exercise's function."""
    target = exercise.mutate or exercise.reference
    source = edited_source(target, mistake.edits)
    namespace = dict(target.__globals__)
    code = compile(source, f"<{exercise.name}: {mistake.what}>", "exec",
                   flags=__future__.annotations.compiler_flag, dont_inherit=True)
    exec(code, namespace)
    wrong = namespace[target.__name__]
    return exercise.wrap(wrong) if exercise.wrap else wrong
