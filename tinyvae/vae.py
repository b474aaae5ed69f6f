"""The VAE (and the conditional VAE): configuration, parameters, and the loss with all its gradients.

Encoder  [x | y] (N, D + K) -> network -> head (N, 2L) -> mu, logvar (N, L) each
Sampler  z = mu + exp(logvar / 2) * eps,  eps ~ N(0, I) passed in
Decoder  [z | y] (N, L + K) -> network -> out (N, D): Bernoulli logits or Gaussian means

y is a one-hot label (N, K) for the conditional VAE (config.n_classes = K > 0)
and absent (K = 0) for the plain VAE. The loss (what we minimise) is

    L = mean_n [ recon_n + beta kl_n ],
    recon_n = -log p(x_n | z_n, y_n)               (summed over the D pixels)
    kl_n    = KL(q(z | x_n, y_n) || N(0, I))        (summed over the L latent dims)

and at beta = 1 it is the negative ELBO in nats per image. The per-image chain
is one forward/backward pair, `neg_elbo_forward` / `neg_elbo_backward`, that
every VAE-like model reuses; `loss_and_grads` adds only the batch mean and beta.
Derivation of every step: docs/gradients.md#the-whole-chain
"""
from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass, fields

from .backend import device_of, namespace_of
from .distributions import (
    LOG_2PI,
    bernoulli_nll_backward,
    bernoulli_nll_forward,
    gaussian_nll_backward,
    gaussian_nll_forward,
    kl_normal_backward,
    kl_normal_forward,
    reparameterize_backward,
    reparameterize_forward,
)
from .errors import InputError
from .layers import ACTIVATIONS, one_hot, sigmoid
from .nets import (
    layer_from_dict,
    layer_to_dict,
    mlp,
    net_backward,
    net_forward,
    output_shape,
)
from .nets import param_shapes as net_param_shapes

LIKELIHOODS = ("bernoulli", "gaussian")
INITS = ("glorot_he", "pytorch", "keras")
RELU_LIKE = ("relu", "leaky_relu")   # layers followed by these get He's init variance


