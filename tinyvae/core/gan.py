"""The GAN of Goodfellow et al. (2014), written by hand on the same layers: two players, two losses.

Generator      z (N, L) -> network "gen" -> logits (N, D),   x = sigmoid(logits)
Discriminator  x (N, D) -> network "dis" -> a (N, 1),        D(x) = sigmoid(a)

D minimises the binary cross-entropy from logits, real images labelled 1, fakes 0:

    L_D = mean_n softplus(-a(x_n)) + mean_m softplus(a(G(z_m)))
        = -mean_n log D(x_n) - mean_m log(1 - D(G(z_m)))

G minimises the non-saturating loss (Goodfellow et al. 2014, section 3):

    L_G = mean_m softplus(-a(G(z_m))) = -mean_m log D(G(z_m))

Each player's `loss_and_grads` returns gradients for its own weights only: D's
step treats the fakes as data; G's step runs D forward and backward to get
dL_G/dx (D's `dx` is G's upstream gradient) and throws D's weight gradients
away. The noise z is an argument, drawn by the caller, as eps is for the VAE.
Derivation: docs/gan.md#the-backward-of-each-player
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

from ..checks import Checked, Fixed, Int, Layers, OneOf, Sizes, output_shape, run_rules
from .layers import ACTIVATIONS, sigmoid, sigmoid_backward, sigmoid_forward, softplus
from .nets import Dense, mlp, net_backward, net_forward
from .vae import INITS
from .xp import namespace_of

NETWORK_NAMES = {"gen": "generator", "dis": "discriminator"}


def critic(encoder_layers, activation="leaky_relu"):
    """An encoder's layers as a discriminator: its last layer replaced by Dense(1), ReLUs made `activation`."""
    body = tuple(replace(layer, activation=activation) if getattr(layer, "activation", None) == "relu" else layer
                 for layer in encoder_layers[:-1])
    return body + (Dense(1),)


@dataclass(frozen=True)
class GANConfig(Checked):
    """Everything that fixes the two networks' shapes. Defaults: the MLP of the VAE demo, 784-400-20.

    generator (L,) -> (D,) logits and discriminator (D,) -> (1,) logit: layer specs, or None for the
    MLPs of gen_hidden (ReLU) and dis_hidden (dis_activation, leaky ReLU by default).
    """

    input_dim: int = 784                  # D, pixels per image
    latent_dim: int = 20                  # L, the noise z
    gen_hidden: tuple = (400,)
    dis_hidden: tuple = (400,)
    gen_activation: str = "relu"
    dis_activation: str = "leaky_relu"
    init: str = "glorot_he"               # as VAEConfig.init (vae.init_params draws both players)
    generator: tuple | None = None
    discriminator: tuple | None = None

    # what vae.init_params, vae.param_shapes and checks.check_batch ask of a config:
    # pixels in [0, 1], no learned pixel variance, no label
    likelihood, gaussian_logvar, n_classes = "bernoulli", None, 0

    RULES = dict(input_dim=Int(1), latent_dim=Int(1), gen_hidden=Sizes(), dis_hidden=Sizes(),
                 gen_activation=OneOf(ACTIVATIONS), dis_activation=OneOf(ACTIVATIONS), init=OneOf(INITS),
                 generator=Layers(), discriminator=Layers())

    def __post_init__(self):
        run_rules(self)                   # the RULES, then each network's shapes, each named in one line
        for prefix, (layers, in_shape, want) in self.networks().items():
            name = NETWORK_NAMES[prefix]
            got = output_shape(layers, in_shape, name)
            Fixed(want, f"the {name} ends in {got} but must end in {want}: make its last layer "
                        f"Dense({want[0]}) (after Flatten() for images)")(got, name)

    @cached_property
    def generator_layers(self) -> tuple:
        return self.generator if self.generator is not None else mlp(self.gen_hidden, self.input_dim,
                                                                     self.gen_activation)

    @cached_property
    def discriminator_layers(self) -> tuple:
        return self.discriminator if self.discriminator is not None else mlp(self.dis_hidden, 1,
                                                                             self.dis_activation)

    def networks(self) -> dict:
        """{prefix: (layers, input shape, output shape)} of each network."""
        return {"gen": (self.generator_layers, (self.latent_dim,), (self.input_dim,)),
                "dis": (self.discriminator_layers, (self.input_dim,), (1,))}


def player(params: dict, prefix: str) -> dict:
    """The parameters of one player: {name: array} of the names starting with 'gen.' or 'dis.'."""
    return {k: v for k, v in params.items() if k.startswith(prefix + ".")}


def generate(params, z, config):
    """G(z): the generator's pixel means sigmoid(logits), (N, L) -> (N, D); no gradient."""
    return sigmoid(net_forward(params, "gen", config.generator_layers, z)[0])


def discriminate(params, x, config):
    """D's logit a(x), (N, D) -> (N,); D(x) = sigmoid(a); no gradient."""
    return net_forward(params, "dis", config.discriminator_layers, x)[0][:, 0]


