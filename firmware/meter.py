# From bursts to readings. The Meter turns the settings into a channel layout and scale factors,
# merges each burst's statistics (burst.py) into the running window, and when the window closes
# scales counts to volts, amps and watts, counts the energy and updates the diagnostics.
import math

import energy
from burst import BurstAnalyzer, CycleStats, channel_layout
from diagnostics import PhaseDiagnostics
from readings_json import Exact
from settings import RATED_A

ZERO_CURRENT_COUNTS = 1.0   # rms counts (after noise removal) below which the current is 0
# ... or below this fraction of the noise's own rms: the noise estimate is itself noisy, and what it
# leaves behind grows with the noise (at 5 LSB about 1 count).
ZERO_CURRENT_NOISE = 0.4


def _energy(counter):
    return Exact(counter.wh, counter.hundredths(), 2)


def _total(figures):
    """The sum of energy figures, exactly: the total is the sum of the phases as shown."""
    whole = frac = 0
    for f in figures:
        whole += f.whole
        frac += f.frac
    return Exact(whole + frac // 100, frac % 100, 2)


class Meter:
    """skew_us / scale: per channel name, from a capture's header (tools/replay); by default the
    channels are read evenly spaced and scaled by the board's V_PER_COUNT / A_PER_COUNT."""

    def __init__(self, board, settings, skew_us=None, scale=None, counters=None):
        self.board = board
        self.skew_us = skew_us
        self.scale = scale
        # All three phases count, whatever is wired; `counters` are the ones restored from flash.
        self.energy = counters or [energy.PhaseEnergy() for _ in range(3)]
        self.configure(settings)

    def configure(self, settings):
        """(Re)build for new settings; energy counters carry on untouched."""
        self.settings = settings
        self.nphases = settings["phases"]
        vin = min(settings["voltage_inputs"], getattr(self.board, "MAX_VOLTAGE_INPUTS", 3))
        self.derived = vin == 1 and self.nphases == 3
        self.channels = channel_layout(self.nphases, vin)
        skew = None
        if self.skew_us is not None:
            skew = [self.skew_us[c] for c in self.channels]
        self.analyzer = BurstAnalyzer(self.channels, self.nphases, vin, skew)
        cal = settings["calibration"]
        self.analyzer.ct_lag_deg = list(cal["i_phase_deg"][:self.nphases])
        sensor = settings["sensor"]
        self.rated_a = RATED_A[sensor]
        per = self.scale or {}
        v_names = ["v1" if self.derived else "v%d" % (p + 1) for p in range(self.nphases)]
        self.v_per_count = [per.get(v, self.board.V_PER_COUNT) for v in v_names]
        self.a_per_count = [per.get("i%d" % (p + 1), self.board.A_PER_COUNT[sensor])
                            for p in range(self.nphases)]
        self.diag = [PhaseDiagnostics() for _ in range(self.nphases)]
        self.window = CycleStats(self.nphases)
        self.last_power = [0.0] * self.nphases

    def add_burst(self, buf, nsets, duration_us):
        """Measure one burst into the window; returns the burst's CycleStats."""
        stats = self.analyzer.process(buf, nsets, duration_us)
        self.window.add(stats)
        return stats

    def burst_currents(self, stats):
        """RMS amps per phase of one burst (~0.2 s): what the supply alarm watches between windows."""
        gains = self.settings["calibration"]["i_gain"]
        return [math.sqrt(stats.i_var[p]) * self.a_per_count[p] * gains[p] for p in range(self.nphases)]

    def close_window(self, elapsed_s):
        """Finish the window that lasted elapsed_s: returns the readings of contract §4 without seq, time,
        uptime_s and interval_s. Figures are unrounded (readings_json writes their decimals); the
        energy counts are readings_json.Exact."""
        w = self.window
        self.window = CycleStats(self.nphases)
        s = self.settings
        cal = s["calibration"]
        out_phases = []
        total_p = 0.0
        v_ok = w.v_ok
        for p in range(self.nphases):
            vgain = cal["v_gain"][0 if self.derived else p]
            igain = cal["i_gain"][p]
            v = math.sqrt(w.v_var[p]) * self.v_per_count[p] * vgain if v_ok else 0.0
            i_counts = math.sqrt(w.i_var[p])
            scale_p = self.v_per_count[p] * self.a_per_count[p] * vgain * igain
            sign = -1.0 if s["invert"][p] else 1.0
            gate = max(ZERO_CURRENT_COUNTS, ZERO_CURRENT_NOISE * math.sqrt(w.i_noise[p]))
            if i_counts < gate:
                i = pw = q = 0.0            # no phantom current: noise reads as nothing
            else:
                i = i_counts * self.a_per_count[p] * igain
                pw = sign * w.power[p] * scale_p if v_ok else 0.0
                q = sign * w.reactive[p] * scale_p if v_ok else 0.0
            va = v * i
            if abs(pw) > va:                # rounding of a near-unity power factor
                pw = math.copysign(va, pw)
            pf = pw / va if va > 0 else 0.0
            if w.sets:
                self.last_power[p] = pw
            # A window without a burst (the last moment before a shutdown) counts at the last power.
            self.energy[p].add(pw if w.sets else self.last_power[p], elapsed_s)
            flags = self.diag[p].update(v, i, pw, q, w.clipped[p], self.rated_a,
                                        s["generation"], self.derived and p > 0, v_ok)
            e = self.energy[p]
            out_phases.append({
                "l": p + 1, "voltage_v": v, "current_a": i, "power_w": pw, "apparent_va": va, "pf": pf,
                "import_wh": _energy(e.imported), "export_wh": _energy(e.exported), "flags": flags})
            total_p += pw
        return {
            "freq_hz": w.freq_hz,
            "phases": out_phases,
            "power_w": total_p,
            "import_wh": _total([ph["import_wh"] for ph in out_phases]),
            "export_wh": _total([ph["export_wh"] for ph in out_phases]),
        }
