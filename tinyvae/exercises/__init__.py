"""Learn by writing: every backward of the VAE an exercise, checked in one command.

    python -m tinyvae.exercises list              the exercises in order, each one's status
    python -m tinyvae.exercises start affine      a stub in ./exercises/affine.py (--dir DIR elsewhere)
    python -m tinyvae.exercises check affine      finite differences and the reference, per output
    python -m tinyvae.exercises hint affine       the formula and the shapes
    python -m tinyvae.exercises solution affine   tinyvae's own function (asks first; --yes)
    python -m tinyvae.exercises train             your passing pieces in the MNIST VAE, beside tinyvae's

catalogue.py holds the exercises and the known mistakes (data); mistakes.py builds each wrong
implementation from its edit; checker.py loads a learner's file by path and checks it; stubs.py
writes the stubs; capstone.py plugs the pieces into the model. docs/exercises.md
"""
from .catalogue import BY_NAME, EXERCISES, Exercise, Mistake
from .checker import ERROR, FAIL, PASS, Report, check_file, check_function

__all__ = ["BY_NAME", "EXERCISES", "Exercise", "Mistake", "Report", "check_file", "check_function",
           "PASS", "FAIL", "ERROR"]
