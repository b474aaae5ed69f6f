"""The exercises, in teaching order, and the catalogue of known mistakes: data, not code paths.

Each exercise names the function a learner writes, the package's own function that is its
reference (imported, never copied), the forward the stub gives, how its random cases are
drawn, and a hint. Each known mistake is the reference with one or two lines of its source
changed (`Mistake.edits`): the wrong implementation is built from that edit (mistakes.py), and
a learner's answer that computes what it computes gets its one-line hint.
docs/exercises.md
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..core import conv, layers, vae
from ..core import distributions as dist
from ..core.conv import same_padding
from ..core.layers import log_softmax_forward, one_hot
from ..core.optim import Adam
from ..core.vae import VAEConfig
from . import references as ref
from .trials import Trial, chain_trial, normal, pair_trial


@dataclass(frozen=True)
class Mistake:
    """A wrong formula: `what` it is, the `hint` that fixes it, and the reference's source `edits` ((old, new), ...)."""

    what: str
    hint: str
    edits: tuple


@dataclass(frozen=True)
class Exercise:
    """One function to write. draw(rng, N, i) -> Trial: case i, batch N (N = 1 in case 0)."""

    name: str                      # the command line's name: check affine
    title: str
    function: str                  # what the learner defines
    reference: Callable            # the package's own function
    derivation: str                # docs/<page>.md#<anchor>
    draw: Callable
    given: tuple                   # functions whose source the stub shows (the forward)
    imports: str                   # the stub's import lines
    hint: str
    mistakes: tuple = ()
    doc: str | None = None         # the stub's docstring, where the reference's does not fit
    as_dict: bool = False          # returns {param name: gradient} (the whole chain)
    mutate: Callable | None = None  # whose source the mistakes edit (default: the reference)
    wrap: Callable | None = None    # edited function -> a function with the learner's signature
    also_shown: tuple = ()          # what `solution` prints after the reference: the code it calls


XP = "from tinyvae.core.xp import namespace_of\n"
CONV_IMPORTS = "from tinyvae.core.conv import col2im, im2col, same_padding, zero_pad\n"


# ---- the random cases ------------------------------------------------------------------


def dims(rng, i, n=1, high=5):
    """n feature sizes: 1 to `high` in case 0 (with its batch of 1), 2 to `high` after."""
    sizes = tuple(int(d) for d in rng.integers(1 if i == 0 else 2, high + 1, n))
    return sizes if n > 1 else sizes[0]


def draw_affine(rng, N, i):
    D, H = dims(rng, i, 2)
    return pair_trial(layers.affine_forward, [normal(rng, N, D), normal(rng, D, H), normal(rng, H)], (0, 1, 2),
                      ("dx", "dW", "db"), rng, f"N={N}, D={D}, H={H}")


def _activation(forward, lo_hi=None):
    def draw(rng, N, i):
        D = dims(rng, i)
        if lo_hi:
            x = rng.uniform(*lo_hi, (N, D))              # away from saturation: the differences resolve
        else:
            x = normal(rng, N, D)
            x = x + np.sign(x) * 0.05                    # away from ReLU's kink at 0
        return pair_trial(forward, [x], (0,), ("dx",), rng, f"N={N}, D={D}")
    return draw


def draw_bernoulli(rng, N, i):
    D = dims(rng, i, high=6)
    x = rng.uniform(0, 1, (N, D))
    if i == 2:
        x = np.round(x)                                  # binarized pixels, once
    return pair_trial(dist.bernoulli_nll_forward, [normal(rng, N, D, scale=2.0), x], (0,), ("dlogits",), rng,
                      f"N={N}, D={D}")


def _latent(forward, with_eps):
    def draw(rng, N, i):
        L = dims(rng, i, high=4)
        inputs = [normal(rng, N, L), normal(rng, N, L)] + ([normal(rng, N, L)] if with_eps else [])
        return pair_trial(forward, inputs, (0, 1), ("dmu", "dlogvar"), rng, f"N={N}, L={L}")
    return draw


CHAIN_CONFIGS = (  # case i's model: Bernoulli, learned Gaussian variance, conditional, fixed variance
    dict(activation="tanh"),
    dict(activation="softplus", likelihood="gaussian"),
    dict(activation="tanh", n_classes=2),
    dict(activation="relu", likelihood="gaussian", gaussian_logvar=-1.0, enc_hidden=(4, 3), dec_hidden=(3, 4)),
)


