"""Every argument check of tinyvae, in one place: rules declared as data, run at the edges, once.

The core (tinyvae/core/) trusts its arguments and only computes. What the user
can get wrong is checked here, before the core sees it:

- Each config, layer spec and optimizer declares a `RULES` table, one `Rule`
  per field (scikit-learn's parameter-constraints pattern). `Checked` runs the
  table on construction, so `Dense(0)` or `Adam(lr=-1)` is refused at once.
  The same rules are the demos' argparse types (`rule.parse`) and read the
  configs stored in checkpoints (`Checked.from_dict`).
- `networks_fit` infers every network's shapes and names the layer where they
  stop fitting.
- `check_params`, `check_batch` and `check_labels` hold arrays against a
  config; the public entry points (tinyvae/api.py) call them, and `fit` calls
  them once on the whole data set, never inside a training step.

Every refusal is one InputError line that names the problem and the fix.
"""
from __future__ import annotations

import argparse
import math
import numbers
from dataclasses import fields

from .core.xp import namespace_of
from .errors import InputError


# ---------------------------------------------------------------------------
# Rules: one field each
# ---------------------------------------------------------------------------


class Rule:
    """A field's rule: `rule(value, name)` returns the value (normalised) or raises one InputError line.

    `parse(text)` is the same rule as an argparse type, for a command-line flag.
    """

    fix, say = "", None

    def __init__(self, fix="", say=None):
        self.fix, self.say = fix, say

    def __call__(self, value, name):
        ok, value = self.accept(value)
        if not ok:
            fix = f": {self.fix}" if self.fix else ""
            raise InputError(self.say.format(value=value) if self.say else
                             f"{name} must be {self.describe()}, got {value!r}{fix}")
        return value

    def parse(self, text):
        """The rule as an argparse type: a flag's text -> the value, or an ArgumentTypeError."""
        try:
            value = self.from_text(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {self.describe()}, got {text!r}") from None
        ok, value = self.accept(value)
        if not ok:
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text}")
        return value

    def from_text(self, text):
        return text


class Int(Rule):
    """An integer >= low (NumPy integers become Python ints; bools are refused)."""

    def __init__(self, low=1, fix="", say=None):
        super().__init__(fix, say)
        self.low = low

    def describe(self):
        return "a positive integer" if self.low == 1 else f"an integer >= {self.low}"

    def accept(self, value):
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= self.low
        return ok, int(value) if ok else value

    from_text = staticmethod(int)


class Real(Rule):
    """A finite real number in [low, high] (ends open where said); NumPy scalars become Python floats."""

    def __init__(self, low=-math.inf, high=math.inf, low_open=False, high_open=False, optional=False, fix=""):
        super().__init__(fix)
        self.low, self.high, self.low_open, self.high_open, self.optional = low, high, low_open, high_open, optional

    def describe(self):
        if math.isinf(self.high):
            where = "a positive number" if (self.low, self.low_open) == (0, True) else \
                f"a finite number {'>' if self.low_open else '>='} {self.low:g}"
        else:
            where = (f"a finite number in {'(' if self.low_open else '['}{self.low:g}, "
                     f"{self.high:g}{')' if self.high_open else ']'}")
        return where + (" or None" if self.optional else "")

    def accept(self, value):
        if value is None:
            return self.optional, value
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
            return False, value
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return (True, float(value)) if above and below else (False, value)

    from_text = staticmethod(float)


class OneOf(Rule):
    """One of a fixed set of names: 'unknown activation 'gelu': choose one of linear, relu, ...'."""

    def __init__(self, choices):
        super().__init__()
        self.choices = tuple(choices)

    def describe(self):
        return f"one of {', '.join(self.choices)}"

    def accept(self, value):
        return value in self.choices, value

    def __call__(self, value, name):
        if value not in self.choices:
            raise InputError(f"unknown {name.split(' ')[-1]} {value!r}: choose one of {', '.join(self.choices)}")
        return value


class Bool(Rule):
    def describe(self):
        return "True or False"

    def accept(self, value):
        return isinstance(value, bool), value


class Sizes(Rule):
    """A tuple of positive integers (a list from JSON or argparse becomes a tuple); scalar=True also takes one int."""

    def __init__(self, scalar=False, fix="e.g. (400,)"):
        super().__init__(fix)
        self.scalar = scalar

    def describe(self):
        return "a tuple of layer sizes"

    def accept(self, value):
        if self.scalar and isinstance(value, numbers.Integral):
            value = (value,)
        if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
            return False, value
        return True, tuple(value)

    def __call__(self, value, name):
        return tuple(Int(1)(v, f"each size in {name}") for v in super().__call__(value, name))


