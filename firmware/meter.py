# From bursts to readings. The Meter turns the settings into a channel layout and scale factors,
# adds each burst to the running window (burst.py), and when the window closes scales its statistics
# to volts, amps and watts, counts the energy and updates the diagnostics, into one readings dict
# refilled every window (its floats are then most of what a window leaves on the ESP32's heap).
import math

import energy
from alarm import REARM
from burst import BURST_S_MAX, BurstAnalyzer, channel_layout
from diagnostics import PhaseDiagnostics
from readings_json import Exact
from settings import RATED_A

ZERO_CURRENT_COUNTS = 1.0   # rms counts (after noise removal) below which the current is 0
# ... or below this fraction of the noise's own rms: the noise estimate is itself noisy, and what it
# leaves behind grows with the noise (at 5 LSB about 1 count).
ZERO_CURRENT_NOISE = 0.4
ZERO_NOISE_VAR = ZERO_CURRENT_NOISE * ZERO_CURRENT_NOISE    # the same on variances (no square root)


def _exact_sum(total, phases, key):
    """total (an Exact) = the sum of the phases' `key` figures, exactly: the total is the sum of the
    phases as shown."""
    whole = frac = 0
    for ph in phases:
        whole += ph[key].whole
        frac += ph[key].frac
    total.whole = whole + frac // 100
    total.frac = frac % 100


def _readings(nphases, diag):
    """The readings dict close_window refills every window (contract §4 without seq, time, uptime_s and
    interval_s): its dicts, lists and Exact counters are made once, per configuration."""
    phases = [{"l": p + 1, "voltage_v": 0.0, "current_a": 0.0, "power_w": 0.0, "apparent_va": 0.0,
               "pf": 0.0, "import_wh": Exact(0, 0, 2), "export_wh": Exact(0, 0, 2), "flags": diag[p].flags}
              for p in range(nphases)]
    return {"freq_hz": None, "phases": phases, "power_w": 0.0, "import_wh": Exact(0, 0, 2),
            "export_wh": Exact(0, 0, 2)}


