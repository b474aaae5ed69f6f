"""The GAN: each player's whole gradient against finite differences (z frozen), on an MLP and a
small conv GAN, NumPy and array-api-strict; each loss against its definition; each player's
gradient touching only its own weights; and the public GAN bugs planted, each caught."""
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from conftest import BACKENDS, make
from tinyvae.core import gan, vae
from tinyvae.core.batch_norm import BatchNorm
from tinyvae.core.nets import Conv, ConvTranspose, Dense, Flatten, Reshape
from tinyvae.errors import InputError
from tinyvae.gradcheck import check_model_gradients, max_error

MLP = gan.GANConfig(input_dim=6, latent_dim=2, gen_hidden=(5,), dis_hidden=(4,), dis_activation="leaky_relu_0.2",
                    real_label=0.9)
DEEP = gan.GANConfig(input_dim=5, latent_dim=3, gen_hidden=(4, 3), dis_hidden=(3, 4), gen_activation="tanh",
                     dis_activation="softplus")
CONV = gan.GANConfig(input_dim=64, latent_dim=2,
                     generator=(Dense(8, "relu"), Reshape((2, 2, 2)), ConvTranspose(2, 3, 2, "tanh"),
                                ConvTranspose(1, 3, 2), Flatten()),
                     discriminator=(Reshape((8, 8, 1)), Conv(2, 3, 2, "leaky_relu"), Conv(2, 3, 2, "tanh"),
                                    Flatten(), Dense(3, "leaky_relu"), Dense(1)), real_label=0.9)
# the DCGAN's shape (specs.dcgan_generator): batch norm before G's activations, from the batch's own statistics
CONV_BN = gan.GANConfig(input_dim=64, latent_dim=2,
                        generator=(Dense(8), BatchNorm("relu"), Reshape((2, 2, 2)), ConvTranspose(2, 3, 2),
                                   BatchNorm("tanh"), ConvTranspose(1, 3, 2), Flatten()),
                        discriminator=(Reshape((8, 8, 1)), Conv(2, 3, 2, "leaky_relu_0.2"), Flatten(), Dense(1)))
CONFIGS = [MLP, DEEP, CONV, CONV_BN]
IDS = ["mlp", "deep", "conv", "conv-batch-norm"]
N = 3        # real images and fakes per batch; equal, so one half's rows fit the other half's gradient


def random_params(be, config, seed=0):
    """Both players' parameters, drawn on the host so that every backend gets the same numbers."""
    rng = np.random.default_rng(seed)
    return {k: be.asarray(0.5 * rng.standard_normal(s)) for k, s in vae.param_shapes(config).items()}


def batch(be, config, seed=0):
    """Real pixels in [0, 1] (N, D) and a frozen z (N, L)."""
    rng = np.random.default_rng(seed)
    return be.asarray(rng.uniform(0, 1, (N, config.input_dim))), be.asarray(rng.standard_normal((N, config.latent_dim)))


def d_loss_fn(module, params, x, z, config):
    """D's loss as a function of D's weights alone (G's held), for check_model_gradients."""
    held = gan.player(params, "gen")

    def loss_fn(dis):
        parts, grads = module.d_loss_and_grads({**held, **dis}, x, z, config)
        return parts.loss, grads
    return loss_fn


def g_loss_fn(module, params, z, config):
    """G's loss as a function of G's weights alone (D's held)."""
    held = gan.player(params, "dis")

    def loss_fn(gen):
        parts, grads = module.g_loss_and_grads({**held, **gen}, z, config)
        return parts.loss, grads
    return loss_fn


def errors(module, params, x, z, config):
    """max rel_error of D's and of G's gradient against finite differences."""
    d = check_model_gradients(d_loss_fn(module, params, x, z, config), gan.player(params, "dis"))
    g = check_model_gradients(g_loss_fn(module, params, z, config), gan.player(params, "gen"))
    return max_error(d), max_error(g)


