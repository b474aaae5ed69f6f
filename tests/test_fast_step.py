"""The fast step (tinyvae/fast/step.py) and its compiled loops (tinyvae/fast/kernels.py) against the
plain core, their oracle.

Each loop does the core's additions, multiplies and comparisons in the core's order, and the step
calls NumPy's own exp, log1p and sums where the core does: so every loop, and the whole step, must
give the core's numbers bit for bit, in float32 and float64, on shapes drawn by hypothesis (batch 1
and odd sizes included). A planted bug in each loop must be caught by its check; the workspace must
never hold a result the caller keeps; and where the fast step does not apply, the plain step runs.
"""
import ast
import inspect
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("numba", reason="the fast path needs Numba: pip install numba")

from conftest import make  # noqa: E402
from tinyvae import models, train  # noqa: E402
from tinyvae.checks import networks_fit  # noqa: E402
from tinyvae.core import conv, layers  # noqa: E402
from tinyvae.core import distributions as dist  # noqa: E402
from tinyvae.core.ae import AEConfig  # noqa: E402
from tinyvae.core.m2 import M2Config  # noqa: E402
from tinyvae.core.nets import Conv, ConvTranspose, Dense, Flatten, Reshape  # noqa: E402
from tinyvae.core.optim import Adam  # noqa: E402
from tinyvae.core.vae import VAEConfig, init_params  # noqa: E402
from tinyvae.fast import conv as fast_conv  # noqa: E402
from tinyvae.fast import kernels, step, workspace  # noqa: E402

DTYPES = ("float32", "float64")
E1 = {d: np.empty((0,), d) for d in DTYPES}            # col2im's "no bias"
E4 = {d: np.empty((0, 0, 0, 0), d) for d in DTYPES}    # col2im's "no mask"


def rand(rng, shape, dtype, zeros=0.0):
    """Standard normal entries of `dtype`, about a share `zeros` of them exactly 0 (ReLU's edge)."""
    a = rng.standard_normal(shape)
    return (a * (rng.uniform(size=shape) >= zeros)).astype(dtype)


# ---------------------------------------------------------------------------
# The loops, each against the core function it replaces
# ---------------------------------------------------------------------------


@st.composite
def conv_cases(draw):
    """A 'same' conv's geometry, a pass (images n0 .. n1 - 1) and a dtype; batch 1 and odd sizes among them."""
    N = draw(st.integers(1, 4))
    n0 = draw(st.integers(0, N - 1))
    return dict(N=N, n0=n0, n1=draw(st.integers(n0 + 1, N)), H=draw(st.integers(1, 9)),
                W=draw(st.integers(1, 9)), C=draw(st.integers(1, 5)), F=draw(st.integers(1, 4)),
                k=draw(st.integers(1, 5)), s=draw(st.integers(1, 3)), dtype=draw(st.sampled_from(DTYPES)),
                seed=draw(st.integers(0, 2**16)))