@dataclass
class DParts:
    """D's loss and its two halves, nats per image (0-d arrays), and its accuracy on each half."""

    loss: object
    real: object              # mean_n -log D(x_n)
    fake: object              # mean_m -log(1 - D(G(z_m)))
    acc_real: object          # share of real images with D(x) > 1/2
    acc_fake: object          # share of fakes with D(G(z)) < 1/2


@dataclass
class GParts:
    """G's non-saturating loss, nats per image (a 0-d array)."""

    loss: object


def d_loss_and_grads(params: dict, x, z, config):
    """The discriminator's loss on a real batch x and the fakes G(z), and its gradient for dis.* only.

    L_D = mean_n softplus(-a(x_n)) + mean_m softplus(a(G(z_m))); dL/da_real = (sigma(a) - 1) / N,
    dL/da_fake = sigma(a) / M. G's weights are held fixed (the fakes are data to D).
    Shapes: x (N, D), z (M, L) -> (DParts, grads keyed like the dis.* params).
    Derivation: docs/gan.md#the-discriminators-step
    """
    xp, N, M = namespace_of(x), x.shape[0], z.shape[0]
    # ---------------- forward, top to bottom ----------------
    # 1. the fakes: x_fake = sigmoid(G(z)), data to D                       (M, D)
    x_fake = generate(params, z, config)
    # 2. D on the real batch, then on the fakes: one pass each, one cache each (N, 1), (M, 1)
    a_real, cache_real = net_forward(params, "dis", config.discriminator_layers, x)
    a_fake, cache_fake = net_forward(params, "dis", config.discriminator_layers, x_fake)
    # 3. loss: real labelled 1 (-log sigma(a) = softplus(-a)), fake 0 (-log(1 - sigma(a)) = softplus(a))
    real, fake = xp.mean(softplus(-a_real)), xp.mean(softplus(a_fake))
    loss = real + fake
    # ---------------- backward, bottom to top ----------------
    # undo 3: d softplus(-a)/da = sigma(a) - 1;  d softplus(a)/da = sigma(a)
    da_real = (sigmoid(a_real) - 1.0) / N                                   # (N, 1)
    da_fake = sigmoid(a_fake) / M                                           # (M, 1)
    # undo 2: each pass back through its own cache; D's weights get the sum of the two
    grads = {}
    net_backward(da_real, cache_real, "dis", config.discriminator_layers, grads, need_dx=False)
    grads_fake = {}
    net_backward(da_fake, cache_fake, "dis", config.discriminator_layers, grads_fake, need_dx=False)
    grads = {k: g + grads_fake[k] for k, g in grads.items()}
    # (undo 1 is not done: the fakes are data to D, so G gets nothing from D's step)
    acc_real = xp.mean(xp.astype(a_real > 0, x.dtype))
    acc_fake = xp.mean(xp.astype(a_fake < 0, x.dtype))
    return DParts(loss, real, fake, acc_real, acc_fake), grads


def g_loss_and_grads(params: dict, z, config):
    """The generator's non-saturating loss -mean log D(G(z)) and its gradient for gen.* only.

    L_G = mean_m softplus(-a(sigmoid(G(z_m)))); the gradient flows back through D:
    dL/da = (sigma(a) - 1) / M, dL/dx = D's backward's dx, dL/dlogits = dx x (1 - x),
    then G's backward. D's weight gradients are computed on the way and dropped.
    Shapes: z (M, L) -> (GParts, grads keyed like the gen.* params).
    Derivation: docs/gan.md#the-generators-step
    """
    xp, M = namespace_of(z), z.shape[0]
    # ---------------- forward, top to bottom ----------------
    # 1. generator: z -> logits                                             (M, D)
    logits, gen_caches = net_forward(params, "gen", config.generator_layers, z)
    # 2. pixels: x = sigmoid(logits)                                        (M, D)
    x, sig_cache = sigmoid_forward(logits)
    # 3. discriminator: x -> a                                              (M, 1)
    a, dis_caches = net_forward(params, "dis", config.discriminator_layers, x)
    # 4. loss: -log D(G(z)) = softplus(-a), the batch mean                   ()
    loss = xp.mean(softplus(-a))
    # ---------------- backward, bottom to top ----------------
    # undo 4: d softplus(-a)/da = sigma(a) - 1, each fake's share 1/M       (M, 1)
    da = (sigmoid(a) - 1.0) / M
    # undo 3: D's backward, for its dx; D's weight gradients go in a dict that is dropped
    dx = net_backward(da, dis_caches, "dis", config.discriminator_layers, {})        # (M, D)
    # undo 2: the sigmoid: dlogits = dx * x (1 - x)                          (M, D)
    dlogits = sigmoid_backward(dx, sig_cache)
    # undo 1: G's layers; z is noise and needs no gradient; fills gen.*
    grads = {}
    net_backward(dlogits, gen_caches, "gen", config.generator_layers, grads, need_dx=False)
    return GParts(loss), grads
