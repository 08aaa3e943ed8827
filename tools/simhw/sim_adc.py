# The simulated ESP32 ADC front end (contract §6): mains voltages and CT currents from the scenario,
# turned into pin voltages by the board's front end (scale factors, DC bias), then into 12-bit codes
# by the ESP32's own transfer curve at 11 dB, with noise, timing jitter and an optional bow-shaped
# nonlinearity. Host only: runs on the MicroPython unix port and on CPython (tests).
#
# The transfer curve (adc.curve "esp32", the default) is Espressif's published characteristic of
# ADC1 at 11 dB, as ESP-IDF's esp_adc_cal (esp_adc_cal_esp32.c, the "eFuse Vref" scheme that
# MicroPython's ADC.read_uv() uses) states it:
#   - linear below code 2880: mV = offset + code * Vref * 196602 / 4096 / 65536 (offset 142 mV;
#     Vref is the chip's reference, burnt into eFuse at the factory, 1000..1200 mV; 1100 typical,
#     so 0.8057 mV per code). Below the offset the raw code stays 0: nothing under ~0.14 V.
#   - the knee: from code 2880 (about 2.45 V on a typical chip, 2.25 V at Vref 1000) Espressif's
#     20-point tables lut_adc1_low/high (Vref 1000 / 1200 mV, 64 codes apart, blended over the first
#     64 codes) take over: the codes climb ever faster than the line, 4095 comes at about 3.13 V
#     instead of the 3.44 V of the line. The MicroPython esp32 quickref gives the usable range at
#     11 dB as 150..2450 mV for the same reason.
#   - per chip (adc.chip_spread, or pinned with adc.vref_mv / adc.offset_mv): Vref drawn uniformly
#     from Espressif's 1000..1200 mV and the offset from 142 +- 25 mV (our assumption: ESP-IDF's
#     eFuse Vref scheme fixes it at 142 mV; two-point chips measure it), from the seed (or
#     adc.chip_seed), so a simulated unit is the same chip at every start. Default: the typical chip.
#   - adc.curve "linear": the ideal converter (code = pin voltage / 0.8057 mV less the offset).
# Noise is input-referred: added before the curve, so the dead zone below the offset reads 0.
#
# Speed: the simulator needs ~4,800 sample sets/s x 6 channels in real time on the unix port, where
# every float is a heap object. So all floating-point work happens only when the scenario changes
# (one-cycle waveform tables per channel, in fixed point; the chip's curve as a table); the
# per-sample loop below is integer-only viper code: a 32-bit phase accumulator, table lookup with
# linear interpolation, noise and jitter drawn from precomputed gaussian tables by a cheap LCG, and
# the curve by one more interpolated lookup (about 8 million sets/s on the unix port).
import math
from array import array

import micropython
from micropython import const

CHANNELS = ("v1", "v2", "v3", "i1", "i2", "i3")   # canonical order (of adc.bias_codes too)
BIAS_OFFSET = (8, 60)          # the seeded bias sits this many counts (min, max) off the board's

# Espressif's characteristic of ESP32 ADC1 at 11 dB (ESP-IDF esp_adc_cal_esp32.c, eFuse Vref scheme).
VREF_TYPICAL_MV = 1100
VREF_RANGE_MV = (1000, 1200)   # eFuse Vref of any chip
OFFSET_MV = 142                # adc1_vref_atten_offset[ADC_ATTEN_DB_11]
OFFSET_SPREAD_MV = 25          # our assumption for the spread of the offset between chips
_ATTEN_SCALE = 196602          # adc1_vref_atten_scale[ADC_ATTEN_DB_11]
LUT_LOW_THRESH = 2880          # the knee: codes from here on follow the tables
LUT_STEP = 64
LUT_VREF1000 = (2240, 2297, 2352, 2405, 2457, 2512, 2564, 2616, 2664, 2709,
                2754, 2795, 2832, 2868, 2903, 2937, 2969, 3000, 3030, 3060)
