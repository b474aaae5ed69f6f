"""Bits-back coding with a VAE (tinyvae/bitsback.py): real test images come back bit for bit on every
backend and dtype; what the coder charges each image is recomputed here from the core's networks and
the standard library's normal distribution; planted bugs are caught; bad input is one line."""
import dataclasses
import errno
import json
import math
import os
import sys
import types
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest

from conftest import load_script, make, one_line
from tinyvae import bitsback
from tinyvae.api import init_params
from tinyvae.checkpoint import OutputError
from tinyvae.core.distributions import bernoulli_nll_forward
from tinyvae.core.vae import VAEConfig, decode, encode
from tinyvae.data import load_mnist
from tinyvae.errors import DataError, InputError
from tinyvae.rans import Message, push_overhead_bits

CONFIG = VAEConfig(input_dim=784, enc_hidden=(32,), dec_hidden=(32,), latent_dim=8, init="pytorch")
PRECISIONS = bitsback.Precisions(latent=8, posterior=20, pixels=24)
LANES = 4
N_IMAGES = 10


@pytest.fixture(scope="module")
def images():
    """The first N_IMAGES MNIST test images, binarized once with a fixed seed, as the demo does. (N, 784) bool"""
    try:
        d = load_mnist(progress=False)
    except Exception as e:                                  # noqa: BLE001  (no cache, no network)
        pytest.skip(f"MNIST not available: {e}")
    x = d.x_test[:N_IMAGES].reshape(N_IMAGES, -1)
    return np.random.RandomState(0).random_sample(x.shape) < x / 255


def small_vae(be, logvar_bias=-3.0, logit_bias=None, seed=0):
    """CONFIG's parameters, drawn, with q(z | x) narrowed (sigma about e^(logvar_bias / 2)) and,
    given logit_bias, a decoder that is sure of every pixel (+-logit_bias, alternating)."""
    params = init_params(CONFIG, make(be.name, be.dtype_name, seed=seed))
    b = be.to_numpy(params["enc.1.b"]).astype(np.float64)
    b[CONFIG.latent_dim:] = logvar_bias
    params["enc.1.b"] = be.asarray(b)
    if logit_bias is not None:
        params["dec.1.W"] = be.asarray(np.zeros((32, 784)))
        params["dec.1.b"] = be.asarray(logit_bias * (-1.0) ** np.arange(784))
    return params


def round_trip(module, be, params, x, lanes=LANES):
    codec = module.Codec(params, CONFIG, be)
    packed = module.compress(x, codec, PRECISIONS, lanes=lanes, seed=7, progress=False)
    back = module.decompress(module.from_bytes(module.to_bytes(packed)), codec, progress=False)
    return packed, back


# ---------------------------------------------------------------------------
# The discretisation
# ---------------------------------------------------------------------------


def reference_cdf(t):
    """Phi(t) from math.erfc: accurate in both tails (NormalDist.cdf loses the lower tail below 1e-16)."""
    return 0.5 * math.erfc(-t / math.sqrt(2.0))


@pytest.mark.parametrize("latent", [1, 3, 8])
def test_buckets_have_equal_mass_under_the_prior(latent):
    K = 2**latent
    edges, centres = bitsback.bucket_edges(latent), bitsback.bucket_centres(latent)
    assert edges.shape == (K + 1,) and centres.shape == (K,)
    assert edges[0] == -math.inf and edges[-1] == math.inf
    np.testing.assert_allclose([NormalDist().cdf(e) for e in edges[1:-1]], np.arange(1, K) / K, atol=1e-12)
    assert np.all((edges[:-1] < centres) & (centres < edges[1:]))                # each centre inside its bucket


def test_the_normal_cdf_matches_the_standard_library_in_both_tails():
    t = np.concatenate([np.linspace(-37.0, 8.0, 4501), [-np.inf, np.inf, 0.0]])
    ref = np.array([reference_cdf(v) for v in t])
    got = bitsback.normal_cdf(t)
    lower = ref <= 0.5
    assert np.max(np.abs(got[lower] - ref[lower]) / np.maximum(ref[lower], 1e-300)) < 2e-7
    assert np.max(np.abs(got - ref)) < 1e-7
    fine = bitsback.normal_cdf(np.linspace(-10, 10, 2_000_001))
    assert np.all(np.diff(fine) >= 0)                                          # never decreasing