class Layers(Rule):
    """None, or a tuple of layer specs (dicts from a checkpoint record become specs)."""

    def describe(self):
        return "a tuple of layer specs such as (Dense(400, 'relu'), Dense(40))"

    def accept(self, value):
        if value is None:
            return True, None
        if isinstance(value, (str, bytes, dict)) or not isinstance(value, (tuple, list)):
            return False, value
        return True, tuple(layer_from_dict(layer) for layer in value)


class Pair(Rule):
    """Two values, each under `rule`, named name[0] and name[1]."""

    def __init__(self, rule, fix=""):
        super().__init__(fix)
        self.rule = rule

    def describe(self):
        return "a pair"

    def __call__(self, value, name):
        try:
            a, b = value
        except (TypeError, ValueError):
            raise InputError(f"{name} must be a pair, got {value!r}: {self.rule.fix}") from None
        return (self.rule(a, f"{name}[0]"), self.rule(b, f"{name}[1]"))


class Fixed(Rule):
    """A field a subclass pins to one value; `say` is the whole message when it differs."""

    def __init__(self, value, say):
        super().__init__()
        self.value, self.say = value, say

    def __call__(self, value, name):
        if value != self.value:
            raise InputError(self.say)
        return value


# ---------------------------------------------------------------------------
# Checked: the rules run on construction; records in and out
# ---------------------------------------------------------------------------


def run_rules(obj):
    """Check every field of `obj` named in its class's RULES, in order, storing the normalised value."""
    label = getattr(type(obj), "LABEL", "{field}")
    for name, rule in type(obj).RULES.items():
        value = rule(getattr(obj, name), label.format(cls=type(obj).__name__, field=name))
        object.__setattr__(obj, name, value)      # frozen dataclasses too
    for extra in EXTRA_CHECKS.get(type(obj).__name__, ()):
        extra(obj)


LAYER_KINDS = {}   # "dense" -> Dense, ...: each layer spec class that names its KIND (core/nets.py)


class Checked:
    """Base of every user-built dataclass: RULES run on construction; to_dict/from_dict for records."""

    RULES: dict = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "KIND" in cls.__dict__:
            LAYER_KINDS.setdefault(cls.KIND, cls)      # the first class of a kind: a module's copy cannot replace it

    def __post_init__(self):
        run_rules(self)
        if hasattr(self, "networks"):
            networks_fit(self)

    def to_dict(self) -> dict:
        """The JSON form of the fields: layer specs as {"kind": ...} dicts."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, rule in self.RULES.items():
            if isinstance(rule, Layers) and d[name] is not None:
                d[name] = [layer_to_dict(layer) for layer in d[name]]
        return d

    @classmethod
    def from_dict(cls, d: dict):
        """Read a to_dict record; every field is checked by the same rules as a Python call."""
        if not isinstance(d, dict):
            raise InputError(f"a {cls.__name__} record must be a dict, got {type(d).__name__}")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise InputError(f"unknown {cls.__name__} fields {sorted(unknown)}")
        return cls(**d)


def layer_to_dict(layer) -> dict:
    """{"kind": "conv", "filters": 32, ...}: a layer spec's JSON form, as checkpoints and metrics keep it."""
    d = {f.name: getattr(layer, f.name) for f in fields(layer)}
    if "shape" in d:
        d["shape"] = list(d["shape"])
    return {"kind": type(layer).KIND, **d}


def layer_from_dict(d):
    """The inverse of layer_to_dict, every field checked by the spec's rules; a spec passes through."""
    if isinstance(d, Checked) and hasattr(type(d), "KIND"):
        return d
    if not isinstance(d, dict) or d.get("kind") not in LAYER_KINDS:
        raise InputError(f"not a layer description: {d!r}: use one of {', '.join(LAYER_KINDS)} "
                         "as 'kind', or a spec such as Dense(400, 'relu')")
    try:
        return LAYER_KINDS[d["kind"]](**{k: v for k, v in d.items() if k != "kind"})
    except TypeError as e:
        raise InputError(f"layer {d!r}: {e}") from None


def _mask_level_below_one(config):
    if config.corruption == "mask" and config.corruption_level >= 1.0:
        raise InputError(f"corruption_level must be in [0, 1) for masking (the share of pixels zeroed), "
                         f"got {config.corruption_level!r}")