def geometry(c):
    """(OH, OW), the padding before (top, left), and the padded shape of the pass, of a conv case."""
    pads = (conv.same_padding(c["H"], c["k"], c["s"]), conv.same_padding(c["W"], c["k"], c["s"]))
    OH, OW = -(-c["H"] // c["s"]), -(-c["W"] // c["s"])
    padded = (c["n1"] - c["n0"], c["H"] + sum(pads[0]), c["W"] + sum(pads[1]), c["C"])
    return OH, OW, pads, padded


def im2col_agrees(im2col, c):
    """The loop's columns of the pass's images are core.conv.im2col of the padded pass, every entry written."""
    rng = np.random.default_rng(c["seed"])
    x = rand(rng, (c["N"], c["H"], c["W"], c["C"]), c["dtype"])
    OH, OW, pads, _ = geometry(c)
    want = conv.im2col(conv.zero_pad(x[c["n0"]:c["n1"]], pads), c["k"], c["s"], OH, OW)
    cols = np.full(want.shape, np.nan, c["dtype"])
    im2col(x, c["k"], c["s"], pads[0][0], pads[1][0], OH, OW, c["n0"], cols)
    return np.array_equal(cols, want)


def col2im_agrees(col2im, c):
    """A conv's input gradient: the loop's fold of the columns is core.conv.col2im's, cropped; and with
    the ReLU below fused in, that times core.layers.relu_backward's mask."""
    rng = np.random.default_rng(c["seed"])
    OH, OW, pads, padded = geometry(c)
    (t, _), (l, _) = pads
    dcols = rand(rng, ((c["n1"] - c["n0"]) * OH * OW, c["k"] ** 2 * c["C"]), c["dtype"])
    want = conv.col2im(dcols, padded, c["k"], c["s"], OH, OW)[:, t:t + c["H"], l:l + c["W"], :]
    below = rand(rng, (c["N"], c["H"], c["W"], c["C"]), c["dtype"], zeros=0.2)   # the ReLU output below
    out, masked = (np.full(below.shape, np.nan, c["dtype"]) for _ in range(2))
    col2im(dcols, c["k"], c["s"], t, l, OH, OW, c["n0"], out, E1[c["dtype"]], 0, E4[c["dtype"]])
    col2im(dcols, c["k"], c["s"], t, l, OH, OW, c["n0"], masked, E1[c["dtype"]], 0, below)
    p = slice(c["n0"], c["n1"])
    return (np.array_equal(out[p], want)
            and np.array_equal(masked[p], layers.relu_backward(want, below[p])))


def conv_transpose_agrees(col2im, c):
    """A transposed conv's forward, bias and ReLU fused in: core.conv.conv2d_transpose_forward, then ReLU."""
    rng = np.random.default_rng(c["seed"])
    k, s, H, W = c["k"], c["s"], c["H"], c["W"]
    x = rand(rng, (c["N"], H, W, c["C"]), c["dtype"])
    Wt, b = rand(rng, (k, k, c["F"], c["C"]), c["dtype"]), rand(rng, (c["F"],), c["dtype"])
    p = slice(c["n0"], c["n1"])
    want = layers.relu_forward(conv.conv2d_transpose_forward(x[p], Wt, b, s)[0])[0]
    t, l = conv.same_padding(H * s, k, s)[0], conv.same_padding(W * s, k, s)[0]
    cols = np.reshape(x[p], (-1, c["C"])) @ np.reshape(Wt, (-1, c["C"])).T
    out = np.full((c["N"], H * s, W * s, c["F"]), np.nan, c["dtype"])
    col2im(cols, k, s, t, l, H, W, c["n0"], out, b, kernels.ACT["relu"], E4[c["dtype"]])
    return np.array_equal(out[p], want)


@st.composite
def dense_cases(draw):
    return dict(M=draw(st.integers(1, 40)), K=draw(st.integers(1, 9)), F=draw(st.integers(2, 40)),
                act=draw(st.sampled_from(sorted(kernels.ACT))), dtype=draw(st.sampled_from(DTYPES)),
                seed=draw(st.integers(0, 2**16)))


def bias_act_agrees(bias_act, c):
    """act(x W + b) in place: core.layers.affine_forward, then the activation."""
    rng = np.random.default_rng(c["seed"])
    x, W = rand(rng, (c["M"], c["K"]), c["dtype"]), rand(rng, (c["K"], c["F"]), c["dtype"])
    b = rand(rng, (c["F"],), c["dtype"])
    want = layers.ACTIVATIONS[c["act"]][0](layers.affine_forward(x, W, b)[0])[0]
    y = x @ W
    bias_act(y, b, kernels.ACT[c["act"]])
    return np.array_equal(y, want)


def act_backward_sum_agrees(act_backward_sum, c):
    """dy in place and db: core.layers' activation backward, then affine_backward's db (F >= 2: NumPy
    sums one column pairwise, which the step leaves to NumPy); one block of columns, and one per 16."""
    rng = np.random.default_rng(c["seed"])
    dout = rand(rng, (c["M"], c["F"]), c["dtype"])
    y = layers.ACTIVATIONS[c["act"]][0](rand(rng, (c["M"], c["F"]), c["dtype"], zeros=0.2))[0]
    want_dy = layers.ACTIVATIONS[c["act"]][1](dout, y)
    want_db = layers.affine_backward(want_dy, (dout, np.zeros((c["F"], c["F"]), c["dtype"])), need_dx=False)[2]
    agree = True
    for block in (c["F"], 16):
        dy, db = np.copy(dout), np.full(c["F"], np.nan, c["dtype"])
        act_backward_sum(dy, y, kernels.ACT[c["act"]], db, block)
        agree = agree and np.array_equal(dy, want_dy) and np.array_equal(db, want_db)
    return agree


@st.composite
def latent_cases(draw):
    return dict(N=draw(st.integers(1, 9)), L=draw(st.integers(1, 6)), dtype=draw(st.sampled_from(DTYPES)),
                seed=draw(st.integers(0, 2**16)))


def _latent(c):
    """head = [mu | logvar], eps, and std = e^(logvar / 2), var = e^logvar as the step takes them from NumPy."""
    rng = np.random.default_rng(c["seed"])
    head = rand(rng, (c["N"], 2 * c["L"]), c["dtype"], zeros=0.1)
    eps = rand(rng, (c["N"], c["L"]), c["dtype"])
    logvar = head[:, c["L"]:]
    return rng, head, eps, np.exp(np.multiply(logvar, 0.5)), np.exp(logvar)


def sample_kl_agrees(sample_kl, c):
    """z: core.distributions.reparameterize_forward; the terms, summed per row: kl_normal_forward."""
    _, head, eps, std, var = _latent(c)
    mu, logvar = head[:, :c["L"]], head[:, c["L"]:]
    z, terms = (np.full(eps.shape, np.nan, c["dtype"]) for _ in range(2))
    sample_kl(head, eps, std, var, z, terms)
    return (np.array_equal(z, dist.reparameterize_forward(mu, logvar, eps)[0])
            and np.array_equal(0.5 * np.sum(terms, axis=1), dist.kl_normal_forward(mu, logvar)[0]))


def sample_kl_grads_agrees(sample_kl_grads, c):
    """[dmu | dlogvar]: reparameterize_backward's share plus kl_normal_backward's, added as core/vae.py adds them."""
    rng, head, eps, std, var = _latent(c)
    dz, dkl = rand(rng, eps.shape, c["dtype"]), rand(rng, (c["N"],), c["dtype"])
    dmu_z, dlogvar_z = dist.reparameterize_backward(dz, (std, eps))
    dmu_kl, dlogvar_kl = dist.kl_normal_backward(dkl, (head[:, :c["L"]], var))
    dhead = np.full(head.shape, np.nan, c["dtype"])
    sample_kl_grads(dz, eps, std, head, var, dkl, dhead)
    return np.array_equal(dhead, np.concatenate([dmu_z + dmu_kl, dlogvar_z + dlogvar_kl], axis=1))


_CHECKED = {}


def both(name):
    """The loop `name` compiled with every index checked (an IndexError, not a stray write, for one out
    of bounds), then as the fast step runs it."""
    if name not in _CHECKED:
        import numba
        _CHECKED[name] = numba.njit(boundscheck=True, error_model="numpy")(getattr(kernels, name))
    return _CHECKED[name], kernels.compiled(name)


@pytest.mark.parametrize("name, agrees", [("im2col", im2col_agrees), ("col2im", col2im_agrees),
                                          ("col2im", conv_transpose_agrees)],
                         ids=["im2col", "col2im, the ReLU below masked or not", "col2im, a transposed conv's end"])
@given(c=conv_cases())
def test_each_conv_loop_is_the_cores(name, agrees, c):
    assert all(agrees(loop, c) for loop in both(name))


@pytest.mark.parametrize("name, agrees", [("bias_act", bias_act_agrees), ("act_backward_sum", act_backward_sum_agrees)])
@given(c=dense_cases())
def test_each_layer_end_loop_is_the_cores(name, agrees, c):
    assert all(agrees(loop, c) for loop in both(name))


@pytest.mark.parametrize("name, agrees", [("sample_kl", sample_kl_agrees), ("sample_kl_grads", sample_kl_grads_agrees)])
@given(c=latent_cases())
def test_each_sampler_loop_is_the_cores(name, agrees, c):
    assert all(agrees(loop, c) for loop in both(name))


@given(st.integers(1, 7), st.integers(1, 300), st.sampled_from(DTYPES), st.integers(0, 2**16))
def test_the_bernoulli_loss_and_gradient_are_the_cores(N, D, dtype, seed):
    """Logits out to +-1e4 (the core's stable forms), continuous and binary pixels."""
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal((N, D)) * rng.choice([1.0, 10.0, 1e4], (N, D))).astype(dtype)
    x = np.where(rng.uniform(size=(N, D)) < 0.5, rng.uniform(size=(N, D)), rng.integers(0, 2, (N, D))).astype(dtype)
    dnll = np.full((N,), 1.0 / N, dtype)
    want_nll, cache = dist.bernoulli_nll_forward(a, x)
    nll, da = step.bernoulli_loss_grad(step.Workspace(), a, x, dnll)
    np.testing.assert_array_equal(nll, want_nll)
    np.testing.assert_array_equal(da, dist.bernoulli_nll_backward(dnll, cache))


