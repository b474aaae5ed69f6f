"""Bits-back coding with a VAE (BB-ANS: Townsend, Bird & Barber, 2019): lossless, at the -ELBO's rate.

One image x goes onto an rANS message (tinyvae/rans.py) in three steps:

    1. pop  z with q(z | x)     the message shrinks by -log2 q(z | x): bits borrowed, and z ~ q
    2. push x with p(x | z)     it grows by -log2 p(x | z)
    3. push z with p(z)         it grows by -log2 p(z)

so it grows by -log2 p(x | z) - log2 p(z) + log2 q(z | x), whose mean over z ~ q
is the negative ELBO, in bits. Decoding runs the steps backwards: pop z with
p(z), pop x with p(x | z), push z with q(z | x), which puts the borrowed bits
back; after the last image the message is the random bits it started from.

A coder needs integers, so each latent dimension is cut into K = 2^latent
buckets of equal mass under the prior N(0, 1) (edges at the prior's
quantiles): the prior puts 1/K on each bucket, q(z | x) is the mass of
N(mu, sigma^2) on each bucket as an integer CDF, and the decoder's Bernoulli
probabilities are taken at the bucket centres as integer frequencies, never 0
and never the whole range. The networks are the core's (core.vae.encode and
decode), run on the model's backend; the tables and the coder are NumPy.

Images are coded `lanes` at a time, one per head of the message: image i goes
to lane i % lanes, batch i // lanes; the decoder runs the batches backwards.

    codec = Codec(params, config, backend)
    packed = compress(x, codec)              # x (N, 784) of 0s and 1s
    write_file("test.bbans", packed)
    assert (decompress(read_file("test.bbans"), codec) == x).all()

Derivation: docs/compression.md#why-the-elbo-is-a-code-length
"""
from __future__ import annotations

import hashlib
import json
import math
import struct
import zlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from statistics import NormalDist

import numpy as np
from tqdm import tqdm

from .checkpoint import atomic_write
from .checks import Checked, Int, check_params
from .core.vae import decode, encode, neg_elbo_terms
from .errors import DataError, InputError
from .rans import MAX_PREC, WORD_BITS, Message, cdf_lookup, initial_bits_returned, uniform

MAGIC = b"TVBB"
FORMAT = 1


@dataclass(frozen=True)
class Precisions(Checked):
    """The integer resolution of the three distributions, in bits.

    latent:    each latent dimension is cut into 2^latent buckets of equal prior mass;
    posterior: q(z | x)'s CDF counts in units of 2^-posterior (latent < posterior <= 32);
    pixels:    p(x | z)'s Bernoulli frequencies count in units of 2^-pixels (<= 32).
    """

    latent: int = 8
    posterior: int = 20
    pixels: int = 24

    RULES = dict(latent=Int(1), posterior=Int(2), pixels=Int(1))

    def __post_init__(self):
        super().__post_init__()
        if self.latent > 16 or not self.latent < self.posterior <= MAX_PREC or self.pixels > MAX_PREC:
            raise InputError(f"precisions latent={self.latent}, posterior={self.posterior}, pixels={self.pixels} "
                             f"do not fit: need latent <= 16, latent < posterior <= {MAX_PREC} and "
                             f"pixels <= {MAX_PREC}, e.g. 8, 20, 24")


# ---------------------------------------------------------------------------
# Discretisation: buckets of equal prior mass, and the two integer tables
# ---------------------------------------------------------------------------


@cache
def bucket_edges(latent: int) -> np.ndarray:
    """The K + 1 bucket edges, K = 2^latent: -inf, Phi^-1(1/K), ..., Phi^-1((K-1)/K), +inf. (K+1,)"""
    K, prior = 1 << latent, NormalDist()
    edges = np.array([-math.inf] + [prior.inv_cdf(i / K) for i in range(1, K)] + [math.inf])
    edges.flags.writeable = False
    return edges


