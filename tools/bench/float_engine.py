# The reference for `make bench`: the metering math written the plain way, with floats per sample,
# as a typical MicroPython/Arduino energy-meter project does it (EmonLib style). It exists only to be
# timed against the firmware's integer viper kernel (tools/bench/bench_engine.py); it is not used by
# the firmware.
#
# Per sample set, over the same whole-cycle span and with the same phase-compensation inputs as the
# firmware's BurstAnalyzer (voltage channel, current channel, integer delay d and fraction w per phase):
#   - each channel's DC bias is removed in float,
#   - the squares of the bias-free values are summed (for the RMS),
#   - each phase's voltage is interpolated between sets n-d and n-d-1 (phase compensation) and its
#     product with the current is summed (for the active power).
# Two ways to know the bias:
#   "filter": EmonLib's way, a slow low-pass filter updated at every sample (time constant 1024
#             sets). Its ripple at the mains frequency leaks into the power (a few % of VA).
#   "burst":  the mean of the previous call, from an integer sum of the raw codes: cheaper and exact.
# Both do less than the firmware's kernel (no noise sum, one product per phase instead of two) and no
# zero-crossing detection or clipping count, so the speed ratios they yield are conservative.
# Runs on MicroPython and CPython.
import math

BIAS_FILTER = 1.0 / 1024     # low-pass coefficient of the running DC bias ("filter")


class FloatEngine:
    def __init__(self, nch, pairs, bias_mode="filter", bias=2048.0):
        """pairs: per phase (voltage channel, current channel, d, w): the voltage that goes with the
        current of set n is v[n-d] + w * (v[n-d-1] - v[n-d]), 0 <= w < 1."""
        if bias_mode not in ("filter", "burst"):
            raise ValueError("bias_mode: filter or burst")
        self.nch = nch
        self.bias_mode = bias_mode
        self.pairs = [(int(vc), int(ic), int(d), float(w)) for vc, ic, d, w in pairs]
        self.offset = [float(bias)] * nch
        self.reset()

    def reset(self):
        self.n = 0
        self.sum_sq = [0.0] * self.nch
        self.sum_p = [0.0] * len(self.pairs)

    def add(self, buf, first, end):
        """Accumulate sets [first, end) of buf (interleaved codes, set n channel c at n * nch + c)."""
        if self.bias_mode == "filter":
            self._add_filter(buf, first, end)
        else:
            self._add_burst(buf, first, end)
        self.n += end - first

    def _add_filter(self, buf, first, end):
        nch = self.nch
        offset = self.offset
        sum_sq = self.sum_sq
        sum_p = self.sum_p
        pairs = self.pairs
        npairs = len(pairs)
        for n in range(first, end):
            base = n * nch
            for c in range(nch):
                x = buf[base + c]
                off = offset[c] + (x - offset[c]) * BIAS_FILTER
                offset[c] = off
                f = x - off
                sum_sq[c] += f * f
            for k in range(npairs):
                vc, ic, d, w = pairs[k]
                i = buf[base + ic] - offset[ic]
                v0 = buf[(n - d) * nch + vc] - offset[vc]
                v1 = buf[(n - d - 1) * nch + vc] - offset[vc]
                sum_p[k] += (v0 + w * (v1 - v0)) * i

    def _add_burst(self, buf, first, end):
        nch = self.nch
        offset = self.offset
        sum_sq = self.sum_sq
        sum_p = self.sum_p
        pairs = self.pairs
        npairs = len(pairs)
        sum_x = [0] * nch
        for n in range(first, end):
            base = n * nch
            for c in range(nch):
                x = buf[base + c]
                sum_x[c] += x
                f = x - offset[c]
                sum_sq[c] += f * f
            for k in range(npairs):
                vc, ic, d, w = pairs[k]
                i = buf[base + ic] - offset[ic]
                v0 = buf[(n - d) * nch + vc] - offset[vc]
                v1 = buf[(n - d - 1) * nch + vc] - offset[vc]
                sum_p[k] += (v0 + w * (v1 - v0)) * i
        if end > first:
            for c in range(nch):
                offset[c] = sum_x[c] / (end - first)

    def rms(self, c):
        """RMS of channel c in ADC counts."""
        return math.sqrt(self.sum_sq[c] / self.n) if self.n else 0.0

    def power(self, k):
        """Mean phase-compensated v*i of pair k in counts^2."""
        return self.sum_p[k] / self.n if self.n else 0.0