# Checks that span fields, by class name (the class lives in the core, its checks here).
EXTRA_CHECKS = {"AEConfig": (_mask_level_below_one,)}


# ---------------------------------------------------------------------------
# Networks: the shapes fit, or the layer that breaks them is named
# ---------------------------------------------------------------------------

NETWORK_NAMES = {"enc": "encoder", "dec": "decoder", "cls": "classifier", "gen": "generator", "dis": "discriminator"}


def _layer_problem(layer, in_shape):
    """Why `layer` cannot take one example of `in_shape`, or None."""
    rank = getattr(layer, "IN_RANK", None)
    kind = type(layer).__name__
    if rank == 1 and len(in_shape) != 1:
        return f"{kind}({layer.units}) needs a flat input, got {in_shape}: put Flatten() before it"
    if rank == 3 and len(in_shape) != 3:
        return f"{kind}({layer.filters}) needs (H, W, C) images, got {in_shape}: put Reshape((H, W, C)) before it"
    if kind == "Reshape" and math.prod(in_shape) != math.prod(layer.shape):
        return (f"Reshape{layer.shape} holds {math.prod(layer.shape)} values but its input "
                f"{in_shape} holds {math.prod(in_shape)}")
    return None


def output_shape(layers, in_shape, name="network"):
    """The shape one example of `in_shape` has after `layers`; InputError naming the layer that does not fit."""
    shape = tuple(in_shape)
    for i, layer in enumerate(layers):
        problem = _layer_problem(layer, shape)
        if problem:
            raise InputError(f"{name} layer {i} ({type(layer).__name__}): {problem}")
        shape = layer.shapes(shape)[1]
    return shape


def networks_fit(config):
    """Refuse, naming the layer, a config whose networks do not map their inputs to their outputs."""
    for prefix, (layers, in_shape, out_shape) in config.networks().items():
        name = NETWORK_NAMES.get(prefix, prefix)
        for i, layer in enumerate(layers):
            if getattr(layer, "KIND", None) == "batch_norm" and prefix != "gen":
                raise InputError(f"{name} layer {i} (BatchNorm): batch norm normalises by each batch's own "
                                 f"statistics, which tinyvae allows only in a GAN's generator: take it out")
        out = output_shape(layers, in_shape, name)
        if out != out_shape:
            what = {"enc": "latent_dim (the code)" if out_shape[0] == config.latent_dim
                    else "2 * latent_dim (mu and logvar)", "dec": "input_dim", "cls": "n_classes (the logits)",
                    "gen": "input_dim", "dis": "1 (the logit)"}.get(prefix, "its output")
            raise InputError(f"{name} ends in {out} but {what} is {out_shape[0]}: make its last layer "
                             f"Dense({out_shape[0]}) (after Flatten() for images); conv strides must divide "
                             f"the image side")


# ---------------------------------------------------------------------------
# Arrays: at the public entry points, and once per fit on the data
# ---------------------------------------------------------------------------

BETA = Real(0, fix="1 is the ELBO")


def check_array(a, name):
    """Refuse a non-array (a list, a scalar) in one line."""
    if not hasattr(a, "shape") or not hasattr(a, "dtype"):
        fix = "draw it with backend.normal((N, latent_dim))" if name == "eps" else \
            "convert it with backend.asarray(...) first"
        raise InputError(f"{name} is a {type(a).__name__}, not an array: {fix}")


def check_params(params, config):
    """Refuse params that lack a parameter of `config`, have one of the wrong shape, or mix dtypes."""
    from .core.vae import param_shapes
    if not isinstance(params, dict):
        raise InputError(f"params must be a dict of arrays, got {type(params).__name__}: "
                         "make them with init_params(config, backend)")
    want = param_shapes(config)
    missing = [k for k in want if k not in params]
    wrong = [f"{k} {tuple(params[k].shape)} (expected {s})" for k, s in want.items()
             if k in params and tuple(getattr(params[k], "shape", ())) != s]
    if missing or wrong:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + wrong
        raise InputError(f"params do not fit the config ({'; '.join(problems)}): make them with "
                         "init_params(config, backend), or load the checkpoint of this config")
    dtypes = {str(p.dtype) for p in params.values()}
    if len(dtypes) > 1:
        first = next(iter(params.values())).dtype
        odd = [k for k, p in params.items() if p.dtype != first]
        raise InputError(f"params mix dtypes ({', '.join(sorted(dtypes))}; {', '.join(odd[:3])} differ from "
                         f"the first): make them all one dtype, e.g. with init_params(config, backend)")


