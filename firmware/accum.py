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
# ... and the rest of a burst's geometry, for find_span() and add_span() (burst.py fills them in)
G_NSETS = const(5)    # sample sets in the burst
G_US = const(6)       # the burst's duration in µs
G_V1 = const(7)       # V1's channel
G_LEVEL = const(8)    # V1's DC level in 1/FRAC counts: where a crossing lies between two sets
G_LAG_US = const(9)   # margin at both ends of the span for the voltage delays, in µs
G_PRE_US = const(10)  # more before the span (a derived L3's voltage lies 2/3 cycle back), in µs
G_HYST = const(11)    # crossing hysteresis in counts (rising_crossings)
G_MAXCROSS = const(12)  # room in the crossings array
G_CYCLES = const(13)  # find_span: whole cycles between the first and last rising crossing (0: none)
G_SPAN = const(14)    # ... and the time they took, in 1/FRAC sets
G_ALL_FIRST = const(15)  # ... and the burst less its margins: the span of a burst without mains
G_ALL_END = const(16)
G_LIN_LO = const(17)  # the lowest and highest code the ADC converts linearly (the board's
G_LIN_HI = const(18)  # ADC_LINEAR_CODES): codes beyond count as clipped
GEOMETRY_WORDS = const(19)
FRAC = const(256)     # crossing times in 1/FRAC sets, V1's level in 1/FRAC counts

CHANNEL_SUMS = const(3)   # per channel: sum (x + X_OFFSET), sum x^2, sum (x[n] - x[n-1])^2
PAIR_SUMS = const(2)      # per pair: sum (v[n-d] i[n] + P_OFFSET), sum (v[n-d-1] i[n] + P_OFFSET)


def partial_words(nch, npairs):
    return CHANNEL_SUMS * nch + PAIR_SUMS * npairs


def sums_words(nch, npairs):
    """Words of the split-word result array: two (hi, lo) per partial word."""
    return 2 * partial_words(nch, npairs)


def split_value(sums, k, hi_offset=0, lo_offset=0):
    """The k-th accumulated sum minus the offset hi_offset * 2^24 + lo_offset, as a float (once per
    window). The offset comes off the words as small ints first: exact, and the float then only
    rounds the (small) result, not the offset-laden sum (float32 holds 24 bits)."""
    return (sums[2 * k] - hi_offset) * SPLIT + (sums[2 * k + 1] - lo_offset)


def channel_sums(sums, c, n):
    """(sum x, sum x^2, sum dx^2) of channel c over n sets, offsets removed."""
    k = CHANNEL_SUMS * c
    # X_OFFSET * n = (n >> 12) * 2^24 + (n & 0xFFF) * 2^12, both parts small ints.
    return (split_value(sums, k, n >> 12, (n & 0xFFF) << 12), split_value(sums, k + 1),
            split_value(sums, k + 2))


def pair_sums(sums, nch, p, n):
    """(sum v[n-d] i[n], sum v[n-d-1] i[n]) of pair p over n sets, offsets removed (P_OFFSET * n is
    n * 2^24)."""
    k = CHANNEL_SUMS * nch + PAIR_SUMS * p
    return split_value(sums, k, n), split_value(sums, k + 1, n)


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
    """Adds to counts[c] the codes of channel c in [first, end) on a rail (0 or 4095): the ADC clipped."""
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


@micropython.viper
def outside_counts(buf: ptr16, geo: ptr32, counts: ptr32):
    """Adds to counts[c] the codes of channel c in the span [G_FIRST, G_END) outside the ADC's linear
    range [G_LIN_LO, G_LIN_HI]: on a rail or in the knee of the curve, as good as clipped."""
    nch = geo[G_NCH]
    lo = geo[G_LIN_LO]
    hi = geo[G_LIN_HI]
    i = geo[G_FIRST] * nch
    stop = geo[G_END] * nch
    c = 0
    while i < stop:
        x = int(buf[i])
        if x < lo or x > hi:
            counts[c] += 1
        i += 1
        c += 1
        if c == nch:
            c = 0


@micropython.viper
def fold(dst: ptr32, src: ptr32, nwords: int):
    """dst += src for split-word arrays (a burst's sums into its window's), and src cleared for the next
    burst. Each hi word grows by at most 2 per sample set (see the top): a window would need 2^30
    sets (3 days at the device's rate) to overflow it."""
    k = 0
    while k < nwords:
        lo = dst[k + 1] + src[k + 1]
        dst[k] += src[k] + (lo >> 24)
        dst[k + 1] = lo & 0xFFFFFF
        src[k] = 0
        src[k + 1] = 0
        k += 2