# ---------------------------------------------------------------------------
# A planted bug in each loop is caught by its check
# ---------------------------------------------------------------------------


def _mutant(name, old, new):
    """fast/kernels.py's loop `name` with one line of its source changed, compiled with its indices checked."""
    import numba

    source = inspect.getsource(getattr(kernels, name))
    assert source.count(old) == 1, f"the line to mutate is gone: {old!r}"
    namespace = dict(vars(kernels))
    exec(compile(source.replace(old, new), kernels.__file__, "exec"), namespace)
    return numba.njit(boundscheck=True, error_model="numpy")(namespace[name])


CONV_CASE = dict(N=3, n0=1, n1=3, H=5, W=6, C=2, F=3, k=3, s=2, dtype="float64", seed=1)
DENSE_CASE = dict(M=9, K=4, F=20, act="relu", dtype="float32", seed=1)
LATENT_CASE = dict(N=5, L=3, dtype="float64", seed=1)


@pytest.mark.parametrize("name, old, new, agrees, case", [
    # im2col: the taps' columns in (j, i) order; the padding read as ones; the first window inside the image
    # not capped at the row's end; one channel read off by one
    ("im2col", "taps[row0 + ow, i, j, c] = x[n, h, w, c]", "taps[row0 + ow, j, i, c] = x[n, h, w, c]",
     im2col_agrees, CONV_CASE),
    ("im2col", "for ow in range(hi, OW):\n                    for c in range(C):\n                        taps[row0 + ow, i, j, c] = 0",
     "for ow in range(hi, OW):\n                    for c in range(C):\n                        taps[row0 + ow, i, j, c] = 1",
     im2col_agrees, CONV_CASE),
    ("im2col", "lo = min(OW, max(0, (left - j + s - 1) // s))", "lo = max(0, (left - j + s - 1) // s)",
     im2col_agrees, dict(CONV_CASE, W=1, k=5, s=1)),        # a wide kernel on a narrow image: past the row
    ("im2col", "taps[row0 + ow, i, j, 0] = x[n, h, s * ow + j - left, 0]",
     "taps[row0 + ow, i, j, 0] = x[n, h, s * ow + j - left - 1, 0]", im2col_agrees, dict(CONV_CASE, C=1)),
    # col2im: a tap's column read from the next pixel; the mask's edge moved; the bias left out
    ("col2im", "o[x, c] += taps[base + w, t, c]", "o[x, c] += taps[base + (w + 1) % W, t, c]", col2im_agrees,
     CONV_CASE),
    ("col2im", "o[x, c] *= one if m[x, c] > zero else zero", "o[x, c] *= one if m[x, c] >= zero else zero",
     col2im_agrees, CONV_CASE),
    ("col2im", "v = o[x, c] + bias[c]", "v = o[x, c] + bias[0]", conv_transpose_agrees, CONV_CASE),
    ("col2im", "o[x, 0] += taps[base + w, t, 0]", "o[x, 0] += taps[base + w, 0, 0]", col2im_agrees,
     dict(CONV_CASE, C=1)),
    # bias_act: one bias for every unit; act_backward_sum: db summed before the mask
    ("bias_act", "v = y[r, c] + b[c]", "v = y[r, c] + b[0]", bias_act_agrees, DENSE_CASE),
    ("act_backward_sum", "                    total[c] += d[r, c]\n        else:", "                    total[c] += m[r, c]\n        else:",
     act_backward_sum_agrees, DENSE_CASE),
    # the sampler: sigma taken as the variance; the KL's -1 left out; the sample's share of dlogvar
    # without its 1/2; the KL's dmu unweighted by the image's dkl
    ("sample_kl", "z[n, j] = mu + std[n, j] * eps[n, j]", "z[n, j] = mu + var[n, j] * eps[n, j]",
     sample_kl_agrees, LATENT_CASE),
    ("sample_kl", "terms[n, j] = mu * mu + var[n, j] - one - logvar", "terms[n, j] = mu * mu + var[n, j] - logvar",
     sample_kl_agrees, LATENT_CASE),
    ("sample_kl_grads", "half * dz[n, j] * eps[n, j] * std[n, j]", "dz[n, j] * eps[n, j] * std[n, j]",
     sample_kl_grads_agrees, LATENT_CASE),
    ("sample_kl_grads", "dhead[n, j] = dz[n, j] + head[n, j] * w", "dhead[n, j] = dz[n, j] + head[n, j]",
     sample_kl_grads_agrees, LATENT_CASE),
])
def test_a_planted_bug_in_each_loop_is_caught(name, old, new, agrees, case):
    assert all(agrees(loop, case) for loop in both(name))       # the case sees the real loop agree ...
    try:
        caught = not agrees(_mutant(name, old, new), case)      # ... and the planted bug disagree,
    except IndexError:
        caught = True                                           # or reach outside its arrays
    assert caught