def _positive_int(value, what):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def _sizes(value, what):
    """A tuple of positive layer sizes; a bare int or a string is refused (not split into digits)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
        raise InputError(f"{what} must be a tuple of layer sizes such as (400,), got {value!r}")
    return tuple(_positive_int(h, f"each size in {what}") for h in value)


def _layers(value, what):
    if value is None:
        return None
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, (tuple, list)):
        raise InputError(f"{what} must be a tuple of layer specs such as (Dense(400, 'relu'), Dense(40)), "
                         f"got {value!r}")
    return tuple(layer_from_dict(layer) for layer in value)


@dataclass(frozen=True)
class VAEConfig:
    """Everything that fixes the model's shape. Defaults: the PyTorch example VAE (784-400-20).

    The networks: `encoder` and `decoder` are tuples of layer specs (tinyvae.nets),
    e.g. nets.keras_conv_encoder(2). Left None, each is the MLP of the shorthand
    fields: enc_hidden / dec_hidden sizes with `activation` after every hidden
    layer and a linear output layer (nets.mlp). The encoder must map (D + K,) to
    (2L,) (mu and logvar side by side), the decoder (L + K,) to (D,); a mismatch
    is refused here, naming the layer.
    n_classes: K > 0 makes the conditional VAE: a one-hot y joins x and z.
    gaussian_logvar: for the Gaussian likelihood, a fixed log sigma^2 shared by
    all pixels, or None to learn one log sigma^2 per pixel (parameter 'dec.logvar').
    init: how init_params draws the weights, 'glorot_he', 'pytorch' or 'keras' (see there).
    """

    input_dim: int = 784
    enc_hidden: tuple = (400,)
    dec_hidden: tuple = (400,)
    latent_dim: int = 20
    activation: str = "relu"
    likelihood: str = "bernoulli"
    gaussian_logvar: float | None = None
    init: str = "glorot_he"
    encoder: tuple | None = None
    decoder: tuple | None = None
    n_classes: int = 0

    def __post_init__(self):
        set_ = functools.partial(object.__setattr__, self)
        set_("input_dim", _positive_int(self.input_dim, "input_dim"))
        set_("latent_dim", _positive_int(self.latent_dim, "latent_dim"))
        # Lists from JSON or argparse become tuples, so configs compare equal.
        set_("enc_hidden", _sizes(self.enc_hidden, "enc_hidden"))
        set_("dec_hidden", _sizes(self.dec_hidden, "dec_hidden"))
        set_("encoder", _layers(self.encoder, "encoder"))
        set_("decoder", _layers(self.decoder, "decoder"))
        if isinstance(self.n_classes, bool) or not isinstance(self.n_classes, numbers.Integral) \
                or self.n_classes < 0:
            raise InputError(f"n_classes must be an integer >= 0 (0: no label), got {self.n_classes!r}")
        set_("n_classes", int(self.n_classes))
        if self.activation not in ACTIVATIONS:
            raise InputError(
                f"unknown activation {self.activation!r}: choose one of {', '.join(ACTIVATIONS)}"
            )
        if self.likelihood not in LIKELIHOODS:
            raise InputError(
                f"unknown likelihood {self.likelihood!r}: choose one of {', '.join(LIKELIHOODS)}"
            )
        if self.init not in INITS:
            raise InputError(f"unknown init {self.init!r}: choose one of {', '.join(INITS)}")
        if self.gaussian_logvar is not None and not (
                isinstance(self.gaussian_logvar, numbers.Real) and math.isfinite(self.gaussian_logvar)):
            raise InputError(f"gaussian_logvar must be a finite number or None, got {self.gaussian_logvar!r}")
        param_shapes(self)  # shape inference: refuses networks that do not fit, naming the layer

    @property
    def encoder_layers(self) -> tuple:
        """The encoder's layer specs: `encoder`, or the MLP of enc_hidden ending in 2L."""
        if self.encoder is not None:
            return self.encoder
        return mlp(self.enc_hidden, 2 * self.latent_dim, self.activation)

    @property
    def decoder_layers(self) -> tuple:
        """The decoder's layer specs: `decoder`, or the MLP of dec_hidden ending in D."""
        if self.decoder is not None:
            return self.decoder
        return mlp(self.dec_hidden, self.input_dim, self.activation)

    def networks(self) -> tuple:
        """(prefix, layers, input size, output size, what the output is) of each network."""
        D, L, K = self.input_dim, self.latent_dim, self.n_classes
        return (("enc", self.encoder_layers, D + K, 2 * L, "2 * latent_dim (mu and logvar)"),
                ("dec", self.decoder_layers, L + K, D, "input_dim"))

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("encoder", "decoder", "classifier"):
            if name not in d:
                continue
            if d[name] is not None:
                d[name] = [layer_to_dict(layer) for layer in d[name]]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "VAEConfig":
        """Read a to_dict record; older records (no encoder/decoder/n_classes) mean the MLP."""
        if not isinstance(d, dict):
            raise InputError(f"a VAEConfig record must be a dict, got {type(d).__name__}")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise InputError(f"unknown VAEConfig fields {sorted(unknown)}")
        return cls(**d)


# ---------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _param_shapes(config) -> tuple:
    shapes = {}
    for prefix, layers, in_dim, out_dim, what in config.networks():
        name = {"enc": "encoder", "dec": "decoder", "cls": "classifier"}.get(prefix, prefix)
        out = output_shape(layers, (in_dim,), name)
        if out != (out_dim,):
            raise InputError(f"{name} ends in {out} but {what} is {out_dim}: make its last layer "
                             f"Dense({out_dim}) (after Flatten() for images); conv strides must divide "
                             f"the image side")
        shapes.update(net_param_shapes(layers, (in_dim,), prefix))
    if config.likelihood == "gaussian" and config.gaussian_logvar is None:
        shapes["dec.logvar"] = (config.input_dim,)
    return tuple(shapes.items())


