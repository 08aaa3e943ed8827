# The simulated ESP32 ADC front end (contract §6): mains voltages and CT currents from the scenario,
# turned into 12-bit codes with the board's scale factors, a DC bias, noise, timing jitter and an
# optional bow-shaped nonlinearity. Host only: runs on the MicroPython unix port and on CPython (tests).
#
# Speed: the simulator needs ~4,800 sample sets/s x 6 channels in real time on the unix port, where
# every float is a heap object. So all floating-point work happens only when the scenario changes
# (one-cycle waveform tables per channel, in fixed point); the per-sample loop below is integer-only
# viper code: a 32-bit phase accumulator, table lookup with linear interpolation, and noise and
# jitter drawn from precomputed gaussian tables by a cheap LCG.
import math
from array import array

import micropython
from micropython import const

CHANNELS = ("v1", "v2", "v3", "i1", "i2", "i3")   # canonical order (of adc.bias_codes too)
MID_SCALE = 2048
BIAS_OFFSET = (8, 60)          # the seeded bias sits this many counts (min, max) off mid-scale

# Fixed point. Phase: 2^32 units per mains cycle, only the low 32 bits matter (wraps freely).
# Values: 1/256 ADC count. Table entries carry +_OFS so they stay non-negative in array('I')
# (viper loads 32-bit items zero-extended on a 64-bit host).
_WAVE_BITS = const(9)                   # 512 points per cycle, linearly interpolated
_WAVE_N = const(1 << _WAVE_BITS)
_FX = const(8)
_CODE_MAX = const(4095)
_OFS = const(1 << 24)
_OFS2 = const(2 * _OFS)                 # wave and noise offsets together
_RAND_N = const(512)                    # gaussian table size; indexed by the top 9 of 30 LCG bits
_INL_SHIFT = const(3)                   # nonlinearity table: one entry per 8 codes
_INL_N = const(513)
WAVE_CLAMP = 8192 << 8                  # beyond both rails already: clipping stays exact
NOISE_CLAMP = 6                         # sigmas

# Layout of the shared table array: per-channel waves, then noise, jitter and nonlinearity tables.
_NOISE = const(6 * (_WAVE_N + 1))
_JITTER = const(_NOISE + _RAND_N)
_INL = const(_JITTER + _RAND_N)
_TABLE_LEN = _INL + _INL_N

# Parameters passed to the viper loop (array('I')): nsets, nch, phase, phase step per set, LCG
# state, nonlinearity on/off, then each channel's phase offset (its read skew).
_P_OFFSETS = const(6)


@micropython.viper
def _synthesize(buf, tab, par) -> int:
    out = ptr16(buf)
    t = ptr32(tab)
    p = ptr32(par)
    nsets = int(p[0])
    nch = int(p[1])
    ph = int(p[2])
    step = int(p[3])
    x = int(p[4])
    inl = int(p[5])
    w = 0
    s = 0
    while s < nsets:
        k = 0
        while k < nch:
            # Two LCG draws (mod 2^30, full period): timing jitter, then amplitude noise.
            x = (x * 1664525 + 1013904223) & 0x3FFFFFFF
            q = ph + int(p[_P_OFFSETS + k]) + int(t[_JITTER + (x >> 21)])
            x = (x * 1664525 + 1013904223) & 0x3FFFFFFF
            i = k * (_WAVE_N + 1) + ((q >> (32 - _WAVE_BITS)) & (_WAVE_N - 1))
            frac = (q >> (18 - _WAVE_BITS)) & 16383
            a = int(t[i])
            v = a + (((int(t[i + 1]) - a) * frac) >> 14) + int(t[_NOISE + (x >> 21)]) - _OFS2
            if inl:
                c = v >> _FX
                if c < 0:
                    c = 0
                elif c > _CODE_MAX:
                    c = _CODE_MAX
                v = v + int(t[_INL + (c >> _INL_SHIFT)]) - _OFS
            c = (v + 128) >> _FX
            if c < 0:
                c = 0
            elif c > _CODE_MAX:
                c = _CODE_MAX
            out[w] = c
            w += 1
            k += 1
        ph += step
        s += 1
    p[4] = x
    return w


class _Lcg:
    """Seeded uniform numbers in (0, 1] for building tables, identical on both runtimes."""

    def __init__(self, seed):
        self.x = (seed * 2654435 + 12345) & 0x3FFFFFFF

    def next(self):
        self.x = (self.x * 1664525 + 1013904223) & 0x3FFFFFFF
        return self.x

    def uniform(self):
        return (self.next() + 1) / 1073741824


def _zeros(typecode, n):
    # array(code, bytearray(...)) would need twice the memory for a moment; range() has a length.
    a = array(typecode, range(n))
    for i in range(n):
        a[i] = 0
    return a