@pytest.mark.parametrize("mu,sigma", [(0.0, 1.0), (0.3, 0.2), (-2.5, 0.01), (8.0, 1e-6), (0.0, 30.0)])
def test_the_posterior_is_the_normal_mass_of_each_bucket(mu, sigma):
    """C_i = floor(Phi((e_i - mu) / sigma) (2^prec - K)) + i, against the standard library; every
    bucket at least 1, the whole range used. sigma is a standard deviation."""
    latent, prec = 6, 20
    S = 2**prec - 2**latent
    edges = bitsback.bucket_edges(latent)
    cdf = bitsback.posterior_cdf(np.array([mu]), np.array([sigma]), edges, prec)[0]
    expected = [0] + [math.floor(reference_cdf((e - mu) / sigma) * S) + i for i, e in enumerate(edges[1:-1], 1)] \
        + [2**prec]
    assert cdf.dtype == np.uint64 and cdf[0] == 0 and cdf[-1] == 2**prec
    assert np.all(np.diff(cdf.astype(np.int64)) >= 1)
    assert np.max(np.abs(cdf.astype(np.int64) - np.array(expected))) <= 1


def test_pixel_frequencies_are_never_zero_or_the_whole_range():
    logits = np.array([[-1e4, -60.0, -5.0, 0.0, 5.0, 60.0, 1e4]])
    f = bitsback.bernoulli_freqs(logits, 24)
    assert f.dtype == np.uint64 and f.min() == 1 and f.max() == 2**24 - 1
    assert f[0, 3] == 2**23 and f[0, 4] == round(2**24 / (1 + math.exp(-5.0)))


# ---------------------------------------------------------------------------
# Round trips, on every backend and dtype
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["numpy", "array_api_strict"])
def test_real_test_images_come_back_bit_for_bit(images, name, dtype):
    be = make(name, dtype)
    packed, back = round_trip(bitsback, be, small_vae(be), images)
    assert back.dtype == np.uint8 and np.array_equal(back, images)
    assert packed.trace.back.min() > 0                     # every image borrowed bits, and they came back
    assert packed.n_images == N_IMAGES and packed.trace.buckets.shape == (N_IMAGES, CONFIG.latent_dim)


@pytest.mark.parametrize("name", ["numpy", "array_api_strict"])
def test_an_image_costs_its_negative_elbo_on_average(images, name):
    """The coder's charge per image (one z each) against the -ELBO in bits (one z each, from the core's
    neg_elbo_terms): the same mean within 1% on ten images; on the demo's 10,000 it is within 0.1%."""
    be = make(name, "float32")
    codec = bitsback.Codec(small_vae(be), CONFIG, be)
    packed = bitsback.compress(images, codec, PRECISIONS, lanes=LANES, progress=False)
    neg_elbo = codec.neg_elbo_bits(images)
    assert neg_elbo.shape == (N_IMAGES,) and np.all(np.isfinite(neg_elbo))
    assert packed.trace.net.mean() == pytest.approx(neg_elbo.mean(), rel=0.01)


def test_a_model_sure_of_every_pixel_still_codes_the_images_it_is_wrong_about(images):
    """Decoder logits of +-60 (probabilities 1 - 1e-26) and a posterior 2e-9 wide: every
    frequency is kept inside [1, 2^prec - 1], so the pixels it gets wrong cost 24 bits, not a crash."""
    be = make("numpy")
    packed, back = round_trip(bitsback, be, small_vae(be, logvar_bias=-40.0, logit_bias=60.0), images)
    assert np.array_equal(back, images)
    assert packed.trace.pixels.max() > 24 * 100                                # many pixels it was sure of, wrong


@pytest.mark.parametrize("lanes", [1, 3, 10, 16])
def test_any_number_of_lanes_round_trips(images, lanes):
    """One image per lane or several; the last batch may fill only some of the lanes."""
    be = make("numpy")
    _, back = round_trip(bitsback, be, small_vae(be), images, lanes=lanes)
    assert np.array_equal(back, images)


# ---------------------------------------------------------------------------
# What each image costs, recomputed independently
# ---------------------------------------------------------------------------