def param_shapes(config: VAEConfig) -> dict:
    """{name: shape} of every parameter init_params makes, in its order (no arrays made)."""
    return dict(_param_shapes(config))


def _layer_activations(config: VAEConfig) -> dict:
    """{'enc.0': 'relu', ...}: the activation after each layer with parameters."""
    return {f"{prefix}.{i}": layer.activation
            for prefix, layers, *_ in config.networks()
            for i, layer in enumerate(layers) if layer.PARAMS}


def init_params(config: VAEConfig, backend) -> dict:
    """Initial parameters, drawn from the backend's generator, layer by layer, W then b.

    fan_in = prod(W.shape[:-1]) and fan_out = prod(W.shape[:-2]) * W.shape[-1]
    (a dense W (D, H): D and H; a conv W (k, k, C, F): k k C and k k F; a
    transposed conv W (k, k, C_out, C_in): k k C_out, as PyTorch and Keras count it).

    config.init = 'glorot_he' (the default): biases zero; weights normal with
    He variance 2 / fan_in for layers followed by ReLU-like activations, and
    Glorot variance 2 / (fan_in + fan_out) for tanh/sigmoid/softplus and for the
    linear output layers (the head and the decoder output).

    config.init = 'pytorch': weights and biases uniform on
    [-1/sqrt(fan_in), 1/sqrt(fan_in)], the default of PyTorch's nn.Linear and
    nn.Conv2d, and so of the PyTorch example VAE (variance 1 / (3 fan_in)).

    config.init = 'keras': weights uniform on [-l, l], l = sqrt(6 / (fan_in +
    fan_out)) (Glorot's uniform, the default of Keras's Dense, Conv2D and
    Conv2DTranspose), biases zero; so of the Keras conv VAE example. (Keras's
    example has two Dense(L) heads where tinyvae has one Dense(2L), so its
    heads' l is a little larger: fan_out L instead of 2L.)
    """
    activation_after = _layer_activations(config)
    shapes = param_shapes(config)
    params = {}
    for name, shape in shapes.items():
        if name == "dec.logvar":
            params[name] = backend.zeros(shape)
            continue
        layer, kind = name.rsplit(".", 1)
        if kind == "b":
            continue                                   # drawn with its W, just below
        fan_in = math.prod(shape[:-1])
        fan_out = math.prod(shape[:-2]) * shape[-1]
        units = shapes[f"{layer}.b"]                   # (H,), (F,), or (C_out,) for a transposed conv
        if config.init == "pytorch":
            bound = 1.0 / math.sqrt(fan_in)
            W = (2.0 * backend.uniform(shape) - 1.0) * bound
            b = (2.0 * backend.uniform(units) - 1.0) * bound
        elif config.init == "keras":
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            W = (2.0 * backend.uniform(shape) - 1.0) * limit
            b = backend.zeros(units)
        else:
            he = activation_after[layer] in RELU_LIKE
            var = 2.0 / fan_in if he else 2.0 / (fan_in + fan_out)
            W = backend.normal(shape) * math.sqrt(var)
            b = backend.zeros(units)
        params[f"{layer}.W"], params[f"{layer}.b"] = W, b
    return params


def count_params(params: dict) -> int:
    return sum(math.prod(p.shape) for p in params.values())


# ---------------------------------------------------------------------------
# Input checks: one clear line instead of a silent NaN
# ---------------------------------------------------------------------------


def _check_array(a, name):
    if not hasattr(a, "shape") or not hasattr(a, "dtype"):
        fix = "draw it with backend.normal((N, latent_dim))" if name == "eps" else \
            "convert it with backend.asarray(...) first"
        raise InputError(f"{name} is a {type(a).__name__}, not an array: {fix}")


def check_params(params, config: VAEConfig):
    """Raise InputError if `params` lacks a parameter of `config` or has one of the wrong shape."""
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


