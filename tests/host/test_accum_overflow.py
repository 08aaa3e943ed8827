"""The per-sample kernel is exact on the ESP32's 32-bit viper ints and on the host's 64-bit ones.

The host's viper ints are 64-bit, so overflow never shows there; these tests run the kernel's own code
on CPython with Word32 arithmetic (tests/host/wrap32.py), at full scale for the longest window, and
show that the same check catches an accumulator that is not chunked. They also run it with the host's
zero-extended ptr32 loads, which break any stored negative word. Last, the kernels run on both MicroPython
runtimes with the heap locked (tests/host/mp_accum_locked.py): nothing allocated per sample, also where
small ints stop at 2^30 (esp32-like), and the sums exact.
"""
import json
import math
import os
import random
import subprocess
from array import array

import accum
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wrap32 import Word32, Word32Array

from mpenv import runtime_binary, runtime_env, runtime_problem

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


# The same kernels on the MicroPython runtimes themselves, with the heap locked: they must allocate
# nothing, also on the ESP32-like runtime, where a value crossing 2^30 outside viper words would be a
# heap object (the sums of a full-scale window pass 2^30 many times over).
RUNTIMES = ("micropython", "esp32-like")
LOCKED_RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mp_accum_locked.py")


def sine_codes(nch, nsets, amp, rng):
    """Mains-like codes at 4.8 k sets/s and 50 Hz, amplitude `amp` counts around 2048 (clipped at the
    rails when amp > 2048), with 2 LSB of noise: rising crossings every ~96 sets."""
    out = array("H", bytes(2 * nch * nsets))
    for n in range(nsets):
        for c in range(nch):
            v = 2048 + amp * math.sin(2 * math.pi * 50 * n / 4800 - c * 2.1) + rng.gauss(0, 2)
            out[n * nch + c] = min(4095, max(0, round(v)))
    return out


def locked_cases(tmp_path):
    rng = random.Random(10)
    nch = 4
    pairs = [(0, 1, 0), (0, 2, 30), (0, 3, -1)]
    cases = []
    for k, (codes, bias) in enumerate([full_scale(nch, LONGEST_WINDOW_SETS + 40, True),
                                       full_scale(nch, LONGEST_WINDOW_SETS + 40, False),
                                       (sine_codes(nch, LONGEST_WINDOW_SETS + 40, 2300, rng), [2048] * nch)]):
        path = tmp_path / ("codes%d.bin" % k)
        path.write_bytes(codes.tobytes())
        cases.append(({"codes": str(path), "nch": nch, "first": 35, "end": LONGEST_WINDOW_SETS + 35,
                       "bias": bias, "pairs": pairs, "level": 2048, "hyst": 40, "cross_channel": 0,
                       "max_crossings": 200}, codes))
    return cases


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_kernels_allocate_nothing_with_the_heap_locked_on_micropython(tmp_path, runtime):
    problem = runtime_problem(runtime)
    assert problem is None, problem
    cases = locked_cases(tmp_path)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"small_int_max": (1 << 30) - 1, "cases": [c for c, _ in cases]}))
    proc = subprocess.run([runtime_binary(runtime), "-X", "heapsize=4M", LOCKED_RUNNER, str(spec)],
                          env=runtime_env(runtime), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    # The lock is real, and on esp32-like an int past 2^30 is a heap object (not on the 64-bit port).
    assert out["lock_catches_allocation"]
    assert out["crossing_2_30_allocates"] == (runtime == "esp32-like")
    for (case, codes), got in zip(cases, out["cases"], strict=True):
        assert got["failed"] is None, "a per-sample kernel allocated on %s" % runtime
        nch, first, end, bias, pairs = case["nch"], case["first"], case["end"], case["bias"], case["pairs"]
        n = end - first
        sums = []
        for c in range(nch):
            sums += [int(v) for v in accum.channel_sums(got["sums"], c, n)]
        for p in range(len(pairs)):
            sums += [int(v) for v in accum.pair_sums(got["sums"], nch, p, n)]
        exact = exact_sums(codes, nch, first, end, bias, pairs)
        assert sums == exact
        assert max(abs(v) for v in exact) >= 1 << 30       # the window's sums do cross 2^30
        # Crossings and clipping against the same code on CPython's unbounded ints.
        cross = array("i", [0] * case["max_crossings"])
        count = accum.rising_crossings(codes, nch, 0, first, end, case["level"], case["hyst"], cross,
                                       len(cross))
        clips = array("i", [0] * nch)
        accum.clip_counts(codes, nch, first, end, clips)
        assert (got["count"], got["crossings"], got["clips"]) == (count, list(cross)[:count], list(clips))
    assert out["cases"][2]["count"] == 125 and min(out["cases"][2]["clips"]) > 0   # 2.5 s of 50 Hz, clipped