def direct_losses(be, params, x, z, config):
    """(L_D, L_G) from their definitions with log and sigmoid in float64 on the host (t: D's real label)."""
    def D(images):
        return 1.0 / (1.0 + np.exp(-be.to_numpy(gan.discriminate(params, images, config))))
    fake, t = gan.generate(params, z, config), config.real_label
    real = -np.mean(t * np.log(D(x)) + (1.0 - t) * np.log(1.0 - D(x)))
    return real - np.mean(np.log(1.0 - D(fake))), -np.mean(np.log(D(fake)))


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_both_players_gradients_match_finite_differences(name, config):
    be = make(name)
    params = random_params(be, config)
    x, z = batch(be, config)
    d_error, g_error = errors(gan, params, x, z, config)
    assert d_error < 1e-6 and g_error < 1e-6, (d_error, g_error)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_both_losses_match_their_definitions(name, config):
    be = make(name)
    params = random_params(be, config, seed=1)
    x, z = batch(be, config, seed=1)
    d, _ = gan.d_loss_and_grads(params, x, z, config)
    g, _ = gan.g_loss_and_grads(params, z, config)
    want_d, want_g = direct_losses(be, params, x, z, config)
    assert abs(float(d.loss) - want_d) < 1e-10 and abs(float(g.loss) - want_g) < 1e-10


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_each_player_gets_gradients_for_its_own_weights_only(config):
    """D's step gives G nothing (the fakes are data); G's step leaves D's weights as they are."""
    be = make("numpy")
    params = random_params(be, config, seed=2)
    x, z = batch(be, config, seed=2)
    _, d_grads = gan.d_loss_and_grads(params, x, z, config)
    _, g_grads = gan.g_loss_and_grads(params, z, config)
    assert set(d_grads) == set(gan.player(params, "dis")) and set(g_grads) == set(gan.player(params, "gen"))
    from tinyvae.core.optim import Adam
    gen = gan.player(params, "gen")
    before = {k: np.array(v) for k, v in gan.player(params, "dis").items()}
    Adam(gen, lr=0.1, betas=(0.5, 0.999), fast=False).step(gen, g_grads)
    assert all(np.array_equal(params[k], v) for k, v in before.items())


def test_d_accuracy_counts_each_half():
    """acc_real: share of real images with D(x) > 1/2; acc_fake: share of fakes with D(G(z)) < 1/2."""
    be = make("numpy")
    params = random_params(be, MLP, seed=3)
    x, z = batch(be, MLP, seed=3)
    parts, _ = gan.d_loss_and_grads(params, x, z, MLP)
    assert float(parts.acc_real) == np.mean(gan.discriminate(params, x, MLP) > 0)
    assert float(parts.acc_fake) == np.mean(gan.discriminate(params, gan.generate(params, z, MLP), MLP) < 0)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_the_speed_ups_compute_the_same_numbers(config):
    """D on one batch of 2N rows gives the two passes' summed gradient; input_gradient gives net_backward's
    dx; G's step on D's step's pass (the same z) gives what it gives running G itself, bit for bit."""
    from tinyvae.core.nets import net_backward, net_forward
    be = make("numpy")
    params = random_params(be, config, seed=6)
    x, z = batch(be, config, seed=6)
    d, joint = gan.d_loss_and_grads(params, x, z, config)
    layers, two = config.discriminator_layers, {}
    for images, da in ((x, lambda a: (1 / (1 + np.exp(-a)) - config.real_label) / N),
                       (gan.generate(params, z, config), lambda a: 1 / (1 + np.exp(-a)) / N)):
        a, caches = net_forward(params, "dis", layers, images)
        g = {}
        dx = net_backward(da(a), caches, "dis", layers, g)
        np.testing.assert_allclose(gan.input_gradient(da(a), caches, layers), dx, rtol=1e-12, atol=1e-15)
        two = {k: two.get(k, 0.0) + v for k, v in g.items()}
    assert set(two) == set(joint) and all(np.allclose(joint[k], two[k], rtol=1e-12, atol=1e-15) for k in two)
    reused, fresh = gan.g_loss_and_grads(params, z, config, d.fakes), gan.g_loss_and_grads(params, z, config)
    assert float(reused[0].loss) == float(fresh[0].loss)
    assert all(np.array_equal(reused[1][k], fresh[1][k]) for k in fresh[1])