def independent_costs(be, params, x, trace):
    """Each image's bits for its buckets, from the core's networks and NormalDist, not from the coder:
    back = sum_l -log2 Q(bucket), pixels = -log2 p(x | bucket centres) (the continuous probabilities)."""
    K, S = 2**PRECISIONS.latent, 2**PRECISIONS.posterior - 2**PRECISIONS.latent
    prior = NormalDist()
    edge = [-math.inf] + [prior.inv_cdf(i / K) for i in range(1, K)] + [math.inf]
    mu, logvar = (be.to_numpy(a).astype(np.float64) for a in encode(params, be.asarray(x * 1.0), CONFIG))

    def C(i, m, sd):                              # the integer CDF of N(m, sd^2) at edge i
        return math.floor(reference_cdf((edge[i] - m) / sd) * S) + i if 0 < i < K else i * (S + K) // K

    back = np.zeros(x.shape[0])
    for n, l in np.ndindex(*trace.buckets.shape):
        b, m, sd = int(trace.buckets[n, l]), mu[n, l], math.exp(logvar[n, l] / 2)
        back[n] += PRECISIONS.posterior - math.log2(C(b + 1, m, sd) - C(b, m, sd))
    centres = np.array([prior.inv_cdf((i + 0.5) / K) for i in range(K)])
    logits = decode(params, be.asarray(centres[trace.buckets]), CONFIG)
    pixels = be.to_numpy(bernoulli_nll_forward(logits, be.asarray(x * 1.0))[0]) / math.log(2.0)
    return back, pixels


def check_costs(module, images):
    """The trace against independent_costs, and the file's net length against the trace's sum
    within the coder's stated overhead."""
    be = make("numpy")
    params = small_vae(be)
    packed, back_images = round_trip(module, be, params, images)
    assert np.array_equal(back_images, images)
    trace = packed.trace
    back, pixels = independent_costs(be, params, images, trace)
    np.testing.assert_allclose(trace.back, back, atol=0.01 * CONFIG.latent_dim)
    np.testing.assert_allclose(trace.pixels, pixels, rtol=1e-5, atol=0.05)
    assert np.all(trace.prior == CONFIG.latent_dim * PRECISIONS.latent)
    # The message's information, 32 bits a word below the heads plus log2 of each head, grew by the
    # images' costs, within push_overhead_bits per push or pop; the initial heads and the words
    # borrowed from below the stack are the initial bits.
    assert packed.initial_words > 0                       # the first images borrowed words
    ops = N_IMAGES * (CONFIG.input_dim + 2 * CONFIG.latent_dim)
    slack = ops * 2 * push_overhead_bits(max(PRECISIONS.pixels, PRECISIONS.posterior))

    def head_bits(heads):
        return float(np.sum(np.log2(heads.astype(np.float64))))
    pairs = packed.words[:2 * LANES].reshape(LANES, 2).astype(np.float64)
    info = 32 * (packed.words.shape[0] - 2 * LANES) + head_bits(pairs[:, 0] + 2.0**32 * pairs[:, 1])
    initial = head_bits(Message.random(LANES, packed.seed).head) + 32 * packed.initial_words
    assert abs(info - initial - trace.net.sum()) <= slack
    # So the rate without the initial bits is the images' cost, plus at most 32 bits a lane.
    assert -slack - LANES < packed.net_bits - trace.net.sum() < 32 * LANES + slack
    # The file writes each head out in 64 bits: what it holds, and up to 32 more.
    assert packed.initial_bits == 64 * LANES + 32 * packed.initial_words
    assert packed.net_bits == packed.bits - packed.initial_bits
    assert -LANES < packed.net_bits - (info - initial) < 32 * LANES


def test_each_image_costs_what_its_probabilities_say(images):
    check_costs(bitsback, images)


def _mutant(*changes):
    """tinyvae.bitsback with lines of its source changed: a planted bug."""
    path = Path(bitsback.__file__)
    source = path.read_text()
    for old, new in changes:
        assert source.count(old) == 1, f"the line to mutate is gone: {old!r}"
        source = source.replace(old, new)
    module = types.ModuleType("tinyvae._bitsback_mutant")
    module.__package__ = "tinyvae"
    sys.modules[module.__name__] = module
    exec(compile(source, str(path), "exec"), module.__dict__)
    return module


@pytest.mark.parametrize("changes", [
    # the posterior's scale taken as its variance, exp(logvar), not its standard deviation
    [("sigma = np.exp(0.5 * self.backend.to_numpy(logvar)", "sigma = np.exp(1.0 * self.backend.to_numpy(logvar)")],
    # the initial bits counted as payload: all of them, or the words borrowed from below the stack
    [("return self.bits - self.initial_bits", "return self.bits")],
    [("return 2 * WORD_BITS * self.lanes + WORD_BITS * self.initial_words", "return 2 * WORD_BITS * self.lanes")],
], ids=["variance-for-sd", "initial-bits-as-payload", "borrowed-words-as-payload"])
def test_planted_bugs_in_what_an_image_costs_are_caught(images, changes):
    with pytest.raises(AssertionError):
        check_costs(_mutant(*changes), images)