def check_batch(x, params, config: VAEConfig, eps=None, check_values=True, y=None):
    """Raise InputError naming the problem if `x` (or `eps`, `y`) cannot go into the model.

    Shape and dtype checks read only metadata. The value checks (NaN/inf in x
    and eps, pixels in [0, 1] for the Bernoulli likelihood, one-hot rows of y)
    read the data, which on a GPU waits for it: training checks the whole data
    set once and then skips them (docs/backend.md#pitfall-2-host-synchronisation).
    """
    check_params(params, config)
    dtype = next(iter(params.values())).dtype
    _check_array(x, "x")
    shape = tuple(x.shape)
    if len(shape) != 2 or shape[1] != config.input_dim:
        raise InputError(
            f"x has shape {shape}, expected (N, {config.input_dim}): "
            f"flatten each image to {config.input_dim} values, e.g. x.reshape(N, -1)"
        )
    if shape[0] < 1:
        raise InputError("x is an empty batch (N = 0): pass at least one image")
    if x.dtype != dtype:
        raise InputError(
            f"x has dtype {x.dtype}, the model is {dtype}: convert pixels to {dtype} "
            f"in [0, 1] first (e.g. backend.asarray(images / 255))"
        )
    if eps is not None:
        _check_array(eps, "eps")
        if tuple(eps.shape) != (shape[0], config.latent_dim) or eps.dtype != dtype:
            raise InputError(
                f"eps has shape {tuple(eps.shape)} and dtype {eps.dtype}, expected "
                f"({shape[0]}, {config.latent_dim}) {dtype}: draw it with backend.normal((N, latent_dim))"
            )
    K = config.n_classes
    if K and y is None and eps is not None:        # data alone (eps None) may come without labels
        raise InputError(f"this is a conditional VAE (n_classes={K}): pass y, the one-hot labels "
                         f"(N, {K}), e.g. one_hot(labels, {K}, like=x)")
    if not K and y is not None:
        raise InputError("y was passed but the config has n_classes=0: set n_classes to make a "
                         "conditional VAE, or drop y")
    if y is not None:
        _check_array(y, "y")
        if tuple(y.shape) != (shape[0], K) or y.dtype != dtype:
            raise InputError(f"y has shape {tuple(y.shape)} and dtype {y.dtype}, expected "
                             f"({shape[0]}, {K}) {dtype}: one-hot labels, e.g. one_hot(labels, {K}, like=x)")
    if not check_values:
        return
    xp = namespace_of(x)
    if not bool(xp.all(xp.isfinite(x))):
        raise InputError("x contains NaN or inf values: clean or drop those images before training")
    if eps is not None and not bool(xp.all(xp.isfinite(eps))):
        raise InputError("eps contains NaN or inf values: draw it with backend.normal((N, latent_dim))")
    if y is not None and not bool(xp.all((xp.sum(y, axis=1) == 1.0) & xp.all((y == 0.0) | (y == 1.0), axis=1))):
        raise InputError("y has rows that are not one-hot: each row must hold one 1 and zeros elsewhere")
    if config.likelihood == "bernoulli":
        lo, hi = float(xp.min(x)), float(xp.max(x))
        if lo < 0.0 or hi > 1.0:
            raise InputError(
                f"x has values in [{lo:g}, {hi:g}] but the Bernoulli likelihood needs pixels "
                f"in [0, 1]: scale them (uint8 images: x / 255) or use likelihood='gaussian'"
            )


# ---------------------------------------------------------------------------
# The pieces: encoder, decoder, likelihood
# ---------------------------------------------------------------------------


def _join(a, y):
    """[a | y] (N, A + K), or a itself when there is no label."""
    return a if y is None else namespace_of(a).concat([a, y], axis=1)


def _decoder_logvar(params, config: VAEConfig, like):
    """The Gaussian decoder's log sigma^2: learned (D,) parameter, or the fixed value."""
    if config.gaussian_logvar is None:
        return params["dec.logvar"]
    xp = namespace_of(like)
    return xp.full((config.input_dim,), config.gaussian_logvar, dtype=like.dtype, device=device_of(like))


