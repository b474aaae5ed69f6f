"""The VAE (and the conditional VAE): configuration, parameters, and the loss with all its gradients.

Encoder  [x | y] (N, D + K) -> network -> head (N, 2L) -> mu, logvar (N, L) each
Sampler  z = mu + exp(logvar / 2) * eps,  eps ~ N(0, I) passed in
Decoder  [z | y] (N, L + K) -> network -> out (N, D): Bernoulli logits or Gaussian means

y is a one-hot label (N, K) for the conditional VAE (n_classes = K > 0), else absent.
L = mean_n [recon_n + beta kl_n], recon_n = -log p(x_n | z_n, y_n) summed over pixels,
kl_n = KL(q(z | x_n, y_n) || N(0, I)) summed over latent dims: at beta = 1 the negative
ELBO in nats per image. The per-image chain `neg_elbo_forward` / `neg_elbo_backward` is
reused by every VAE-like model; `loss_and_grads` adds the batch mean and beta.
Derivation of every step: docs/gradients.md#the-whole-chain
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

from ..checks import Checked, Int, Layers, OneOf, Real, Sizes
from .distributions import (LOG_2PI, bernoulli_nll_backward, bernoulli_nll_forward, gaussian_nll_backward,
                            gaussian_nll_forward, kl_normal_backward, kl_normal_forward, normal_logpdf,
                            reparameterize_backward, reparameterize_forward)
from .layers import ACTIVATIONS, sigmoid
from .nets import mlp, net_backward, net_forward
from .nets import param_shapes as net_param_shapes
from .xp import device_of, namespace_of

LIKELIHOODS = ("bernoulli", "gaussian")
INITS = ("glorot_he", "pytorch", "keras")
RELU_LIKE = ("relu", "leaky_relu")   # layers followed by these get He's init variance


@dataclass(frozen=True)
class VAEConfig(Checked):
    """Everything that fixes the model's shape. Defaults: the PyTorch example VAE (784-400-20).

    encoder (D + K,) -> (2L,) = [mu | logvar] and decoder (L + K,) -> (D,): layer specs, or None for
    the MLP of enc_hidden / dec_hidden. gaussian_logvar: fixed log sigma^2, or None to learn 'dec.logvar'.
    """

    input_dim: int = 784                  # D, pixels per image
    enc_hidden: tuple = (400,)
    dec_hidden: tuple = (400,)
    latent_dim: int = 20                  # L
    activation: str = "relu"
    likelihood: str = "bernoulli"         # p(x | z): "bernoulli" (logits) or "gaussian" (means)
    gaussian_logvar: float | None = None
    init: str = "glorot_he"               # how init_params draws the weights
    encoder: tuple | None = None
    decoder: tuple | None = None
    n_classes: int = 0                    # K > 0: the conditional VAE

    RULES = dict(input_dim=Int(1), latent_dim=Int(1), n_classes=Int(0, fix="0 means no label"),
                 enc_hidden=Sizes(), dec_hidden=Sizes(), encoder=Layers(), decoder=Layers(),
                 activation=OneOf(ACTIVATIONS), likelihood=OneOf(LIKELIHOODS), init=OneOf(INITS),
                 gaussian_logvar=Real(-20, 20, optional=True, fix="a fixed log sigma^2 such as -2, or None "
                                                                   "to learn one per pixel"))

    @cached_property                      # built once per config, not on every pass
    def encoder_layers(self) -> tuple:
        return self.encoder if self.encoder is not None else mlp(self.enc_hidden, 2 * self.latent_dim,
                                                                 self.activation)

    @cached_property
    def decoder_layers(self) -> tuple:
        return self.decoder if self.decoder is not None else mlp(self.dec_hidden, self.input_dim, self.activation)

    def networks(self) -> dict:
        """{prefix: (layers, input shape, output shape)} of each network."""
        D, L, K = self.input_dim, self.latent_dim, self.n_classes
        return {"enc": (self.encoder_layers, (D + K,), (2 * L,)), "dec": (self.decoder_layers, (L + K,), (D,))}


def param_shapes(config) -> dict:
    """{name: shape} of every parameter init_params makes, in its order (no arrays made)."""
    shapes = {}
    for prefix, (layers, in_shape, _) in config.networks().items():
        shapes.update(net_param_shapes(layers, in_shape, prefix))
    if config.likelihood == "gaussian" and config.gaussian_logvar is None:
        shapes["dec.logvar"] = (config.input_dim,)
    return shapes


def init_params(config, backend) -> dict:
    """Initial parameters, drawn from the backend's generator, layer by layer, W then b.

    fan_in = prod(W.shape[:-1]), fan_out = prod(W.shape[:-2]) * W.shape[-1], as PyTorch and Keras count.
    'glorot_he': b = 0, W normal of variance 2 / fan_in before ReLU-like activations, else 2 / (fan_in + fan_out).
    'pytorch': W, b uniform on +-1/sqrt(fan_in).  'keras': W uniform on +-sqrt(6 / (fan_in + fan_out)), b = 0.
    """
    activation_after = {f"{prefix}.{i}": layer.activation for prefix, (layers, *_) in config.networks().items()
                        for i, layer in enumerate(layers) if layer.PARAMS}
    shapes = param_shapes(config)
    params = {}
    for name, shape in shapes.items():
        layer, kind = name.rsplit(".", 1)
        if name == "dec.logvar" or kind in ("gamma", "beta"):   # log sigma^2 0; a BatchNorm's scale 1, shift 0
            params[name] = backend.zeros(shape) + float(kind == "gamma")
        if kind != "W":
            continue                                   # b is drawn with its W, just below
        fan_in, fan_out = math.prod(shape[:-1]), math.prod(shape[:-2]) * shape[-1]
        units = shapes[f"{layer}.b"]                   # (H,), (F,), or (C_out,) for a transposed conv
        if config.init == "pytorch":
            bound = 1.0 / math.sqrt(fan_in)
            W = (2.0 * backend.uniform(shape) - 1.0) * bound
            b = (2.0 * backend.uniform(units) - 1.0) * bound
        elif config.init == "keras":
            W = (2.0 * backend.uniform(shape) - 1.0) * math.sqrt(6.0 / (fan_in + fan_out))
            b = backend.zeros(units)
        else:
            var = 2.0 / fan_in if activation_after[layer] in RELU_LIKE else 2.0 / (fan_in + fan_out)
            W, b = backend.normal(shape) * math.sqrt(var), backend.zeros(units)
        params[f"{layer}.W"], params[f"{layer}.b"] = W, b
    return params


def _join(a, y):
    """[a | y] (N, A + K), or a itself when there is no label."""
    return a if y is None else namespace_of(a).concat([a, y], axis=1)


def _decoder_logvar(params, config, like):
    """The Gaussian decoder's log sigma^2: the learned (D,) parameter, or the fixed value."""
    if config.gaussian_logvar is None:
        return params["dec.logvar"]
    return namespace_of(like).full((config.input_dim,), config.gaussian_logvar, dtype=like.dtype,
                                   device=device_of(like))


