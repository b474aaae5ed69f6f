"""The plain and the denoising autoencoder: a deterministic code instead of a distribution.

Encoder  x_in (N, D) -> network -> code h (N, L)
Decoder  h (N, L)    -> network -> out (N, D): Bernoulli logits (or Gaussian means)

    L = mean_n -log p(x_n | dec(enc(x_in_n))),

in nats per image under the same likelihood as the VAE's reconstruction term,
so the two compare like with like. The plain autoencoder has x_in = x. The
denoising autoencoder (Vincent et al. 2008) has x_in = corrupt(x), drawn by
the caller and passed in, as eps is for the VAE: `mask_noise` and
`gaussian_noise` below take their random numbers as arguments.

There is no KL and no sampling, so nothing pulls the codes towards N(0, I):
decoding z ~ N(0, I) lands mostly where no training code lies. That is the
point the comparison demo makes (docs/autoencoders.md).
Derivation: docs/gradients.md#the-autoencoder
"""
from __future__ import annotations

from dataclasses import dataclass

from .backend import device_of, namespace_of
from .distributions import bernoulli_nll_backward, bernoulli_nll_forward
from .errors import InputError
from .nets import mlp, net_backward, net_forward
from .vae import VAEConfig, _check_array, check_batch, recon_nll


CORRUPTIONS = ("none", "mask", "gaussian")


@dataclass(frozen=True)
class AEConfig(VAEConfig):
    """A VAEConfig whose encoder ends in the code (L,), not in [mu | logvar] (2L,).

    The same fields and defaults; n_classes must stay 0 and the likelihood is
    Bernoulli (from logits). corruption: 'none' (the plain autoencoder), 'mask'
    (each pixel zeroed with probability corruption_level) or 'gaussian' (noise of
    standard deviation corruption_level, clipped to [0, 1]): the denoising one.
    """

    corruption: str = "none"
    corruption_level: float = 0.0

    def __post_init__(self):
        if self.corruption not in CORRUPTIONS:
            raise InputError(f"unknown corruption {self.corruption!r}: choose one of {', '.join(CORRUPTIONS)}")
        level = self.corruption_level
        if not (isinstance(level, (int, float)) and 0.0 <= level and (level < 1.0 or self.corruption == "gaussian")
                and level == level):
            raise InputError(f"corruption_level must be in [0, 1) for masking, >= 0 for Gaussian noise; got {level!r}")
        if self.n_classes:
            raise InputError("the autoencoder takes no label: leave n_classes at 0")
        if self.likelihood != "bernoulli":
            raise InputError("the autoencoder here uses the Bernoulli likelihood: leave likelihood='bernoulli'")
        super().__post_init__()

    @property
    def encoder_layers(self) -> tuple:
        if self.encoder is not None:
            return self.encoder
        return mlp(self.enc_hidden, self.latent_dim, self.activation)

    def networks(self) -> tuple:
        D, L = self.input_dim, self.latent_dim
        return (("enc", self.encoder_layers, D, L, "latent_dim (the code)"),
                ("dec", self.decoder_layers, L, D, "input_dim"))


@dataclass
class AEParts:
    """The loss (mean reconstruction term, nats per image) as a 0-d backend array."""

    loss: object
    recon: object


def encode(params, x, config: AEConfig):
    """The code h = enc(x), (N, L)."""
    return net_forward(params, "enc", config.encoder_layers, x)[0]


def decode(params, h, config: AEConfig):
    """The decoder's logits for codes h (N, L), (N, D)."""
    return net_forward(params, "dec", config.decoder_layers, h)[0]


def recon_terms(params, x_in, x, config: AEConfig):
    """-log p(x_n | dec(enc(x_in_n))) per image (N,), nats; no gradient."""
    return recon_nll(params, decode(params, encode(params, x_in, config), config), x, config)


