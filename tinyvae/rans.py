"""rANS, the range variant of asymmetric numeral systems (Duda 2013): a stack you push symbols onto.

The message is one big number m. To push a symbol of probability p = freq / M,
M = 2^prec, the coder keeps the integer part of m / freq as the new "digit"
above, and the symbol's slot of width freq inside [0, M) below:

    push:  m' = (m // freq) * M + (m % freq) + start      (start = the symbol's cumulative frequency)
    pop:   cf = m' % M                                     (where in [0, M) it sits: names the symbol)
           m  = freq * (m' // M) + cf - start              (exactly push undone)

so m' is about m / p and log2 m grows by about -log2 p bits: the message
length follows the information content, symbol by symbol. Pops come back in
the opposite order (last in, first out). The arithmetic stays in 64 bits by
keeping only the top of m in a "head" of 64 bits, in [2^32, 2^64), and the
rest below it as a stack of 32-bit words (Townsend, "A tutorial on the range
variant of asymmetric numeral systems", 2020): a push that would carry the
head past 2^64 first moves its low 32 bits onto the stack; a pop that leaves
it under 2^32 takes those 32 bits back. The message's content in bits is

    32 * (words on the stack) + log2(head),

and each push adds -log2(freq / M) to it, plus at most log2(1 + 2^(prec - 32))
(the rounding of m // freq): about 0.006 bits at prec = 24. Its flat length,
the head written as two words, is at most 32 bits more.

Lanes: the head is a NumPy uint64 array, one independent head per lane (per
image being coded side by side), over one shared stack, as BB-ANS's
vectorised coder does. A push or pop of n symbols acts on lanes 0..n-1.

    msg = Message(lanes=1)
    msg.push(start=np.array([2]), freq=np.array([1]), prec=2)   # symbol 2 of 4, p = 1/4: 2 bits
    msg.pop(prec=2, lookup=uniform)                              # -> array([2])

This module is plain NumPy on the CPU. Derivation and a worked example:
docs/compression.md#rans-in-a-page
"""
from __future__ import annotations

import math

import numpy as np

from .errors import DataError, InputError

WORD_BITS = 32                        # the stack holds 32-bit words
HEAD_MIN = np.uint64(1 << 32)         # a head lives in [2^32, 2^64)
LOW_WORD = np.uint64(0xFFFFFFFF)      # the low 32 bits of a head
MAX_PREC = 32                         # M = 2^prec must fit beside one word: prec <= 32
ONE = np.uint64(1)
_32 = np.uint64(WORD_BITS)


def push_overhead_bits(prec: int) -> float:
    """The most one push adds beyond -log2(freq / 2^prec) bits: log2(1 + 2^(prec - 32))."""
    return math.log2(1.0 + 2.0 ** (prec - WORD_BITS))


class Stack:
    """The 32-bit words under the heads, bottom first. `supply(k)`: k fresh random words for
    an encoder that pops below the bottom (the initial bits it borrows); `drawn` counts them."""

    def __init__(self, words=(), supply=None):
        self.words = np.array(words, dtype=np.uint32)    # a buffer; words[:size] are the stack
        self.size = self.words.shape[0]
        self.supply, self.drawn = supply, 0

    def push(self, words):
        """Put `words` (k,) on top, words[-1] uppermost."""
        k = words.shape[0]
        if self.size + k > self.words.shape[0]:          # grow the buffer, doubling
            grown = np.empty(max(2 * self.words.shape[0], self.size + k, 1024), dtype=np.uint32)
            grown[:self.size] = self.words[:self.size]
            self.words = grown
        self.words[self.size:self.size + k] = words
        self.size += k

    def pop(self, k: int) -> np.ndarray:
        """Take the top k words (k,), in the order push put them there."""
        if k > self.size:
            if self.supply is None:
                raise DataError("the message ran out of words while decoding: it is truncated or "
                                "corrupted, or was made by another coder")
            # Below the bottom lies an endless run of random words w0, w1, ... (w0 uppermost):
            # bring up the next k - size of them, w0 nearest the words already there.
            fresh = self.supply(k - self.size)
            self.words = np.concatenate([fresh[::-1], self.words[:self.size]])
            self.size, self.drawn = self.words.shape[0], self.drawn + fresh.shape[0]
        self.size -= k
        return self.words[self.size:self.size + k].copy()

    def contents(self) -> np.ndarray:
        return self.words[:self.size].copy()