LUT_VREF1200 = (2667, 2706, 2745, 2780, 2813, 2844, 2873, 2901, 2928, 2956,
                2982, 3006, 3032, 3059, 3084, 3110, 3135, 3160, 3184, 3209)


def mv_per_code(vref_mv):
    """The slope of the linear part: mV per code for a chip of this Vref."""
    return vref_mv * _ATTEN_SCALE / 4096 / 65536


MV_PER_CODE = mv_per_code(VREF_TYPICAL_MV)     # 0.8057 mV: the typical chip's


def code_to_mv(code, vref_mv=VREF_TYPICAL_MV, offset_mv=OFFSET_MV):
    """Pin voltage (mV) that gives `code` (a float, any range: extended along the end segments)."""
    lin = offset_mv + code * mv_per_code(vref_mv)
    if code <= LUT_LOW_THRESH:
        return lin
    w = (vref_mv - VREF_RANGE_MV[0]) / (VREF_RANGE_MV[1] - VREF_RANGE_MV[0])

    def lut(k):
        return LUT_VREF1000[k] * (1 - w) + LUT_VREF1200[k] * w + (offset_mv - OFFSET_MV)
    if code < LUT_LOW_THRESH + LUT_STEP:       # ESP-IDF blends the line into the tables here
        f = (code - LUT_LOW_THRESH) / LUT_STEP
        return lin * (1 - f) + (lut(0) + (lut(1) - lut(0)) * f) * f
    k = min(int((code - LUT_LOW_THRESH) // LUT_STEP), len(LUT_VREF1000) - 2)
    f = (code - LUT_LOW_THRESH - k * LUT_STEP) / LUT_STEP
    return lut(k) + (lut(k + 1) - lut(k)) * f

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
# The chip's curve: one entry per 8 codes of the typical chip's line (the index of the pin voltage)
# from -256 to 4352, each the chip's code in 1/256, linearly interpolated.
_CURVE_SHIFT = const(11)                # _FX + 3: 8 codes a step
_CURVE_N = const(577)
_CURVE_BASE = const(256 << 8)           # the table starts 256 codes below 0
_CURVE_TOP = const(((_CURVE_N - 1) << 11) - 1)
WAVE_CLAMP = 8192 << 8                  # beyond both rails already: clipping stays exact
NOISE_CLAMP = 6                         # sigmas

# Layout of the shared table array: per-channel waves, then noise, jitter and the chip's curve.
_NOISE = const(6 * (_WAVE_N + 1))
_JITTER = const(_NOISE + _RAND_N)
_CURVE = const(_JITTER + _RAND_N)
_TABLE_LEN = _CURVE + _CURVE_N

# Parameters passed to the viper loop (array('I')): nsets, nch, phase, phase step per set, LCG
# state, (unused), then each channel's phase offset (its read skew).
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
            # The pin voltage (in 1/256 of the typical chip's codes), noise in: through the curve.
            v = a + (((int(t[i + 1]) - a) * frac) >> 14) + int(t[_NOISE + (x >> 21)]) - _OFS2 + _CURVE_BASE
            if v < 0:
                v = 0
            elif v > _CURVE_TOP:
                v = _CURVE_TOP
            i = _CURVE + (v >> _CURVE_SHIFT)
            a = int(t[i])
            v = a + (((int(t[i + 1]) - a) * (v & 2047)) >> _CURVE_SHIFT) - _OFS
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


def _mix(seed):
    """A seed scrambled (an LCG's first draws are affine in its seed: neighbours would make similar chips)."""
    h = (seed * 0x9E3779B1 + 0x7F4A7C15) & 0xFFFFFFFF
    h ^= h >> 15
    h = (h * 0x85EBCA77) & 0xFFFFFFFF
    h ^= h >> 13
    return h & 0x3FFFFFFF


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
        self._seed = seed
        # The board's front end: its scale factors count in steps of ADC_MV_PER_COUNT at the pin, around
        # a DC bias of ADC_BIAS_V (boards/esp32_devkitc.py). Both in the typical chip's codes here.
        self._pin_scale = getattr(board, "ADC_MV_PER_COUNT", 3100 / 4096) / MV_PER_CODE
        mid = (getattr(board, "ADC_BIAS_V", 1.65) * 1000 - OFFSET_MV) / MV_PER_CODE
        rng = _Lcg(seed)
        self._seeded_bias = {}
        for ch in CHANNELS:
            # The bias divider's resistor tolerance: each input a little off the design value.
            off = BIAS_OFFSET[0] + (BIAS_OFFSET[1] - BIAS_OFFSET[0]) * rng.uniform()
            sign = 1 if rng.uniform() < 0.5 else -1
            self._seeded_bias[ch] = round((mid + sign * off) * 256) / 256
        self.vref_mv = VREF_TYPICAL_MV    # the chip (from the scenario at the first fill)
        self.offset_mv = OFFSET_MV
        self._noise_seed = rng.next()     # noise tables are rebuilt from here (not kept: heap)
        self._tab = self.table = table if table is not None else _zeros("I", _TABLE_LEN)
        self._par = _zeros("I", _P_OFFSETS + 6)
        self._par[1] = len(channels)
        self._par[4] = rng.next()         # the sample loop's own LCG
        self._version = None

    def bias_code(self, ch):
        """The true DC bias of a channel: the pin voltage in the typical chip's codes (on that chip, and
        on any in the linear range but for its gain and offset, what the firmware has to track)."""
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
        self._build_curve(adc)

    def _chip(self, adc):
        """(Vref, offset) in mV of the simulated chip: pinned by the scenario, drawn from the seed with
        adc.chip_spread, else the typical chip."""
        vref, offset = VREF_TYPICAL_MV, OFFSET_MV
        if adc.get("chip_spread"):
            rng = _Lcg(_mix(adc.get("chip_seed") or self._seed))
            vref = VREF_RANGE_MV[0] + (VREF_RANGE_MV[1] - VREF_RANGE_MV[0]) * rng.uniform()
            offset = OFFSET_MV + OFFSET_SPREAD_MV * (2 * rng.uniform() - 1)
        vref = adc.get("vref_mv") or vref
        offset = adc.get("offset_mv") if adc.get("offset_mv") is not None else offset
        return vref, offset

    def _build_curve(self, adc):
        """The chip's curve as a table: typical-chip codes of the pin voltage -> this chip's code."""
        self.vref_mv, self.offset_mv = self._chip(adc)
        linear = adc.get("curve", "esp32") == "linear"
        nl = adc.get("nonlinearity", 0.0)
        # The curve's knots (code, mV): code_to_mv is piecewise linear in the code, so inverting it
        # segment by segment is exact. Ends extended along the line below and the last step above.
        knots = [-4096, LUT_LOW_THRESH]
        knots += [LUT_LOW_THRESH + LUT_STEP * k for k in range(1, len(LUT_VREF1000))] + [8192]
        mvs = [code_to_mv(c, self.vref_mv, self.offset_mv) for c in knots]
        tab = self._tab
        j = 0
        for i in range(_CURVE_N):
            u = (i << 3) - (_CURVE_BASE >> _FX)         # the pin voltage in typical-chip codes
            if linear:
                c = u
            else:
                mv = OFFSET_MV + u * MV_PER_CODE
                while j < len(knots) - 2 and mv > mvs[j + 1]:
                    j += 1
                c = knots[j] + (knots[j + 1] - knots[j]) * (mv - mvs[j]) / (mvs[j + 1] - mvs[j])
            # Bow-shaped INL on top: 0 at mid-scale, `nl` LSB at both ends of the range.
            x = (_clamp(c, 4095) - 2047.5) / 2047.5 if 0 <= c else 1.0
            c += nl * x * x
            tab[_CURVE + i] = _OFS + round(_clamp(c, 8192) * 256)

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
        amp = math.sqrt(2) * rms / scale * self._pin_scale * 256
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