def _mutant(*changes):
    """tinyvae.core.gan with lines of its source changed, (old, new) each: a planted bug."""
    path = Path(gan.__file__)
    source = path.read_text()
    for old, new in changes:
        assert source.count(old) == 1, f"the line to mutate is gone: {old!r}"
        source = source.replace(old, new)
    module = types.ModuleType("tinyvae.core._gan_mutant")
    module.__package__ = "tinyvae.core"
    sys.modules[module.__name__] = module
    exec(compile(source, str(path), "exec"), module.__dict__)
    return module


JOINT = "net_backward(xp.concat([da_real, da_fake], axis=0)"   # D's backward over its real and fake rows
PLANTED = {
    # the real images' gradient computed with the hidden activations of the fake pass (the halves swapped)
    "real-grad-with-fake-cache": [(JOINT, "net_backward(xp.concat([da_fake, da_real], axis=0)")],
    # G's loss never backpropagated through D: D's output gradient used as the pixels' gradient
    "g-not-through-d": [("dx = input_gradient(da, dis_caches, config.discriminator_layers)",
                         "dx = da * xp.ones_like(x)")],
    # D's activations not undone on the way to dx (G's gradient through D's weights alone)
    "d-activation-skipped-in-dx": [("dout = ACTIVATIONS[layer.activation][1](dout, act_cache) @ W.T",
                                    "dout = dout @ W.T")],
    # the saturating loss's gradient, d log(1 - D)/da = -sigma(a), under the non-saturating loss
    "saturating-backward": [("da = (sigmoid(a) - 1.0) / M", "da = -sigmoid(a) / M")],
    # the saturating loss, forward and backward alike: only the forward pin sees it
    "saturating-both": [("loss = xp.mean(softplus(-a))", "loss = -xp.mean(softplus(a))"),
                        ("da = (sigmoid(a) - 1.0) / M", "da = -sigmoid(a) / M")],
    # the fakes' gradient with the real label
    "fake-with-real-label": [("da_fake = sigmoid(a_fake) / M", "da_fake = (sigmoid(a_fake) - 1.0) / M")],
    # D's weights take only the fake half's gradient: the real half's left out, not added
    "d-grads-not-added": [(JOINT, "net_backward(xp.concat([0.0 * da_real, da_fake], axis=0)")],
    # the smoothed label in the loss but the plain one in its gradient
    "smoothing-forward-only": [("da_real = (sigmoid(a_real) - t) / N", "da_real = (sigmoid(a_real) - 1.0) / N")],
    # the sigmoid at G's output skipped in the backward
    "sigmoid-skipped": [("dlogits = sigmoid_backward(dx, sig_cache)", "dlogits = dx")],
}


@pytest.mark.parametrize("config", [MLP, CONV], ids=["mlp", "conv"])
@pytest.mark.parametrize("bug", list(PLANTED))
def test_gan_checks_catch_a_planted_bug(bug, config):
    be = make("numpy")
    params = random_params(be, config, seed=4)
    x, z = batch(be, config, seed=4)
    bad = _mutant(*PLANTED[bug])
    d_error, g_error = errors(bad, params, x, z, config)
    d, _ = bad.d_loss_and_grads(params, x, z, config)
    g, _ = bad.g_loss_and_grads(params, z, config)
    want_d, want_g = direct_losses(be, params, x, z, config)
    forward_error = max(abs(float(d.loss) - want_d), abs(float(g.loss) - want_g))
    assert max(d_error, g_error) > 1e-3 or forward_error > 1e-6, (d_error, g_error, forward_error)


PACKED = gan.GANConfig(input_dim=6, latent_dim=2, gen_hidden=(5,), dis_hidden=(4,), dis_activation="leaky_relu_0.2",
                       real_label=0.9, pack=2)


def packed_batch(be, seed):
    """Four real images and four z: two packs of two for D, each half."""
    rng = np.random.default_rng(seed)
    return be.asarray(rng.uniform(0, 1, (4, 6))), be.asarray(rng.standard_normal((4, 2)))


