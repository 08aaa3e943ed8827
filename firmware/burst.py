# Bursts of raw sample sets -> a readings window's whole-cycle statistics in ADC counts.
#
# Per burst only integers: the viper kernel adds the burst's whole-cycle span to the window's sums, and
# a handful of floats find the burst's frequency. The float math (means, variances, phase compensation,
# noise) runs once per window, on the window's sums: on the ESP32 every float is a heap object, and a
# burst comes every ~0.27 s. Within a window the DC bias the kernel removes and the voltage delays stay
# as they were at its start (from the previous window's mean and frequency).
#
# The method follows emonLibCM rather than EmonLib: the DC bias is tracked from the data, the span
# is a whole number of cycles between rising zero crossings of V1, the multiplex skew and the CT's
# phase error are compensated, and the frequency comes from the crossings' interpolated times.
#
# Phase compensation without per-sample interpolation: the kernel sums v[n-d]*i[n] and v[n-d-1]*i[n]
# for an integer delay d; for the fundamental, G(tau) = <v(t - tau) i(t)> = C cos(psi - w tau), so
# the value at any tau between the two measured delays follows exactly from them:
#     G(tau) = (G0 sin(wT + a) - G1 sin(a)) / sin(wT),  a = w (delay0 - tau), T = sample-set period.
# The same trick shifts V1 by 120/240 degrees to derive L2/L3 voltages (contract §1) when only L1 is wired.
import math
from array import array

import accum

F_MIN_HZ = 45.0              # slowest mains we lock on to (sets the pre-roll for derived voltages)
F_MAX_HZ = 66.0
MAX_CT_LAG_DEG = 20.0        # the calibration range of i_phase_deg, either sign
CROSS_HYST = 40              # counts (~12 V): a crossing needs the voltage this far below zero first
BURST_S_MAX = 0.9            # the longest burst the analyzer is made for by default (the device's: 0.16 s)
TWO_PI = 2 * math.pi
FRAC = accum.FRAC            # crossing times and V1's DC level in 1/FRAC sets and counts
# The margins of a burst in µs, rounded up: the largest CT lag calibration, and 2/3 of the slowest
# cycle (a derived L3's voltage lies that far back; accum.find_span).
LAG_US = int(MAX_CT_LAG_DEG / 360.0 * 1e6 / F_MIN_HZ) + 1
DERIVED_US = int(2e6 / 3.0 / F_MIN_HZ) + 1


def channel_layout(phases, voltage_inputs):
    """Read order: each voltage next to its current, so their multiplex skew is small."""
    if phases == 1:
        return ("v1", "i1")
    if voltage_inputs == 3:
        return ("v1", "i1", "v2", "i2", "v3", "i3")
    return ("v1", "i1", "i2", "i3")


class CycleStats:
    """Whole-cycle statistics in ADC counts over `sets` sample sets: a readings window's (made by
    BurstAnalyzer.finish, which refills the same object every window). The Meter scales them to units."""

    def __init__(self, nphases):
        self.sets = 0                  # sample sets in the whole-cycle spans
        self.v_ok = False              # every burst had usable mains voltage (False with no sets)
        self.freq_hz = None            # mean mains frequency over the bursts with voltage
        self.v_var = [0.0] * nphases   # mean voltage variance (derived phases: V1's)
        self.i_var = [0.0] * nphases   # mean current variance, white ADC noise removed
        self.i_noise = [0.0] * nphases  # the white noise variance that was removed
        self.power = [0.0] * nphases   # mean v*i, phase-compensated
        self.reactive = [0.0] * nphases  # the same with the voltage a quarter cycle back
        self.clipped = [0] * nphases   # codes outside the linear range, current or voltage (a count)

    def clear(self):
        self.sets = 0
        self.v_ok = False
        self.freq_hz = None
        for p in range(len(self.v_var)):
            self.v_var[p] = self.i_var[p] = self.i_noise[p] = self.power[p] = self.reactive[p] = 0.0
            self.clipped[p] = 0


