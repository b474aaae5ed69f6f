"""The GAN of Goodfellow et al. (2014), written by hand on the same layers: two players, two losses.

Generator      z (N, L) -> network "gen" -> logits (N, D),   x = sigmoid(logits)
Discriminator  x (N, D) -> network "dis" -> a (N, 1),        D(x) = sigmoid(a)

D minimises the binary cross-entropy from logits, real images labelled t (1, or 0.9
with one-sided label smoothing, Salimans et al. 2016), fakes 0:

    L_D = mean_n [t softplus(-a(x_n)) + (1 - t) softplus(a(x_n))] + mean_m softplus(a(G(z_m)))
        = -mean_n [t log D(x_n) + (1 - t) log(1 - D(x_n))] - mean_m log(1 - D(G(z_m)))

G minimises the non-saturating loss (Goodfellow et al. 2014, section 3):

    L_G = mean_m softplus(-a(G(z_m))) = -mean_m log D(G(z_m))

With pack = k > 1 (PacGAN, Lin et al. 2018), D judges k images side by side: a row of D's
input is k images of one kind, real or fake, (N, D) -> (N/k, kD), and the means above run over
these packs. D can then see that k fakes look alike where k real images would not.

Each player's `loss_and_grads` returns gradients for its own weights only: D's
step treats the fakes as data; G's step runs D forward and backward for dL_G/dx
alone (D's `dx` is G's upstream gradient; D's weight gradients are never
formed). The noise z is an argument, drawn by the caller, as eps is for the VAE;
G's step may reuse the pass over z that D's step made (the same z, G unchanged).
Derivation: docs/gan.md#the-backward-of-each-player
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

from ..checks import Checked, Fixed, Int, Layers, OneOf, Real, Sizes, output_shape, run_rules
from .batch_norm import BatchNorm  # noqa: F401  G's layer kind: imported, so a GAN record can name it
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
    real_label: D's target for real images, t in L_D (1; 0.9 is one-sided label smoothing).
    pack: k, the images in each row of D's input (PacGAN): D takes (k * input_dim,).
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
    real_label: float = 1.0
    pack: int = 1                         # k: images D judges side by side (PacGAN); batches a multiple of k

    # what vae.init_params, vae.param_shapes and checks.check_batch ask of a config:
    # pixels in [0, 1], no learned pixel variance, no label
    likelihood, gaussian_logvar, n_classes = "bernoulli", None, 0

    RULES = dict(input_dim=Int(1), latent_dim=Int(1), gen_hidden=Sizes(), dis_hidden=Sizes(),
                 gen_activation=OneOf(ACTIVATIONS), dis_activation=OneOf(ACTIVATIONS), init=OneOf(INITS),
                 generator=Layers(), discriminator=Layers(),
                 real_label=Real(0.5, 1, low_open=True, fix="1 is the plain loss, 0.9 the usual smoothing"),
                 pack=Int(1))

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
                "dis": (self.discriminator_layers, (self.pack * self.input_dim,), (1,))}


def player(params: dict, prefix: str) -> dict:
    """The parameters of one player: {name: array} of the names starting with 'gen.' or 'dis.'."""
    return {k: v for k, v in params.items() if k.startswith(prefix + ".")}


def generate(params, z, config):
    """G(z): the generator's pixel means sigmoid(logits), (N, L) -> (N, D); no gradient."""
    return sigmoid(net_forward(params, "gen", config.generator_layers, z)[0])


def generator_forward(params, z, config):
    """G(z) with what G's backward needs: (N, L) -> (x (N, D), fakes = (x, gen_caches, sig_cache))."""
    logits, gen_caches = net_forward(params, "gen", config.generator_layers, z)   # (N, D)
    x, sig_cache = sigmoid_forward(logits)                                        # (N, D)
    return x, (x, gen_caches, sig_cache)


