"""The public entry points: each checks its arguments (tinyvae/checks.py), then calls the core.

`tinyvae.loss_and_grads` is this module's; `tinyvae.core.vae.loss_and_grads`
is the math it calls, which trusts its arguments. check_values=False skips
the checks that read the data (NaN, pixel range, one-hot), which on a GPU wait for it.
"""
from __future__ import annotations

from . import checks
from .core import ae, m2, optim, vae
from .errors import InputError


def loss_and_grads(params, x, eps, config, y=None, beta=1.0, check_values=True):
    """core.vae.loss_and_grads (the beta-weighted negative ELBO and its gradients), its arguments checked first."""
    checks.check_array(eps, "eps")            # eps is required here (check_batch also serves data alone)
    checks.check_batch(x, params, config, eps=eps, y=y, values=check_values)
    return vae.loss_and_grads(params, x, eps, config, y, beta=checks.BETA(beta, "beta"))


def ae_loss_and_grads(params, x_in, x, config, check_values=True):
    """core.ae.loss_and_grads (the (denoising) autoencoder), its arguments checked first."""
    checks.check_array(x_in, "x_in")
    checks.check_batch(x, params, config, values=check_values)
    if tuple(x_in.shape) != tuple(x.shape) or x_in.dtype != x.dtype:
        raise InputError(f"x_in has shape {tuple(x_in.shape)} and dtype {x_in.dtype}, expected those of x "
                         f"{tuple(x.shape)} {x.dtype}: pass x itself, or its corrupted copy")
    return ae.loss_and_grads(params, x_in, x, config)


def m2_loss_and_grads(params, x_l, y_l, x_u, eps, config, beta=1.0, check_values=True):
    """core.m2.loss_and_grads (M2 on a labelled and an unlabelled batch), its arguments checked first."""
    for a, name in ((eps, "eps"), (y_l, "y_l"), (x_l, "x_l"), (x_u, "x_u")):
        checks.check_array(a, name)
    if x_l.shape[0] < 1 or x_u.shape[0] < 1:
        raise InputError(f"M2 needs labelled and unlabelled images, got {x_l.shape[0]} and {x_u.shape[0]}: "
                         "pass at least one of each")
    X, Y = m2.rows(x_l, y_l, x_u, config.n_classes)
    checks.check_batch(X, params, config, eps=eps, y=Y, values=check_values)
    return m2.loss_and_grads(params, x_l, y_l, x_u, eps, config, beta=checks.BETA(beta, "beta"))


def init_params(config, backend):
    """core.vae.init_params for a VAEConfig (or AEConfig, M2Config)."""
    if not isinstance(config, vae.VAEConfig):
        raise InputError(f"init_params needs a VAEConfig, AEConfig or M2Config, got {type(config).__name__}")
    return vae.init_params(config, backend)


def _check_grads(params, grads, name):
    """Refuse grads that do not match params key for key and shape for shape (no silent broadcast)."""
    if not isinstance(grads, dict):
        raise InputError(f"{name}.step needs grads as a dict like params, got {type(grads).__name__}")
    missing = [k for k in params if k not in grads]
    wrong = [f"{k} {tuple(getattr(grads[k], 'shape', ()))} (the parameter is {tuple(p.shape)})"
             for k, p in params.items() if k in grads and tuple(getattr(grads[k], "shape", ())) != tuple(p.shape)]
    if missing or wrong:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + wrong
        raise InputError(f"{name}.step: the gradients do not fit the parameters ({'; '.join(problems)}): pass "
                         "the grads that loss_and_grads returned for these params")


class SGD(optim.SGD):
    """core.optim.SGD whose step first holds grads against params (tinyvae.SGD)."""

    def step(self, params, grads):
        _check_grads(params, grads, "SGD")
        return super().step(params, grads)


class Adam(optim.Adam):
    """core.optim.Adam whose step first holds grads against params (tinyvae.Adam)."""

    def step(self, params, grads):
        _check_grads(params, grads, "Adam")
        return super().step(params, grads)