@cache
def bucket_centres(latent: int) -> np.ndarray:
    """Each bucket's centre: the prior's median inside it, Phi^-1((i + 1/2) / K). (K,)"""
    K, prior = 1 << latent, NormalDist()
    centres = np.array([prior.inv_cdf((i + 0.5) / K) for i in range(K)])
    centres.flags.writeable = False
    return centres


# erfc(z) ~ u exp(-z^2 + sum_k c_k u^k), u = 1 / (1 + z / 2): Numerical Recipes' erfcc fit, c_0..c_9
ERFC_FIT = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398, 1.48851587,
            -0.82215223, 0.17087277)


def normal_cdf(t):
    """Phi(t) of N(0, 1), elementwise, float64; relative error under 1.2e-7 in both tails.

    Phi(t) = erfc(-t / sqrt 2) / 2, erfc by its Chebyshev fit (ERFC_FIT). Never decreasing.
    Computed in place: a coder calls it on a table per latent dimension, many times.
    """
    z = np.abs(t) * (1.0 / math.sqrt(2.0))
    u = 1.0 / (1.0 + 0.5 * z)
    tail = np.full_like(u, ERFC_FIT[-1])
    for c in reversed(ERFC_FIT[:-1]):                     # Horner: the polynomial in u
        tail *= u
        tail += c
    tail -= z * z
    np.exp(tail, out=tail)
    tail *= 0.5 * u                                       # P(N(0, 1) > |t|); 0 at t = +-inf
    np.minimum(tail, 0.5, out=tail)                       # the fit gives 0.50000001 at 0: Phi rises through 0
    return np.where(t < 0, tail, 1.0 - tail)


def posterior_cdf(mu, sigma, edges, prec: int) -> np.ndarray:
    """q(z | x) = N(mu, sigma^2) on the buckets as an integer CDF, every bucket at least 1 of 2^prec.

    C_i = floor(Phi((e_i - mu) / sigma) (2^prec - K)) + i,  i = 0..K:  C_0 = 0, C_K = 2^prec,
    C_(i+1) - C_i >= 1 as Phi never decreases. sigma is the standard deviation, exp(logvar / 2).
    Shapes: mu, sigma (...), edges (K+1,) -> (..., K+1) uint64. The coder calls it with one latent
    dimension of a batch at a time, (n,), the same shapes when encoding and decoding.
    """
    K = edges.shape[0] - 1
    mass = normal_cdf((edges - mu[..., None]) / sigma[..., None])          # (..., K+1) in [0, 1]
    mass *= (1 << prec) - K
    return np.floor(mass, out=mass).astype(np.uint64) + np.arange(K + 1, dtype=np.uint64)


def bernoulli_freqs(logits, prec: int) -> np.ndarray:
    """Each pixel's frequency of a 1 out of 2^prec: round(sigma(a) 2^prec) kept in [1, 2^prec - 1].

    A 0 then holds [0, 2^prec - f), a 1 holds [2^prec - f, 2^prec). Shapes: (N, D) -> (N, D) uint64.
    """
    M = 1 << prec
    with np.errstate(over="ignore"):
        p = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
    return np.clip(np.rint(p * M), 1, M - 1).astype(np.uint64)


# ---------------------------------------------------------------------------
# The model as a coder's tables
# ---------------------------------------------------------------------------