@pytest.mark.parametrize("changes", [
    # a pixel of probability 0 (or 1): the frequencies not kept inside [1, 2^prec - 1]
    [("return np.clip(np.rint(p * M), 1, M - 1).astype(np.uint64)", "return np.rint(p * M).astype(np.uint64)")],
    # a posterior bucket of frequency 0, and one of the whole range
    [("counts = np.floor(mass * ((1 << prec) - K))", "counts = np.floor(mass * (1 << prec))"),
     ("return counts.astype(np.uint64) + np.arange(K + 1, dtype=np.uint64)", "return counts.astype(np.uint64)")],
], ids=["pixel-frequency-0", "posterior-frequency-0"])
def test_planted_zero_frequencies_are_caught(images, changes):
    be = make("numpy")
    params = small_vae(be, logvar_bias=-40.0, logit_bias=60.0)
    with pytest.raises((InputError, DataError, AssertionError)):
        _, back = round_trip(_mutant(*changes), be, params, images)
        assert np.array_equal(back, images)


# ---------------------------------------------------------------------------
# Bad input: one line, and nothing written half
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def packed_file(images):
    be = make("numpy")
    codec = bitsback.Codec(small_vae(be), CONFIG, be)
    packed = bitsback.compress(images, codec, PRECISIONS, lanes=LANES, progress=False)
    return codec, packed, bitsback.to_bytes(packed)


@pytest.mark.parametrize("x,match", [
    (np.full((2, 784), 0.5), "pixel 0 is 0.5, not 0 or 1"),
    (np.where(np.eye(2, 784) > 0, np.nan, 0.0), "not 0 or 1"),
    (np.zeros((2, 783)), r"expected \(N, 784\)"),
    (np.zeros((2, 28, 28)), r"expected \(N, 784\)"),
    (np.zeros((0, 784)), r"expected \(N, 784\)"),
    (np.array([["0"] * 784]), "dtype"),
])
def test_images_that_are_not_binary_are_one_line(packed_file, x, match):
    codec, _, _ = packed_file
    with pytest.raises(InputError, match=match) as e:
        bitsback.compress(x, codec, progress=False)
    one_line(str(e.value))


def test_a_file_made_with_another_model_is_refused(packed_file):
    """Another model of the same shape (the wrong checkpoint), and the same model in another dtype."""
    _, packed, _ = packed_file
    for be, seed in ((make("numpy"), 1), (make("numpy", "float32"), 0)):
        other = bitsback.Codec(small_vae(be, seed=seed), CONFIG, be)
        with pytest.raises(InputError, match="compressed with model .* decompress with the checkpoint") as e:
            bitsback.decompress(packed, other, progress=False)
        one_line(str(e.value))


def _patched(data, offset, value):
    out = bytearray(data)
    out[offset] ^= value
    return bytes(out)