@pytest.mark.parametrize("name", BACKENDS)
def test_packed_gradients_match_finite_differences_and_the_losses_their_definitions(name):
    """PacGAN: D judges two images a row; both players' gradients and losses as in the plain GAN."""
    be = make(name)
    params = random_params(be, PACKED, seed=5)
    x, z = packed_batch(be, seed=5)
    d_error, g_error = errors(gan, params, x, z, PACKED)
    assert d_error < 1e-6 and g_error < 1e-6, (d_error, g_error)
    d, _ = gan.d_loss_and_grads(params, x, z, PACKED)
    g, _ = gan.g_loss_and_grads(params, z, PACKED)
    want_d, want_g = direct_losses(be, params, x, z, PACKED)
    assert abs(float(d.loss) - want_d) < 1e-10 and abs(float(g.loss) - want_g) < 1e-10


def test_a_pack_is_its_images_side_by_side_in_order():
    """Row j of D's input is images 2j and 2j + 1 joined: D of the packs is D of the joined rows."""
    be = make("numpy")
    params = random_params(be, PACKED, seed=6)
    x, _ = packed_batch(be, seed=6)
    joined = np.concatenate([x[0::2], x[1::2]], axis=1)                        # (2, 12)
    want = gan.net_forward(params, "dis", PACKED.discriminator_layers, joined)[0][:, 0]
    assert np.array_equal(gan.discriminate(params, x, PACKED), want)
    assert gan.packed(x, 1) is x


PACKED_BUGS = {
    # G's loss averaged over packs, its gradient divided by the number of images
    "g-mean-over-images": [("M = z.shape[0] // k", "M = z.shape[0]")],
    # D's gradient divided by images where its loss averages over packs
    "d-mean-over-images": [("da_fake = sigmoid(a_fake) / M", "da_fake = sigmoid(a_fake) / (k * M)")],
    # D's input gradient unpacked in the wrong image order (first images of every pack, then the seconds)
    "unpacked-in-the-wrong-order": [("dx = xp.reshape(dx, x.shape)",
                                     "dx = xp.reshape(xp.permute_dims(xp.reshape(dx, (dx.shape[0], k, -1)), "
                                     "(1, 0, 2)), x.shape)")],
}


@pytest.mark.parametrize("bug", list(PACKED_BUGS))
def test_packed_gan_checks_catch_a_planted_bug(bug):
    be = make("numpy")
    params = random_params(be, PACKED, seed=7)
    x, z = packed_batch(be, seed=7)
    d_error, g_error = errors(_mutant(*PACKED_BUGS[bug]), params, x, z, PACKED)
    assert max(d_error, g_error) > 1e-3, (d_error, g_error)


def test_the_non_saturating_gradient_survives_where_the_saturating_one_vanishes():
    """When D rejects every fake (a << 0), -log D(G(z)) still pushes G; log(1 - D(G(z))) hardly does."""
    be = make("numpy")
    params = random_params(be, MLP, seed=5)
    z = batch(be, MLP, seed=5)[1]
    params["dis.1.b"] = params["dis.1.b"] - 12.0                 # D(G(z)) ~ e^-12
    assert np.all(gan.discriminate(params, gan.generate(params, z, MLP), MLP) < -8)
    _, good = gan.g_loss_and_grads(params, z, MLP)
    _, saturating = _mutant(*PLANTED["saturating-both"]).g_loss_and_grads(params, z, MLP)
    norm = lambda g: np.sqrt(sum(float(np.sum(v * v)) for v in g.values()))  # noqa: E731
    assert norm(good) > 1e3 * norm(saturating)


def test_a_discriminator_from_an_encoder():
    """critic: the encoder's layers, leaky ReLU for ReLU, a 1-unit head; the Keras presets fit."""
    from tinyvae.specs import keras_conv_decoder, keras_conv_encoder
    layers = gan.critic(keras_conv_encoder(2))
    assert layers[-1] == Dense(1) and [getattr(l, "activation", None) for l in layers[1:3]] == ["leaky_relu"] * 2
    config = gan.GANConfig(latent_dim=2, generator=keras_conv_decoder(), discriminator=layers)
    assert gan.GANConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("kwargs,message", [
    (dict(discriminator=(Dense(3),)), r"the discriminator ends in \(3,\) but must end in \(1,\): make its last "
                                      r"layer Dense\(1\)"),
    (dict(generator=(Dense(3),)), r"the generator ends in \(3,\) but must end in \(784,\)"),
    (dict(generator=(Reshape((28, 28, 1)), Dense(4))), r"generator layer 0 \(Reshape\)"),
    (dict(latent_dim=0), "latent_dim must be a positive integer"),
    (dict(dis_activation="gelu"), "unknown dis_activation 'gelu'"),
])
def test_a_gan_config_that_cannot_work_is_one_line(kwargs, message):
    with pytest.raises(InputError, match=message) as e:
        gan.GANConfig(**kwargs)
    assert "\n" not in str(e.value)