def draw_chain(rng, N, i):
    D, L = dims(rng, 1, high=5), dims(rng, i, high=3)
    config = VAEConfig(**{"input_dim": D, "latent_dim": L, "enc_hidden": (3,), "dec_hidden": (3,),
                          **CHAIN_CONFIGS[i % len(CHAIN_CONFIGS)]})
    params = {k: normal(rng, *s, scale=0.5) for k, s in vae.param_shapes(config).items()}
    x, eps = rng.uniform(0, 1, (N, D)), normal(rng, N, L)
    y = one_hot(rng.integers(0, config.n_classes, N), config.n_classes, like=x) if config.n_classes else None
    variance = "" if config.likelihood == "bernoulli" else (
        ", fixed variance" if config.gaussian_logvar is not None else ", learned variance")
    what = f"{config.likelihood}{variance}{', conditional' if y is not None else ''}, {config.activation}"
    return chain_trial(vae.neg_elbo_forward, params, (x, eps, config, y), rng, f"N={N}, {what}")


def draw_adam(rng, N, i):
    shape = (N, dims(rng, i, high=4))
    t = 1 if i == 0 else int(rng.integers(2, 50))
    g = normal(rng, *shape, scale=10.0 ** rng.uniform(-3, 0))    # small gradients: eps shows
    m, v = (np.zeros(shape), np.zeros(shape)) if t == 1 else (normal(rng, *shape, scale=0.1),
                                                              rng.uniform(0, 1e-3, shape))
    p = normal(rng, *shape)
    hyper = (float(10.0 ** rng.uniform(-3, -1)), float(rng.uniform(0.8, 0.95)), float(rng.uniform(0.9, 0.999)),
             float(10.0 ** rng.uniform(-4, -2)))
    return Trial((p, g, m, v, t, *hyper), ("p", "m", "v"), None, f"p {shape}, t={t}", baseline={0: p})


CONV_KS = ((3, 1), (3, 2), (2, 1))   # (kernel, stride) of cases 0, 1, 2: padding, overlaps, strides


def _conv_sizes(rng, i):
    k, s = CONV_KS[i] if i < len(CONV_KS) else (int(rng.integers(1, 4)), int(rng.integers(1, 3)))
    H, W = dims(rng, 1, 2)
    return H, W, dims(rng, i, high=2), dims(rng, i, high=3), k, s


