# One burst of raw sample sets -> whole-cycle statistics in ADC counts (float math once per burst).
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
MAX_CROSSINGS = 256


def channel_layout(phases, voltage_inputs):
    """Read order: each voltage next to its current, so their multiplex skew is small."""
    if phases == 1:
        return ("v1", "i1")
    if voltage_inputs == 3:
        return ("v1", "i1", "v2", "i2", "v3", "i3")
    return ("v1", "i1", "i2", "i3")


class CycleStats:
    """Whole-cycle statistics in ADC counts over `sets` sample sets: one burst's (BurstAnalyzer.process)
    or a readings window's (its bursts merged with `add`). The Meter scales them to units."""

    def __init__(self, nphases):
        self.sets = 0                  # sample sets in the whole-cycle span(s)
        self.v_ok = False              # every span had usable mains voltage (False with no sets)
        self.freq_hz = None            # mean mains frequency over the spans with voltage
        self.freq_sets = 0             # the sets that mean is over
        self.v_var = [0.0] * nphases   # mean voltage variance (derived phases: V1's)
        self.i_var = [0.0] * nphases   # mean current variance, white ADC noise removed
        self.i_noise = [0.0] * nphases  # the white noise variance that was removed
        self.power = [0.0] * nphases   # mean v*i, phase-compensated
        self.reactive = [0.0] * nphases  # the same with the voltage a quarter cycle back
        self.clipped = [0] * nphases   # codes on a rail, current or voltage (a count, not a mean)

    def add(self, other):
        """Merge another span's statistics in (a burst into its window): means weighted by sets."""
        n = other.sets
        if n <= 0:
            return
        total = self.sets + n
        w = n / total
        for p in range(len(self.v_var)):
            self.v_var[p] += (other.v_var[p] - self.v_var[p]) * w
            self.i_var[p] += (other.i_var[p] - self.i_var[p]) * w
            self.i_noise[p] += (other.i_noise[p] - self.i_noise[p]) * w
            self.power[p] += (other.power[p] - self.power[p]) * w
            self.reactive[p] += (other.reactive[p] - self.reactive[p]) * w
            self.clipped[p] += other.clipped[p]
        if other.freq_hz is not None:
            fsets = self.freq_sets + n
            if self.freq_hz is None:
                self.freq_hz = other.freq_hz
            else:
                self.freq_hz += (other.freq_hz - self.freq_hz) * n / fsets
            self.freq_sets = fsets
        self.v_ok = other.v_ok and (self.v_ok or self.sets == 0)
        self.sets = total


