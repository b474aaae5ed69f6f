"""The plain and the denoising autoencoder: a deterministic code instead of a distribution.

Encoder  x_in (N, D) -> network -> code h (N, L)
Decoder  h (N, L)    -> network -> out (N, D): Bernoulli logits

    L = mean_n -log p(x_n | dec(enc(x_in_n))),

in nats per image under the same likelihood as the VAE's reconstruction term,
so the two compare like with like. The plain autoencoder has x_in = x. The
denoising autoencoder (after Vincent et al. 2008) has x_in = corrupt(x), drawn
by the caller and passed in, as eps is for the VAE: `mask_noise` and
`gaussian_noise` below take their random numbers as arguments.

There is no KL and no sampling, so nothing pulls the codes towards N(0, I):
decoding z ~ N(0, I) lands mostly where no training code lies. That is the
point the comparison demo makes (docs/autoencoders.md).
Derivation: docs/gradients.md#the-autoencoder
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ..checks import Fixed, OneOf, Real
from .distributions import bernoulli_nll_backward, bernoulli_nll_forward
from .nets import mlp, net_backward, net_forward
from .vae import VAEConfig, recon_nll
from .xp import device_of, namespace_of

CORRUPTIONS = ("none", "mask", "gaussian")


@dataclass(frozen=True)
class AEConfig(VAEConfig):
    """A VAEConfig whose encoder ends in the code (L,), not in [mu | logvar] (2L,).

    The same fields and defaults; n_classes stays 0 and the likelihood is
    Bernoulli (from logits). corruption: 'none' (the plain autoencoder), 'mask'
    (each pixel zeroed independently with probability corruption_level, in [0, 1))
    or 'gaussian' (noise of standard deviation corruption_level, clipped to [0, 1]).
    """

    corruption: str = "none"
    corruption_level: float = 0.0

    RULES = {**VAEConfig.RULES, **dict(
        corruption=OneOf(CORRUPTIONS), corruption_level=Real(0, fix="e.g. 0.3"),
        n_classes=Fixed(0, "the autoencoder takes no label: leave n_classes at 0"),
        likelihood=Fixed("bernoulli", "the autoencoder here uses the Bernoulli likelihood: "
                                      "leave likelihood='bernoulli'"))}

    @cached_property
    def encoder_layers(self) -> tuple:
        return self.encoder if self.encoder is not None else mlp(self.enc_hidden, self.latent_dim, self.activation)

    def networks(self) -> dict:
        D, L = self.input_dim, self.latent_dim
        return {"enc": (self.encoder_layers, (D,), (L,)), "dec": (self.decoder_layers, (L,), (D,))}


@dataclass
class AEParts:
    """The loss (mean reconstruction term, nats per image) as a 0-d backend array."""

    loss: object
    recon: object


def encode(params, x, config):
    """The code h = enc(x), (N, L)."""
    return net_forward(params, "enc", config.encoder_layers, x)[0]


def decode(params, h, config):
    """The decoder's logits for codes h (N, L), (N, D)."""
    return net_forward(params, "dec", config.decoder_layers, h)[0]


def recon_terms(params, x_in, x, config):
    """-log p(x_n | dec(enc(x_in_n))) per image (N,), nats; no gradient."""
    return recon_nll(params, decode(params, encode(params, x_in, config), config), x, config)


def loss_and_grads(params: dict, x_in, x, config):
    """Mean reconstruction loss of the (denoising) autoencoder and every parameter gradient.

    L = mean_n -log p(x_n | dec(enc(x_in_n))). Plain AE: pass x as x_in.
    Shapes: x_in (N, D), x (N, D). Returns (AEParts, grads), grads keyed like params.
    Derivation: docs/gradients.md#the-autoencoder
    """
    xp, N = namespace_of(x), x.shape[0]
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


def mask_noise(x, u, p):
    """Masking noise: each pixel set to 0 independently with probability p; u ~ U[0, 1) (N, D) passed in.

    x_in = x * [u >= p]. Shapes: x, u (N, D) -> (N, D).
    """
    xp = namespace_of(x)
    return x * xp.astype(u >= p, x.dtype)


def gaussian_noise(x, e, sigma):
    """Additive Gaussian noise, clipped back to [0, 1]: x_in = clip(x + sigma e, 0, 1), e ~ N(0, I) passed in."""
    xp = namespace_of(x)
    return xp.clip(x + sigma * e, 0.0, 1.0)