@micropython.viper
def clear(words: ptr32, nwords: int):
    k = 0
    while k < nwords:
        words[k] = 0
        k += 1


@micropython.viper
def variances16(sums: ptr32, nch: int, n: int, out: ptr32):
    """out[c] = the variance of channel c over the n sets of one burst's sums, in 16ths of a count^2
    (an int, no float: the supply alarm checks every burst). n must be below 2^14.

    sum x^2 / n by long division of its split word in 12-bit steps (every step stays below 2^26), the
    squared mean to a quarter count (|4 mean| < 2^14, its square < 2^28)."""
    c = 0
    while c < nch:
        k = 6 * c                        # CHANNEL_SUMS split words per channel
        s = (sums[k] << 24) + sums[k + 1] - (n << 12)     # sum x: |s| <= 4095 n < 2^26
        hi = sums[k + 2]
        lo = sums[k + 3]
        q = hi // n
        r = hi - q * n
        t = (r << 12) | (lo >> 12)
        q = (q << 12) + t // n
        r = t % n
        t = (r << 12) | (lo & 0xFFF)
        q = (q << 12) + t // n
        r = t % n
        q = (q << 4) + (r << 4) // n      # 16 sum x^2 / n
        if s >= 0:
            m4 = ((s << 2) + (n >> 1)) // n
        else:
            m4 = -(((-s << 2) + (n >> 1)) // n)
        v = q - m4 * m4
        out[c] = v if v > 0 else 0
        c += 1


@micropython.viper
def find_span(buf, geo: ptr32, arrays) -> int:
    """The whole-cycle span of one burst (geo's burst words in, G_FIRST, G_END and the G_CYCLES to
    G_ALL_END words out): from V1's first rising crossing to its last, the margins left out. Returns the
    whole cycles between them, 0 when there are not two (no mains). Integers only: the caller checks
    the frequency they give once, in floats. arrays: as add_span's, bias first, crossings last."""
    codes = ptr16(buf)
    bias = ptr32(arrays[0])
    cross = arrays[7]
    nch = geo[G_NCH]
    nsets = geo[G_NSETS]
    us = geo[G_US]
    v = geo[G_V1]
    margin = geo[G_LAG_US] * nsets // us + 2
    preroll = margin
    if geo[G_PRE_US]:
        preroll += geo[G_PRE_US] * nsets // us + 1
    geo[G_ALL_FIRST] = preroll
    geo[G_ALL_END] = nsets - margin
    geo[G_CYCLES] = 0
    count = int(rising_crossings(buf, nch, v, preroll, nsets - margin, bias[v], geo[G_HYST], cross,
                                 geo[G_MAXCROSS]))
    if count > geo[G_MAXCROSS]:
        count = geo[G_MAXCROSS]
    if count < 2:
        return 0
    at = ptr32(cross)
    first = at[0]
    end = at[count - 1]
    # Each crossing's time, interpolated between the sets around it, in 1/FRAC sets.
    level = geo[G_LEVEL]
    a = int(codes[(first - 1) * nch + v])
    b = int(codes[first * nch + v])
    t0 = first * FRAC
    if b != a:
        t0 = (first - 1) * FRAC + (level - a * FRAC) // (b - a)
    a = int(codes[(end - 1) * nch + v])
    b = int(codes[end * nch + v])
    t1 = end * FRAC
    if b != a:
        t1 = (end - 1) * FRAC + (level - a * FRAC) // (b - a)
    if t1 <= t0:
        return 0
    geo[G_FIRST] = first
    geo[G_END] = end
    geo[G_CYCLES] = count - 1
    geo[G_SPAN] = t1 - t0
    return count - 1


@micropython.viper
def add_span(buf, geo, arrays):
    """Add the span [G_FIRST, G_END) of a burst to its window. arrays: (bias, pairs, the burst's sums,
    part, the window's sums, the window's clip counts, the burst's var16, crossings): accumulate into the
    burst's sums, their variances (a span under 2^14 sets), folded into the window's, clipped codes
    counted. One call from Python, so no Python frame per burst holds all the arrays."""
    g = ptr32(geo)
    accumulate(buf, geo, arrays[0], arrays[1], arrays[2], arrays[3])
    nch = g[G_NCH]
    first = g[G_FIRST]
    end = g[G_END]
    if end - first < 16384:
        variances16(arrays[2], nch, end - first, arrays[6])
    fold(arrays[4], arrays[2], int(len(arrays[2])))
    outside_counts(buf, geo, arrays[5])