def _gaussians(seed, n):
    """n standard normal numbers (Box-Muller) from seed, one at a time (no list: heap)."""
    rng = _Lcg(seed)
    for _ in range(n // 2):
        r = math.sqrt(-2.0 * math.log(rng.uniform()))
        a = 2.0 * math.pi * rng.uniform()
        yield r * math.cos(a)
        yield r * math.sin(a)


def _fill_gaussian(tab, base, n, seed, sigma, offset):
    """tab[base:base+n] = offset + sigma * gaussian, modulo 2^32; mean and sigma made exact."""
    s1 = s2 = 0.0
    for g in _gaussians(seed, n):
        s1 += g
        s2 += g * g
    mean = s1 / n
    sd = math.sqrt(s2 / n - mean * mean)
    i = base
    for g in _gaussians(seed, n):
        tab[i] = (offset + round(sigma * _clamp((g - mean) / sd, NOISE_CLAMP))) % 4294967296
        i += 1


def _clamp(v, lim):
    return -lim if v < -lim else lim if v > lim else v


class SimAdc:
    """The front end: fill() writes interleaved codes of sample sets at given simulated times."""

    def __init__(self, board, scenario, channels, seed=1, table=None):
        # table: an earlier SimAdc's .table to reuse. The simulator's Hal passes its one: an ESP32 allocates
        # nothing to reconfigure its ADC, so neither may its twin (18 KB at a settings change, in a heap
        # the firmware has fragmented by then, would fail on the simulator's account).
        for ch in channels:
            if ch not in CHANNELS:
                raise ValueError("unknown ADC channel %r" % ch)
        if not 1 <= len(channels) <= 6:
            raise ValueError("1-6 ADC channels")
        self.channels = tuple(channels)
        self.read_us = board.ADC_READ_US
        self._board = board
        self._scenario = scenario
        rng = _Lcg(seed)
        self._seeded_bias = {}
        for ch in CHANNELS:
            off = BIAS_OFFSET[0] + (BIAS_OFFSET[1] - BIAS_OFFSET[0]) * rng.uniform()
            sign = 1 if rng.uniform() < 0.5 else -1
            self._seeded_bias[ch] = MID_SCALE + sign * round(off * 256) / 256
        self._noise_seed = rng.next()     # noise tables are rebuilt from here (not kept: heap)
        self._tab = self.table = table if table is not None else _zeros("I", _TABLE_LEN)
        self._par = _zeros("I", _P_OFFSETS + 6)
        self._par[1] = len(channels)
        self._par[4] = rng.next()         # the sample loop's own LCG
        self._version = None

    def bias_code(self, ch):
        """The true DC bias of a channel, in ADC counts (what the firmware has to track)."""
        biases = self._scenario.data["adc"].get("bias_codes")
        if biases is not None:
            return round(biases[CHANNELS.index(ch)] * 256) / 256
        return self._seeded_bias[ch]

    def fill(self, buf, nsets, t_start_us):
        """Codes of nsets sample sets from simulated time t_start_us (int µs) into buf; returns count."""
        n = nsets * len(self.channels)
        if len(buf) < n:
            raise ValueError("buffer too small")
        if self._scenario.version != self._version:
            self._build()
        # Anchor the phase exactly on the continuous time axis: consecutive fills join seamlessly.
        par = self._par
        par[0] = nsets
        par[2] = (self._f_uhz * int(t_start_us)) % 1000000000000 * 4294967296 // 1000000000000
        _synthesize(buf, self._tab, par)
        return n

    def _phase_units(self, us):
        # Phase advance of `us` microseconds, in 2^32 per cycle, modulo one cycle.
        return round(self._f_uhz * us * 4294967296 / 1e12) % 4294967296

    def _build(self):
        """Derive every table from the scenario; runs only when scenario.version changes."""
        self._version = self._scenario.version
        data = self._scenario.data
        adc = data["adc"]
        self._f_uhz = round(data["mains"]["freq_hz"] * 1e6)
        nch = len(self.channels)
        par = self._par
        par[3] = self._phase_units(nch * self.read_us)
        for k in range(nch):
            par[_P_OFFSETS + k] = self._phase_units(k * self.read_us)
        sensor = adc.get("sensor", "home")
        for k, ch in enumerate(self.channels):
            self._build_wave(k, ch, data, sensor)
        tab = self._tab
        noise = adc.get("noise_lsb", 1.5) * 256
        jitter = self._phase_units(1) * adc.get("jitter_us", 0.5)
        _fill_gaussian(tab, _NOISE, _RAND_N, self._noise_seed, noise, _OFS)
        _fill_gaussian(tab, _JITTER, _RAND_N, self._noise_seed + 1, jitter, 0)
        nl = adc.get("nonlinearity", 0.0)
        par[5] = 1 if nl else 0
        for i in range(_INL_N):
            # Bow-shaped INL: 0 at mid-scale, `nl` LSB at both ends of the range.
            x = ((i << _INL_SHIFT) - 2047.5) / 2047.5
            tab[_INL + i] = _OFS + round(nl * x * x * 256)

    def _build_wave(self, k, ch, data, sensor):
        mains = data["mains"]
        if ch[0] == "v":
            n = int(ch[1])
            rms = mains["voltage_v"][n - 1]
            scale = self._board.V_PER_COUNT
            shift = (n - 1) * 2 * math.pi / 3
            harmonics = mains["harmonics"]
        else:
            p = data["phases"][int(ch[1]) - 1]
            rms = -p["current_a"] if p["reversed"] else p["current_a"]
            rms *= p["ct_gain"]                      # the CT's ratio error
            scale = self._board.A_PER_COUNT[sensor]
            # The CT's own phase error delays its output a little behind the true current.
            shift = ((p["on_phase"] - 1) * 2 * math.pi / 3 + math.radians(p["angle_deg"])
                     + math.radians(p["ct_lag_deg"]))
            harmonics = p["harmonics"]
        amp = math.sqrt(2) * rms / scale * 256
        terms = [(1, amp)] + [(int(h), amp * harmonics[h]) for h in harmonics]
        base = k * (_WAVE_N + 1)
        bias = _OFS + round(self.bias_code(ch) * 256)
        tab = self._tab
        for j in range(_WAVE_N):
            theta = 2 * math.pi * j / _WAVE_N - shift
            v = 0.0
            for h, a in terms:
                v += a * math.sin(h * theta)
            tab[base + j] = bias + _clamp(round(v), WAVE_CLAMP)
        tab[base + _WAVE_N] = tab[base]
