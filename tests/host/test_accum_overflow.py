"""The per-sample kernel is exact on the ESP32's 32-bit viper ints and on the host's 64-bit ones.

The host's viper ints are 64-bit, so overflow never shows there; these tests run the kernel's own code
on CPython with Word32 arithmetic (tests/host/wrap32.py), at full scale for the longest window, and
show that the same check catches an accumulator that is not chunked. They also run it with the host's
zero-extended ptr32 loads, which break any stored negative word.
"""
import random
from array import array

import accum
from hypothesis import given, settings
from hypothesis import strategies as st
from wrap32 import Word32, Word32Array

LONGEST_WINDOW_SETS = 12000   # a 1 s replay window at 12 k sets/s; the device's bursts are ~1 k


def exact_sums(codes, nch, first, end, bias, pairs):
    """The sums the kernel must produce, with Python's unbounded ints."""
    out = []
    for c in range(nch):
        xs = [codes[n * nch + c] - bias[c] for n in range(first - 1, end)]
        diffs = [b - a for a, b in zip(xs[:-1], xs[1:], strict=True)]
        out += [sum(xs[1:]), sum(x * x for x in xs[1:]), sum(d * d for d in diffs)]
    for vc, ic, d in pairs:
        p0 = p1 = 0
        for n in range(first, end):
            i = codes[n * nch + ic] - bias[ic]
            p0 += (codes[(n - d) * nch + vc] - bias[vc]) * i
            p1 += (codes[(n - d - 1) * nch + vc] - bias[vc]) * i
        out += [p0, p1]
    return out


def run_kernel_32bit(codes, nch, first, end, bias, pairs, chunk=accum.CHUNK_SETS, host=False):
    """The kernel's sums (offsets removed, as the meter reads them) under ESP32 or host word rules."""
    npairs = len(pairs)
    geo = array("i", [nch, first, end, npairs, chunk])
    flat = array("i", [x + (accum.DELAY_OFFSET if k % 3 == 2 else 0)
                       for p in pairs for k, x in enumerate(p)])
    sums = Word32Array([0] * accum.sums_words(nch, npairs), host)
    part = Word32Array([0] * accum.partial_words(nch, npairs), host)
    accum.accumulate(codes, geo, Word32Array(bias, host), flat, sums, part)
    words = sums.words
    n = end - first
    out = []
    for c in range(nch):
        out += [int(v) for v in accum.channel_sums(words, c, n)]
    for p in range(npairs):
        out += [int(v) for v in accum.pair_sums(words, nch, p, n)]
    return out


def naive_sums_32bit(codes, nch, first, end, bias):
    """What an unchunked accumulator does on the ESP32: one 32-bit word per sum."""
    acc = Word32Array([0] * (2 * nch))
    for n in range(first, end):
        for c in range(nch):
            x = Word32(codes[n * nch + c] - bias[c])
            acc[2 * c] = acc[2 * c] + x
            acc[2 * c + 1] = acc[2 * c + 1] + x * x
    return [acc.words[k] for k in range(2 * nch)]


def full_scale(nch, nsets, low_bias):
    """Worst case: every code at one rail with the bias at the other, so |x| = 4095 on every sample."""
    code = 4095 if low_bias else 0
    return array("H", [code] * (nch * nsets)), [0 if low_bias else 4095] * nch


def test_kernel_is_exact_at_full_scale_for_the_longest_window():
    nch = 4
    pairs = [(0, 1, 0), (0, 2, 30), (0, 3, -1)]
    for low_bias in (True, False):
        codes, bias = full_scale(nch, LONGEST_WINDOW_SETS + 40, low_bias)
        exact = exact_sums(codes, nch, 35, LONGEST_WINDOW_SETS + 35, bias, pairs)
        for host in (False, True):
            assert run_kernel_32bit(codes, nch, 35, LONGEST_WINDOW_SETS + 35, bias, pairs, host=host) == exact


def test_the_host_check_catches_a_stored_negative_word():
    # Without the offsets, a negative sum of x stored in a ptr32 array reads back wrong on the host.
    words = Word32Array([-5], host=True)
    assert words[0] == (1 << 32) - 5


def test_the_check_catches_an_unchunked_accumulator():
    # The same full-scale input overflows a plain 32-bit sum of squares within 128 sets...
    nch = 2
    codes, bias = full_scale(nch, 2000, True)
    naive = naive_sums_32bit(codes, nch, 1, 2000, bias)
    exact = exact_sums(codes, nch, 1, 2000, bias, [])
    assert naive[1] != exact[1]
    # ...and the kernel itself overflows when its chunking is switched off.
    unchunked = run_kernel_32bit(codes, nch, 1, 2000, bias, [(0, 1, 0)], chunk=10 ** 6)
    assert unchunked != exact_sums(codes, nch, 1, 2000, bias, [(0, 1, 0)])


def test_chunk_bound_keeps_every_word_inside_31_bits():
    # The largest addend is v*i + 2^24 < 2^25; a chunk of them plus lo (< 2^24) stays below 2^31.
    largest = 4095 * 4095 + accum.P_OFFSET
    assert accum.CHUNK_SETS * largest + (1 << 24) < (1 << 31)
    assert (accum.CHUNK_SETS * 2) * largest + (1 << 24) >= (1 << 31)   # and it is the largest power of 2


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_kernel_matches_exact_sums_on_random_bursts(data):
    nch = data.draw(st.sampled_from([2, 4, 6]))
    nsets = data.draw(st.integers(80, 400))
    seed = data.draw(st.integers(0, 2 ** 32))
    rng = random.Random(seed)
    codes = array("H", [rng.choice([0, 4095, rng.randrange(4096)]) for _ in range(nch * nsets)])
    bias = [rng.randrange(4096) for _ in range(nch)]
    npairs = data.draw(st.integers(0, 3))
    pairs = [(rng.randrange(nch), rng.randrange(nch), rng.randrange(-1, 20)) for _ in range(npairs)]
    first, end = 22, nsets - 2
    chunk = data.draw(st.sampled_from([accum.CHUNK_SETS, 1, 7]))
    exact = exact_sums(codes, nch, first, end, bias, pairs)
    for host in (False, True):
        assert run_kernel_32bit(codes, nch, first, end, bias, pairs, chunk, host) == exact
