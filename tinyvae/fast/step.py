"""The VAE's training step on the fast path: the core's loss and gradients, with compiled loops,
fused layer ends and arrays kept from one step to the next.

`FastVAEStep` has the signature of models.vae_step and stands in for it where it applies: NumPy
arrays of one dtype, float32 or float64, Numba installed, a Bernoulli VAE (or CVAE) whose layers
are Dense, Conv, ConvTranspose, Reshape and Flatten with 'relu' or 'linear' activations. Anywhere
else (array-api-strict, CuPy, another dtype, likelihood, layer or activation) it calls the plain
step it was given. `models.for_config(config)` gives each call an adapter with a FastVAEStep of
its own (`fast=False`: the plain step), so each training run owns its workspace.

The step computes what core/vae.py's loss_and_grads computes, step for step:

- each layer runs the matrix multiplies of core/nets.py (the same shapes and operand layouts,
  into kept arrays), each conv over the same passes of the batch as fast/conv.py;
- the rest of a layer is one compiled loop (fast/kernels.py): im2col without a padded copy,
  col2im ending in the transposed conv's bias and activation, bias + activation after a
  multiply, and on the way down the activation undone together with the bias gradient;
- the sampler and the KL are one loop forward and one back, around NumPy's exp;
- the Bernoulli loss and its gradient are the core's NumPy lines, written into kept arrays.

Every loop does the core's arithmetic in the core's order, and every exp, log1p and sum that the
core leaves to NumPy is NumPy's here too: the step's loss and gradients are the plain step's bit
for bit, in float32 and float64, and training on either path gives the same weights
(tests/test_fast_step.py). How it is built, what it changes and what it measured: docs/fast_path.md.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..core import layers as core_layers
from ..core import vae as core_vae
from ..core.conv import same_padding
from ..core.layers import one_hot
from ..core.nets import Conv, ConvTranspose, Dense, Flatten, Reshape
from ..core.vae import VAEConfig, _join, param_shapes
from . import conv as fast_conv
from .optim import available
from .workspace import Workspace

DTYPES = (np.float32, np.float64)


def core_pieces() -> dict:
    """The core's pieces that this step re-implements, as the model looks them up now: each layer
    kind's forward/backward pair, the activations it fuses, and the functions in core/vae.py's
    namespace (the chain's pieces). A learner's function plugged into one of these places
    (tinyvae/exercises/capstone.py's `plugged`, or any monkeypatch) changes this dict."""
    pieces = {f"{cls.__name__}.OP": cls.OP for cls in (Dense, Conv, ConvTranspose)}
    pieces.update({f"ACTIVATIONS[{name!r}]": core_layers.ACTIVATIONS.get(name) for name in ("linear", "relu")})
    pieces.update({f"vae.{name}": value for name, value in vars(core_vae).items() if callable(value)})
    return pieces


CORE_AS_WRITTEN = core_pieces()   # the pieces the fast step was written against, and is tested to equal


def core_as_written() -> bool:
    """True while every piece in core_pieces() is the one tinyvae ships: the fast step computes what
    those pieces compute, so with any of them replaced it must step aside for the plain step."""
    now = core_pieces()
    return now.keys() == CORE_AS_WRITTEN.keys() and all(now[k] is CORE_AS_WRITTEN[k] for k in now)


@dataclass(frozen=True)
class Op:
    """One layer as the fast step runs it. kind: 'dense', 'conv', 'conv_t' or 'view' (Reshape, Flatten).

    name: "enc.1" (its parameters are name + ".W", ".b"); in_shape, out_shape: per example;
    pads: ((top, bottom), (left, right)), a conv's 'same' padding (of the input for a conv, of the
    output for a transposed conv).
    """

    kind: str
    name: str
    in_shape: tuple
    out_shape: tuple
    act: int = 0
    k: int = 1
    s: int = 1
    pads: tuple = ((0, 0), (0, 0))


def plan(layers, in_shape, prefix):
    """The Ops of network `prefix`, or None when a layer or activation has no fast form."""
    from .kernels import ACT

    ops, shape = [], tuple(in_shape)
    for i, layer in enumerate(layers):
        _, out = layer.shapes(shape)
        name = f"{prefix}.{i}"
        if type(layer) in (Reshape, Flatten):
            ops.append(Op("view", name, shape, tuple(out)))
        elif type(layer) in (Dense, Conv, ConvTranspose) and layer.activation in ACT:
            if type(layer) is Dense:
                ops.append(Op("dense", name, shape, tuple(out), ACT[layer.activation]))
            else:
                k, s = layer.kernel, layer.stride
                grid = shape[:2] if type(layer) is Conv else out[:2]   # the padded side
                ops.append(Op("conv" if type(layer) is Conv else "conv_t", name, shape, tuple(out),
                              ACT[layer.activation], k, s, tuple(same_padding(side, k, s) for side in grid)))
        else:
            return None
        shape = tuple(out)
    return tuple(ops)


class FastVAEStep:
    """models.vae_step on the fast path where it applies, else `plain_step` itself. Holds the workspace."""

    def __init__(self, plain_step):
        self.plain_step = plain_step
        self.workspace = Workspace()
        self._plans = {}          # id(config) -> (config, (encoder ops, decoder ops) or None)

    # ---- when it applies ----------------------------------------------------

    def plans(self, config):
        """(encoder ops, decoder ops) of `config`, or None when the fast step does not take it."""
        entry = self._plans.get(id(config))
        if entry is None or entry[0] is not config:
            ops = None
            if config.likelihood == "bernoulli":
                ops = tuple(plan(layers, shape, prefix) for prefix, (layers, shape, _) in config.networks().items())
            entry = self._plans[id(config)] = (config, None if ops is None or None in ops else ops)
        return entry[1]

    def applies(self, params, x, config) -> bool:
        """Numba there, x and every parameter NumPy arrays of x's dtype (float32 or float64), C-contiguous,
        a model plan() takes, and the core's pieces the ones tinyvae ships (none replaced by a learner's)."""
        if not (isinstance(x, np.ndarray) and x.dtype in DTYPES and x.flags.c_contiguous and available()):
            return False
        if not core_as_written():
            return False
        for p in params.values():
            if not (isinstance(p, np.ndarray) and p.dtype == x.dtype and p.flags.c_contiguous):
                return False
        return self.plans(config) is not None

    # ---- the step -------------------------------------------------------------

    def __call__(self, params, batch, backend, config, beta=1.0):
        """({'loss', 'recon', 'kl'}, grads), as models.vae_step; the eps drawn here, as there."""
        x = batch["x"]
        if not self.applies(params, x, config):
            return self.plain_step(params, batch, backend, config, beta)
        eps = backend.normal((x.shape[0], config.latent_dim))                      # (B, L)
        y = one_hot(batch["y"], config.n_classes, like=x) if config.n_classes else None
        loss, recon, kl, grads = self.loss_and_grads(params, x, eps, config, y, beta)
        return {"loss": loss, "recon": recon, "kl": kl}, grads

    def loss_and_grads(self, params, x, eps, config, y=None, beta=1.0):
        """core.vae.loss_and_grads on the fast path: (loss, recon mean, kl mean, grads), all fresh arrays.

        The steps and their numbers are the core's (docs/gradients.md#the-whole-chain).
        """
        from .kernels import compiled

        enc_ops, dec_ops = self.plans(config)
        N, L, ws = x.shape[0], config.latent_dim, self.workspace
        # 1. encoder: [x | y] -> head = [mu | logvar]                        (N, 2L)
        head, enc_caches = self.net_forward(params, enc_ops, _join(x, y))
        # 2. sample: z = mu + exp(logvar / 2) * eps, and 5. the KL's terms  (N, L)
        std, var, z, terms = (ws.get(name, (N, L), x.dtype) for name in ("std", "var", "z", "kl terms"))
        np.exp(np.multiply(head[:, L:], 0.5, out=std), out=std)              # sigma = e^(logvar / 2)
        np.exp(head[:, L:], out=var)                                         # e^logvar
        compiled("sample_kl")(head, eps, std, var, z, terms)
        # 3. decoder: [z | y] -> logits                                      (N, D)
        out, dec_caches = self.net_forward(params, dec_ops, _join(z, y))
        # 5. KL per image                                                    (N,)
        kl = 0.5 * np.sum(terms, axis=1)
        # 6. loss: the batch means, the KL weighted by beta
        drecon = np.full((N,), 1.0 / N, dtype=x.dtype)
        dkl = drecon if beta == 1.0 else beta * drecon
        # 4 and undo 4: -log p(x | z, y) per image and dlogits              (N,), (N, D)
        recon, dlogits = bernoulli_loss_grad(ws, out.reshape((N, -1)), x, drecon)
        recon_mean, kl_mean = np.mean(recon), np.mean(kl)
        loss = recon_mean + beta * kl_mean
        grads = {}
        # undo 3: decoder layers, last first -> d[z | y]; fills dec.*
        dzy = self.net_backward(dlogits.reshape(out.shape), dec_caches, params, dec_ops, grads, True)
        # undo 2 and 5: the sample's and the KL's shares of dmu, dlogvar, added    (N, 2L)
        dhead = ws.get("dhead", (N, 2 * L), x.dtype)
        compiled("sample_kl_grads")(dzy[:, :L], eps, std, head, var, dkl, dhead)
        # undo 1: the encoder layers; fills enc.*
        self.net_backward(dhead, enc_caches, params, enc_ops, grads, False)
        return loss, recon_mean, kl_mean, grads

    # ---- the two passes over a network -------------------------------------------

    def net_forward(self, params, ops, h):
        """core.nets.net_forward on the fast path; returns (out, caches), out in the workspace."""
        from .kernels import compiled

        N, ws, caches = h.shape[0], self.workspace, []
        for op in ops:
            if op.kind == "view":
                caches.append(None)
                h = h.reshape((N, *op.out_shape))
                continue
            W, b = params[op.name + ".W"], params[op.name + ".b"]
            out = ws.get(op.name + ".y", (N, *op.out_shape), h.dtype)
            F = op.out_shape[-1]
            (t, _), (l, _) = op.pads
            if op.kind == "dense":
                np.matmul(h, W, out=out)                                            # x W
                compiled("bias_act")(out, b, op.act)                                # act(x W + b)
            elif op.kind == "conv":
                OH, OW = op.out_shape[:2]
                W2, out2 = W.reshape((-1, F)), out.reshape((-1, F))                 # (k k C, F), (N OH OW, F)
                for p in fast_conv.batch_slices(h, fast_conv.conv_entries(h.shape, W.shape, op.s)):
                    rows = slice(p.start * OH * OW, p.stop * OH * OW)
                    cols = ws.get("cols", (rows.stop - rows.start, W2.shape[0]), h.dtype)
                    compiled("im2col")(h, op.k, op.s, t, l, OH, OW, p.start, cols)
                    np.matmul(cols, W2, out=out2[rows])                             # cols W2
                compiled("bias_act")(out2, b, op.act)                               # act(cols W2 + b)
            else:                                                                    # conv_t
                H, Wd, Cin = op.in_shape
                W2, h2 = W.reshape((-1, Cin)), h.reshape((-1, Cin))                 # (k k F, C_in), (N H W, C_in)
                for p in fast_conv.batch_slices(h, fast_conv.conv_transpose_entries(h.shape, W.shape, op.s)):
                    rows = slice(p.start * H * Wd, p.stop * H * Wd)
                    cols = ws.get("cols", (rows.stop - rows.start, W2.shape[0]), h.dtype)
                    np.matmul(h2[rows], W2.T, out=cols)                             # x2 W2^T
                    compiled("col2im")(cols, op.k, op.s, t, l, H, Wd, p.start, out, b, op.act, _EMPTY4[h.dtype.type])
            caches.append((h, out))
            h = out
        return h, caches

    def net_backward(self, dout, caches, params, ops, grads, need_dx):
        """core.nets.net_backward on the fast path: fills grads (fresh arrays), returns d(input) or None.

        dout is overwritten (each layer's activation is undone in place).
        Derivation: docs/gradients.md#the-net-stack (the same passes, in the same order)
        """
        from .kernels import compiled

        N, ws = dout.shape[0], self.workspace
        first = next(i for i, op in enumerate(ops) if op.kind != "view")
        for i in reversed(range(len(ops))):
            op = ops[i]
            if i < first and not need_dx:
                return None
            if op.kind == "view":
                dout = dout.reshape((N, *op.in_shape))
                continue
            h, out = caches[i]
            W = params[op.name + ".W"]
            F = op.out_shape[-1]
            (t, _), (l, _) = op.pads
            dy2, y2 = dout.reshape((-1, F)), out.reshape((-1, F))
            # the activation undone in place, and db = the sum of dy over the batch
            if F > 1:
                db = np.empty(F, dtype=dout.dtype)
                compiled("act_backward_sum")(dy2, y2, op.act, db, _block(F, dout.itemsize))
            else:   # one column: NumPy sums it pairwise, as the core's sum does
                if op.act:
                    compiled("act_backward_sum")(dy2, y2, op.act, np.empty(1, dout.dtype), 1)
                db = np.sum(dy2, axis=0)
            dx = ws.get(op.name + ".dx", (N, *op.in_shape), dout.dtype) if (need_dx or i > first) else None
            if op.kind == "dense":
                dW = np.matmul(h.T, dy2)                                            # x^T dy
                if dx is not None:
                    np.matmul(dy2, W.T, out=dx)                                     # dy W^T
            elif op.kind == "conv":
                OH, OW = op.out_shape[:2]
                W2, dW = W.reshape((-1, F)), None
                for p in fast_conv.batch_slices(h, fast_conv.conv_entries(h.shape, W.shape, op.s)):
                    rows = slice(p.start * OH * OW, p.stop * OH * OW)
                    cols = ws.get("cols", (rows.stop - rows.start, W2.shape[0]), h.dtype)
                    compiled("im2col")(h, op.k, op.s, t, l, OH, OW, p.start, cols)
                    dW = _accumulate(dW, cols.T, dy2[rows], ws)                      # cols^T dy, over the passes
                    if dx is not None:
                        np.matmul(dy2[rows], W2.T, out=cols)                        # dcols = dy W2^T
                        compiled("col2im")(cols, op.k, op.s, t, l, OH, OW, p.start, dx,
                                           _EMPTY1[h.dtype.type], 0, _EMPTY4[h.dtype.type])
            else:                                                                    # conv_t
                H, Wd, Cin = op.in_shape
                W2, h2, dW = W.reshape((-1, Cin)), h.reshape((-1, Cin)), None
                for p in fast_conv.batch_slices(h, fast_conv.conv_transpose_entries(h.shape, W.shape, op.s)):
                    rows = slice(p.start * H * Wd, p.stop * H * Wd)
                    cols = ws.get("cols", (rows.stop - rows.start, W2.shape[0]), h.dtype)
                    compiled("im2col")(dout, op.k, op.s, t, l, H, Wd, p.start, cols)   # dcols = im2col(pad(dy))
                    dW = _accumulate(dW, cols.T, h2[rows], ws)                       # dcols^T x2
                    if dx is not None:
                        np.matmul(cols, W2, out=dx.reshape((-1, Cin))[rows])        # dcols W2
            grads[op.name + ".W"] = dW.reshape(W.shape)
            grads[op.name + ".b"] = db
            dout = dx
        return dout


def bernoulli_loss_grad(ws, a, x, dnll):
    """core/distributions.py's bernoulli_nll_forward and _backward in one function, into kept arrays:

    nll[n] = sum_d softplus(a) - x a,  softplus(a) = max(a, 0) + log1p(e^-|a|);  da = (sigma(a) - x) dnll[n],
    sigma(a) = exp(a - softplus(a)). The same NumPy operations as the core's lines, in their order,
    each writing into the workspace (`out=`): the same numbers bit for bit, and no fresh memory.
    Shapes: a, x (N, D); dnll (N,) -> nll (N,), da (N, D), both in the workspace.
    """
    N = a.shape[0]
    sp, t, da = (ws.get(name, a.shape, a.dtype) for name in ("softplus", "bernoulli tmp", "dlogits"))
    nll = ws.get("recon", (N,), a.dtype)
    np.exp(np.negative(np.abs(a, out=sp), out=sp), out=sp)           # e^-|a|
    np.add(np.maximum(a, 0.0, out=t), np.log1p(sp, out=sp), out=sp)  # softplus(a)
    np.sum(np.subtract(sp, np.multiply(x, a, out=t), out=t), axis=1, out=nll)   # sum_d softplus(a) - x a
    np.exp(np.subtract(a, sp, out=t), out=t)                         # sigma(a)
    np.multiply(np.subtract(t, x, out=t), dnll[:, None], out=da)     # (sigma(a) - x) dnll
    return nll, da


def _block(F, itemsize):
    """Columns per share of act_backward_sum: a cache line's worth when the threads share the columns."""
    from . import kernels

    return 64 // itemsize if kernels.PARALLEL else F


def _accumulate(total, a, b, ws):
    """total + a @ b, the first pass's product a fresh array (as fast/conv.py sums dW over the passes)."""
    if total is None:
        return np.matmul(a, b)
    part = ws.get("dW part", total.shape, total.dtype)
    np.matmul(a, b, out=part)
    total += part
    return total


# Empty arrays for the optional arguments of col2im (no bias, no mask), one per dtype.
_EMPTY1 = {d: np.empty((0,), d) for d in DTYPES}
_EMPTY4 = {d: np.empty((0, 0, 0, 0), d) for d in DTYPES}


def fast_model(model, plain_step):
    """`model` (a models.Model) with its train_step a FastVAEStep of its own when that step is
    `plain_step` (models.vae_step); any other model as it is."""
    return replace(model, train_step=FastVAEStep(plain_step)) if model.train_step is plain_step else model


def compile_loops(dtype="float32") -> float:
    """Compile every loop of the fast step for `dtype` (or load it from Numba's disk cache), on a tiny
    conv VAE; returns the seconds it took. A step does this by itself on its first call; the
    benchmarks call it first, so as to report the time apart and keep it out of a peak-memory figure."""
    import time

    t0 = time.perf_counter()
    config = VAEConfig(input_dim=16, latent_dim=1,
                       encoder=(Reshape((4, 4, 1)), Conv(1, 3, 2, "relu"), Flatten(), Dense(2)),
                       decoder=(Dense(4, "relu"), Reshape((2, 2, 1)), ConvTranspose(1, 3, 2, "relu"), Flatten()))
    params = {k: np.full(shape, 0.5, dtype) for k, shape in param_shapes(config).items()}
    FastVAEStep(None).loss_and_grads(params, np.full((2, 16), 0.5, dtype), np.zeros((2, 1), dtype), config)
    return time.perf_counter() - t0
