"""The sparse autoencoder: an activity penalty on the code, and weight decay, added to the autoencoder's loss.

Encoder  x (N, D) -> network -> code h (N, H), sigmoid units in (0, 1)
Decoder  h (N, H) -> network -> out (N, D): Bernoulli logits

    L = mean_n -log p(x_n | dec(h_n))  +  beta P(h)  +  lambda / 2 sum_W ||W||^2

P is UFLDL's KL penalty, sum_j KL(rho || rho_hat_j) with rho_hat_j = mean_n h_nj the
unit's mean activation over the batch, or the L1 penalty mean_n sum_j |h_nj|; the
decay covers every weight matrix, not the biases. The default is UFLDL's model:
one hidden layer of sigmoid units (784-196-784), the code itself, so the encoder's
weights are the features the penalty shapes. beta = lambda = 0 is the plain
autoencoder of the same shape (core.ae.loss_and_grads).
Derivation: docs/autoencoders.md#sparse-autoencoder
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ..checks import Fixed, Layers, OneOf, Real, Sizes
from .distributions import bernoulli_nll_backward, bernoulli_nll_forward
from .ae import AEConfig
from .nets import Dense, net_backward, net_forward
from .xp import device_of, namespace_of

PENALTIES = ("kl", "l1")


class SigmoidCode(Layers):
    """None, or layer specs whose last layer ends in a sigmoid: the code's units lie in (0, 1)."""

    def describe(self):
        return "None or layer specs whose last layer has activation 'sigmoid' (the code's units in (0, 1))"

    def accept(self, value):
        ok, value = super().accept(value)
        return ok and (value is None or getattr(value[-1], "activation", None) == "sigmoid"), value


@dataclass(frozen=True)
class SparseAEConfig(AEConfig):
    """An AEConfig whose code is a layer of sigmoid units, with an activity penalty and weight decay.

    sparsity: 'kl' (KL(rho || rho_hat_j) summed over the code's units) or 'l1' (mean_n sum_j |h_nj|);
    rho: the target mean activation; sparsity_weight: beta; weight_decay: lambda.
    Defaults: UFLDL's MNIST autoencoder, 784-196-784, rho 0.05, beta 3, lambda 1e-4.
    """

    enc_hidden: tuple = ()
    dec_hidden: tuple = ()
    latent_dim: int = 196
    init: str = "keras"                     # Glorot uniform, as UFLDL's initialisation
    sparsity: str = "kl"
    rho: float = 0.05
    sparsity_weight: float = 3.0
    weight_decay: float = 1e-4

    RULES = {**AEConfig.RULES, **dict(
        enc_hidden=Sizes(fix="e.g. () for UFLDL's one layer, or (400,)"), encoder=SigmoidCode(),
        corruption=Fixed("none", "the sparse autoencoder here is not a denoising one: leave corruption='none'"),
        sparsity=OneOf(PENALTIES), rho=Real(0, 1, low_open=True, high_open=True, fix="UFLDL uses 0.01 to 0.1"),
        sparsity_weight=Real(0, fix="UFLDL uses 3; 0 turns the penalty off"),
        weight_decay=Real(0, fix="UFLDL uses 1e-4 to 3e-3; 0 turns it off"))}

    @cached_property
    def encoder_layers(self) -> tuple:
        if self.encoder is not None:
            return self.encoder
        return tuple(Dense(h, self.activation) for h in self.enc_hidden) + (Dense(self.latent_dim, "sigmoid"),)


def kl_sparsity_forward(h, rho):
    """UFLDL's penalty: sum_j KL(rho || rho_hat_j), rho_hat_j = mean_n h_nj, each unit a Bernoulli of mean rho_hat_j.

    KL(rho || r) = rho log(rho / r) + (1 - rho) log((1 - rho) / (1 - r)) >= 0, and 0 at r = rho.
    Shapes: h (N, H) in (0, 1) -> () ; cache for the backward.
    Derivation: docs/autoencoders.md#the-kl-penalty
    """
    xp = namespace_of(h)
    rho_hat = xp.mean(h, axis=0)                                          # (H,)
    kl = xp.sum(rho * xp.log(rho / rho_hat) + (1.0 - rho) * xp.log((1.0 - rho) / (1.0 - rho_hat)))
    return kl, (rho_hat, rho, h.shape[0])