# ---- training: a smoke run on real MNIST, and the two demos on a small fake MNIST ----------------

ROOT = Path(__file__).resolve().parents[1]


def test_a_short_gan_run_on_real_mnist_moves_d_and_gives_finite_samples(tmp_path):
    """200 steps (3,200 real digits, batch 32, two epochs): D learns to tell the fakes (its accuracy on
    them moves from where it stood at initialisation), and every sample is a finite pixel in [0, 1]."""
    from tinyvae.backend import get_backend
    from tinyvae.data import load_mnist, to_unit_interval
    from tinyvae.gan_train import GANTrainConfig, d_accuracy, fit_gan
    d = load_mnist(progress=False)
    x, x_test = to_unit_interval(d.x_train[:3200]), to_unit_interval(d.x_test[:500])
    config, tconfig = gan.GANConfig(gen_hidden=(64,), dis_hidden=(64,)), GANTrainConfig(epochs=2, batch_size=32)
    be = get_backend("numpy", seed=0)
    be.reseed()
    before = d_accuracy(vae.init_params(config, be), be.asarray(x_test), be, config)["acc_fake"]
    result = fit_gan(x, x_test, config, tconfig, be, tmp_path, progress=False)
    epochs = result.metrics["epochs"]
    assert abs(epochs[-1]["test_acc_fake"] - before) > 0.1, (before, epochs)
    samples = be.to_numpy(gan.generate(result.params, be.normal((100, config.latent_dim)), config))
    assert np.all(np.isfinite(samples)) and samples.min() >= 0 and samples.max() <= 1


