"""The capstone: the learner's passing pieces inside the real model, trained beside tinyvae's own.

`plugged(functions)` puts the learner's functions where the model looks its pieces up (the
dense layer's pair on nets.Dense, the activation table, the chain's pieces in core.vae's
namespace and in the learner's own chain's) and puts tinyvae's back afterwards, whatever
happens; Adam is the optimizer object the loop is given. `one_epoch_neg_elbo` trains one epoch
with train.train_epoch and scores the test set with train.evaluate, exactly as `fit` does,
so with tinyvae's own functions plugged in it gives tinyvae's number bit for bit.
docs/exercises.md#the-capstone
"""
from __future__ import annotations

from contextlib import contextmanager

from ..backend import get_backend
from ..core import distributions, layers, nets, vae
from ..core.optim import Adam
from ..train import evaluate, train_epoch

# The pieces the MNIST VAE (784-400-20, ReLU, Bernoulli, Adam) runs, in the order of the exercises.
USED = ("affine", "relu", "bernoulli", "reparameterize", "kl", "neg_elbo", "adam")
ACTIVATIONS = ("relu", "sigmoid", "softplus")
CHAIN_PIECES = {"bernoulli": "bernoulli_nll_backward", "reparameterize": "reparameterize_backward",
                "kl": "kl_normal_backward", "neg_elbo": "neg_elbo_backward"}


class LearnerAdam:
    """Adam's loop around the learner's adam_step(p, g, m, v, t, lr, b1, b2, eps) -> (p, m, v)."""

    def __init__(self, params, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        self.one_step, self.lr, (self.b1, self.b2), self.eps, self.t = step, lr, betas, eps, 0
        self.m = {k: p * 0.0 for k, p in params.items()}
        self.v = {k: p * 0.0 for k, p in params.items()}

    def step(self, params, grads):
        self.t += 1
        for k in params:
            params[k], self.m[k], self.v[k] = self.one_step(params[k], grads[k], self.m[k], self.v[k], self.t,
                                                            self.lr, self.b1, self.b2, self.eps)


@contextmanager
def plugged(functions: dict):
    """Within the block, the model runs functions[name] for each exercise name given; afterwards its own again."""
    saved = []

    def put(owner, key, value):
        is_dict = isinstance(owner, dict)
        saved.append((owner, key, owner[key] if is_dict else getattr(owner, key)))
        if is_dict:
            owner[key] = value
        else:
            setattr(owner, key, value)

    try:
        if "affine" in functions:
            put(nets.Dense, "OP", (layers.affine_forward, functions["affine"]))
        for name in ACTIVATIONS:
            if name in functions:
                put(layers.ACTIVATIONS, name, (layers.ACTIVATIONS[name][0], functions[name]))
        for name, attr in CHAIN_PIECES.items():
            if name in functions:
                put(vae, attr, functions[name])
        chain = functions.get("neg_elbo")
        if chain is not None and getattr(chain, "__globals__", None) is not vae.__dict__:
            for name, attr in CHAIN_PIECES.items():    # the learner's chain calls what its file imported
                if name in functions and name != "neg_elbo" and attr in chain.__globals__ \
                        and chain.__globals__[attr] is getattr(distributions, attr):
                    put(chain.__globals__, attr, functions[name])
        yield
    finally:
        for owner, key, old in reversed(saved):
            if isinstance(owner, dict):
                owner[key] = old
            else:
                setattr(owner, key, old)


def one_epoch_neg_elbo(x_train, x_test, config, tconfig, functions=None, dtype="float64", progress=False) -> float:
    """Train config's VAE for one epoch from its seed with `functions` plugged in; the test -ELBO, nats per image.

    x_train, x_test: host (N, D) float pixels in [0, 1]. The noise, the shuffle and the initial
    weights come from tconfig.seed's streams, as in `fit`, so two calls differ only by the pieces.
    """
    functions = functions or {}
    backend = get_backend("numpy", seed=tconfig.seed, dtype=dtype)
    x, xt = backend.asarray(x_train), backend.asarray(x_test)
    with plugged(functions):
        backend.reseed()                                          # init_params draws from stream (seed,)
        params = vae.init_params(config, backend)
        optimizer = (LearnerAdam(params, functions["adam"], lr=tconfig.lr) if "adam" in functions
                     else Adam(params, lr=tconfig.lr))
        train_epoch(params, optimizer, x, backend, config, tconfig, epoch=1, progress=progress)
        return evaluate(params, xt, backend, config, batch_size=tconfig.eval_batch_size)["neg_elbo"]

