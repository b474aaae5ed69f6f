"""The three references the core does not hold as one function of the exercise's shape.

- `adam_step`: one Adam update of one parameter as a pure function, computed by
  core.optim.Adam.step (its plain loop) on copies;
- `im2col_forward`: core.conv.im2col as a forward whose backward is core.conv.col2im;
- `m2_unlabelled_forward` / `m2_unlabelled_backward`: the unlabelled term of
  core.m2.loss_and_grads (its step 3 and the first lines of its backward) as a pair.

Every other exercise's reference is the core's own function (catalogue.py).
"""
from __future__ import annotations

from ..core.conv import im2col
from ..core.optim import Adam
from ..core.xp import namespace_of


def adam_step(p, g, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    """One Adam update of one parameter; returns the new (p, m, v) and leaves its inputs as they were.

        m <- b1 m + (1 - b1) g              the first moment
        v <- b2 v + (1 - b2) g^2            the second moment
        m_hat = m / (1 - b1^t),  v_hat = v / (1 - b2^t)     bias correction
        p <- p - lr m_hat / (sqrt(v_hat) + eps)

    t counts the steps from 1, this one included: at t = 1, m and v are the zeros Adam starts from.
    Shapes: p, g, m, v all the parameter's shape (any); t an int >= 1; the rest floats.
    Derivation: docs/optimizers.md#bias-correction
    """
    return adam_step_with(Adam, p, g, m, v, t, lr, b1, b2, eps)


def adam_step_with(optimizer, p, g, m, v, t, lr, b1, b2, eps):
    """adam_step computed by `optimizer` (Adam, or a class with its `step`) on copies of the inputs."""
    xp = namespace_of(p)
    params = {"p": xp.asarray(p, copy=True)}
    opt = optimizer(params, lr=lr, betas=(b1, b2), eps=eps, fast=False)
    opt.t = t - 1                                                      # step() counts this one
    opt.m["p"], opt.v["p"] = xp.asarray(m, copy=True), xp.asarray(v, copy=True)
    opt.step(params, {"p": g})
    return params["p"], opt.m["p"], opt.v["p"]


def im2col_forward(xpad, k, s, OH, OW):
    """im2col as a forward: (cols, cache); its backward is col2im(dcols, *cache), the adjoint.

    Shapes: xpad (N, Hp, Wp, C) -> cols (N*OH*OW, k*k*C); cache (xpad's shape, k, s, OH, OW).
    """
    return im2col(xpad, k, s, OH, OW), (tuple(xpad.shape), k, s, OH, OW)


def m2_unlabelled_forward(L_u, log_pi):
    """M2's unlabelled term: U = mean_n sum_y pi_ny (L_ny + log pi_ny),  pi = e^{log pi}.

    E_q[L] - H(q), averaged over the N unlabelled images: L_u holds each
    (image, class) row's conditional -ELBO L(x_n, y), log_pi = log q(y | x_n).
    Shapes: L_u (N, K), log_pi (N, K) -> U (); cache (pi, L_u, log_pi).
    Derivation: docs/exercises.md#the-m2-unlabelled-bound
    """
    xp = namespace_of(L_u)
    pi = xp.exp(log_pi)                                                # (N, K)
    return xp.mean(xp.sum(pi * (L_u + log_pi), axis=1)), (pi, L_u, log_pi)


def m2_unlabelled_backward(dU, cache):
    """Each row's weight dL_u = dU pi / N, and dlog_pi = dU pi (L_u + log pi + 1) / N.

    The weight is how much row (n, y) of the stacked batch counts in the loss;
    the +1 is the derivative of pi = e^{log pi} itself, inside pi log pi.
    Shapes: dU () -> dL_u (N, K), dlog_pi (N, K).
    Derivation: docs/exercises.md#the-m2-unlabelled-bound
    """
    pi, L_u, log_pi = cache
    N = pi.shape[0]
    w = dU / N                                                         # () the mean's 1/N
    return pi * w, pi * (L_u + log_pi + 1.0) * w
