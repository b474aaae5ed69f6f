"""tinyvae: a variational autoencoder from first principles.

Every forward and backward pass is written by hand and checked against
finite differences. Read in this order: backend, layers, distributions,
nets, vae, optim, gradcheck; then train, data and plots at the edge.
"""
from .backend import Backend, get_backend, namespace_of, to_numpy
from .errors import BackendError, CheckpointError, DataError, InputError, TinyVAEError
from .vae import VAEConfig, init_params, loss_and_grads
from .optim import SGD, Adam

__version__ = "0.1.0"

__all__ = [
    "Backend", "get_backend", "namespace_of", "to_numpy",
    "TinyVAEError", "InputError", "BackendError", "DataError", "CheckpointError",
    "VAEConfig", "init_params", "loss_and_grads", "SGD", "Adam",
]