class Codec:
    """A trained Bernoulli VAE as the tables bits-back coding needs, for a batch of images.

    The networks run on `backend` in the parameters' dtype; a file decodes only with
    the same model (`checksum`: its config, dtype and every parameter's bytes).
    """

    def __init__(self, params, config, backend):
        if config.likelihood != "bernoulli" or config.n_classes:
            raise InputError("bits-back coding here needs a VAE with a Bernoulli decoder and no label "
                             f"(got likelihood={config.likelihood!r}, n_classes={config.n_classes}): "
                             "train one on binarized images (--binarize)")
        check_params(params, config)
        self.params, self.config, self.backend = params, config, backend
        self.dtype = next(iter(params.values())).dtype
        self.checksum = model_checksum(params, config, backend)

    def _put(self, x):
        """Host images (n, D), 0/1 of any dtype, onto the backend in the model's dtype."""
        return self.backend.asarray(np.asarray(x, dtype=np.float64), dtype=self.dtype)

    def posterior(self, x):
        """q(z | x)'s mean and standard deviation, float64 on the host. x (n, D) host 0/1 -> (n, L) each."""
        mu, logvar = encode(self.params, self._put(x), self.config)
        sigma = np.exp(0.5 * self.backend.to_numpy(logvar).astype(np.float64))
        # a standard deviation that underflowed to 0 would make 0 / 0 at an edge equal to mu
        return self.backend.to_numpy(mu).astype(np.float64), np.maximum(sigma, 1e-300)

    def pixels(self, buckets, precisions: Precisions) -> np.ndarray:
        """Each pixel's frequency of a 1 under p(x | z), z at the buckets' centres. (n, L) -> (n, D) uint64."""
        z = self.backend.asarray(bucket_centres(precisions.latent)[buckets], dtype=self.dtype)
        logits = self.backend.to_numpy(decode(self.params, z, self.config))
        return bernoulli_freqs(logits, precisions.pixels)

    def neg_elbo_bits(self, x, seed: int = 0, batch_size: int = 1000) -> np.ndarray:
        """Each image's -ELBO in bits, one z ~ q(z | x) per image (eps from `seed`). x (N, D) host -> (N,)."""
        rng, out = np.random.default_rng(seed), []
        for start in range(0, x.shape[0], batch_size):
            xb = self._put(x[start:start + batch_size])
            eps = self.backend.asarray(rng.standard_normal((xb.shape[0], self.config.latent_dim)), dtype=self.dtype)
            recon, kl = neg_elbo_terms(self.params, xb, eps, self.config)
            out.append(self.backend.to_numpy(recon + kl).astype(np.float64))
        return np.concatenate(out) / math.log(2.0)