def loss_and_grads(params: dict, x_in, x, config: AEConfig, check_values=True):
    """Mean reconstruction loss of the (denoising) autoencoder and every parameter gradient.

    L = mean_n -log p(x_n | dec(enc(x_in_n))). Plain AE: pass x as x_in.
    Shapes: x_in (N, D), x (N, D). Returns (AEParts, grads), grads keyed like params.
    Derivation: docs/gradients.md#the-autoencoder
    """
    _check_array(x_in, "x_in")
    check_batch(x, params, config, check_values=check_values)
    if tuple(x_in.shape) != tuple(x.shape) or x_in.dtype != x.dtype:
        raise InputError(f"x_in has shape {tuple(x_in.shape)} and dtype {x_in.dtype}, expected those of x "
                         f"{tuple(x.shape)} {x.dtype}: pass x itself, or its corrupted copy")
    xp = namespace_of(x)
    N = x.shape[0]

    # ---------------- forward, top to bottom ----------------
    # 1. encoder: x_in -> code h                                    (N, L)
    h, enc_caches = net_forward(params, "enc", config.encoder_layers, x_in)
    # 2. decoder: h -> logits                                       (N, D)
    out, dec_caches = net_forward(params, "dec", config.decoder_layers, h)
    # 3. reconstruction term against the clean x, per image         (N,)
    recon, recon_cache = bernoulli_nll_forward(out, x)
    # 4. loss: the batch mean                                       ()
    loss = xp.mean(recon)

    # ---------------- backward, bottom to top ----------------
    grads = {}
    # undo 4: each image's term gets 1/N                            (N,)
    drecon = xp.full((N,), 1.0 / N, dtype=x.dtype, device=device_of(x))
    # undo 3: -log p(x | out) -> dout = (sigmoid(out) - x) / N      (N, D)
    dout = bernoulli_nll_backward(drecon, recon_cache)
    # undo 2: the decoder -> dh; fills dec.*                        (N, L)
    dh = net_backward(dout, dec_caches, "dec", config.decoder_layers, grads)
    # undo 1: the encoder; its input is data; fills enc.*
    net_backward(dh, enc_caches, "enc", config.encoder_layers, grads, need_dx=False)
    return AEParts(loss, loss), grads


# ---------------------------------------------------------------------------
# Corruption for the denoising autoencoder (randomness passed in)
# ---------------------------------------------------------------------------


def mask_noise(x, u, p):
    """Masking noise: each pixel set to 0 with probability p. u ~ U[0, 1) (N, D) is drawn by the caller.

    x_in = x * [u >= p]. Shapes: x, u (N, D) -> (N, D).
    """
    xp = namespace_of(x)
    return x * xp.astype(u >= p, x.dtype)


def gaussian_noise(x, e, sigma):
    """Additive Gaussian noise, clipped back to [0, 1]: x_in = clip(x + sigma e, 0, 1), e ~ N(0, I) passed in."""
    xp = namespace_of(x)
    return xp.clip(x + sigma * e, 0.0, 1.0)


def corrupt(x, backend, config: AEConfig):
    """x as the denoising autoencoder sees it, the noise drawn here from the backend; x itself for 'none'."""
    if config.corruption == "mask":
        return mask_noise(x, backend.uniform(tuple(x.shape)), config.corruption_level)
    if config.corruption == "gaussian":
        return gaussian_noise(x, backend.normal(tuple(x.shape)), config.corruption_level)
    return x


# ---------------------------------------------------------------------------
# The training adapter: the one place the autoencoder draws its noise (train.fit calls these)
# ---------------------------------------------------------------------------

Config = AEConfig


def train_step(params, batch, backend, config: AEConfig, beta=1.0):
    """One minibatch's loss and gradients, the corruption drawn here: ({'loss', 'recon'}, grads). beta is unused."""
    x = batch["x"]
    parts, grads = loss_and_grads(params, corrupt(x, backend, config), x, config, check_values=False)
    return {"loss": parts.loss, "recon": parts.recon}, grads


def eval_terms(params, batch, backend, config: AEConfig):
    """Each test image's reconstruction term from its clean input: {'recon'} (B,), nats."""
    x = batch["x"]
    return {"recon": recon_terms(params, x, x, config)}