class BurstAnalyzer:
    """Measures one burst at a time; keeps what carries over between bursts (DC bias, frequency)."""

    def __init__(self, channels, phases, voltage_inputs, skew_us=None):
        self.channels = tuple(channels)
        self.nch = len(channels)
        self.nphases = phases
        self.derived = voltage_inputs == 1
        self.skew_us = skew_us            # per channel; None = evenly spread over the set
        self.v_index = [self.channels.index("v%d" % (p + 1 if not self.derived else 1))
                        for p in range(phases)]
        self.i_index = [self.channels.index("i%d" % (p + 1)) for p in range(phases)]
        self.ct_lag_deg = [0.0] * phases
        n = self.nch
        self.bias = array("i", [2048] * n)
        self.bias_f = [2048.0] * n
        self.geo = array("i", [0] * accum.GEOMETRY_WORDS)
        self.pairs = array("i", [0] * (3 * phases))
        self.sums = array("i", [0] * accum.sums_words(n, phases))
        self.part = array("i", [0] * accum.partial_words(n, phases))
        self.cross = array("i", [0] * MAX_CROSSINGS)
        self.clips = array("i", [0] * n)
        self._mean = [0.0] * n
        self._var = [0.0] * n
        self._msd = [0.0] * n         # mean squared first difference
        self.freq_hz = None

    def _skew(self, c, set_us):
        if self.skew_us is not None:
            return self.skew_us[c]
        return c * set_us / self.nch

    def _crossing_time(self, buf, n, level):
        """Fractional set index where V1 crossed `level` between sets n-1 and n."""
        v = self.v_index[0]
        a = buf[(n - 1) * self.nch + v]
        b = buf[n * self.nch + v]
        return n - 1 + (level - a) / (b - a) if b != a else float(n)

    def process(self, buf, nsets, duration_us):
        """Measure one burst; returns its CycleStats (v_ok False when there is no usable voltage)."""
        res = CycleStats(self.nphases)
        set_us = duration_us / nsets
        nch = self.nch
        v1 = self.v_index[0]
        # Margins for the voltage delays: the CT lag calibration either way, and before the span
        # 2/3 of a cycle more for a derived L3.
        margin = int(MAX_CT_LAG_DEG / 360.0 * 1e6 / F_MIN_HZ / set_us) + 2
        preroll = margin + (int((2.0 / 3.0) * 1e6 / F_MIN_HZ / set_us) + 1 if self.derived else 0)
        level = self.bias[v1]
        count = accum.rising_crossings(buf, nch, v1, preroll, nsets - margin, level, CROSS_HYST,
                                       self.cross, MAX_CROSSINGS)
        count = min(count, MAX_CROSSINGS)
        if count >= 2:
            first = self.cross[0]
            end = self.cross[count - 1]
            t0 = self._crossing_time(buf, first, self.bias_f[v1])
            t1 = self._crossing_time(buf, end, self.bias_f[v1])
            freq = (count - 1) * 1e6 / ((t1 - t0) * set_us)
            res.v_ok = F_MIN_HZ <= freq <= F_MAX_HZ
        if res.v_ok:
            res.freq_hz = freq
            self.freq_hz = freq
        else:
            # No mains: measure the currents over the whole burst (RMS only, no power).
            first, end = preroll, nsets - margin
            freq = self.freq_hz or 50.0
        w_set = 2 * math.pi * freq * set_us * 1e-6        # mains angle per sample set
        self._set_pairs(freq, set_us)
        self._accumulate(buf, first, end)
        self._finish(res, end - first, w_set)
        accum.clip_counts(buf, nch, first, end, self.clips)
        for p in range(self.nphases):
            res.clipped[p] = self.clips[self.i_index[p]] + self.clips[self.v_index[p]]
        return res

    def _set_pairs(self, freq, set_us):
        """Delays and interpolation weights of every phase for this burst's frequency and set period.

        The voltage that goes with a current sample lies d - frac sample sets back (d whole, frac in
        (-1, 0]): the CT's phase error, the multiplex skew and, derived, 120/240 degrees.
        Power = g0 * c0 + g1 * c1 and its quarter-cycle twin = g0 * q0 + g1 * q1 (see the top)."""
        w = 2 * math.pi * freq * set_us * 1e-6
        sin_w = math.sin(w)
        self._coef = []
        for p in range(self.nphases):
            vc, ic = self.v_index[p], self.i_index[p]
            # tau: how far back in time the voltage must be taken for this current sample (us).
            tau = self.ct_lag_deg[p] / 360.0 / freq * 1e6
            if self.derived:
                tau += p / 3.0 / freq * 1e6
            skew = self._skew(ic, set_us) - self._skew(vc, set_us)
            d = math.floor((tau - skew) / set_us)
            self.pairs[3 * p] = vc
            self.pairs[3 * p + 1] = ic
            self.pairs[3 * p + 2] = d + accum.DELAY_OFFSET
            frac = (d * set_us + skew - tau) / set_us          # in (-1, 0]
            a = w * frac
            q = a - math.pi / 2
            self._coef.append((math.sin(w + a) / sin_w, -math.sin(a) / sin_w,
                               math.sin(w + q) / sin_w, -math.sin(q) / sin_w))

    def _accumulate(self, buf, first, end):
        g = self.geo
        g[accum.G_NCH] = self.nch
        g[accum.G_FIRST] = first
        g[accum.G_END] = end
        g[accum.G_NPAIRS] = self.nphases
        g[accum.G_CHUNK] = accum.CHUNK_SETS
        sums = self.sums
        for k in range(len(sums)):
            sums[k] = 0
        accum.accumulate(buf, g, self.bias, self.pairs, sums, self.part)

    def _finish(self, res, n, w_set):
        res.sets = n
        cos_w = math.cos(w_set)
        nch = self.nch
        mean = self._mean
        var = self._var
        msd = self._msd
        for c in range(nch):
            s, s2, sd2 = accum.channel_sums(self.sums, c, n)
            s /= n
            s2 /= n
            sd2 /= n
            mean[c] = s
            var[c] = max(0.0, s2 - s * s)
            msd[c] = sd2
            self.bias_f[c] = self.bias[c] + s
            self.bias[c] = min(4095, max(0, int(self.bias_f[c] + 0.5)))
        for p in range(self.nphases):
            vc, ic = self.v_index[p], self.i_index[p]
            cross = mean[vc] * mean[ic]
            g0, g1 = accum.pair_sums(self.sums, nch, p, n)
            g0 = g0 / n - cross
            g1 = g1 / n - cross
            if res.v_ok:
                c0, c1, q0, q1 = self._coef[p]
                res.power[p] = g0 * c0 + g1 * c1
                res.reactive[p] = g0 * q0 + g1 * q1    # the voltage a quarter cycle earlier
            res.v_var[p] = var[vc] if res.v_ok else 0.0
            # White noise adds 2 sigma^2 to the mean squared difference; a sine adds 2(1-cos wT) var.
            noise = max(0.0, (msd[ic] - 2 * (1 - cos_w) * var[ic]) / (2 * cos_w))
            res.i_var[p] = max(0.0, var[ic] - noise)
            res.i_noise[p] = noise