class Message:
    """An rANS message: heads (lanes,) uint64 in [2^32, 2^64) over one Stack of 32-bit words."""

    def __init__(self, lanes: int = 1, head=None, stack=None):
        self.head = np.full(lanes, HEAD_MIN, dtype=np.uint64) if head is None else head
        self.stack = Stack() if stack is None else stack

    @classmethod
    def random(cls, lanes: int, seed: int) -> Message:
        """A message of random bits, for an encoder whose first steps are pops (bits-back).
        The heads and then the words below the stack are drawn from one seeded generator,
        so a decoder can check it ends with exactly these bits (`initial_bits_returned`)."""
        rng = np.random.default_rng(seed)
        head = rng.integers(1 << 32, 1 << 64, size=lanes, dtype=np.uint64)
        return cls(lanes, head, Stack(supply=lambda k: rng.integers(0, 1 << 32, size=k, dtype=np.uint32)))

    @property
    def lanes(self) -> int:
        return self.head.shape[0]

    def bits(self) -> int:
        """The flat length in bits: 64 per head, 32 per word."""
        return 2 * WORD_BITS * self.lanes + WORD_BITS * self.stack.size

    def push(self, start, freq, prec: int):
        """Push one symbol on each of lanes 0..n-1: its slot [start, start + freq) of [0, 2^prec).

        start, freq (n,) uint64 (or scalars, for every lane), 1 <= freq, start + freq <= 2^prec.
        """
        start, freq, n = _as_lanes(start, freq, self.lanes)
        M = np.uint64(1 << _checked(prec))
        if not freq.all() or freq.max() >= M or (start + freq).max() > M:
            raise InputError(f"a symbol's frequency must be in [1, 2^{prec}) and its slot inside [0, 2^{prec}): "
                             "a symbol of probability 0 cannot be coded (give every symbol at least 1)")
        head = self.head[:n]                             # a view: the lanes in use
        # 1. make room: a head that would pass 2^64 sends its low word to the stack
        full = head >= freq << np.uint64(64 - prec)
        if full.any():
            self.stack.push((head[full] & LOW_WORD).astype(np.uint32))
            head[full] >>= _32
        # 2. m' = (m // freq) * M + m % freq + start
        digit, slot = np.divmod(head, freq)
        head[...] = (digit << np.uint64(prec)) + slot + start

    def pop(self, prec: int, lookup, n: int | None = None) -> np.ndarray:
        """Pop one symbol from each of lanes 0..n-1 (all lanes when n is None): returns them (n,).

        lookup(cf) -> (symbol, start, freq): the symbol whose slot [start, start + freq)
        holds cf (n,), as the push that put it there saw it.
        """
        head = self.head[:n]
        M = np.uint64(1 << _checked(prec))
        # 1. the low prec bits say where in [0, M) the symbol sits
        cf = head & (M - ONE)
        symbol, start, freq = lookup(cf)
        # 2. m = freq * (m' // M) + cf - start: the push undone
        head[...] = freq * (head >> np.uint64(prec)) + (cf - start)
        # 3. a head under 2^32 takes back the word its push sent to the stack
        low = head < HEAD_MIN
        if low.any():
            head[low] = (head[low] << _32) | self.stack.pop(int(np.count_nonzero(low))).astype(np.uint64)
        return symbol

    def to_words(self) -> np.ndarray:
        """The message as 32-bit words: each head's low then high word, then the stack bottom first."""
        heads = np.stack([self.head & LOW_WORD, self.head >> _32], axis=1).astype(np.uint32).reshape(-1)
        return np.concatenate([heads, self.stack.contents()])

    @classmethod
    def from_words(cls, words, lanes: int) -> Message:
        """to_words undone; DataError when the words cannot be such a message."""
        words = np.asarray(words, dtype=np.uint32)
        if words.shape[0] < 2 * lanes:
            raise DataError(f"the message holds {words.shape[0]} words, fewer than its {lanes} heads need "
                            f"({2 * lanes}): it is truncated")
        pairs = words[:2 * lanes].reshape(lanes, 2).astype(np.uint64)
        head = pairs[:, 0] | (pairs[:, 1] << _32)
        if np.any(head < HEAD_MIN):
            raise DataError("the message's heads are out of range (each is at least 2^32): it is corrupted")
        return cls(lanes, head, Stack(words[2 * lanes:]))

    def to_bytes(self) -> bytes:
        """to_words as little-endian bytes, 4 a word."""
        return self.to_words().astype("<u4").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, lanes: int) -> Message:
        """to_bytes undone; DataError when the bytes cannot be such a message."""
        if len(data) % 4:
            raise DataError(f"the message is {len(data)} bytes, not whole 32-bit words: it is truncated")
        return cls.from_words(np.frombuffer(data, dtype="<u4"), lanes)