def test_a_planted_bug_in_the_bernoulli_step_is_caught(monkeypatch):
    """The gradient taken as 1 / sigma(a) - x: the step's check must fail."""
    real = step.bernoulli_loss_grad

    def wrong(ws, a, x, dnll):
        nll, da = real(ws, a, x, dnll)
        return nll, (1.0 / (da / dnll[:, None] + x) - x) * dnll[:, None]      # planted: 1 / sigma(a) - x
    config, be = mlp_config(), make("numpy", dtype="float64")
    params, batch = init_params(config, be), make_batch(config, 5, "float64", seed=2)
    assert results_agree(config, params, batch, be)
    monkeypatch.setattr(step, "bernoulli_loss_grad", wrong)
    assert not results_agree(config, params, batch, be)


# ---------------------------------------------------------------------------
# The whole step: the plain step's numbers, bit for bit
# ---------------------------------------------------------------------------


def mlp_config(D=12, enc=(7,), dec=(5, 3), L=2, K=0, activation="relu"):
    return VAEConfig(input_dim=D, enc_hidden=enc, dec_hidden=dec, latent_dim=L, n_classes=K,
                     activation=activation, init="pytorch")


@st.composite
def mlp_configs(draw):
    sizes = st.lists(st.integers(1, 9), max_size=2).map(tuple)
    return mlp_config(draw(st.integers(1, 12)), draw(sizes), draw(sizes), draw(st.integers(1, 4)),
                      draw(st.sampled_from([0, 3])), draw(st.sampled_from(["relu", "linear"])))