@pytest.mark.parametrize("damage,match", [
    (lambda d: d[:3], "not a tinyvae bits-back file"),
    (lambda d: b"PK\x03\x04" + d[4:], "not a tinyvae bits-back file"),
    (lambda d: d[:40], "truncated: 40 bytes, shorter than"),
    (lambda d: d[:-4], "truncated"),
    (lambda d: d[:len(d) // 2], "truncated"),
    (lambda d: d + b"\0\0\0\0", "longer than its header says"),
    (lambda d: _patched(d, len(d) - 5, 0x10), "corrupted"),                   # a bit of the message
    (lambda d: _patched(d, 50, 0x01), "corrupted"),                           # a bit of the header
    (lambda d: d[:4] + (99).to_bytes(2, "little") + d[6:], "newer than this tinyvae reads"),
], ids=["short", "zip", "header-cut", "last-word-cut", "half", "trailing", "message-bit", "header-bit", "newer"])
def test_truncated_or_corrupted_files_are_one_line(packed_file, damage, match):
    _, _, data = packed_file
    with pytest.raises(DataError, match=match) as e:
        bitsback.from_bytes(damage(data), "test.bbans")
    assert one_line(str(e.value)).startswith("test.bbans")


def test_a_file_whose_initial_bits_do_not_come_back_is_refused(packed_file):
    """Settings that pass every header check but are not the ones the message was made with: the
    decoder's last check, that it ends on exactly the initial random bits, sees it."""
    codec, packed, _ = packed_file
    for changed in (dataclasses.replace(packed, seed=packed.seed + 1),
                    dataclasses.replace(packed, initial_words=packed.initial_words + 1)):
        with pytest.raises(DataError, match="initial bits") as e:
            bitsback.decompress(bitsback.from_bytes(bitsback.to_bytes(changed)), codec, progress=False)
        one_line(str(e.value))


def test_files_are_written_whole_or_not_at_all(packed_file, tmp_path, monkeypatch):
    codec, packed, data = packed_file
    path = bitsback.write_file(tmp_path / "test.bbans", packed)
    assert path.read_bytes() == data
    assert np.array_equal(bitsback.decompress(bitsback.read_file(path), codec, progress=False),
                          bitsback.decompress(packed, codec, progress=False))

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", disk_full)
    smaller = dataclasses.replace(packed, words=packed.words[:10])
    with pytest.raises(OutputError, match="No space left") as e:
        bitsback.write_file(path, smaller)
    one_line(str(e.value))
    assert path.read_bytes() == data and sorted(p.name for p in tmp_path.iterdir()) == ["test.bbans"]


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(DataError, match="cannot read") as e:
        bitsback.read_file(tmp_path / "nothing.bbans")
    one_line(str(e.value))


def test_only_a_bernoulli_vae_without_labels_can_code():
    be = make("numpy")
    for config in (VAEConfig(likelihood="gaussian", enc_hidden=(8,), dec_hidden=(8,), latent_dim=2),
                   VAEConfig(n_classes=10, enc_hidden=(8,), dec_hidden=(8,), latent_dim=2)):
        with pytest.raises(InputError, match="Bernoulli decoder and no label"):
            bitsback.Codec(init_params(config, be), config, be)


@pytest.mark.parametrize("fields", [dict(latent=8, posterior=8), dict(posterior=33), dict(pixels=40),
                                    dict(latent=17, posterior=30), dict(latent=0)])
def test_precisions_that_do_not_fit_are_one_line(fields):
    with pytest.raises(InputError) as e:
        bitsback.Precisions(**fields)
    one_line(str(e.value))


# ---------------------------------------------------------------------------
# The demo: a short real run, and its one-line refusals
# ---------------------------------------------------------------------------


def test_the_demo_compresses_checks_and_refuses_bad_files_in_one_line(images, tmp_path, capsys):
    """demos/mnist_compress.py on 60 test images with a small VAE trained for one epoch on 60: the
    table, the record, decompressing the file again, and one line for a file it cannot take."""
    demo = load_script(Path(__file__).resolve().parents[1] / "demos" / "mnist_compress.py")
    small = ["--limit", "60", "--epochs", "1", "--hidden", "16", "--latent-dim", "4", "--lanes", "16"]
    assert demo.main([*small, "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "lossless: all 60 images decompressed bit for bit" in out
    assert all(name in out for name in ("the model's test -ELBO", "gzip", "bz2", "lzma"))
    record = json.loads((tmp_path / "a" / "compression.json").read_text())
    bpp = record["bits_per_pixel"]
    assert bpp["bits-back: the file less the initial bits"] < bpp["bits-back: the file"]
    assert record["net_bits"] == pytest.approx(60 * record["neg_elbo_bits_per_image"], rel=0.05)
    packed = tmp_path / "a" / "mnist_test.bbans"
    assert demo.main(["--from", str(tmp_path / "a"), "--decompress", str(packed), "--limit", "60"]) == 0
    assert "they are the first 60 MNIST test images" in capsys.readouterr().out

    assert demo.main([*small, "--seed", "1", "--out", str(tmp_path / "b")]) == 0      # another model
    capsys.readouterr()
    cut = tmp_path / "cut.bbans"
    cut.write_bytes(packed.read_bytes()[:-7])
    for argv, words in ((["--from", str(tmp_path / "b"), "--decompress", str(packed)], "compressed with model"),
                        (["--from", str(tmp_path / "a"), "--decompress", str(cut)], "is truncated"),
                        (["--decompress", str(packed)], "needs --from"),
                        ([*small, "--posterior-bits", "8", "--out", str(tmp_path / "c")], "--posterior-bits=8")):
        assert demo.main(argv) == 2
        err = one_line(capsys.readouterr().err)
        assert err.startswith("error: ") and words in err, err