@pytest.fixture
def demos(monkeypatch):
    """The two demos, reading 300 + 100 fake digits (class c: a block of ink at its own place)."""
    from conftest import load_script
    from tinyvae.data import MNIST
    gan_demo, compare = load_script(ROOT / "demos" / "mnist_gan.py"), load_script(ROOT / "demos" / "mnist_compare.py")
    rng = np.random.default_rng(0)

    def digits(n):
        y = np.arange(n) % 10
        x = rng.uniform(0, 20, (n, 28, 28))
        for i, c in enumerate(y):
            x[i, 2 + 8 * (c // 4):8 + 8 * (c // 4), 2 + 6 * (c % 4):8 + 6 * (c % 4)] = rng.uniform(150, 255, (6, 6))
        return x.reshape(n, 784).astype(np.uint8), y
    d = MNIST(*digits(300), *digits(100))
    monkeypatch.setattr(sys.modules["common"], "load_mnist", lambda data_dir=None, **kw: d)
    return gan_demo, compare


SMALL = ["--hidden", "16", "--batch-size", "50", "--latent-dim", "4"]
UNJUDGED = [*SMALL, "--judge-samples", "0"]       # the GAN demo without its final scoring


def test_gan_demo_writes_a_grid_per_epoch_the_curves_and_resumes_exactly(tmp_path, demos, capsys):
    import json
    gan_demo, _ = demos
    out, again = tmp_path / "run", tmp_path / "straight"
    judged = ["--judge-samples", "200", "--judge", str(tmp_path / "judge" / "checkpoint.npz"),
              "--dis-activation", "leaky_relu_0.2", "--real-label", "0.9"]
    assert gan_demo.main([*SMALL, *judged, "--epochs", "2", "--out", str(out)]) == 0
    assert {"checkpoint.npz", "metrics.json", "samples.png", "gan_curves.png", "samples_001.png",
            "samples_002.png", "judged.json"} <= {p.name for p in out.iterdir()}
    row = json.loads((out / "judged.json").read_text())
    assert row["samples"] == 200 and 1 <= row["classifier_score"] <= 10 and abs(sum(row["label_shares"]) - 1) < 1e-9
    assert "classifier score" in capsys.readouterr().out
    assert gan_demo.main([*SMALL, *judged[4:], "--judge-samples", "0", "--epochs", "3", "--out", str(out),
                          "--resume"]) == 0
    assert gan_demo.main([*SMALL, *judged[4:], "--judge-samples", "0", "--epochs", "3", "--out", str(again)]) == 0
    resumed, straight = (json.loads((p / "metrics.json").read_text())["epochs"] for p in (out, again))
    strip = lambda es: [{k: v for k, v in e.items() if "seconds" not in k} for e in es]  # noqa: E731
    assert len(resumed) == 3 and strip(resumed) == strip(straight)
    assert "D right on real" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["--beta1", "1"], "argument --beta1: must be a finite number in [0, 1), got 1"),
    (["--arch", "conv", "--hidden", "8"], "--hidden and --gen-hidden set the MLP's sizes and --arch conv has fixed"),
    (["--arch", "conv", "--gen-hidden", "8"], "--hidden and --gen-hidden set the MLP's sizes"),
    (["--arch", "dcgan", "--hidden", "8"], "--hidden and --gen-hidden set the MLP's sizes and --arch dcgan has"),
    (["--arch", "dcgan", "--pack", "2"], "--pack sets the MLP discriminator's input and --arch dcgan's D takes"),
    (["--init", "he"], "argument --init: invalid choice"),
    (["--no-batch-norm"], "--no-batch-norm takes the batch norm out of --arch dcgan's G, and --arch mlp's G has"),
    (["--lr", "0"], "argument --lr"),
    (["--real-label", "0.4"], "argument --real-label: must be a finite number in (0.5, 1]"),
    (["--dis-activation", "gelu"], "argument --dis-activation"),
    (["--pack", "3"], "batch_size 64 is not a multiple of pack 3"),
    (["--pack", "0"], "argument --pack"),
])
def test_gan_demo_errors_are_one_line(argv, message, tmp_path, demos, capsys):
    gan_demo, _ = demos
    try:
        status = gan_demo.main([*argv, "--out", str(tmp_path / "x")])
    except SystemExit as e:                    # a bad flag: argparse's exit, one line
        status = e.code
    assert status == 2
    from conftest import one_line
    assert message in one_line(capsys.readouterr().err)


def test_a_packed_gan_trains_on_whole_packs_only(tmp_path, demos, capsys):
    """--pack 2 with 7 images in batches of 4: the last batch's odd image is left out, never packed
    with nothing; the epoch's numbers are means over the 6 images trained on, D's accuracy of packs."""
    import json
    gan_demo, _ = demos
    assert gan_demo.main([*UNJUDGED, "--batch-size", "4", "--limit", "7", "--pack", "2", "--epochs", "1",
                          "--out", str(tmp_path)]) == 0
    epoch = json.loads((tmp_path / "metrics.json").read_text())["epochs"][0]
    assert all(np.isfinite(v) for k, v in epoch.items() if isinstance(v, float))
    shares = [epoch["train_acc_real"], epoch["train_acc_fake"]]                 # thirds: (4 a + 2 b) / 6 images
    assert all(abs(v * 3 - round(v * 3)) < 1e-9 for v in shares) and 0 < sum(shares), epoch
    assert "packs of 2" in capsys.readouterr().out