@st.composite
def conv_configs(draw):
    """A conv encoder and a decoder of transposed convs (stride 2 when the sides are even)."""
    H, W, C, L = draw(st.integers(2, 8)), draw(st.integers(2, 8)), draw(st.integers(1, 2)), draw(st.integers(1, 3))
    ints, act = st.integers(1, 3), st.sampled_from(["relu", "linear"])
    enc = (Reshape((H, W, C)), Conv(draw(ints), draw(ints), draw(st.integers(1, 2)), "relu"),
           Conv(draw(ints), draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(act)), Flatten(),
           Dense(draw(ints), "relu"), Dense(2 * L))
    s = 2 if H % 2 == 0 and W % 2 == 0 and draw(st.booleans()) else 1
    c = draw(ints)
    dec = (Dense((H // s) * (W // s) * c, "relu"), Reshape((H // s, W // s, c)),
           ConvTranspose(draw(ints), draw(st.integers(1, 4)), s, draw(act)), ConvTranspose(C, draw(ints), 1),
           Flatten())
    config = VAEConfig(input_dim=H * W * C, latent_dim=L, encoder=enc, decoder=dec, init="pytorch")
    networks_fit(config)
    return config


def make_batch(config, N, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(N, config.input_dim))
    x[:, ::3] = np.round(x[:, ::3])                     # some pixels exactly 0 or 1
    y = rng.integers(0, config.n_classes, N) if config.n_classes else None
    return {"x": x.astype(dtype), "y": y}


def results_agree(config, params, batch, be, beta=1.0):
    """The fast step's ({'loss', 'recon', 'kl'}, grads) equal the plain step's bit for bit, from the same eps."""
    be.reseed(7)
    fast_parts, fast_grads = step.FastVAEStep(models.vae_step)(params, batch, be, config, beta)
    be.reseed(7)
    parts, grads = models.vae_step(params, batch, be, config, beta)
    return (set(fast_grads) == set(grads) == set(params)
            and all(np.array_equal(fast_parts[k], parts[k]) for k in parts)
            and all(np.array_equal(fast_grads[k], grads[k]) and fast_grads[k].dtype == grads[k].dtype
                    for k in grads))


def _step_agrees(config, N, dtype, beta, entries):
    """results_agree with the conv pass budget set to `entries` column entries (several passes when small)."""
    be = make("numpy", dtype=dtype, seed=3)
    params = init_params(config, be)
    saved = fast_conv.COLUMN_ENTRIES_PER_PASS
    fast_conv.COLUMN_ENTRIES_PER_PASS = entries
    try:
        return results_agree(config, params, make_batch(config, N, dtype), be, beta)
    finally:
        fast_conv.COLUMN_ENTRIES_PER_PASS = saved


@given(mlp_configs(), st.integers(1, 7), st.sampled_from(DTYPES), st.sampled_from([1.0, 0.25]))
def test_the_fast_step_is_the_plain_step_mlp(config, N, dtype, beta):
    assert _step_agrees(config, N, dtype, beta, fast_conv.COLUMN_ENTRIES_PER_PASS)


@given(conv_configs(), st.integers(1, 5), st.sampled_from(DTYPES), st.sampled_from([1, 60, 2**19]))
def test_the_fast_step_is_the_plain_step_conv(config, N, dtype, entries):
    """Budgets from one image a pass to the whole batch in one: dW summed over the passes as the core sums it."""
    assert _step_agrees(config, N, dtype, 1.0, entries)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_keras_conv_vae_step_is_the_plain_step(dtype):
    """The benchmark's model at a real batch: 28x28 images, a batch of 37 split into passes."""
    from tinyvae.specs import keras_conv_decoder, keras_conv_encoder
    config = VAEConfig(latent_dim=2, encoder=keras_conv_encoder(2), decoder=keras_conv_decoder(), init="pytorch")
    assert _step_agrees(config, 37, dtype, 1.0, fast_conv.COLUMN_ENTRIES_PER_PASS)


def test_training_on_the_fast_path_is_training_on_the_plain_path():
    """Three epochs of train.steps with Adam, each path from the same start: the same weights, bit for bit."""
    config = VAEConfig(input_dim=36, latent_dim=2, init="pytorch",
                       encoder=(Reshape((6, 6, 1)), Conv(3, 3, 2, "relu"), Flatten(), Dense(4)),
                       decoder=(Dense(27, "relu"), Reshape((3, 3, 3)), ConvTranspose(2, 3, 2, "relu"),
                                ConvTranspose(1, 3, 1), Flatten()))
    x = make_batch(config, 20, "float32")["x"]
    runs = {}
    for fast in (True, False):
        be = make("numpy", dtype="float32", seed=5)
        params, model = init_params(config, be), models.for_config(config, fast=fast)
        opt = Adam(params, lr=1e-2)
        for epoch in range(3):
            be.reseed(train.STREAM_TRAIN, epoch)
            order = be.asarray(be.permutation(x.shape[0]))
            losses = [float(parts["loss"]) for _, parts in train.steps(params, opt, model, config, be, x, order, 7)]
        runs[fast] = params, losses
    (fast_params, fast_losses), (params, losses) = runs[True], runs[False]
    assert fast_losses == losses
    assert all(np.array_equal(fast_params[k], params[k]) for k in params)


# ---------------------------------------------------------------------------
# The workspace, and where the fast step does not apply
# ---------------------------------------------------------------------------


def test_a_step_never_hands_back_the_workspace():
    """A second call overwrites the workspace; the first call's loss and gradients must not change."""
    from tinyvae.specs import keras_conv_decoder, keras_conv_encoder
    for config in (mlp_config(), VAEConfig(latent_dim=2, encoder=keras_conv_encoder(2),
                                           decoder=keras_conv_decoder(), init="pytorch")):
        be = make("numpy", dtype="float32")
        params, fast = init_params(config, be), step.FastVAEStep(models.vae_step)
        first = fast(params, make_batch(config, 6, "float32", seed=1), be, config)
        kept = ({k: np.copy(v) for k, v in first[0].items()}, {k: np.copy(v) for k, v in first[1].items()})
        second = fast(params, make_batch(config, 6, "float32", seed=2), be, config)
        assert fast.workspace.nbytes() > 0
        for got, was in zip(first, kept):
            assert all(np.array_equal(got[k], was[k]) for k in was)
        buffers = list(fast.workspace._buffers.values())
        for result in (*first, *second):
            assert not any(np.shares_memory(v, buf) for v in result.values() for buf in buffers)
        assert not np.array_equal(second[1]["enc.1.W"], first[1]["enc.1.W"])   # it did compute afresh


def test_the_last_smaller_batch_reuses_the_front_of_the_workspace():
    ws = step.Workspace()
    a = ws.get("y", (128, 10), np.float32)
    b = ws.get("y", (96, 10), np.float32)
    assert np.shares_memory(a, b) and b.shape == (96, 10) and b.flags.c_contiguous
    assert not np.shares_memory(a, ws.get("y", (128, 10), np.float64))    # another dtype, another buffer


@pytest.mark.parametrize("case", ["strict", "gaussian", "tanh", "mixed dtypes", "strided x", "no numba"])
def test_where_the_fast_step_does_not_apply_the_plain_step_runs(case, monkeypatch):
    config = {"gaussian": VAEConfig(input_dim=12, enc_hidden=(5,), dec_hidden=(5,), latent_dim=2,
                                    likelihood="gaussian"),
              "tanh": mlp_config(activation="tanh")}.get(case, mlp_config())
    be = make("array_api_strict" if case == "strict" else "numpy")
    params = init_params(config, be)
    batch = make_batch(config, 5, "float64")
    batch["x"] = be.asarray(batch["x"])
    if case == "mixed dtypes":
        params["dec.0.W"] = params["dec.0.W"].astype(np.float32)
    if case == "strided x":
        batch["x"] = np.asfortranarray(batch["x"])
    if case == "no numba":
        monkeypatch.setattr(step, "available", lambda: False)
    fast = step.FastVAEStep(models.vae_step)
    be.reseed(1)
    fast_parts, fast_grads = fast(params, batch, be, config)
    be.reseed(1)
    parts, grads = models.vae_step(params, batch, be, config)
    assert fast.workspace.nbytes() == 0                              # the plain step ran
    assert all(np.array_equal(be.to_numpy(fast_grads[k]), be.to_numpy(grads[k])) for k in grads)


@pytest.mark.parametrize("where", ["Dense.OP", "relu", "bernoulli_nll_backward"])
def test_a_core_piece_replaced_by_a_learners_sends_the_step_to_the_plain_path(where, monkeypatch):
    """The capstone (tinyvae/exercises/capstone.py) trains the model with a learner's pieces plugged
    into the core; the fast step re-implements those pieces, so it must step aside, or the learner's
    code would never run. Here the learner's piece is wrong (its gradient doubled): the step must
    give the plain step's (wrong) gradients, not the fast step's right ones."""
    from tinyvae.core import layers as core_layers
    from tinyvae.core import nets as core_nets
    from tinyvae.core import vae as core_vae

    config, be = mlp_config(), make("numpy")
    params = init_params(config, be)
    batch = make_batch(config, 5, "float64")
    fast = step.FastVAEStep(models.vae_step)
    be.reseed(1)
    right = fast(params, batch, be, config)[1]
    if where == "Dense.OP":
        forward, backward = core_nets.Dense.OP
        monkeypatch.setattr(core_nets.Dense, "OP", (forward, lambda *a: tuple(None if g is None else 2 * g for g in backward(*a))))
    elif where == "relu":
        forward, backward = core_layers.ACTIVATIONS["relu"]
        monkeypatch.setitem(core_layers.ACTIVATIONS, "relu", (forward, lambda d, c: 2 * backward(d, c)))
    else:
        backward = core_vae.bernoulli_nll_backward
        monkeypatch.setattr(core_vae, "bernoulli_nll_backward", lambda *a: 2 * backward(*a))
    assert not step.core_as_written()
    be.reseed(1)
    got = fast(params, batch, be, config)[1]
    be.reseed(1)
    plain = models.vae_step(params, batch, be, config)[1]
    assert all(np.array_equal(got[k], plain[k]) for k in plain)                  # the learner's piece ran
    assert not all(np.array_equal(got[k], right[k]) for k in right)              # and it mattered
    monkeypatch.undo()
    assert step.core_as_written()


def test_for_config_gives_each_call_a_fast_step_of_its_own_and_only_for_the_vae():
    config = mlp_config()
    a, b = models.for_config(config), models.for_config(config)
    assert isinstance(a.train_step, step.FastVAEStep) and a.train_step is not b.train_step
    assert a.train_step.workspace is not b.train_step.workspace
    assert models.for_config(config, fast=False).train_step is models.vae_step
    for other in (AEConfig(input_dim=6, latent_dim=2), M2Config(input_dim=6)):
        assert models.for_config(other).train_step is models.MODELS[type(other)].train_step


def test_the_loops_take_numbas_own_threads_and_nothing_sets_threads():
    """The rule (docs/fast_path.md#threads): the loops may be parallel, over Numba's own default thread
    count, but nothing in the fast path sets a thread count, an environment variable, a BLAS option,
    a threading layer or the allocator. Read off the code itself (names and imports), not its prose."""
    for name in ("im2col", "col2im", "bias_act", "act_backward_sum", "sample_kl", "sample_kl_grads"):
        options = kernels.compiled(name).targetoptions
        assert options.get("parallel", False) is (kernels.PARALLEL and name in kernels.SHARED)
        assert "num_threads" not in options
    forbidden = {"set_num_threads", "environ", "putenv", "setdefault_env", "threadpool_limits", "threadpoolctl",
                 "THREADING_LAYER", "NUMBA_NUM_THREADS", "numba.config", "openblas_set_num_threads", "mallopt"}
    for module in (kernels, step, workspace, fast_conv):
        tree = ast.parse(Path(module.__file__).read_text())
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Attribute):
                names.add(node.attr)
                if isinstance(node.value, ast.Name):
                    names.add(f"{node.value.id}.{node.attr}")
            elif isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                names.update([(node.module or "").split(".")[0], *(a.name for a in node.names)])
        assert not names & (forbidden | {"os", "ctypes"}), (module.__name__, names & (forbidden | {"os", "ctypes"}))


@pytest.mark.slow
def test_the_loops_shared_among_numbas_threads_give_the_same_numbers(monkeypatch):
    """PARALLEL = True: every loop's prange shared out over Numba's default threads; each output element
    is still written by one iteration, so the step's numbers are the serial ones, bit for bit."""
    from tinyvae.specs import keras_conv_decoder, keras_conv_encoder
    config = VAEConfig(latent_dim=2, encoder=keras_conv_encoder(2), decoder=keras_conv_decoder(), init="pytorch")
    be = make("numpy", dtype="float32")
    params, batch = init_params(config, be), make_batch(config, 19, "float32")
    monkeypatch.setattr(kernels, "PARALLEL", True)
    for name, agrees, case in [("im2col", im2col_agrees, CONV_CASE), ("col2im", col2im_agrees, CONV_CASE),
                               ("col2im", conv_transpose_agrees, dict(CONV_CASE, dtype="float32")),
                               ("bias_act", bias_act_agrees, DENSE_CASE),
                               ("act_backward_sum", act_backward_sum_agrees, dict(DENSE_CASE, F=37))]:
        assert kernels.compiled(name).targetoptions.get("parallel") is True
        assert agrees(kernels.compiled(name), case), name
    results = []
    for parallel in (False, True):
        monkeypatch.setattr(kernels, "PARALLEL", parallel)
        be.reseed(3)
        results.append(step.FastVAEStep(models.vae_step)(params, batch, be, config))
    (serial_parts, serial_grads), (parts, grads) = results
    assert all(np.array_equal(parts[k], serial_parts[k]) for k in parts)
    assert all(np.array_equal(grads[k], serial_grads[k]) for k in grads)


def test_the_step_benchmark_times_every_piece_of_the_fast_step(capsys):
    """benchmarks/fast_step.py --pieces: each compiled loop the step calls and the multiplies are named."""
    from conftest import load_script
    bench = load_script(Path(__file__).resolve().parents[1] / "benchmarks" / "fast_step.py")
    compiled = kernels.compiled
    bench.main(["--model", "mlp", "--pieces", "--steps", "2"])
    assert kernels.compiled is compiled and step.np is np      # the timers taken off again
    out = capsys.readouterr().out
    for piece in ("np.matmul", "bias_act", "act_backward_sum", "sample_kl", "sample_kl_grads", "the rest"):
        assert piece in out, piece