def draw_col2im(rng, N, i):
    H, W, C, _, k, s = _conv_sizes(rng, i)
    (t, b), (l, r) = same_padding(H, k, s), same_padding(W, k, s)
    xpad = normal(rng, N, H + t + b, W + l + r, C)
    return pair_trial(ref.im2col_forward, [xpad], (0,), ("dxpad",), rng, f"xpad {xpad.shape}, k={k}, s={s}",
                      extra=(k, s, -(-H // s), -(-W // s)), spread=True)


def draw_conv(rng, N, i):
    H, W, C, F, k, s = _conv_sizes(rng, i)
    inputs = [normal(rng, N, H, W, C), normal(rng, k, k, C, F), normal(rng, F)]
    return pair_trial(conv.conv2d_forward, inputs, (0, 1, 2), ("dx", "dW", "db"), rng,
                      f"x {(N, H, W, C)}, k={k}, s={s}, F={F}", extra=(s,))


def draw_conv_transpose(rng, N, i):
    H, W, C, F, k, s = _conv_sizes(rng, i)
    inputs = [normal(rng, N, H, W, C), normal(rng, k, k, F, C), normal(rng, F)]
    return pair_trial(conv.conv2d_transpose_forward, inputs, (0, 1, 2), ("dx", "dW", "db"), rng,
                      f"x {(N, H, W, C)}, k={k}, s={s}, C_out={F}", extra=(s,))


def draw_m2(rng, N, i):
    K = dims(rng, 1, high=4)
    log_pi = log_softmax_forward(normal(rng, N, K, scale=1.5))[0]
    return pair_trial(ref.m2_unlabelled_forward, [5.0 + normal(rng, N, K, scale=3.0), log_pi], (0, 1),
                      ("dL_u", "dlog_pi"), rng, f"N={N}, K={K}")


def _adam_with(step):
    """An edited Adam.step as adam_step: the class with that step, on copies."""
    edited = type("Adam", (Adam,), {"step": step})
    return lambda p, g, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8: ref.adam_step_with(
        edited, p, g, m, v, t, lr, b1, b2, eps)


# ---- the exercises, in teaching order --------------------------------------------------

NO_DY = ("the local derivative without dy", "the chain rule multiplies by the gradient arriving from above: "
                                             "dx = dy * (the derivative)")
SUM_NOT_MEAN = "the gradient of the mean instead of the sum"

EXERCISES = (
    Exercise(
        "affine", "the dense layer", "affine_backward", layers.affine_backward, "docs/gradients.md#affine",
        draw_affine, (layers.affine_forward,), XP,
        """y = x W + b, so each output y_nh = sum_d x_nd W_dh + b_h.
dx = dy W^T    (N, H) @ (H, D) -> (N, D)
dW = x^T dy    (D, N) @ (N, H) -> (D, H): a sum over the batch of each example's outer product
db = sum_n dy  (H,): b is added to every row, so every row's gradient reaches it
Let the shapes lead you: each gradient has the shape of its input, and there is one way to make it.""",
        (Mistake("the transpose of W on the wrong side", "dx = dy W^T: (N, H) @ (H, D); yours is its transpose, "
                 "W dy^T", (("dx = dy @ W.T if need_dx", "dx = W @ dy.T if need_dx"),)),
         Mistake("dW transposed", "dW = x^T dy, (D, N) @ (N, H) -> (D, H): the transpose goes on x, not on dy",
                 (("dW = x.T @ dy", "dW = dy.T @ x"),)),
         Mistake(SUM_NOT_MEAN, "b is added to every row, so db = sum_n dy_n; the loss's 1/N is already inside dy",
                 (("db = xp.sum(dy, axis=0)", "db = xp.mean(dy, axis=0)"),)),
         Mistake("dW divided by N", "dW = x^T dy, a plain sum over the batch: the loss's 1/N is already inside dy",
                 (("dW = x.T @ dy", "dW = x.T @ dy / x.shape[0]"),)))),
    Exercise(
        "relu", "ReLU", "relu_backward", layers.relu_backward, "docs/gradients.md#relu",
        _activation(layers.relu_forward), (layers.relu_forward,), XP,
        """relu'(x) is 1 where x > 0 and 0 elsewhere, so dx = dy * [x > 0].
The cache is y = max(x, 0), and y > 0 exactly where x > 0: the mask can be read from y.""",
        (Mistake("the mask taken from dy", "ReLU passes the gradient where its input was positive: the mask is "
                 "[x > 0] (y > 0 from the cache), not [dy > 0]",
                 (("xp.astype(y > 0, dy.dtype)", "xp.astype(dy > 0, dy.dtype)"),)),
         Mistake(*NO_DY, (("return dy * xp.astype(y > 0, dy.dtype)", "return xp.astype(y > 0, dy.dtype)"),)),
         Mistake("dy times the output", "relu'(x) is the 0/1 mask [x > 0], not y = max(x, 0) itself",
                 (("return dy * xp.astype(y > 0, dy.dtype)", "return dy * y"),)))),
    Exercise(
        "sigmoid", "the sigmoid", "sigmoid_backward", layers.sigmoid_backward, "docs/gradients.md#sigmoid",
        _activation(layers.sigmoid_forward, (-4, 4)), (layers.sigmoid_forward,),
        "from tinyvae.core.layers import sigmoid\n",
        """sigma'(x) = sigma(x) (1 - sigma(x)) = y (1 - y), so dx = dy * y * (1 - y).
The cache is y = sigma(x), not x: no exp is needed.""",
        (Mistake("a missing (1 - y)", "sigma'(x) = sigma(x) (1 - sigma(x)) = y (1 - y)",
                 (("return dy * y * (1.0 - y)", "return dy * y"),)),
         Mistake("sigma applied to the cache again", "the cache is already y = sigma(x): use y (1 - y), "
                 "not sigma(y) (1 - sigma(y))",
                 (("return dy * y * (1.0 - y)", "return dy * sigmoid(y) * (1.0 - sigmoid(y))"),)),
         Mistake(*NO_DY, (("return dy * y * (1.0 - y)", "return y * (1.0 - y)"),)))),
    Exercise(
        "softplus", "softplus", "softplus_backward", layers.softplus_backward, "docs/gradients.md#softplus",
        _activation(layers.softplus_forward, (-4, 4)), (layers.softplus_forward,),
        "from tinyvae.core.layers import sigmoid, softplus\n",
        """softplus(x) = log(1 + e^x), so softplus'(x) = e^x / (1 + e^x) = sigma(x): dx = dy * sigma(x).
The cache is x itself. Use tinyvae.core.layers.sigmoid, which never overflows.""",
        (Mistake("sigma(-x) instead of sigma(x)", "d/dx log(1 + e^x) = e^x / (1 + e^x) = sigma(x); "
                 "sigma(-x) = 1 - sigma(x) is the other one", (("return dy * sigmoid(x)", "return dy * sigmoid(-x)"),)),
         Mistake("softplus itself instead of its derivative", "softplus'(x) = sigma(x)",
                 (("return dy * sigmoid(x)", "return dy * softplus(x)"),)),
         Mistake("e^x without the 1 / (1 + e^x)", "the chain rule on log(u), u = 1 + e^x, divides e^x by u: "
                 "e^x / (1 + e^x) = sigma(x)", (("return dy * sigmoid(x)", "return dy * namespace_of(x).exp(x)"),)))),
    Exercise(
        "bernoulli", "the Bernoulli negative log-likelihood from logits", "bernoulli_nll_backward",
        dist.bernoulli_nll_backward, "docs/gradients.md#bernoulli", draw_bernoulli, (dist.bernoulli_nll_forward,),
        XP + "from tinyvae.core.layers import sigmoid, softplus\n",
        """nll_n = sum_d softplus(a_nd) - x_nd a_nd, so d nll_n / d a_nd = sigma(a_nd) - x_nd.
Each image's row is scaled by its dnll[n] (dnll has shape (N,): broadcast it as dnll[:, None]).
x is data: no gradient is returned for it.""",
        (Mistake("the sign flipped", "x - sigma(a) is the log-likelihood's gradient; the negative "
                 "log-likelihood's is sigma(a) - x",
                 (("return (p - x) * dnll[:, None]", "return (x - p) * dnll[:, None]"),)),
         Mistake("each image's dnll not applied", "image n's row is scaled by dnll[n], where the loss's 1/N "
                 "arrives: (sigma(a) - x) * dnll[:, None]", (("return (p - x) * dnll[:, None]", "return p - x"),)),
         Mistake("the gradient with respect to p, not the logits", "d nll / dp = -x/p + (1-x)/(1-p); times "
                 "dp/da = p (1 - p) it becomes sigma(a) - x",
                 (("return (p - x) * dnll[:, None]", "return (-x / p + (1.0 - x) / (1.0 - p)) * dnll[:, None]"),)),
         Mistake("the mean over pixels instead of the sum", "the NLL sums over an image's pixels: no 1/D",
                 (("return (p - x) * dnll[:, None]", "return (p - x) * dnll[:, None] / x.shape[1]"),)))),
    Exercise(
        "reparameterize", "the reparameterized sample", "reparameterize_backward", dist.reparameterize_backward,
        "docs/gradients.md#reparameterization", _latent(dist.reparameterize_forward, True),
        (dist.reparameterize_forward,), XP,
        """z = mu + sigma * eps with sigma = exp(logvar / 2); eps is fixed (drawn before the forward).
dmu = dz (z moves one for one with mu).
dlogvar = dz * eps * d sigma / d logvar = dz * eps * sigma / 2: logvar is log sigma^2, so sigma = e^(logvar/2).
The cache holds (sigma, eps).""",
        (Mistake("logvar used as log sigma", "logvar is log sigma^2, so sigma = exp(logvar / 2) and "
                 "d sigma / d logvar = sigma / 2: dlogvar = dz * eps * sigma / 2",
                 (("return dz, 0.5 * dz * eps * std", "return dz, dz * eps * std"),)),
         Mistake("exp(logvar) where exp(logvar / 2) belongs", "the sample's scale is sigma = exp(logvar / 2); "
                 "exp(logvar) is the variance: dlogvar = dz * eps * exp(logvar / 2) / 2",
                 (("return dz, 0.5 * dz * eps * std", "return dz, 0.5 * dz * eps * std * std"),)),
         Mistake("dmu scaled by sigma", "z = mu + sigma eps: dz / dmu = 1, so dmu = dz",
                 (("return dz, 0.5 * dz * eps * std", "return dz * std, 0.5 * dz * eps * std"),)),
         Mistake("eps left out of dlogvar", "z depends on logvar through sigma * eps: the frozen eps "
                 "multiplies dlogvar", (("return dz, 0.5 * dz * eps * std", "return dz, 0.5 * dz * std"),)))),
    Exercise(
        "kl", "the Gaussian KL", "kl_normal_backward", dist.kl_normal_backward, "docs/gradients.md#kl",
        _latent(dist.kl_normal_forward, False), (dist.kl_normal_forward,), XP,
        """kl_n = 1/2 sum_j (mu_nj^2 + e^logvar_nj - 1 - logvar_nj).
dmu = mu and dlogvar = (e^logvar - 1) / 2, each row scaled by its image's dkl[n] (dkl[:, None]).
The cache holds (mu, var), var = e^logvar.""",
        (Mistake("the KL's dmu sign", "KL = 1/2 sum (mu^2 + ...), so dmu = +mu dkl: the KL pulls mu towards 0",
                 (("return mu * w, ", "return -mu * w, "),)),
         Mistake("dlogvar without the 1/2", "d/dlogvar of (e^logvar - logvar) / 2 is (e^logvar - 1) / 2",
                 (("0.5 * (var - 1.0) * w", "(var - 1.0) * w"),)),
         Mistake("the -logvar term's -1 left out", "the KL has a -logvar term whose derivative is -1: "
                 "dlogvar = (e^logvar - 1) / 2", (("0.5 * (var - 1.0) * w", "0.5 * var * w"),)),
         Mistake("each image's dkl not applied", "scale image n's row by dkl[n] (dkl[:, None]): the loss's "
                 "1/N and beta arrive there",
                 (("return mu * w, 0.5 * (var - 1.0) * w", "return mu, 0.5 * (var - 1.0)"),)),
         Mistake("logvar used as log sigma", "logvar is log sigma^2, so e^logvar is the variance and "
                 "dlogvar = (e^logvar - 1) / 2, not sigma^4 - 1",
                 (("0.5 * (var - 1.0) * w", "(var * var - 1.0) * w"),)))),
    Exercise(
        "neg_elbo", "the whole VAE chain", "neg_elbo_backward", vae.neg_elbo_backward,
        "docs/gradients.md#the-whole-chain", draw_chain, (vae.neg_elbo_forward,),
        XP + "from tinyvae.core.distributions import (bernoulli_nll_backward, bernoulli_nll_forward, "
             "gaussian_nll_backward,\n    gaussian_nll_forward, kl_normal_backward, kl_normal_forward, "
             "reparameterize_backward, reparameterize_forward)\n"
             "from tinyvae.core.nets import net_backward, net_forward\n"
             "from tinyvae.core.vae import _decoder_logvar, _join\n",
        """Undo the forward's steps 5 to 1, bottom to top, with the pieces already written:
undo 5: dmu_kl, dlogvar_kl = kl_normal_backward(dkl, kl_cache)
undo 4: dout = bernoulli_nll_backward(drecon, recon_cache)  (Gaussian: dout, dlogvar_x = gaussian_nll_backward(...);
        a learned variance's gradient is grads["dec.logvar"])
undo 3: dzy = net_backward(dout, dec_caches, "dec", config.decoder_layers, grads)  fills dec.*; with a label
        (config.n_classes > 0) the decoder read [z | y]: keep dz = dzy[:, :L]
undo 2: dmu_z, dlogvar_z = reparameterize_backward(dz, z_cache)
mu and logvar each reach the loss twice (the sample and the KL): add the two paths
undo 1: dhead = concat([dmu, dlogvar], axis=1), then net_backward(..., "enc", ..., need_dx=False) fills enc.*""",
        (Mistake("the KL's path into logvar dropped", "logvar feeds both the sample and the KL: "
                 "dlogvar = dlogvar_z + dlogvar_kl", (("dlogvar = dlogvar_z + dlogvar_kl", "dlogvar = dlogvar_z"),)),
         Mistake("the KL's path into mu dropped", "mu feeds both the sample and the KL: dmu = dmu_z + dmu_kl",
                 (("dmu = dmu_z + dmu_kl", "dmu = dmu_z"),)),
         Mistake("the sample's path into logvar dropped", "z = mu + exp(logvar / 2) eps depends on logvar too: "
                 "dlogvar = dlogvar_z + dlogvar_kl", (("dlogvar = dlogvar_z + dlogvar_kl", "dlogvar = dlogvar_kl"),)),
         Mistake("dmu and dlogvar swapped in the head", "the head is [mu | logvar]: its gradient is "
                 "[dmu | dlogvar], in that order",
                 (("dhead = xp.concat([dmu, dlogvar], axis=1)", "dhead = xp.concat([dlogvar, dmu], axis=1)"),))),
        doc=None, as_dict=True),
    Exercise(
        "adam", "Adam's update with bias correction", "adam_step", ref.adam_step, "docs/optimizers.md#bias-correction",
        draw_adam, (), "import math\n\n" + XP,
        """m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g * g   (new arrays: leave the inputs as they were)
m_hat = m / (1 - b1**t);  v_hat = v / (1 - b2**t)      t counts from 1, this step included
p_new = p - lr * m_hat / (sqrt(v_hat) + eps)            eps outside the square root
Return (p_new, m, v). The p line of the check measures the step, p_new - p.""",
        (Mistake("Adam without bias correction", "divide m by (1 - b1^t) and v by (1 - b2^t): at t = 1 they hold "
                 "only (1 - b) of g and g^2", (("lr_t = self.lr * sqrt_c2 / (1.0 - b1 ** self.t)", "lr_t = self.lr"),
                                               ("eps_t = self.eps * sqrt_c2", "eps_t = self.eps"))),
         Mistake("only the first moment bias-corrected", "v_hat = v / (1 - b2^t) too",
                 (("lr_t = self.lr * sqrt_c2 / (1.0 - b1 ** self.t)", "lr_t = self.lr / (1.0 - b1 ** self.t)"),
                  ("eps_t = self.eps * sqrt_c2", "eps_t = self.eps"))),
         Mistake("eps inside the square root", "p - lr m_hat / (sqrt(v_hat) + eps): eps is added after the root",
                 (("p -= lr_t * m / (xp.sqrt(v) + eps_t)", "p -= lr_t * m / xp.sqrt(v + eps_t * sqrt_c2)"),))),
        mutate=Adam.step, wrap=_adam_with, also_shown=(ref.adam_step_with, Adam.step)),
    Exercise(
        "col2im", "the im2col adjoint", "col2im", conv.col2im, "docs/gradients.md#conv2d", draw_col2im,
        (conv._tap, conv.im2col), XP,
        """im2col copies xpad[n, s oh + i, s ow + j, c] into cols[(n, oh, ow), (i, j, c)]. Its adjoint
adds every column entry back onto the pixel it was copied from: start from zeros of xpad_shape,
and for each tap (i, j) add the block cols[..., tap, :] onto the strided slice that tap read
(_tap gives it). Pixels read by several windows get the sum.""",
        (Mistake("= where += belongs", "a pixel read by several windows gets the sum of their gradients: add, "
                 "do not overwrite", (("xpad[_tap(i, j, s, OH, OW)] += cols", "xpad[_tap(i, j, s, OH, OW)] = cols"),)),
         Mistake("the kernel taps in the wrong order", "column block t = i k + j is tap (i, j), row i then column j, "
                 "as im2col stacks them", (("i, j = divmod(t, k)", "j, i = divmod(t, k)"),)))),
    Exercise(
        "conv2d", "the 2-D convolution", "conv2d_backward", conv.conv2d_backward, "docs/gradients.md#conv2d",
        draw_conv, (conv.conv2d_forward,), XP + CONV_IMPORTS,
        """With cols = im2col(xpad) (N OH OW, k k C), W2 = W as (k k C, F) and dy2 = dy as (N OH OW, F),
the forward was y2 = cols W2 + b: a dense layer on the windows. So
dW2 = cols^T dy2, db = the sum of dy over N, OH and OW, dcols = dy2 W2^T,
and dx = col2im(dcols) with the padding cropped off (the cache holds the pads).""",
        (Mistake(SUM_NOT_MEAN, "b is added at every output pixel of every image: db sums dy over N, OH and OW",
                 (("db = xp.sum(dy2, axis=0)", "db = xp.mean(dy2, axis=0)"),)),
         Mistake("db summed over the images only", "b is added at every output pixel too: sum dy over N, OH and OW",
                 (("db = xp.sum(dy2, axis=0)", "db = xp.sum(dy, axis=0)"),)),
         Mistake("the padding's gradient kept", "x was padded before the windows were read: crop col2im's result "
                 "back to x's H x W", (("OH, OW)[:, t:t + H, l:l + Wd, :]", "OH, OW)"),)))),
    Exercise(
        "conv2d_transpose", "the transposed convolution", "conv2d_transpose_backward", conv.conv2d_transpose_backward,
        "docs/gradients.md#transposed-conv", draw_conv_transpose, (conv.conv2d_transpose_forward,),
        XP + CONV_IMPORTS,
        """The forward was a conv2d's input-gradient: so its backward is a conv2d forward of dy.
dcols = im2col(pad(dy, pads)) (N H W, k k C_out), with the pads the forward cropped;
dx = dcols W2 reshaped to x's shape (W2 = W as (k k C_out, C_in)); dW2 = dcols^T x2; db = the sum of dy.""",
        (Mistake(SUM_NOT_MEAN, "b is added at every output pixel of every image: db sums dy over N, H s and W s",
                 (("db = xp.sum(xp.reshape(dy, (-1, Cout)), axis=0)",
                   "db = xp.mean(xp.reshape(dy, (-1, Cout)), axis=0)"),)),
         Mistake("the crop's offset lost", "the forward cropped t rows from the top and l columns from the left: "
                 "pad dy back by exactly those pads, ((t, b), (l, r))",
                 (("zero_pad(dy, pads)", "zero_pad(dy, ((0, sum(pads[0])), (0, sum(pads[1]))))"),)))),
    Exercise(
        "m2_unlabelled", "the M2 unlabelled bound", "m2_unlabelled_backward", ref.m2_unlabelled_backward,
        "docs/gradients.md#m2", draw_m2, (ref.m2_unlabelled_forward,), XP,
        """U = mean_n sum_y pi_ny (L_ny + log pi_ny) with pi = e^{log pi}.
dL_u = dU * pi / N: each (image, class) row's -ELBO counts with weight q(y | x) / N.
dlog_pi = dU * pi (L_u + log pi + 1) / N: the product rule on pi (L + log pi), where
d pi / d log pi = pi gives the first term and d (log pi) / d log pi = 1 the +1.""",
        (Mistake("the entropy's gradient without its +1", "d(pi log pi) / dlog pi = pi log pi + pi, since "
                 "pi = e^{log pi}: the +1 is pi's own derivative",
                 (("pi * (L_u + log_pi + 1.0) * w", "pi * (L_u + log_pi) * w"),)),
         Mistake("a missing 1/N", "U is the mean over the N images: every gradient carries 1/N",
                 (("w = dU / N", "w = dU"),)),
         Mistake("the rows weighted 1/K instead of by q(y | x)", "row (n, y)'s L counts with weight q(y | x_n) / N",
                 (("return pi * w, ", "return w / pi.shape[1] + 0.0 * pi, "),)),
         Mistake("only the entropy's gradient", "pi weighs L too: d[pi L] / dlog pi = pi L",
                 (("pi * (L_u + log_pi + 1.0) * w", "pi * (log_pi + 1.0) * w"),))),
        doc="""M2's unlabelled term U = mean_n sum_y pi_ny (L_ny + log pi_ny), pi = e^{log pi}: its backward.

    The part of tinyvae.core.m2.loss_and_grads that weights each stacked (image, class) row
    by q(y | x) and differentiates the entropy. dU is dL/dU (0-d).
    Returns dL_u, each row's weight, and dlog_pi.
    Shapes: dU () -> dL_u (N, K), dlog_pi (N, K).
    Derivation: docs/gradients.md#m2"""),
)

BY_NAME = {e.name: e for e in EXERCISES}
