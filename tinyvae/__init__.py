"""tinyvae: a variational autoencoder from first principles.

Every forward and backward pass is written by hand and checked against finite
differences. The math is tinyvae/core/ (read it in the order its __init__
gives); the names below are the checked public entry points (api.py), which
hold their arguments against the rules in checks.py before calling the core.
Training, data, pictures and files are at the edge: train, data, plots, checkpoint.
"""
from .backend import Backend, get_backend, namespace_of, to_numpy
from .errors import BackendError, CheckpointError, DataError, InputError, TinyVAEError
from .core.vae import VAEConfig
from .api import SGD, Adam, init_params, loss_and_grads

__version__ = "0.1.0"

__all__ = [
    "Backend", "get_backend", "namespace_of", "to_numpy",
    "TinyVAEError", "InputError", "BackendError", "DataError", "CheckpointError",
    "VAEConfig", "init_params", "loss_and_grads", "SGD", "Adam",
]