def model_checksum(params, config, backend) -> str:
    """SHA-256 (hex) of the config, the dtype and every parameter's bytes, in name order."""
    h = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    for name in sorted(params):
        a = np.ascontiguousarray(backend.to_numpy(params[name]))
        h.update(f"{name} {a.dtype.str} {a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------
# One batch of images, each on its own lane
# ---------------------------------------------------------------------------


@dataclass
class Trace:
    """What the encoder did with each image: the buckets it popped, and what each step cost in bits
    (n,), from the integer tables it used. Not stored in the file; for tests and the docs' breakdown."""

    buckets: np.ndarray     # (n, L) the z each image was coded with
    pixels: np.ndarray      # -log2 p(x | z)
    prior: np.ndarray       # -log2 p(z) = L * latent
    back: np.ndarray        # -log2 q(z | x): the bits popped, returned on decoding

    @property
    def net(self) -> np.ndarray:
        return self.pixels + self.prior - self.back


def _slots(bits, f1, M):
    """Each pixel's slot: a 0 in [0, M - f1), a 1 in [M - f1, M). bits, f1 (n, D) -> start, freq (D, n)."""
    start = np.where(bits, M - f1, 0).astype(np.uint64)
    freq = np.where(bits, f1, M - f1).astype(np.uint64)
    return np.ascontiguousarray(start.T), np.ascontiguousarray(freq.T)


def _bernoulli_lookup(f1, zeros):
    """Lookup of one pixel per lane, f1 its frequency of a 1 and zeros = M - f1 of a 0: cf at or above
    zeros is a 1."""
    def lookup(cf):
        one = cf >= zeros
        return one, np.where(one, zeros, np.uint64(0)), np.where(one, f1, zeros)
    return lookup


def _slot_of(cdf, bucket):
    """Each lane's slot of its bucket: cdf (n, K+1), bucket (n,) -> start, freq (n,)."""
    start = np.take_along_axis(cdf, bucket[:, None], axis=1)[:, 0]
    return start, np.take_along_axis(cdf, bucket[:, None] + 1, axis=1)[:, 0] - start


def encode_batch(msg: Message, x, codec: Codec, p: Precisions) -> Trace:
    """Put n images on lanes 0..n-1 of msg. x (n, D) host 0/1."""
    n, L = x.shape[0], codec.config.latent_dim
    edges = bucket_edges(p.latent)
    # 1. pop z with q(z | x), one dimension at a time: the borrowed bits
    mu, sigma = codec.posterior(x)                                          # (n, L) each
    buckets, back = np.empty((n, L), dtype=np.int64), np.zeros(n)
    for l in range(L):
        cdf = posterior_cdf(mu[:, l], sigma[:, l], edges, p.posterior)     # (n, K+1)
        buckets[:, l] = msg.pop(p.posterior, cdf_lookup(cdf), n)
        back += p.posterior - np.log2(_slot_of(cdf, buckets[:, l])[1])
    # 2. push x with p(x | z), pixel by pixel
    f1 = codec.pixels(buckets, p)                                           # (n, D)
    start, freq = _slots(x.astype(bool), f1, np.uint64(1 << p.pixels))       # (D, n) each
    for d in range(x.shape[1]):
        msg.push(start[d], freq[d], p.pixels)
    # 3. push z with the prior: bucket b of K = 2^latent, slot [b, b + 1)
    for l in range(L):
        msg.push(buckets[:, l], 1, p.latent)
    return Trace(buckets, pixels=np.sum(p.pixels - np.log2(freq), axis=0), prior=np.full(n, float(L * p.latent)),
                 back=back)


def decode_batch(msg: Message, n: int, codec: Codec, p: Precisions) -> np.ndarray:
    """Take n images off lanes 0..n-1 of msg: encode_batch backwards. Returns (n, D) uint8."""
    L, D = codec.config.latent_dim, codec.config.input_dim
    M = np.uint64(1 << p.pixels)
    # undo 3: pop z with the prior, last dimension first
    buckets = np.empty((n, L), dtype=np.int64)
    for l in reversed(range(L)):
        buckets[:, l] = msg.pop(p.latent, uniform, n)
    # undo 2: pop x with p(x | z), last pixel first
    f1 = np.ascontiguousarray(codec.pixels(buckets, p).T)                  # (D, n)
    zeros = M - f1                                                          # (D, n) each 0's frequency
    x = np.empty((D, n), dtype=np.uint8)
    for d in reversed(range(D)):
        x[d] = msg.pop(p.pixels, _bernoulli_lookup(f1[d], zeros[d]), n)
    x = np.ascontiguousarray(x.T)                                           # (n, D)
    # undo 1: push z back with q(z | x), last dimension first: the borrowed bits return
    mu, sigma = codec.posterior(x)
    for l in reversed(range(L)):
        cdf = posterior_cdf(mu[:, l], sigma[:, l], bucket_edges(p.latent), p.posterior)
        msg.push(*_slot_of(cdf, buckets[:, l]), p.posterior)
    return x


# ---------------------------------------------------------------------------
# Many images: compress, decompress
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Compressed:
    """A compressed set of images: the message's words and what decoding needs to know."""

    words: np.ndarray            # the rANS message, uint32
    n_images: int
    image_dim: int
    lanes: int
    seed: int                    # of the initial random bits
    initial_words: int           # the words the encoder brought up from below the stack
    precisions: Precisions
    model: str                   # the model's checksum (hex)
    trace: Trace | None = field(default=None, compare=False)   # per image, from compress only

    @property
    def bits(self) -> int:
        """The message's length in bits, initial bits included."""
        return WORD_BITS * self.words.shape[0]

    @property
    def initial_bits(self) -> int:
        """The random bits the message started from: the heads (64 each) and the words drawn."""
        return 2 * WORD_BITS * self.lanes + WORD_BITS * self.initial_words

    @property
    def net_bits(self) -> int:
        """What the images added to the message: its length less the initial bits."""
        return self.bits - self.initial_bits


def check_binary_images(x, image_dim: int) -> np.ndarray:
    """x as a host (N, D) bool array, or one InputError line naming the first pixel that is not 0 or 1."""
    try:
        a = np.asarray(x)
    except (TypeError, ValueError, RuntimeError) as e:
        raise InputError(f"images must be a NumPy array of 0s and 1s (N, {image_dim}), got {type(x).__name__} "
                         f"({e})") from None
    if a.ndim != 2 or a.shape[1] != image_dim or a.shape[0] < 1:
        raise InputError(f"images have shape {a.shape}, expected (N, {image_dim}) with N >= 1: flatten each "
                         f"image to {image_dim} pixels")
    if a.dtype != bool:
        if a.dtype.kind not in "iuf":
            raise InputError(f"images have dtype {a.dtype}, expected 0s and 1s (bool, int or float)")
        bad = np.argwhere((a != 0) & (a != 1))
        if bad.shape[0]:
            i, j = bad[0]
            raise InputError(f"image {i} pixel {j} is {a[i, j].item()!r}, not 0 or 1, and {bad.shape[0]} pixels in all: "
                             "bits-back coding with a Bernoulli decoder takes binary images; binarize them "
                             "first, e.g. rng.random(x.shape) < x")
    return a.astype(bool)


def _batches(n: int, lanes: int) -> list:
    return [(start, min(start + lanes, n)) for start in range(0, n, lanes)]


def compress(x, codec: Codec, precisions: Precisions = Precisions(), lanes: int = 100, seed: int = 0,
             progress=None) -> Compressed:
    """Bits-back code binary images x (N, D) with the model of `codec`, `lanes` images side by side.

    The message starts as random bits from `seed` (Message.random). progress: a bar
    (True/False; None: only on a terminal). Returns Compressed, with the trace of each image's coding.
    """
    x = check_binary_images(x, codec.config.input_dim)
    lanes = Int(1)(lanes, "lanes")
    msg = Message.random(lanes, Int(0)(seed, "seed"))
    parts = []
    with tqdm(total=x.shape[0], desc="compress", unit="image", disable=None if progress is None else not progress,
              leave=False) as bar:
        for start, stop in _batches(x.shape[0], lanes):
            parts.append(encode_batch(msg, x[start:stop], codec, precisions))
            bar.update(stop - start)
    trace = Trace(*(np.concatenate([getattr(t, k) for t in parts]) for k in ("buckets", "pixels", "prior", "back")))
    return Compressed(msg.to_words(), x.shape[0], x.shape[1], lanes, seed, msg.stack.drawn, precisions,
                      codec.checksum, trace)


def decompress(packed: Compressed, codec: Codec, progress=None) -> np.ndarray:
    """The images of `packed` (N, D) uint8, decoded with the model of `codec`, which must be the one that
    compressed them. Checks that the initial bits come back exactly; DataError if they do not."""
    if packed.model != codec.checksum:
        raise InputError(f"the file was compressed with model {packed.model[:12]}, and this is model "
                         f"{codec.checksum[:12]}: decompress with the checkpoint that compressed it")
    if packed.image_dim != codec.config.input_dim:
        raise InputError(f"the file holds images of {packed.image_dim} pixels, the model takes "
                         f"{codec.config.input_dim}")
    msg = Message.from_words(packed.words, packed.lanes)
    x = np.empty((packed.n_images, packed.image_dim), dtype=np.uint8)
    with tqdm(total=packed.n_images, desc="decompress", unit="image",
              disable=None if progress is None else not progress, leave=False) as bar:
        for start, stop in reversed(_batches(packed.n_images, packed.lanes)):
            x[start:stop] = decode_batch(msg, stop - start, codec, packed.precisions)
            bar.update(stop - start)
    if not initial_bits_returned(msg, packed.lanes, packed.seed, packed.initial_words):
        raise DataError("decoding did not end with the initial bits it must return: the file is corrupted, or "
                        "the model computes differently here than where the file was made")
    return x


# ---------------------------------------------------------------------------
# The file: a small header, then the message
# ---------------------------------------------------------------------------

# magic, format, model sha-256, images, pixels per image, precisions (latent, posterior, pixels),
# lanes, seed, initial words, message words; then a CRC-32 of all that and the message.
HEADER = struct.Struct("<4sH32sIIBBBIQQQ")
CRC = struct.Struct("<I")


def to_bytes(packed: Compressed) -> bytes:
    """The file's bytes: HEADER, CRC-32, then the message's words (little-endian uint32)."""
    p = packed.precisions
    head = HEADER.pack(MAGIC, FORMAT, bytes.fromhex(packed.model), packed.n_images, packed.image_dim, p.latent,
                       p.posterior, p.pixels, packed.lanes, packed.seed, packed.initial_words,
                       packed.words.shape[0])
    body = packed.words.astype("<u4").tobytes()
    return head + CRC.pack(zlib.crc32(body, zlib.crc32(head))) + body


def from_bytes(data: bytes, source: str = "the data") -> Compressed:
    """to_bytes undone; DataError naming the problem for a file that is not one, truncated or corrupted."""
    n_head = HEADER.size + CRC.size
    if not data.startswith(MAGIC):
        raise DataError(f"{source} is not a tinyvae bits-back file (it does not start with {MAGIC.decode()}): "
                        "pass a file written by bitsback.write_file (demos/mnist_compress.py)")
    if len(data) < n_head:
        raise DataError(f"{source} is truncated: {len(data)} bytes, shorter than the {n_head}-byte header; "
                        "compress the images again")
    (_, version, sha, n_images, image_dim, latent, posterior, pixels, lanes, seed, initial_words,
     n_words) = HEADER.unpack_from(data)
    if version > FORMAT:
        raise DataError(f"{source} is format {version}, newer than this tinyvae reads ({FORMAT}): upgrade tinyvae")
    expected = n_head + 4 * n_words
    if len(data) != expected:
        raise DataError(f"{source} is {'truncated' if len(data) < expected else 'longer than its header says'}: "
                        f"{len(data)} bytes, the header says {expected}; compress the images again")
    (crc,) = CRC.unpack_from(data, HEADER.size)
    body = data[n_head:]
    if crc != zlib.crc32(body, zlib.crc32(data[:HEADER.size])) or version < 1:
        raise DataError(f"{source} is corrupted (its CRC-32 does not match its contents): compress the images again")
    try:
        precisions = Precisions(latent, posterior, pixels)
    except InputError as e:
        raise DataError(f"{source} has impossible settings ({e}): it is corrupted") from None
    if lanes < 1 or n_images < 1 or image_dim < 1:
        raise DataError(f"{source} has impossible counts (images {n_images}, pixels {image_dim}, lanes {lanes}): "
                        "it is corrupted")
    words = np.frombuffer(body, dtype="<u4").astype(np.uint32)
    return Compressed(words, n_images, image_dim, lanes, seed, initial_words, precisions, sha.hex())


def write_file(path, packed: Compressed) -> Path:
    """Write `packed` to `path` atomically (checkpoint.atomic_write): never half a file."""
    data = to_bytes(packed)
    atomic_write(Path(path), lambda f: f.write(data))
    return Path(path)


def read_file(path) -> Compressed:
    """Read a file of write_file; DataError, one line, for a missing, unreadable or damaged one."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path} ({e.strerror or e}): pass a file written by the compressor") from None
    return from_bytes(data, str(path))