class Meter:
    """skew_us / scale: per channel name, from a capture's header (tools/replay); by default the
    channels are read evenly spaced and scaled by the board's V_PER_COUNT / A_PER_COUNT. burst_s: the
    longest burst it will be given (tools/replay's are whole windows; the device's are short)."""

    def __init__(self, board, settings, skew_us=None, scale=None, counters=None, burst_s=None, factory=None):
        self.board = board
        self.factory = factory      # the unit's factory calibration (calibration.py): gains per channel
        self.skew_us = skew_us
        self.scale = scale
        self.burst_s = burst_s
        # All three phases count, whatever is wired; `counters` are the ones restored from flash.
        self.energy = counters or [energy.PhaseEnergy() for _ in range(3)]
        self.configure(settings)

    def configure(self, settings):
        """(Re)build for new settings; energy counters carry on untouched. All or nothing: a MemoryError
        on the way leaves the meter as it was."""
        nphases = settings["phases"]
        vin = min(settings["voltage_inputs"], getattr(self.board, "MAX_VOLTAGE_INPUTS", 3))
        derived = vin == 1 and nphases == 3
        channels = channel_layout(nphases, vin)
        skew = None
        if self.skew_us is not None:
            skew = [self.skew_us[c] for c in channels]
        cal = settings["calibration"]
        board = self.board
        analyzer = BurstAnalyzer(channels, nphases, vin, skew, cal["i_phase_deg"][:nphases],
                                 self.burst_s or BURST_S_MAX, getattr(board, "ADC_BIAS_CODE", 2048),
                                 getattr(board, "ADC_LINEAR_CODES", (1, 4094)))
        old = getattr(self, "analyzer", None)
        if old is not None and old.channels == channels:
            analyzer.carry_over(old)        # the same inputs: their DC bias and the frequency stay known
        sensor = settings["sensor"]
        per = self.scale or {}
        v_names = ["v1" if derived else "v%d" % (p + 1) for p in range(nphases)]
        v_per_count = [per.get(v, self.board.V_PER_COUNT) for v in v_names]
        a_per_count = [per.get("i%d" % (p + 1), self.board.A_PER_COUNT[sensor]) for p in range(nphases)]
        diag = [PhaseDiagnostics() for _ in range(nphases)]
        readings = _readings(nphases, diag)
        # Counts to units per phase, calibration and inversion in: volts, amps, watts.
        # The factory's gains (per ADC channel, calibration.py) correct the unit, the settings' the CTs.
        fv = self.factory["v_gain"] if self.factory else (1.0, 1.0, 1.0)
        fi = self.factory["i_gain"] if self.factory else (1.0, 1.0, 1.0)
        v_scale = [v_per_count[p] * fv[0 if derived else p] * cal["v_gain"][0 if derived else p]
                   for p in range(nphases)]
        a_scale = [a_per_count[p] * fi[p] * cal["i_gain"][p] for p in range(nphases)]
        w_scale = [v_scale[p] * a_scale[p] * (-1.0 if settings["invert"][p] else 1.0) for p in range(nphases)]
        last_power = [0.0] * nphases
        amps = [0] * nphases
        var16_rearm = [0] * nphases
        # Everything is built: now switch over in one go (a MemoryError above changed nothing).
        (self.settings, self.nphases, self.derived, self.channels, self.analyzer, self.rated_a) = (
            settings, nphases, derived, channels, analyzer, RATED_A[sensor])
        (self.v_per_count, self.a_per_count, self.diag, self.readings) = (
            v_per_count, a_per_count, diag, readings)
        (self._v_scale, self._a_scale, self._w_scale, self.last_power, self._amps, self._var16_rearm) = (
            v_scale, a_scale, w_scale, last_power, amps, var16_rearm)
        self._alarm_limit = None            # the supply limit _var16_rearm is for

    def add_burst(self, buf, nsets, duration_us):
        """Measure one burst into the window."""
        self.analyzer.process(buf, nsets, duration_us)

    def burst_currents(self, limit):
        """RMS amps per phase of the latest burst (~0.2 s): what the supply alarm watches between windows,
        against `limit` (A). A phase under REARM x limit reads 0, all the alarm needs to know: that is
        decided on the burst's integer variances, so only a phase near or over the limit costs floats.
        The list is the Meter's own, refilled at every call."""
        if limit != self._alarm_limit:
            self._set_alarm_limit(limit)
        a = self.analyzer
        for p in range(self.nphases):
            if a.burst_sets and a.var16[a.i_index[p]] >= self._var16_rearm[p]:
                self._amps[p] = self._burst_amps(p)
            else:
                self._amps[p] = 0
        return self._amps

    def _set_alarm_limit(self, limit):
        self._alarm_limit = limit
        for p in range(self.nphases):
            # REARM x limit in counts, squared, in 16ths (accum.variances16), noise left in: a noisy
            # phase just under it is only computed in full.
            counts = REARM * limit / self._a_scale[p]
            v16 = 16.0 * counts * counts
            self._var16_rearm[p] = int(v16) if v16 < 1e9 else 1 << 30

    def _burst_amps(self, p):
        a = self.analyzer
        var = a.var16[a.i_index[p]] / 16 - a.stats.i_noise[p]     # less the latest window's noise
        return math.sqrt(max(0.0, var)) * self._a_scale[p]

    def close_window(self, elapsed_s):
        """Finish the window that lasted elapsed_s: returns the readings of contract §4 without seq, time,
        uptime_s and interval_s. Figures are unrounded (readings_json writes their decimals); the
        energy counts are readings_json.Exact. The dict is the Meter's own, refilled every window
        (readings_json.write it, or copy it, before the next)."""
        w = self.analyzer.finish()
        r = self.readings
        phases = r["phases"]
        total = 0.0
        for p in range(self.nphases):
            total += self._close_phase(w, p, phases[p], elapsed_s)
        r["freq_hz"] = w.freq_hz
        r["power_w"] = total
        _exact_sum(r["import_wh"], phases, "import_wh")
        _exact_sum(r["export_wh"], phases, "export_wh")
        return r

    def _close_phase(self, w, p, out, elapsed_s):
        """Phase p of the window w into its readings `out`; returns its power."""
        v_ok = w.v_ok
        v = math.sqrt(w.v_var[p]) * self._v_scale[p] if v_ok else 0.0
        i_var = w.i_var[p]
        if i_var < ZERO_CURRENT_COUNTS * ZERO_CURRENT_COUNTS or i_var < ZERO_NOISE_VAR * w.i_noise[p]:
            i = pw = q = 0.0            # no phantom current: noise reads as nothing
        else:
            i = math.sqrt(i_var) * self._a_scale[p]
            pw = w.power[p] * self._w_scale[p] if v_ok else 0.0
            q = w.reactive[p] * self._w_scale[p] if v_ok else 0.0
        va = v * i
        if pw > va:                     # rounding of a near-unity power factor
            pw = va
        elif pw < -va:
            pw = -va
        if w.sets:
            self.last_power[p] = pw
        # A window without a burst (the last moment before a shutdown) counts at the last power.
        e = self.energy[p]
        e.add(pw if w.sets else self.last_power[p], elapsed_s)
        self.diag[p].update(v, i, pw, q, w.clipped[p], self.rated_a, self.settings["generation"],
                            self.derived and p > 0, v_ok)
        out["voltage_v"] = v
        out["current_a"] = i
        out["power_w"] = pw
        out["apparent_va"] = va
        out["pf"] = pw / va if va > 0 else 0.0
        x = out["import_wh"]
        x.whole = e.imported.wh
        x.frac = e.imported.hundredths()
        x = out["export_wh"]
        x.whole = e.exported.wh
        x.frac = e.exported.hundredths()
        return pw