class BurstAnalyzer:
    """Adds bursts to the running window (process) and closes it (finish); keeps what carries over
    between windows (DC bias, frequency, voltage delays)."""

    def __init__(self, channels, phases, voltage_inputs, skew_us=None, ct_lag_deg=None, burst_s=BURST_S_MAX,
                 bias_code=2048, linear_codes=(1, 4094)):
        self.channels = tuple(channels)
        self.nch = len(channels)
        self.nphases = phases
        self.derived = voltage_inputs == 1
        self.skew_us = skew_us            # per channel; None = evenly spread over the set
        self.v_index = [self.channels.index("v%d" % (p + 1 if not self.derived else 1))
                        for p in range(phases)]
        self.i_index = [self.channels.index("i%d" % (p + 1)) for p in range(phases)]
        self.ct_lag_deg = list(ct_lag_deg or [0.0] * phases)   # the calibration's i_phase_deg
        n = self.nch
        # Per phase, how far back the voltage that goes with a current sample lies: in mains cycles
        # (the CT's phase error and, derived, 120/240 degrees), less the multiplex skew between the two
        # reads, in sets (even spread) or µs (skew_us).
        self._cycles = [self.ct_lag_deg[p] / 360.0 + (p / 3.0 if self.derived else 0.0)
                        for p in range(phases)]
        self._skew = [(self.i_index[p] - self.v_index[p]) / n if skew_us is None
                      else skew_us[self.i_index[p]] - skew_us[self.v_index[p]] for p in range(phases)]
        # bias_code: the front end's DC bias by design (the board's ADC_BIAS_CODE), where tracking starts;
        # linear_codes: the codes the ADC converts linearly (ADC_LINEAR_CODES), others count as clipped.
        self.bias = array("i", [bias_code] * n)  # removed by the kernel; fixed within a window
        g = self.geo = array("i", [0] * accum.GEOMETRY_WORDS)
        g[accum.G_NCH] = n
        g[accum.G_NPAIRS] = phases
        g[accum.G_CHUNK] = accum.CHUNK_SETS
        g[accum.G_V1] = self.v_index[0]
        g[accum.G_LEVEL] = bias_code * FRAC
        g[accum.G_LIN_LO] = linear_codes[0]
        g[accum.G_LIN_HI] = linear_codes[1]
        g[accum.G_LAG_US] = LAG_US
        g[accum.G_PRE_US] = DERIVED_US if self.derived else 0
        g[accum.G_HYST] = CROSS_HYST
        # Room for every rising crossing of the longest burst at the fastest mains (a burst with more
        # uses its first ones: fewer whole cycles, still whole).
        max_crossings = int(burst_s * F_MAX_HZ) + 2
        g[accum.G_MAXCROSS] = max_crossings
        self.pairs = array("i", [0] * (3 * phases))
        self.delays_set = False                 # pairs hold delays for a known set period
        words = accum.sums_words(n, phases)
        self.sums = array("i", [0] * words)         # the window's
        self.clips = array("i", [0] * n)            # the window's codes on a rail, per channel
        self.var16 = array("i", [0] * n)            # the latest burst's variances (accum.variances16)
        self.burst_sets = 0                         # ... over this many sets
        self.cross = array("i", range(max_crossings))     # values unused until a burst
        # What accum.find_span and add_span work on (with the burst's own sums and the kernel's scratch).
        self.arrays = (self.bias, self.pairs, array("i", [0] * words),
                       array("i", [0] * accum.partial_words(n, phases)), self.sums, self.clips, self.var16,
                       self.cross)
        self.stats = CycleStats(phases)
        self.freq_hz = None                         # the latest known mains frequency
        self._mean = [0.0] * n
        self._var = [0.0] * n
        self._msd = [0.0] * n         # mean squared first difference
        self._new_window()

    def carry_over(self, old):
        """Start from what another analyzer of the same channels learnt: DC bias and frequency."""
        for c in range(self.nch):
            self.bias[c] = old.bias[c]
        self.geo[accum.G_LEVEL] = old.geo[accum.G_LEVEL]
        self.freq_hz = old.freq_hz

    def _new_window(self):
        self.sets = 0                 # whole-cycle sets summed
        self.bursts = 0
        self.v_bursts = 0             # bursts with usable mains voltage
        self.cycles = 0               # ... their whole cycles
        self.span_us = 0.0            # ... and the time those cycles took
        self.burst_us = 0             # all bursts' duration and sets: the mean set period
        self.burst_nsets = 0

    def process(self, buf, nsets, duration_us):
        """Add one burst to the window; True when it had usable mains voltage. The burst's own
        variances are left in var16 (over burst_sets sets) for the supply alarm.
        (Few locals: a Python frame over 11 words is allocated on the heap at every call.)"""
        self.geo[accum.G_NSETS] = nsets
        self.geo[accum.G_US] = int(duration_us)
        v_ok = accum.find_span(buf, self.geo, self.arrays) > 0 and self._mains()
        if not v_ok:
            # No mains: measure the currents over the whole burst (RMS only, no power).
            self.geo[accum.G_FIRST] = self.geo[accum.G_ALL_FIRST]
            self.geo[accum.G_END] = self.geo[accum.G_ALL_END]
        n = self.geo[accum.G_END] - self.geo[accum.G_FIRST]
        self.burst_sets = n if 0 < n < 16384 else 0     # a replayed capture's long window: no alarm
        if n <= 0:
            return False
        if not self.delays_set:
            self._set_delays(self.freq_hz or 50.0, self.geo[accum.G_US] / nsets)
        accum.add_span(buf, self.geo, self.arrays)
        self.sets += n
        self.bursts += 1
        self.burst_us += self.geo[accum.G_US]
        self.burst_nsets += nsets
        return v_ok

    def _mains(self):
        """Whether the burst's crossings (find_span) say mains: then its cycles count in the window's
        frequency. The only floats of a burst."""
        g = self.geo
        span_us = g[accum.G_SPAN] * (g[accum.G_US] / (FRAC * g[accum.G_NSETS]))
        freq = g[accum.G_CYCLES] * 1e6 / span_us
        if not F_MIN_HZ <= freq <= F_MAX_HZ:
            return False
        if self.freq_hz is None:          # the first mains seen: delays for its frequency
            self.freq_hz = freq
            self.delays_set = False
        self.v_bursts += 1
        self.cycles += g[accum.G_CYCLES]
        self.span_us += span_us
        return True

    def delay_sets(self, p, sets_per_cycle, set_us):
        """How far back the voltage that goes with a current sample of phase p lies, in sample sets
        (a float d + f: d whole sets, f the fraction the phase compensation interpolates)."""
        skew = self._skew[p] if self.skew_us is None else self._skew[p] / set_us
        return self._cycles[p] * sets_per_cycle - skew

    def _set_delays(self, freq, set_us):
        """The kernel's (voltage, current, whole delay) of every phase for this frequency and set period
        (finish() computes the weights for the fraction, at the window's own frequency)."""
        spc = 1e6 / (freq * set_us)
        for p in range(self.nphases):
            self.pairs[3 * p] = self.v_index[p]
            self.pairs[3 * p + 1] = self.i_index[p]
            self.pairs[3 * p + 2] = math.floor(self.delay_sets(p, spc, set_us)) + accum.DELAY_OFFSET
        self.delays_set = True

    def finish(self):
        """Close the window: its CycleStats (the same object every time, valid until the next finish);
        the next window starts with the DC bias of this one's mean and delays for its frequency."""
        res = self.stats
        res.clear()
        n = self.sets
        if n > 0:
            res.sets = n
            res.v_ok = self.v_bursts == self.bursts
            if self.v_bursts:
                res.freq_hz = self.freq_hz = self.cycles * 1e6 / self.span_us
            self._channels(n)
            self._phases(res, n, self.freq_hz or 50.0, self.burst_us / self.burst_nsets)
            for p in range(self.nphases):
                res.clipped[p] = self.clips[self.i_index[p]] + self.clips[self.v_index[p]]
        accum.clear(self.sums, len(self.sums))
        accum.clear(self.clips, self.nch)
        self._new_window()
        return res

    def _channels(self, n):
        """Each channel's mean, variance and mean squared difference over the window's n sets; the DC
        bias (and V1's level) moves to the mean for the next window."""
        sums = self.sums
        for c in range(self.nch):
            k = accum.CHANNEL_SUMS * c
            s = accum.split_value(sums, k, n >> 12, (n & 0xFFF) << 12) / n     # less X_OFFSET * n
            self._mean[c] = s
            self._var[c] = max(0.0, accum.split_value(sums, k + 1) / n - s * s)
            self._msd[c] = accum.split_value(sums, k + 2) / n
            if c == self.v_index[0]:
                self.geo[accum.G_LEVEL] = self.bias[c] * FRAC + math.floor(s * FRAC + 0.5)
            self.bias[c] = min(4095, max(0, self.bias[c] + math.floor(s + 0.5)))

    def _phases(self, res, n, freq, set_us):
        w = TWO_PI * freq * set_us * 1e-6           # mains angle per sample set
        cos_w = math.cos(w)
        sin_w = math.sin(w)
        spc = TWO_PI / w                            # sets per mains cycle
        noise_var = 2 - 2 * cos_w                   # see below
        mean = self._mean
        var = self._var
        msd = self._msd
        for p in range(self.nphases):
            vc, ic = self.v_index[p], self.i_index[p]
            delay = self.delay_sets(p, spc, set_us)
            if res.v_ok:
                # The whole delay d the window ran with, and where this frequency puts the voltage:
                #     G(tau) = (G0 sin(wT + a) - G1 sin(a)) / sin(wT),  a = w (d - delay).
                # Its quarter-cycle twin: sin(x - pi/2) = -cos(x).
                a = w * (self.pairs[3 * p + 2] - accum.DELAY_OFFSET - delay)
                cross = mean[vc] * mean[ic]
                k = accum.CHANNEL_SUMS * self.nch + accum.PAIR_SUMS * p
                g0 = accum.split_value(self.sums, k, n) / n - cross        # less P_OFFSET * n
                g1 = accum.split_value(self.sums, k + 1, n) / n - cross
                wa = w + a
                res.power[p] = (g0 * math.sin(wa) - g1 * math.sin(a)) / sin_w
                res.reactive[p] = (g1 * math.cos(a) - g0 * math.cos(wa)) / sin_w
                res.v_var[p] = var[vc]
            # White noise adds 2 sigma^2 to the mean squared difference; a sine adds 2(1-cos wT) var.
            noise = max(0.0, (msd[ic] - noise_var * var[ic]) / (2 * cos_w))
            res.i_var[p] = max(0.0, var[ic] - noise)
            res.i_noise[p] = noise
            self.pairs[3 * p + 2] = math.floor(delay) + accum.DELAY_OFFSET     # for the next window
        self.delays_set = True