def encode(params, x, config, y=None):
    """q(z | x, y): mu, logvar, each (N, L)."""
    head, _ = net_forward(params, "enc", config.encoder_layers, _join(x, y))
    return head[:, :config.latent_dim], head[:, config.latent_dim:]


def decode(params, z, config, y=None):
    """The decoder's output for z (N, L): Bernoulli logits or Gaussian means, (N, D)."""
    return net_forward(params, "dec", config.decoder_layers, _join(z, y))[0]


def output_mean(out, config):
    """E[x | z, y] from the decoder's output (N, D): sigma(logits) (Bernoulli) or the mean itself (Gaussian)."""
    return sigmoid(out) if config.likelihood == "bernoulli" else out


def decode_mean(params, z, config, y=None):
    """E[x | z, y], for pictures, (N, D)."""
    return output_mean(decode(params, z, config, y), config)


def recon_nll(params, out, x, config):
    """-log p(x | z) per image (N,), from the decoder output; no gradient."""
    if config.likelihood == "bernoulli":
        return bernoulli_nll_forward(out, x)[0]
    return gaussian_nll_forward(out, _decoder_logvar(params, config, out), x)[0]


def neg_elbo_forward(params, x, eps, config, y=None):
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


def neg_elbo_backward(drecon, dkl, cache, config):
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
    """The objective and the negative ELBO's two parts, nats per image (0-d arrays); loss = recon + beta kl."""

    loss: object
    recon: object
    kl: object


def loss_and_grads(params: dict, x, eps, config, y=None, beta=1.0):
    """The beta-weighted negative ELBO on a batch and its gradient for every parameter.

    L = mean_n [ -log p(x_n | z_n, y_n) + beta KL(N(mu_n, e^logvar_n) || N(0, I)) ],
    z_n = mu_n + exp(logvar_n / 2) * eps_n; beta = 1 is the negative ELBO (a
    Python float, so float32 stays float32). The same eps flows forward and back.
    Shapes: x (N, D), eps (N, L), y (N, K) one-hot or None -> (LossParts, grads keyed like params).
    Derivation: docs/gradients.md#the-whole-chain
    """
    xp, N = namespace_of(x), x.shape[0]
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


def neg_elbo_terms(params, x, eps, config, y=None):
    """recon (N,) and kl (N,), nats per image, with z sampled from q using eps (N, L); no gradient."""
    recon, kl, _ = neg_elbo_forward(params, x, eps, config, y)
    return recon, kl


def iw_log_px(params, x, eps, config, y=None):
    """Importance-weighted estimate of log p(x) (or log p(x | y)) with K samples (Burda et al. 2016).

    log p(x) ~= log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x),  z_k = mu + sigma eps_k, log-sum-exp
    stable; log q(z_k | x) from eps_k itself ((z - mu)^2 / sigma^2 loses precision when sigma << |mu|).
    Shapes: x (N, D), eps (K, N, L) -> (N,). Derivation: docs/elbo.md#importance-weighting
    """
    xp = namespace_of(x)
    mu, logvar = encode(params, x, config, y)
    std, zero = xp.exp(0.5 * logvar), xp.zeros_like(mu)
    log_w = []
    for k in range(eps.shape[0]):
        e = eps[k, ...]                                                  # (N, L)
        z = mu + std * e
        log_px_z = -recon_nll(params, decode(params, z, config, y), x, config)
        log_pz = normal_logpdf(z, zero, zero)                            # log N(z; 0, I)
        log_qz = -0.5 * xp.sum(LOG_2PI + logvar + e * e, axis=1)           # log N(z; mu, sigma^2)
        log_w.append(log_px_z + log_pz - log_qz)                         # (N,)
    log_w = xp.stack(log_w, axis=0)                                      # (K, N)
    m = xp.max(log_w, axis=0)                                            # (N,)
    return m + xp.log(xp.mean(xp.exp(log_w - m), axis=0))