def encode(params, x, config: VAEConfig, y=None):
    """q(z | x, y): mu, logvar, each (N, L)."""
    head, _ = net_forward(params, "enc", config.encoder_layers, _join(x, y))
    L = config.latent_dim
    return head[:, :L], head[:, L:]


def decode(params, z, config: VAEConfig, y=None):
    """The decoder's output for z (N, L): Bernoulli logits or Gaussian means, (N, D)."""
    out, _ = net_forward(params, "dec", config.decoder_layers, _join(z, y))
    return out


def output_mean(out, config: VAEConfig):
    """E[x | z, y] from the decoder's output (N, D): sigma(logits) (Bernoulli) or the mean itself (Gaussian)."""
    return sigmoid(out) if config.likelihood == "bernoulli" else out


def decode_mean(params, z, config: VAEConfig, y=None):
    """E[x | z, y], for pictures: sigma(logits) (Bernoulli) or the mean (Gaussian), (N, D)."""
    return output_mean(decode(params, z, config, y), config)


def recon_nll(params, out, x, config: VAEConfig):
    """-log p(x | z) per image (N,), from the decoder output; no gradient."""
    if config.likelihood == "bernoulli":
        return bernoulli_nll_forward(out, x)[0]
    return gaussian_nll_forward(out, _decoder_logvar(params, config, out), x)[0]


# ---------------------------------------------------------------------------
# The per-image negative ELBO, and every parameter gradient, in one straight line
# ---------------------------------------------------------------------------


def neg_elbo_forward(params, x, eps, config: VAEConfig, y=None):
    """Each image's two terms: recon_n = -log p(x_n | z_n, y_n), kl_n = KL(q(z | x_n, y_n) || N(0, I)).

    z_n = mu_n + exp(logvar_n / 2) * eps_n. y (N, K) one-hot, or None for the plain VAE.
    Shapes: x (N, D), eps (N, L) -> recon (N,), kl (N,), and the cache for the backward.
    Derivation: docs/gradients.md#the-whole-chain
    """
    L = config.latent_dim
    # 1. encoder: [x | y] -> head = [mu | logvar]                        (N, 2L)
    head, enc_caches = net_forward(params, "enc", config.encoder_layers, _join(x, y))
    mu, logvar = head[:, :L], head[:, L:]                                # (N, L) each
    # 2. sample: z = mu + exp(logvar / 2) * eps                          (N, L)
    z, z_cache = reparameterize_forward(mu, logvar, eps)
    # 3. decoder: [z | y] -> out (logits or means)                       (N, D)
    out, dec_caches = net_forward(params, "dec", config.decoder_layers, _join(z, y))
    # 4. reconstruction term: -log p(x | z, y) per image                 (N,)
    if config.likelihood == "bernoulli":
        recon, recon_cache = bernoulli_nll_forward(out, x)
    else:
        recon, recon_cache = gaussian_nll_forward(out, _decoder_logvar(params, config, x), x)
    # 5. KL term: KL(q(z | x, y) || N(0, I)) per image                   (N,)
    kl, kl_cache = kl_normal_forward(mu, logvar)
    return recon, kl, (enc_caches, z_cache, dec_caches, recon_cache, kl_cache)