def test_the_dcgan_demo_trains_g_with_batch_norm_and_resumes_exactly(tmp_path, demos, capsys):
    """--arch dcgan: G's BatchNorm scales and shifts are trained and saved (gen.*.gamma, gen.*.beta), the
    samples are finite pixels, and a resumed run's epochs are a straight run's."""
    import json
    gan_demo, _ = demos
    args = ["--arch", "dcgan", "--batch-size", "50", "--latent-dim", "4", "--judge-samples", "0"]
    assert gan_demo.main([*args, "--epochs", "1", "--out", str(tmp_path / "a")]) == 0
    assert gan_demo.main([*args, "--epochs", "2", "--out", str(tmp_path / "a"), "--resume"]) == 0
    assert gan_demo.main([*args, "--epochs", "2", "--out", str(tmp_path / "b")]) == 0
    with np.load(tmp_path / "a" / "checkpoint.npz") as ckpt:
        names = set(ckpt.files)
    assert {"param/gen.1.gamma", "param/gen.1.beta", "param/gen.4.gamma", "param/gen.4.beta"} <= names, names
    resumed, straight = (json.loads((tmp_path / r / "metrics.json").read_text())["epochs"] for r in "ab")
    strip = lambda es: [{k: v for k, v in e.items() if "seconds" not in k} for e in es]  # noqa: E731
    assert strip(resumed) == strip(straight) and all(np.isfinite(e["train_g_loss"]) for e in resumed)
    assert "G dcgan, D dcgan" in capsys.readouterr().out


def test_the_judges_demo_scores_the_same_samples_with_each_judge(tmp_path, demos, capsys):
    """demos/judges.py: each judge trained for its epochs and kept; the same samples and the test images
    scored by each; a kept judge of other epochs refused in one line; the run's folder left as it was."""
    import json
    from conftest import load_script, one_line
    gan_demo, _ = demos
    judges = load_script(ROOT / "demos" / "judges.py")
    run = tmp_path / "gan"
    assert gan_demo.main([*UNJUDGED, "--epochs", "1", "--out", str(run)]) == 0
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    args = ["--runs", str(run), "--samples", "200", "--judge-epochs", "1", "2", "--out", str(tmp_path / "j")]
    assert judges.main(args) == 0
    printed = capsys.readouterr().out
    assert "judge 1 epochs" in printed and "judge 2 epochs" in printed and "| MNIST test images |" in printed
    got = json.loads((tmp_path / "j" / "metrics.json").read_text())
    assert set(got["rows"]) == {"MNIST test images", str(run)} and set(got["judge_test_accuracy"]) == {"1", "2"}
    scores = [got["rows"][str(run)][e]["classifier_score"] for e in ("1", "2")]
    assert all(1 <= s <= 10 for s in scores) and scores[0] != scores[1]       # two judges, two verdicts
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before
    (tmp_path / "j" / "judge-2").rename(tmp_path / "j" / "judge-3")          # a 2-epoch judge where 3 is asked
    assert judges.main([*args[:4], "--judge-epochs", "3", "--out", str(tmp_path / "j"), "--overwrite"]) == 2
    assert "trained for 2 epochs, not 3" in one_line(capsys.readouterr().err)


def test_gan_demo_refuses_to_replace_a_run_in_one_line(tmp_path, demos, capsys):
    gan_demo, _ = demos
    args = [*UNJUDGED, "--epochs", "1", "--out", str(tmp_path)]
    assert gan_demo.main(args) == 0
    capsys.readouterr()
    assert gan_demo.main(args) == 2
    from conftest import one_line
    assert "already holds checkpoint.npz" in one_line(capsys.readouterr().err)


def test_compare_demo_scores_three_models_and_scores_them_again_from_their_runs(tmp_path, demos, capsys):
    import json
    _, compare = demos
    small = [*SMALL, "--epochs", "1", "--gan-epochs", "1", "--samples", "200", "--parzen-images", "50",
             "--iw-k", "3", "--judge", str(tmp_path / "judge" / "checkpoint.npz")]
    assert compare.main([*small, "--out", str(tmp_path / "a")]) == 0
    first = json.loads((tmp_path / "a" / "metrics.json").read_text())["table"]
    assert set(first) == {"MNIST", "VAE", "AE", "GAN"}
    assert "neg_log_px" in first["VAE"] and "neg_log_px" not in first["GAN"]
    assert all(0 <= r["rarest_digit"] <= 0.1 and 1 <= r["classifier_score"] <= 10 for r in first.values())
    assert compare.main([*small, "--from", str(tmp_path / "a"), "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["table"] == first
    assert {"samples.png", "interpolations.png"} <= {p.name for p in (tmp_path / "b").iterdir()}