def packed(x, k):
    """k images side by side: (N, D) -> (N/k, kD), row j holding images jk .. jk + k - 1; N a multiple of k."""
    return x if k == 1 else namespace_of(x).reshape(x, (x.shape[0] // k, k * x.shape[1]))


def discriminate(params, x, config):
    """D's logit a of each pack of config.pack images, (N, D) -> (N/k,); D = sigmoid(a); no gradient."""
    return net_forward(params, "dis", config.discriminator_layers, packed(x, config.pack))[0][:, 0]


def input_gradient(dout, caches, layers):
    """dL/d(input) of a network, its weight gradients left out: net_backward without the dW = h^T delta.

    A Dense layer's dx is act'(dy) W^T (its cache is ((h, W), act_cache), nets._Linear); any other
    layer runs its own backward (a conv's dW is formed and dropped). Shapes: dout (N, *out) -> (N, *in).
    Derivation: docs/gan.md#the-generators-step
    """
    for layer, cache in zip(reversed(layers), reversed(caches)):
        if isinstance(layer, Dense):
            (_, W), act_cache = cache
            dout = ACTIVATIONS[layer.activation][1](dout, act_cache) @ W.T       # (N, units) @ (units, in)
        else:
            dout = layer.backward(dout, cache)[0]
    return dout


@dataclass
class DParts:
    """D's loss and its two halves, nats per image (0-d arrays), its accuracy on each half, and G's pass."""

    loss: object
    real: object              # mean_n -[t log D(x_n) + (1 - t) log(1 - D(x_n))]
    fake: object              # mean_m -log(1 - D(G(z_m)))
    acc_real: object          # share of real images with D(x) > 1/2
    acc_fake: object          # share of fakes with D(G(z)) < 1/2
    fakes: tuple = None       # generator_forward's pass over z, for G's step on the same z


@dataclass
class GParts:
    """G's non-saturating loss, nats per image (a 0-d array)."""

    loss: object


def d_loss_and_grads(params: dict, x, z, config):
    """The discriminator's loss on a real batch x and the fakes G(z), and its gradient for dis.* only.

    L_D = mean_n [t softplus(-a(x_n)) + (1 - t) softplus(a(x_n))] + mean_m softplus(a(G(z_m)));
    dL/da_real = (sigma(a) - t) / N, dL/da_fake = sigma(a) / M. G's weights are held fixed (the
    fakes are data to D). D sees the N real packs and the M packs of fakes as one batch of N + M
    rows: each row's pass is its own, and a dense layer's h^T delta sums the rows of both halves.
    N, M count packs of k = config.pack images (images, when k = 1).
    Shapes: x (kN, D), z (kM, L) -> (DParts, grads keyed like the dis.* params).
    Derivation: docs/gan.md#the-discriminators-step
    """
    xp, k, t = namespace_of(x), config.pack, config.real_label
    N, M = x.shape[0] // k, z.shape[0] // k                                  # packs of real images, of fakes
    # ---------------- forward, top to bottom ----------------
    # 1. the fakes: x_fake = sigmoid(G(z)), data to D (the pass kept for G's step)  (M, D)
    x_fake, fakes = generator_forward(params, z, config)
    # 2. D on the real packs and the fakes' packs, one batch: rows 0..N-1 real, N.. fake   (N + M, 1)
    a, cache = net_forward(params, "dis", config.discriminator_layers,
                           xp.concat([packed(x, k), packed(x_fake, k)], axis=0))
    a_real, a_fake = a[:N, :], a[N:, :]                                     # (N, 1), (M, 1)
    # 3. loss: real labelled t (-log sigma(a) = softplus(-a)), fake 0 (-log(1 - sigma(a)) = softplus(a))
    real = xp.mean(t * softplus(-a_real) + (1.0 - t) * softplus(a_real))
    fake = xp.mean(softplus(a_fake))
    loss = real + fake
    # ---------------- backward, bottom to top ----------------
    # undo 3: d [t softplus(-a) + (1 - t) softplus(a)]/da = sigma(a) - t;  d softplus(a)/da = sigma(a)
    da_real = (sigmoid(a_real) - t) / N                                     # (N, 1)
    da_fake = sigmoid(a_fake) / M                                           # (M, 1)
    # undo 2: each row's gradient beside its own row of the pass, in the forward's order; D's
    # weights get the sum over all N + M rows (the real half's plus the fake half's)
    grads = {}
    net_backward(xp.concat([da_real, da_fake], axis=0), cache, "dis", config.discriminator_layers, grads,
                 need_dx=False)
    # (undo 1 is not done: the fakes are data to D, so G gets nothing from D's step)
    acc_real = xp.mean(xp.astype(a_real > 0, x.dtype))
    acc_fake = xp.mean(xp.astype(a_fake < 0, x.dtype))
    return DParts(loss, real, fake, acc_real, acc_fake, fakes), grads


def g_loss_and_grads(params: dict, z, config, fakes=None):
    """The generator's non-saturating loss -mean log D(G(z)) and its gradient for gen.* only.

    L_G = mean_m softplus(-a(sigmoid(G(z_m)))); the gradient flows back through D:
    dL/da = (sigma(a) - 1) / M, dL/dx = D's input gradient (no weight gradients of D are formed),
    dL/dlogits = dx x (1 - x), then G's backward. fakes: D's step's pass over this same z
    (DParts.fakes), reused when G has not changed since; None runs G here. M counts packs of
    k = config.pack fakes; D's dx is unpacked back to one row per image.
    Shapes: z (kM, L) -> (GParts, grads keyed like the gen.* params).
    Derivation: docs/gan.md#the-generators-step
    """
    xp, k = namespace_of(z), config.pack
    M = z.shape[0] // k                                                      # packs of fakes
    # ---------------- forward, top to bottom ----------------
    # 1-2. generator z -> logits, pixels x = sigmoid(logits); or D's step's pass  (kM, D)
    x, gen_caches, sig_cache = fakes if fakes is not None else generator_forward(params, z, config)[1]
    # 3. discriminator: x, k images a row -> a                              (M, 1)
    a, dis_caches = net_forward(params, "dis", config.discriminator_layers, packed(x, k))
    # 4. loss: -log D(G(z)) = softplus(-a), the batch mean                   ()
    loss = xp.mean(softplus(-a))
    # ---------------- backward, bottom to top ----------------
    # undo 4: d softplus(-a)/da = sigma(a) - 1, each fake's share 1/M       (M, 1)
    da = (sigmoid(a) - 1.0) / M
    # undo 3: D's backward for its dx only; D's weights get nothing from G's step     (M, kD)
    dx = input_gradient(da, dis_caches, config.discriminator_layers)
    dx = xp.reshape(dx, x.shape)                                             # unpacked: (kM, D)
    # undo 2: the sigmoid: dlogits = dx * x (1 - x)                          (kM, D)
    dlogits = sigmoid_backward(dx, sig_cache)
    # undo 1: G's layers; z is noise and needs no gradient; fills gen.*
    grads = {}
    net_backward(dlogits, gen_caches, "gen", config.generator_layers, grads, need_dx=False)
    return GParts(loss), grads