def neg_elbo_backward(drecon, dkl, cache, config: VAEConfig):
    """Every parameter's gradient, given each image's dL/drecon_n and dL/dkl_n.

    Shapes: drecon (N,), dkl (N,) -> grads {name: array}, the keys and shapes of params.
    Derivation: docs/gradients.md#the-whole-chain
    """
    enc_caches, z_cache, dec_caches, recon_cache, kl_cache = cache
    xp, L = namespace_of(drecon), config.latent_dim
    grads = {}
    # undo 5: KL(mu, logvar) -> its share of dmu, dlogvar             (N, L)
    dmu_kl, dlogvar_kl = kl_normal_backward(dkl, kl_cache)
    # undo 4: -log p(x | out) -> dout                                  (N, D)
    if config.likelihood == "bernoulli":
        dout = bernoulli_nll_backward(drecon, recon_cache)
    else:
        dout, dlogvar_x = gaussian_nll_backward(drecon, recon_cache)
        if config.gaussian_logvar is None:
            grads["dec.logvar"] = dlogvar_x                          # (D,)
    # undo 3: decoder layers, last first -> d[z | y]; fills dec.*      (N, L + K)
    dzy = net_backward(dout, dec_caches, "dec", config.decoder_layers, grads)
    dz = dzy[:, :L] if config.n_classes else dzy   # y is data: its columns are dropped (N, L)
    # undo 2: z = mu + exp(logvar / 2) * eps -> the sample's share    (N, L)
    dmu_z, dlogvar_z = reparameterize_backward(dz, z_cache)
    # mu and logvar each feed both the sample and the KL: add the two paths
    dmu = dmu_z + dmu_kl                                              # (N, L)
    dlogvar = dlogvar_z + dlogvar_kl                                  # (N, L)  dL/dlogvar
    # undo 1: the head split, then the encoder layers; fills enc.*
    dhead = xp.concat([dmu, dlogvar], axis=1)                         # (N, 2L)
    net_backward(dhead, enc_caches, "enc", config.encoder_layers, grads, need_dx=False)
    return grads


@dataclass
class LossParts:
    """The training objective and the negative ELBO's two parts, nats per image (0-d backend arrays).

    loss = recon + beta * kl; at beta = 1 it is the negative ELBO.
    """

    loss: object
    recon: object
    kl: object


def loss_and_grads(params: dict, x, eps, config: VAEConfig, y=None, beta=1.0, check_values=True):
    """The beta-weighted negative ELBO on a batch and its gradient for every parameter.

    L = mean_n [ -log p(x_n | z_n, y_n) + beta KL(N(mu_n, e^logvar_n) || N(0, I)) ],
    z_n = mu_n + exp(logvar_n / 2) * eps_n. beta = 1 (the default) is the
    negative ELBO; beta is a Python float, so float32 stays float32.

    Shapes: x (N, D), eps (N, L), y (N, K) one-hot for the conditional VAE.
    Returns (LossParts, grads) where grads has the keys and shapes of `params`.
    The same eps is used forward and backward.
    Derivation of each step: docs/gradients.md#the-whole-chain
    """
    _check_array(eps, "eps")            # eps is required here (check_batch also serves data alone)
    check_batch(x, params, config, eps, check_values, y)
    beta = _beta(beta)
    xp = namespace_of(x)
    N = x.shape[0]

    # ---------------- forward, top to bottom ----------------
    # 1-5. each image's reconstruction and KL terms                  (N,), (N,)
    recon, kl, elbo_cache = neg_elbo_forward(params, x, eps, config, y)
    # 6. loss: the batch mean, the KL weighted by beta              ()
    recon_mean, kl_mean = xp.mean(recon), xp.mean(kl)
    loss = recon_mean + beta * kl_mean

    # ---------------- backward, bottom to top ----------------
    # undo 6: each image's recon gets 1/N, its KL beta/N             (N,)
    drecon = xp.full((N,), 1.0 / N, dtype=x.dtype, device=device_of(x))
    dkl = drecon if beta == 1.0 else beta * drecon
    # undo 5..1: the per-image chain: KL, likelihood, decoder, sample, encoder
    grads = neg_elbo_backward(drecon, dkl, elbo_cache, config)
    return LossParts(loss, recon_mean, kl_mean), grads


def _beta(beta) -> float:
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not (math.isfinite(beta) and beta >= 0):
        raise InputError(f"beta must be a finite number >= 0 (1 is the ELBO), got {beta!r}")
    return float(beta)


# ---------------------------------------------------------------------------
# Evaluation (forward only)
# ---------------------------------------------------------------------------


