"""The rANS coder (tinyvae/rans.py): symbols come back exactly, in reverse, and the message is as
long as their information plus the stated overhead; bad frequencies and bad messages are one line."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import one_line
from tinyvae.errors import DataError, InputError
from tinyvae.rans import (WORD_BITS, Message, Stack, cdf_from_freqs, cdf_lookup, initial_bits_returned,
                          push_overhead_bits, uniform)


@st.composite
def tables(draw):
    """(prec, freqs): 2..40 symbols whose frequencies are >= 1 and sum to 2^prec. Some tables are
    extreme: every symbol but one has frequency 1, and that one holds all the rest of the range."""
    prec = draw(st.integers(1, 32))
    M = 1 << prec
    K = draw(st.integers(2, min(40, M)))
    shape = draw(st.sampled_from(["random", "one_holds_almost_all", "ones"]))
    if shape == "random":
        cuts = sorted(draw(st.sets(st.integers(1, M - 1), min_size=K - 1, max_size=K - 1)))
        freqs = np.diff([0, *cuts, M])
    else:
        freqs = np.ones(K, dtype=np.int64)
        freqs[draw(st.integers(0, K - 1))] = M - (K - 1)
    return prec, np.array(freqs, dtype=np.uint64)


@st.composite
def coding_jobs(draw):
    """A table, a number of lanes, and a (steps, lanes) array of symbols (rare ones as likely as the rest)."""
    prec, freqs = draw(tables())
    lanes = draw(st.integers(1, 4))
    steps = draw(st.integers(0, 120))
    symbols = draw(st.lists(st.integers(0, len(freqs) - 1), min_size=steps * lanes, max_size=steps * lanes))
    return prec, freqs, np.array(symbols, dtype=np.int64).reshape(steps, lanes)


def information_bits(prec, freqs, symbols):
    """sum of -log2(freq / 2^prec) over the symbols, in Python floats."""
    return sum(prec - math.log2(int(freqs[s])) for s in symbols.reshape(-1))


@given(coding_jobs(), st.booleans())
def test_symbols_come_back_exactly_in_reverse(job, through_words):
    prec, freqs, symbols = job
    cdf = cdf_from_freqs(freqs)
    msg = Message(lanes=symbols.shape[1])
    for row in symbols:
        msg.push(cdf[row], freqs[row], prec)
    if through_words:                                 # flatten to bytes and back in the middle
        msg = Message.from_bytes(msg.to_bytes(), symbols.shape[1])
    for row in symbols[::-1]:
        assert np.array_equal(msg.pop(prec, cdf_lookup(cdf)), row)
    assert np.array_equal(msg.head, Message(symbols.shape[1]).head) and msg.stack.size == 0


@given(coding_jobs())
def test_the_message_is_as_long_as_the_information_plus_the_stated_overhead(job):
    """Starting empty (heads at 2^32), the words the pushes add are at most sum -log2 p plus
    push_overhead_bits(prec) per push; and, where that per-push rounding is small (prec <= 24),
    at least sum -log2 p less the 32 bits each head can hold unwritten, and the rounding."""
    prec, freqs, symbols = job
    cdf = cdf_from_freqs(freqs)
    lanes, pushes = symbols.shape[1], symbols.size
    msg = Message(lanes=lanes)
    for row in symbols:
        msg.push(cdf[row], freqs[row], prec)
    grown = msg.bits() - 2 * WORD_BITS * lanes
    info = information_bits(prec, freqs, symbols)
    assert grown <= info + pushes * push_overhead_bits(prec) + 1e-9 * pushes
    if prec <= 24:
        assert grown >= info - WORD_BITS * lanes - pushes * -2 * math.log2(1 - 2.0 ** (prec - WORD_BITS)) - 1e-6


@given(tables(), st.integers(1, 5), st.integers(0, 60), st.integers(0, 2**32))
def test_popping_first_from_random_bits_returns_them(table, lanes, steps, seed):
    """Bits-back's order: pop symbols from a message of random bits, push them back; the decoder
    side finds exactly the initial bits, however many words were brought up from below."""
    prec, freqs = table
    cdf = cdf_from_freqs(freqs)
    msg = Message.random(lanes, seed)
    popped = [msg.pop(prec, cdf_lookup(cdf)) for _ in range(steps)]
    drawn = msg.stack.drawn
    words = msg.to_words()
    back = Message.from_words(words, lanes)
    for s in reversed(popped):
        back.push(cdf[s], freqs[s], prec)
    assert initial_bits_returned(back, lanes, seed, drawn)
    if back.stack.size:                               # one bit changed, and the check sees it
        back.stack.words[0] ^= np.uint32(1)
        assert not initial_bits_returned(back, lanes, seed, drawn)


def test_pushes_on_the_first_lanes_leave_the_others_alone():
    msg = Message.random(5, seed=1)
    before = msg.head.copy()
    msg.push(np.array([3, 0], dtype=np.uint64), np.array([5, 3], dtype=np.uint64), 4)
    assert np.array_equal(msg.head[2:], before[2:]) and not np.array_equal(msg.head[:2], before[:2])
    assert np.array_equal(msg.pop(4, cdf_lookup(cdf_from_freqs([3, 5, 8])), n=2), [1, 0])
    assert np.array_equal(msg.head, before)


def test_per_lane_tables():
    """cdf_lookup with one table per lane, as the posterior uses it."""
    cdfs = np.array([cdf_from_freqs([1, 14, 1]), cdf_from_freqs([8, 4, 4])])      # prec 4
    msg = Message(lanes=2)
    for row in ([0, 2], [2, 1], [1, 0]):
        s = np.array(row)
        msg.push(cdfs[[0, 1], s], cdfs[[0, 1], s + 1] - cdfs[[0, 1], s], 4)
    for row in ([1, 0], [2, 1], [0, 2]):
        assert np.array_equal(msg.pop(4, cdf_lookup(cdfs)), row)


def test_the_worked_example_of_the_docs():
    """docs/compression.md#a-worked-example: three symbols a, b, c of probabilities 1/8, 5/8, 2/8
    (prec 3), the message 'b a c' pushed onto a head of 2^32."""
    freqs, cdf = np.array([1, 5, 2], dtype=np.uint64), cdf_from_freqs([1, 5, 2])
    msg = Message(lanes=1)
    heads = []
    for s in (1, 0, 2):
        msg.push(cdf[[s]], freqs[[s]], 3)
        heads.append(int(msg.head[0]))
    assert heads == [6871947674, 54975581392, 219902325574]
    assert math.log2(heads[-1] / 2**32) == pytest.approx(-math.log2(5 / 8 * 1 / 8 * 2 / 8), abs=1e-8)
    assert [int(msg.pop(3, cdf_lookup(cdf))[0]) for _ in range(3)] == [2, 0, 1]
    assert int(msg.head[0]) == 2**32


def test_a_uniform_symbol_costs_its_bits_exactly():
    msg = Message(lanes=3)
    for i in range(64):
        msg.push(np.full(3, i % 256, dtype=np.uint64), 1, 8)
    assert msg.bits() - 64 * 3 == 64 * 8 * 3           # 8 bits per symbol, nothing more
    assert all(np.array_equal(msg.pop(8, uniform), np.full(3, i % 256)) for i in reversed(range(64)))


@pytest.mark.parametrize("start,freq,prec", [
    (0, 0, 8),            # a symbol of probability 0
    (0, 256, 8),          # a symbol of probability 1: the whole range
    (200, 100, 8),        # a slot that runs past 2^prec
])
def test_frequencies_that_cannot_be_coded_are_one_line(start, freq, prec):
    msg = Message(lanes=2)
    with pytest.raises(InputError) as e:
        msg.push(np.array([start, 1], dtype=np.uint64), np.array([freq, 1], dtype=np.uint64), prec)
    assert "frequency" in one_line(str(e.value))
    assert np.array_equal(msg.head, Message(lanes=2).head)                  # nothing was pushed


@pytest.mark.parametrize("prec", [0, 33, 2.0])
def test_a_precision_beside_32_bit_words_is_at_most_32(prec):
    with pytest.raises(InputError, match="prec must be"):
        Message().push(0, 1, prec)


def test_bad_messages_are_one_line():
    with pytest.raises(DataError, match="ran out of words"):
        Message(lanes=1).pop(8, uniform)             # an empty message: heads at 2^32, nothing below
    with pytest.raises(DataError, match="truncated"):
        Message.from_words(np.zeros(3, dtype=np.uint32), lanes=2)
    with pytest.raises(DataError, match="out of range"):
        Message.from_words(np.zeros(4, dtype=np.uint32), lanes=2)
    with pytest.raises(DataError, match="not whole 32-bit words"):
        Message.from_bytes(Message(lanes=1).to_bytes()[:-1], lanes=1)
    with pytest.raises(DataError):
        Stack([1, 2]).pop(3)


def test_the_stack_grows_and_keeps_its_order():
    s = Stack()
    for i in range(3000):
        s.push(np.array([i, i + 1], dtype=np.uint32))
    assert s.size == 6000 and np.array_equal(s.pop(3), [2999, 2999, 3000])
    assert np.array_equal(s.contents()[:4], [0, 1, 1, 2])
