"""The VAE: configuration, parameters, and the loss with all its gradients.

Encoder  x (N, D) -> dense stack -> head (N, 2L) -> mu, logvar (N, L) each
Sampler  z = mu + exp(logvar / 2) * eps,  eps ~ N(0, I) passed in
Decoder  z (N, L) -> dense stack -> out (N, D): Bernoulli logits or Gaussian means

Loss (what we minimise) = negative ELBO, in nats per image:

    L = mean_n [ recon_n + kl_n ],
    recon_n = -log p(x_n | z_n)                 (summed over the D pixels)
    kl_n    = KL(q(z | x_n) || N(0, I))          (summed over the L latent dims)

`loss_and_grads` is the function to read: the forward pass top to bottom, then
the backward pass bottom to top. Derivation of every step: docs/gradients.md.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .backend import device_of, namespace_of
from .distributions import (
    bernoulli_nll_backward,
    bernoulli_nll_forward,
    gaussian_nll_backward,
    gaussian_nll_forward,
    kl_normal_backward,
    kl_normal_forward,
    normal_logpdf,
    reparameterize_backward,
    reparameterize_forward,
)
from .errors import InputError
from .layers import ACTIVATIONS, affine_backward, affine_forward, sigmoid

LIKELIHOODS = ("bernoulli", "gaussian")
INITS = ("glorot_he", "pytorch")


@dataclass(frozen=True)
class VAEConfig:
    """Everything that fixes the model's shape. Defaults: the PyTorch example VAE.

    gaussian_logvar: for the Gaussian likelihood, a fixed log sigma^2 shared by
    all pixels, or None to learn one log sigma^2 per pixel (parameter 'dec.logvar').
    init: how init_params draws the weights, 'glorot_he' or 'pytorch' (see there).
    """

    input_dim: int = 784
    enc_hidden: tuple = (400,)
    dec_hidden: tuple = (400,)
    latent_dim: int = 20
    activation: str = "relu"
    likelihood: str = "bernoulli"
    gaussian_logvar: float | None = None
    init: str = "glorot_he"

    def __post_init__(self):
        # Lists from JSON or argparse become tuples, so configs compare equal.
        object.__setattr__(self, "enc_hidden", tuple(int(h) for h in self.enc_hidden))
        object.__setattr__(self, "dec_hidden", tuple(int(h) for h in self.dec_hidden))
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
        sizes = (self.input_dim, self.latent_dim, *self.enc_hidden, *self.dec_hidden)
        if any(s < 1 for s in sizes):
            raise InputError(f"layer sizes must be positive integers, got {sizes}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "VAEConfig":
        return cls(**d)


# ---------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------


def layer_sizes(config: VAEConfig):
    """(prefix, [sizes]) of the two dense stacks; the encoder ends in the fused head."""
    D, L = config.input_dim, config.latent_dim
    return [
        ("enc", [D, *config.enc_hidden, 2 * L]),  # head: mu and logvar side by side
        ("dec", [L, *config.dec_hidden, D]),
    ]


def init_params(config: VAEConfig, backend) -> dict:
    """Initial parameters, drawn from the backend's generator.

    config.init = 'glorot_he' (the default): biases zero; weights normal with
    He variance 2 / fan_in for layers followed by ReLU-like activations, and
    Glorot variance 2 / (fan_in + fan_out) for tanh/sigmoid/softplus and for the
    two linear output layers (the head and the decoder output).

    config.init = 'pytorch': weights and biases uniform on
    [-1/sqrt(fan_in), 1/sqrt(fan_in)], the default of PyTorch's nn.Linear and so
    of the PyTorch example VAE (variance 1 / (3 fan_in): smaller than He's).
    """
    he = config.activation in ("relu", "leaky_relu")
    params = {}
    for prefix, sizes in layer_sizes(config):
        n_layers = len(sizes) - 1
        for i in range(n_layers):
            fan_in, fan_out = sizes[i], sizes[i + 1]
            if config.init == "pytorch":
                bound = 1.0 / math.sqrt(fan_in)
                W = (2.0 * backend.uniform((fan_in, fan_out)) - 1.0) * bound
                b = (2.0 * backend.uniform((fan_out,)) - 1.0) * bound
            else:
                is_output = i == n_layers - 1
                var = 2.0 / fan_in if (he and not is_output) else 2.0 / (fan_in + fan_out)
                W = backend.normal((fan_in, fan_out)) * math.sqrt(var)
                b = backend.zeros((fan_out,))
            params[f"{prefix}.{i}.W"], params[f"{prefix}.{i}.b"] = W, b
    if config.likelihood == "gaussian" and config.gaussian_logvar is None:
        params["dec.logvar"] = backend.zeros((config.input_dim,))
    return params


def count_params(params: dict) -> int:
    return sum(math.prod(p.shape) for p in params.values())


# ---------------------------------------------------------------------------
# Input checks: one clear line instead of a silent NaN
# ---------------------------------------------------------------------------


def check_batch(x, params, config: VAEConfig, eps=None, check_values=True):
    """Raise InputError naming the problem if `x` (or `eps`) cannot go into the model.

    Shape and dtype checks read only metadata. The value checks (NaN/inf, and
    pixels in [0, 1] for the Bernoulli likelihood) read the data, which on a GPU
    waits for it: training checks the whole data set once and then skips them
    (docs/backend.md#pitfall-2-host-synchronisation).
    """
    dtype = params["enc.0.W"].dtype
    shape = tuple(getattr(x, "shape", ()))
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
    if eps is not None and (tuple(eps.shape) != (shape[0], config.latent_dim) or eps.dtype != dtype):
        raise InputError(
            f"eps has shape {tuple(eps.shape)} and dtype {eps.dtype}, expected "
            f"({shape[0]}, {config.latent_dim}) {dtype}: draw it with backend.normal((N, latent_dim))"
        )
    if not check_values:
        return
    xp = namespace_of(x)
    if not bool(xp.all(xp.isfinite(x))):
        raise InputError("x contains NaN or inf values: clean or drop those images before training")
    if config.likelihood == "bernoulli":
        lo, hi = float(xp.min(x)), float(xp.max(x))
        if lo < 0.0 or hi > 1.0:
            raise InputError(
                f"x has values in [{lo:g}, {hi:g}] but the Bernoulli likelihood needs pixels "
                f"in [0, 1]: scale them (uint8 images: x / 255) or use likelihood='gaussian'"
            )


# ---------------------------------------------------------------------------
# The dense stacks (encoder and decoder bodies)
# ---------------------------------------------------------------------------


def mlp_forward(h, params, prefix, n_layers, activation):
    """n_layers dense layers, the activation after every one but the last.

    Shapes: h (N, sizes[0]) -> out (N, sizes[-1]). Returns (out, caches).
    """
    act_forward, _ = ACTIVATIONS[activation]
    caches = []
    for i in range(n_layers):
        h, affine_cache = affine_forward(h, params[f"{prefix}.{i}.W"], params[f"{prefix}.{i}.b"])
        act_cache = None
        if i < n_layers - 1:
            h, act_cache = act_forward(h)
        caches.append((affine_cache, act_cache))
    return h, caches


def mlp_backward(dout, caches, prefix, activation, grads, need_dx=True):
    """Undo `mlp_forward` layer by layer, last layer first; fills grads[prefix.i.W/b].

    Shapes: dout (N, sizes[-1]) -> dh (N, sizes[0]) (None when need_dx is False).
    Derivation: docs/gradients.md#the-dense-stack
    """
    _, act_backward = ACTIVATIONS[activation]
    dh = dout
    for i in reversed(range(len(caches))):
        affine_cache, act_cache = caches[i]
        if act_cache is not None:  # undo the activation after layer i
            dh = act_backward(dh, act_cache)
        # undo layer i: h_{i+1} = h_i W_i + b_i
        dh, grads[f"{prefix}.{i}.W"], grads[f"{prefix}.{i}.b"] = affine_backward(
            dh, affine_cache, need_dx=need_dx or i > 0
        )
    return dh


def _n_layers(config: VAEConfig):
    return len(config.enc_hidden) + 1, len(config.dec_hidden) + 1


def _decoder_logvar(params, config: VAEConfig, xp, like):
    """The Gaussian decoder's log sigma^2: learned (D,) parameter, or the fixed value."""
    if config.gaussian_logvar is None:
        return params["dec.logvar"]
    return xp.full((config.input_dim,), config.gaussian_logvar, dtype=like.dtype, device=device_of(like))


def encode(params, x, config: VAEConfig):
    """q(z | x): mu, logvar, each (N, L)."""
    n_enc, _ = _n_layers(config)
    head, _ = mlp_forward(x, params, "enc", n_enc, config.activation)
    L = config.latent_dim
    return head[:, :L], head[:, L:]


def decode(params, z, config: VAEConfig):
    """The decoder's output for z (N, L): Bernoulli logits or Gaussian means, (N, D)."""
    _, n_dec = _n_layers(config)
    out, _ = mlp_forward(z, params, "dec", n_dec, config.activation)
    return out


def decode_mean(params, z, config: VAEConfig):
    """E[x | z], for pictures: sigma(logits) (Bernoulli) or the mean (Gaussian), (N, D)."""
    out = decode(params, z, config)
    return sigmoid(out) if config.likelihood == "bernoulli" else out


def recon_nll(params, out, x, config: VAEConfig):
    """-log p(x | z) per image (N,), from the decoder output; no gradient."""
    if config.likelihood == "bernoulli":
        return bernoulli_nll_forward(out, x)[0]
    logvar = _decoder_logvar(params, config, namespace_of(out), out)
    return gaussian_nll_forward(out, logvar, x)[0]


# ---------------------------------------------------------------------------
# The loss and every parameter gradient, in one straight line
# ---------------------------------------------------------------------------


@dataclass
class LossParts:
    """The negative ELBO and its two parts, nats per image (0-d backend arrays)."""

    loss: object
    recon: object
    kl: object


def loss_and_grads(params: dict, x, eps, config: VAEConfig, check_values=True):
    """Negative ELBO on a batch and its gradient for every parameter.

    L = mean_n [ -log p(x_n | z_n) + KL(N(mu_n, e^logvar_n) || N(0, I)) ],
    z_n = mu_n + exp(logvar_n / 2) * eps_n.

    Shapes: x (N, D), eps (N, L). Returns (LossParts, grads) where grads has
    the keys and shapes of `params`. The same eps is used forward and backward.
    Derivation of each step: docs/gradients.md#the-whole-chain
    """
    check_batch(x, params, config, eps, check_values)
    xp = namespace_of(x)
    n_enc, n_dec = _n_layers(config)
    L = config.latent_dim
    N = x.shape[0]
    act = config.activation
    grads = {}

    # ---------------- forward, top to bottom ----------------
    # 1. encoder: x -> head = [mu | logvar]                         (N, 2L)
    head, enc_caches = mlp_forward(x, params, "enc", n_enc, act)
    mu, logvar = head[:, :L], head[:, L:]                          # (N, L) each
    # 2. sample: z = mu + exp(logvar / 2) * eps                     (N, L)
    z, z_cache = reparameterize_forward(mu, logvar, eps)
    # 3. decoder: z -> out (logits or means)                        (N, D)
    out, dec_caches = mlp_forward(z, params, "dec", n_dec, act)
    # 4. reconstruction term: -log p(x | z) per image               (N,)
    if config.likelihood == "bernoulli":
        recon, recon_cache = bernoulli_nll_forward(out, x)
    else:
        recon, recon_cache = gaussian_nll_forward(out, _decoder_logvar(params, config, xp, x), x)
    # 5. KL term: KL(q(z | x) || N(0, I)) per image                 (N,)
    kl, kl_cache = kl_normal_forward(mu, logvar)
    # 6. loss: mean over the batch of recon + kl                    ()
    recon_mean, kl_mean = xp.mean(recon), xp.mean(kl)
    loss = recon_mean + kl_mean

    # ---------------- backward, bottom to top ----------------
    # undo 6: L = (1/N) sum_n (recon_n + kl_n), so each image's terms get 1/N
    drecon = xp.full((N,), 1.0 / N, dtype=x.dtype, device=device_of(x))  # (N,)
    dkl = drecon                                                      # (N,)
    # undo 5: KL(mu, logvar) -> its share of dmu, dlogvar             (N, L)
    dmu_kl, dlogvar_kl = kl_normal_backward(dkl, kl_cache)
    # undo 4: -log p(x | out) -> dout                                  (N, D)
    if config.likelihood == "bernoulli":
        dout = bernoulli_nll_backward(drecon, recon_cache)
    else:
        dout, dlogvar_x = gaussian_nll_backward(drecon, recon_cache)
        if config.gaussian_logvar is None:
            grads["dec.logvar"] = dlogvar_x                          # (D,)
    # undo 3: decoder layers, last first -> dz; fills dec.* grads     (N, L)
    dz = mlp_backward(dout, dec_caches, "dec", act, grads)
    # undo 2: z = mu + exp(logvar / 2) * eps -> the sample's share    (N, L)
    dmu_z, dlogvar_z = reparameterize_backward(dz, z_cache)
    # mu and logvar each feed both the sample and the KL: add the two paths
    dmu = dmu_z + dmu_kl                                              # (N, L)
    dlogvar = dlogvar_z + dlogvar_kl                                  # (N, L)  dL/dlogvar
    # undo 1: the head split, then the encoder layers; fills enc.* grads
    dhead = xp.concat([dmu, dlogvar], axis=1)                         # (N, 2L)
    mlp_backward(dhead, enc_caches, "enc", act, grads, need_dx=False)

    return LossParts(loss, recon_mean, kl_mean), grads


# ---------------------------------------------------------------------------
# Evaluation (forward only)
# ---------------------------------------------------------------------------


def neg_elbo_terms(params, x, eps, config: VAEConfig):
    """recon (N,) and kl (N,), nats per image, with z sampled from q using eps (N, L)."""
    mu, logvar = encode(params, x, config)
    z, _ = reparameterize_forward(mu, logvar, eps)
    recon = recon_nll(params, decode(params, z, config), x, config)
    kl, _ = kl_normal_forward(mu, logvar)
    return recon, kl


def iw_log_px(params, x, eps, config: VAEConfig):
    """Importance-weighted estimate of log p(x) with K samples (Burda et al. 2016).

    log p(x) ~= log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x),  z_k ~ q(z | x),
    computed with the log-sum-exp shift so no weight under- or overflows.
    Shapes: x (N, D), eps (K, N, L) -> (N,). Derivation: docs/elbo.md#importance-weighting
    """
    xp = namespace_of(x)
    mu, logvar = encode(params, x, config)
    std = xp.exp(0.5 * logvar)
    K = eps.shape[0]
    log_w = []
    for k in range(K):
        z = mu + std * eps[k, ...]
        log_px_z = -recon_nll(params, decode(params, z, config), x, config)
        log_pz = normal_logpdf(z, xp.zeros_like(z), xp.zeros_like(z))
        log_qz = normal_logpdf(z, mu, logvar)
        log_w.append(log_px_z + log_pz - log_qz)   # (N,)
    log_w = xp.stack(log_w, axis=0)                  # (K, N)
    m = xp.max(log_w, axis=0)                        # (N,)
    return m + xp.log(xp.mean(xp.exp(log_w - m), axis=0))