def kl_sparsity_backward(dp, cache):
    """dh_nj = dp (-rho / rho_hat_j + (1 - rho) / (1 - rho_hat_j)) / N: every image of the batch shares rho_hat_j.

    Shapes: dp () -> dh (N, H).
    Derivation: docs/autoencoders.md#the-kl-penalty
    """
    rho_hat, rho, N = cache
    xp = namespace_of(rho_hat)
    drho_hat = dp * (-rho / rho_hat + (1.0 - rho) / (1.0 - rho_hat))     # (H,)
    return xp.broadcast_to(drho_hat / N, (N, rho_hat.shape[0]))          # (N, H)


def l1_sparsity_forward(h):
    """The L1 penalty mean_n sum_j |h_nj|. Shapes: h (N, H) -> (). Derivation: docs/autoencoders.md#the-l1-penalty"""
    xp = namespace_of(h)
    return xp.sum(xp.abs(h)) / h.shape[0], h


def l1_sparsity_backward(dp, cache):
    """dh = dp sign(h) / N (0 at h = 0, a subgradient). Shapes: dp () -> dh (N, H).
    Derivation: docs/autoencoders.md#the-l1-penalty
    """
    h = cache
    xp = namespace_of(h)
    return dp * xp.sign(h) / h.shape[0]


def weight_decay_forward(W):
    """1/2 ||W||^2, the sum of the squared entries. Shapes: W (any) -> ().
    Derivation: docs/autoencoders.md#weight-decay
    """
    xp = namespace_of(W)
    return 0.5 * xp.sum(W * W), W


def weight_decay_backward(dp, cache):
    """dW = dp W. Shapes: dp () -> dW like W. Derivation: docs/autoencoders.md#weight-decay"""
    return dp * cache


@dataclass
class SparseParts:
    """The loss and its three terms as 0-d arrays: recon (nats per image), sparsity (beta P),
    decay (lambda/2 sum ||W||^2)."""

    loss: object
    recon: object
    sparsity: object
    decay: object


def loss_and_grads(params: dict, x, config):
    """The sparse autoencoder's loss and every parameter's gradient.

    L = mean_n -log p(x_n | dec(h_n)) + beta P(h) + lambda/2 sum_W ||W||^2,  h = enc(x) (N, H).
    Shapes: x (N, D). Returns (SparseParts, grads), grads keyed like params.
    Derivation: docs/autoencoders.md#sparse-autoencoder
    """
    xp, N = namespace_of(x), x.shape[0]
    beta, lam = config.sparsity_weight, config.weight_decay
    # ---------------- forward, top to bottom ----------------
    # 1. encoder: x -> code h, sigmoid units                        (N, H)
    h, enc_caches = net_forward(params, "enc", config.encoder_layers, x)
    # 2. decoder: h -> logits                                       (N, D)
    out, dec_caches = net_forward(params, "dec", config.decoder_layers, h)
    # 3. reconstruction term, per image                             (N,)
    recon, recon_cache = bernoulli_nll_forward(out, x)
    # 4. the activity penalty on the code                           ()
    if config.sparsity == "kl":
        penalty, p_cache = kl_sparsity_forward(h, config.rho)
    else:
        penalty, p_cache = l1_sparsity_forward(h)
    # 5. weight decay, every weight matrix                          ()
    decays = {k: weight_decay_forward(W) for k, W in params.items() if k.endswith(".W")}
    decay = sum(d for d, _ in decays.values())
    # 6. loss                                                       ()
    recon_mean = xp.mean(recon)
    loss = recon_mean + beta * penalty + lam * decay
    # ---------------- backward, bottom to top ----------------
    grads = {}
    # undo 3: each image's term gets 1/N -> dout                    (N, D)
    dout = bernoulli_nll_backward(xp.full((N,), 1.0 / N, dtype=x.dtype, device=device_of(x)), recon_cache)
    # undo 2: the decoder -> the reconstruction's dh; fills dec.*    (N, H)
    dh = net_backward(dout, dec_caches, "dec", config.decoder_layers, grads)
    # undo 4: the penalty's dh, added: h feeds both                 (N, H)
    backward = kl_sparsity_backward if config.sparsity == "kl" else l1_sparsity_backward
    dh = dh + backward(beta, p_cache)
    # undo 1: the encoder; fills enc.*
    net_backward(dh, enc_caches, "enc", config.encoder_layers, grads, need_dx=False)
    # undo 5: each weight matrix's decay, added to its gradient
    for k, (_, W_cache) in decays.items():
        grads[k] = grads[k] + weight_decay_backward(lam, W_cache)
    return SparseParts(loss, recon_mean, beta * penalty, lam * decay), grads
