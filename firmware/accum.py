# The per-sample path: integer sums over a burst of interleaved ADC sample sets, in viper code.
#
# No float and no heap allocation per sample. Two integer pitfalls shape this code:
# - The ESP32's viper ints are 32-bit and wrap silently. Every addend is bounded: with codes 0..4095
#   and a bias in 0..4095, |x| <= 4095, so x + 4096 < 2^13, x^2 < 2^24, dx^2 < 2^24 and
#   v*i + 2^24 < 2^25. A chunk of CHUNK_SETS = 32 sets sums to < 2^30, and each chunk is folded into
#   a split word (hi * 2^24 + lo, 0 <= lo < 2^24) where lo + chunk < 2^31.
# - On the 64-bit host, viper's ptr32 loads are zero-extended: a negative word reads back as a huge
#   positive one. So every stored word is kept non-negative: sums of x carry +4096 per sample and
#   sums of v*i carry +2^24 per sample (removed once per window by the caller), delays carry
#   +DELAY_OFFSET.
# tests/host/test_accum_overflow.py proves both with emulated 32-bit and host word semantics.
import micropython
from micropython import const

CHUNK_SETS = const(32)
X_OFFSET = const(4096)          # added to every x in the sum of x
P_OFFSET = const(1 << 24)       # added to every v*i in the product sums
DELAY_OFFSET = const(1024)      # added to every delay in the pairs array
SPLIT = 16777216.0              # 2^24: weight of the hi word

# geometry words (array('i')) handed to accumulate()
G_NCH = const(0)      # channels per sample set
G_FIRST = const(1)    # first set of the span
G_END = const(2)      # one past the last set of the span
G_NPAIRS = const(3)   # number of (voltage, current, delay) product pairs
G_CHUNK = const(4)    # sets per chunk (CHUNK_SETS; tests may pass others)
GEOMETRY_WORDS = const(5)

CHANNEL_SUMS = const(3)   # per channel: sum (x + X_OFFSET), sum x^2, sum (x[n] - x[n-1])^2
PAIR_SUMS = const(2)      # per pair: sum (v[n-d] i[n] + P_OFFSET), sum (v[n-d-1] i[n] + P_OFFSET)


def partial_words(nch, npairs):
    return CHANNEL_SUMS * nch + PAIR_SUMS * npairs


def sums_words(nch, npairs):
    """Words of the split-word result array: two (hi, lo) per partial word."""
    return 2 * partial_words(nch, npairs)


def split_value(sums, k):
    """The k-th accumulated sum as a number (once per window, so floats are fine here)."""
    return sums[2 * k] * SPLIT + sums[2 * k + 1]


def channel_sums(sums, c, n):
    """(sum x, sum x^2, sum dx^2) of channel c over n sets, offsets removed."""
    k = CHANNEL_SUMS * c
    return (split_value(sums, k) - X_OFFSET * n, split_value(sums, k + 1), split_value(sums, k + 2))


def pair_sums(sums, nch, p, n):
    """(sum v[n-d] i[n], sum v[n-d-1] i[n]) of pair p over n sets, offsets removed."""
    k = CHANNEL_SUMS * nch + PAIR_SUMS * p
    return (split_value(sums, k) - P_OFFSET * n, split_value(sums, k + 1) - P_OFFSET * n)


@micropython.viper
def accumulate(buf: ptr16, geo: ptr32, bias: ptr32, pairs: ptr32, sums: ptr32, part: ptr32):
    """Add the span [first, end) of buf to sums.

    buf: interleaved codes, set n channel c at buf[n * nch + c].
    bias: per channel, the integer DC bias removed before squaring (tracked per window by the caller).
    pairs: per pair p, (voltage channel, current channel, delay d + DELAY_OFFSET): accumulates
        v[n - d] * i[n] and v[n - d - 1] * i[n]; the caller keeps n - d - 1 and n - d in the burst.
    sums: split words (hi, lo), CHANNEL_SUMS per channel then PAIR_SUMS per pair (see above).
        The first set of the span needs set first - 1 for dx (the caller keeps first >= 1).
    part: scratch for one chunk's partial sums (partial_words long).
    """
    nch = geo[0]
    n = geo[1]
    end = geo[2]
    npairs = geo[3]
    chunk = geo[4]
    nwords = 3 * nch + 2 * npairs
    while n < end:
        stop = n + chunk
        if stop > end:
            stop = end
        k = 0
        while k < nwords:
            part[k] = 0
            k += 1
        while n < stop:
            base = n * nch
            c = 0
            while c < nch:
                x = int(buf[base + c]) - bias[c]
                dx = x - (int(buf[base - nch + c]) - bias[c])
                part[3 * c] += x + 4096
                part[3 * c + 1] += x * x
                part[3 * c + 2] += dx * dx
                c += 1
            p = 0
            while p < npairs:
                vc = pairs[3 * p]
                ic = pairs[3 * p + 1]
                d = pairs[3 * p + 2] - 1024
                i = int(buf[base + ic]) - bias[ic]
                v0 = int(buf[(n - d) * nch + vc]) - bias[vc]
                v1 = int(buf[(n - d - 1) * nch + vc]) - bias[vc]
                w = 3 * nch + 2 * p
                part[w] += v0 * i + 16777216
                part[w + 1] += v1 * i + 16777216
                p += 1
            n += 1
        k = 0
        while k < nwords:
            lo = sums[2 * k + 1] + part[k]
            sums[2 * k] += lo >> 24
            sums[2 * k + 1] = lo & 0xFFFFFF
            k += 1


@micropython.viper
def rising_crossings(buf: ptr16, nch: int, ch: int, first: int, end: int, level: int, hyst: int,
                     out: ptr32, maxout: int) -> int:
    """Indices n in [first, end) where channel ch rises through `level` (x[n-1] < level <= x[n]).

    A crossing counts only after the signal has been below level - hyst since the previous one, so
    noise near the zero crossing cannot add crossings (the persistence check).
    """
    count = 0
    armed = 0
    prev = int(buf[first * nch + ch])
    n = first + 1
    while n < end:
        x = int(buf[n * nch + ch])
        if x < level - hyst:
            armed = 1
        elif armed and prev < level and x >= level:
            if count < maxout:
                out[count] = n
            count += 1
            armed = 0
        prev = x
        n += 1
    return count


@micropython.viper
def clip_counts(buf: ptr16, nch: int, first: int, end: int, counts: ptr32):
    """counts[c] = codes of channel c in [first, end) on a rail (0 or 4095): the ADC clipped."""
    c = 0
    while c < nch:
        counts[c] = 0
        c += 1
    i = first * nch
    stop = end * nch
    c = 0
    while i < stop:
        x = int(buf[i])
        if x <= 0 or x >= 4095:
            counts[c] += 1
        i += 1
        c += 1
        if c == nch:
            c = 0