def check_batch(x, params, config, eps=None, y=None, values=True, name="x"):
    """Refuse, naming the problem, an `x` (or `eps`, `y`) that cannot go into the model of `params`.

    Shape and dtype checks read only metadata. The value checks (NaN/inf in x
    and eps, pixels in [0, 1] for the Bernoulli likelihood, one-hot rows of y)
    read the data, which on a GPU waits for it: `fit` runs them once on the
    whole data set (docs/backend.md#pitfall-2-host-synchronisation).
    """
    check_params(params, config)
    dtype = next(iter(params.values())).dtype
    check_array(x, name)
    shape = tuple(x.shape)
    D = config.input_dim
    if len(shape) != 2 or shape[1] != D:
        raise InputError(f"{name} has shape {shape}, expected (N, {D}): "
                         f"flatten each image to {D} values, e.g. x.reshape(N, -1)")
    if shape[0] < 1:
        raise InputError(f"{name} is an empty batch (N = 0): pass at least one image")
    if x.dtype != dtype:
        raise InputError(f"{name} has dtype {x.dtype}, the model is {dtype}: convert pixels to {dtype} "
                         f"in [0, 1] first (e.g. backend.asarray(images / 255))")
    if eps is not None:
        check_array(eps, "eps")
        if tuple(eps.shape) != (shape[0], config.latent_dim) or eps.dtype != dtype:
            raise InputError(f"eps has shape {tuple(eps.shape)} and dtype {eps.dtype}, expected "
                             f"({shape[0]}, {config.latent_dim}) {dtype}: draw it with backend.normal((N, latent_dim))")
    K = config.n_classes
    if K and y is None and eps is not None:        # data alone (eps None) may come without labels
        raise InputError(f"this is a conditional VAE (n_classes={K}): pass y, the one-hot labels "
                         f"(N, {K}), e.g. one_hot(labels, {K}, like=x)")
    if not K and y is not None:
        raise InputError("y was passed but the config has n_classes=0: set n_classes to make a "
                         "conditional VAE, or drop y")
    if y is not None:
        check_array(y, "y")
        if tuple(y.shape) != (shape[0], K) or y.dtype != dtype:
            raise InputError(f"y has shape {tuple(y.shape)} and dtype {y.dtype}, expected "
                             f"({shape[0]}, {K}) {dtype}: one-hot labels, e.g. one_hot(labels, {K}, like=x)")
    if values:
        check_values(x, config, eps, y, name)


def check_values(x, config, eps=None, y=None, name="x"):
    """The checks that read the data: finite x and eps, one-hot y, Bernoulli pixels in [0, 1]."""
    xp = namespace_of(x)
    if not bool(xp.all(xp.isfinite(x))):
        raise InputError(f"{name} contains NaN or inf values: clean or drop those images before training")
    if eps is not None and not bool(xp.all(xp.isfinite(eps))):
        raise InputError("eps contains NaN or inf values: draw it with backend.normal((N, latent_dim))")
    if y is not None and not bool(xp.all((xp.sum(y, axis=1) == 1.0) & xp.all((y == 0.0) | (y == 1.0), axis=1))):
        raise InputError("y has rows that are not one-hot: each row must hold one 1 and zeros elsewhere")
    if config.likelihood == "bernoulli":
        lo, hi = float(xp.min(x)), float(xp.max(x))
        if lo < 0.0 or hi > 1.0:
            raise InputError(f"{name} has values in [{lo:g}, {hi:g}] but the Bernoulli likelihood needs pixels "
                             f"in [0, 1]: scale them (uint8 images: x / 255) or use likelihood='gaussian'")


def check_labels(y, n, n_classes, name):
    """Host integer labels (n,) in [0, n_classes): refused in one line otherwise."""
    import numpy as np
    y = np.asarray(y)
    if y.shape != (n,) or y.dtype.kind not in "iu":
        raise InputError(f"{name} has shape {y.shape} and dtype {y.dtype}: pass one integer label per image, ({n},)")
    if n_classes and y.size and (y.min() < 0 or y.max() >= n_classes):
        raise InputError(f"{name} has labels in [{y.min()}, {y.max()}] but the model has "
                         f"n_classes={n_classes}: labels must be 0..{n_classes - 1}")
    return y