def initial_bits_returned(msg: Message, lanes: int, seed: int, drawn: int) -> bool:
    """Whether a decoded message is exactly Message.random(lanes, seed) with `drawn` words brought up."""
    rng = np.random.default_rng(seed)
    head = rng.integers(1 << 32, 1 << 64, size=lanes, dtype=np.uint64)
    below = rng.integers(0, 1 << 32, size=drawn, dtype=np.uint32)[::-1]     # bottom first, as to_words
    return msg.lanes == lanes and np.array_equal(msg.head, head) and np.array_equal(msg.stack.contents(), below)


def _checked(prec):
    if not isinstance(prec, int) or not 1 <= prec <= MAX_PREC:
        raise InputError(f"prec must be an integer in [1, {MAX_PREC}] (M = 2^prec beside 32-bit words), got {prec!r}")
    return prec


def _as_lanes(start, freq, lanes):
    """start, freq as uint64 (arrays, or scalars meaning every lane) and n, the lanes they cover."""
    freq, start = np.asarray(freq, dtype=np.uint64), np.asarray(start, dtype=np.uint64)
    return start, freq, freq.shape[0] if freq.ndim else start.shape[0] if start.ndim else lanes


# ---------------------------------------------------------------------------
# Lookups: from cf back to the symbol, for the tables the coders use
# ---------------------------------------------------------------------------


def uniform(cf):
    """Lookup for 2^prec equally likely symbols: symbol = cf, slot [cf, cf + 1)."""
    return cf, cf, ONE


def cdf_lookup(cdf):
    """Lookup for an integer CDF, 0 = cdf[0] < ... < cdf[K] = 2^prec: symbol s holds [cdf[s], cdf[s+1]).

    cdf (K+1,) shared by the lanes, or (n, K+1), one per lane.
    """
    cdf = np.asarray(cdf, dtype=np.uint64)

    def lookup(cf):
        if cdf.ndim == 1:
            s = np.searchsorted(cdf, cf, side="right") - 1                  # (n,)
            return s, cdf[s], cdf[s + 1] - cdf[s]
        s = np.count_nonzero(cdf[:, 1:] <= cf[:, None], axis=1)           # (n,): slots wholly below cf
        start = np.take_along_axis(cdf, s[:, None], axis=1)[:, 0]
        return s, start, np.take_along_axis(cdf, s[:, None] + 1, axis=1)[:, 0] - start

    return lookup


def cdf_from_freqs(freqs) -> np.ndarray:
    """The integer CDF (K+1,) of frequencies (K,): [0, f0, f0 + f1, ...]."""
    return np.concatenate([[0], np.cumsum(np.asarray(freqs, dtype=np.uint64))]).astype(np.uint64)