def neg_elbo_terms(params, x, eps, config: VAEConfig, y=None):
    """recon (N,) and kl (N,), nats per image, with z sampled from q using eps (N, L)."""
    recon, kl, _ = neg_elbo_forward(params, x, eps, config, y)
    return recon, kl


def iw_log_px(params, x, eps, config: VAEConfig, y=None):
    """Importance-weighted estimate of log p(x) (or log p(x | y)) with K samples (Burda et al. 2016).

    log p(x) ~= log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x),  z_k = mu + sigma eps_k,
    computed with the log-sum-exp shift so no weight under- or overflows.
    log q(z_k | x) = -1/2 sum_j (log 2 pi + logvar_j + eps_kj^2) exactly, from the
    eps at hand: (z - mu)^2 / sigma^2 would lose precision when sigma << |mu|.
    Shapes: x (N, D), eps (K, N, L) -> (N,). Derivation: docs/elbo.md#importance-weighting
    """
    xp = namespace_of(x)
    mu, logvar = encode(params, x, config, y)
    std = xp.exp(0.5 * logvar)
    K = eps.shape[0]
    log_w = []
    for k in range(K):
        e = eps[k, ...]                                              # (N, L)
        z = mu + std * e
        log_px_z = -recon_nll(params, decode(params, z, config, y), x, config)
        log_pz = -0.5 * xp.sum(LOG_2PI + z * z, axis=1)                  # log N(z; 0, I)
        log_qz = -0.5 * xp.sum(LOG_2PI + logvar + e * e, axis=1)         # log N(z; mu, sigma^2)
        log_w.append(log_px_z + log_pz - log_qz)   # (N,)
    log_w = xp.stack(log_w, axis=0)                  # (K, N)
    m = xp.max(log_w, axis=0)                        # (N,)
    return m + xp.log(xp.mean(xp.exp(log_w - m), axis=0))



# ---------------------------------------------------------------------------
# The training adapter: the one place the VAE draws its noise (train.fit calls these)
# ---------------------------------------------------------------------------

Config = VAEConfig


def _labels(batch, config: VAEConfig, like):
    """One-hot y for the conditional VAE (from batch['y'], integer labels (B,)), else None."""
    if not config.n_classes:
        return None
    if batch.get("y") is None:
        raise InputError(f"this is a conditional VAE (n_classes={config.n_classes}): train and evaluate "
                         "it with the labels (y_train, y_test)")
    return one_hot(batch["y"], config.n_classes, like=like)


def train_step(params, batch, backend, config: VAEConfig, beta=1.0):
    """One minibatch's loss and gradients, eps drawn here: ({'loss', 'recon', 'kl'}, grads).

    batch: {'x': (B, D), 'y': (B,) integer labels (the CVAE only)}. 'loss' is
    the objective recon + beta kl; 'recon' + 'kl' is the negative ELBO.
    """
    x = batch["x"]
    eps = backend.normal((x.shape[0], config.latent_dim))                      # (B, L)
    parts, grads = loss_and_grads(params, x, eps, config, y=_labels(batch, config, x), beta=beta,
                                  check_values=False)
    return {"loss": parts.loss, "recon": parts.recon, "kl": parts.kl}, grads


def eval_terms(params, batch, backend, config: VAEConfig):
    """Each image's negative ELBO and its parts, z sampled with eps drawn here: {'neg_elbo', 'recon', 'kl'} (B,)."""
    x = batch["x"]
    eps = backend.normal((x.shape[0], config.latent_dim))
    recon, kl = neg_elbo_terms(params, x, eps, config, _labels(batch, config, x))
    return {"neg_elbo": recon + kl, "recon": recon, "kl": kl}


__all__ = ["VAEConfig", "LossParts", "init_params", "param_shapes", "count_params", "check_batch",
           "check_params", "encode", "decode", "decode_mean", "recon_nll", "neg_elbo_forward",
           "neg_elbo_backward", "loss_and_grads", "neg_elbo_terms", "iw_log_px",
           "train_step", "eval_terms"]
