# From bursts to readings: configures the burst meter from the settings, averages bursts over a
# window, scales counts to volts, amps and watts, keeps the energy counters and the diagnostics.
import math

import energy
from diagnostics import PhaseDiagnostics
from meter import BurstMeter, channel_layout

RATED_A = {"home": 100.0, "public": 400.0}
ZERO_CURRENT_COUNTS = 1.0   # rms counts (after noise removal) below which the current is 0
# ... or below this fraction of the noise's own rms: the noise estimate is itself noisy, and what it
# leaves behind grows with the noise (at 5 LSB about 1 count).
ZERO_CURRENT_NOISE = 0.4


class Window:
    """Burst results averaged over one readings interval, weighted by their whole-cycle lengths."""

    def __init__(self, nphases):
        self.sets = 0
        self.v_var = [0.0] * nphases
        self.i_var = [0.0] * nphases
        self.i_noise = [0.0] * nphases
        self.power = [0.0] * nphases
        self.reactive = [0.0] * nphases
        self.i_clipped = [0] * nphases
        self.v_clipped = [0] * nphases
        self.freq_sum = 0.0
        self.freq_n = 0
        self.v_ok = True
        self.bursts = 0

    def add(self, res):
        n = res.sets
        if n <= 0:
            return
        self.bursts += 1
        self.sets += n
        for p in range(len(self.v_var)):
            self.v_var[p] += n * res.v_var[p]
            self.i_var[p] += n * res.i_var[p]
            self.i_noise[p] += n * res.i_noise[p]
            self.power[p] += n * res.power[p]
            self.reactive[p] += n * res.reactive[p]
            self.i_clipped[p] += res.i_clipped[p]
            self.v_clipped[p] += res.v_clipped[p]
        if res.v_ok:
            self.freq_sum += res.freq_hz
            self.freq_n += 1
        else:
            self.v_ok = False


class Metering:
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
        self.burst = BurstMeter(self.channels, self.nphases, vin, skew)
        cal = settings["calibration"]
        self.burst.ct_lag_deg = list(cal["i_phase_deg"][:self.nphases])
        sensor = settings["sensor"]
        self.rated_a = RATED_A[sensor]
        per = self.scale or {}
        v_names = ["v1" if self.derived else "v%d" % (p + 1) for p in range(self.nphases)]
        self.v_per_count = [per.get(v, self.board.V_PER_COUNT) for v in v_names]
        self.a_per_count = [per.get("i%d" % (p + 1), self.board.A_PER_COUNT[sensor])
                            for p in range(self.nphases)]
        self.diag = [PhaseDiagnostics() for _ in range(self.nphases)]
        self.window = Window(self.nphases)
        self.last_power = [0.0] * self.nphases

    def add_burst(self, buf, nsets, duration_us):
        res = self.burst.process(buf, nsets, duration_us)
        self.window.add(res)
        return res

    def burst_currents(self, res):
        """RMS amps per phase of one burst (~0.2 s): what the supply alarm watches between windows."""
        gains = self.settings["calibration"]["i_gain"]
        return [math.sqrt(res.i_var[p]) * self.a_per_count[p] * gains[p] for p in range(self.nphases)]

    def close_window(self, elapsed_s):
        """Finish the window that lasted elapsed_s: returns the readings of SPEC 4 (without seq/time)."""
        w = self.window
        self.window = Window(self.nphases)
        s = self.settings
        cal = s["calibration"]
        out_phases = []
        total_p = 0.0
        freq = w.freq_sum / w.freq_n if w.freq_n else None
        v_ok = w.v_ok and w.sets > 0
        for p in range(self.nphases):
            n = w.sets or 1
            vgain = cal["v_gain"][0 if self.derived else p]
            igain = cal["i_gain"][p]
            v = math.sqrt(w.v_var[p] / n) * self.v_per_count[p] * vgain if v_ok else 0.0
            i_counts = math.sqrt(w.i_var[p] / n)
            scale_p = self.v_per_count[p] * self.a_per_count[p] * vgain * igain
            sign = -1.0 if s["invert"][p] else 1.0
            gate = max(ZERO_CURRENT_COUNTS, ZERO_CURRENT_NOISE * math.sqrt(w.i_noise[p] / n))
            if i_counts < gate:
                i = pw = q = 0.0            # no phantom current: noise reads as nothing
            else:
                i = i_counts * self.a_per_count[p] * igain
                pw = sign * w.power[p] / n * scale_p if v_ok else 0.0
                q = sign * w.reactive[p] / n * scale_p if v_ok else 0.0
            va = v * i
            if abs(pw) > va:                # rounding of a near-unity power factor
                pw = math.copysign(va, pw)
            pf = pw / va if va > 0 else 0.0
            if w.sets:
                self.last_power[p] = pw
            # A window without a burst (the last moment before a shutdown) counts at the last power.
            self.energy[p].add(pw if w.sets else self.last_power[p], elapsed_s)
            flags = self.diag[p].update(v, i, pw, q, w.i_clipped[p] + w.v_clipped[p], self.rated_a,
                                        s["generation"], self.derived and p > 0, v_ok)
            e = self.energy[p]
            out_phases.append({
                "l": p + 1, "voltage_v": round(v, 1), "current_a": round(i, 3), "power_w": round(pw, 1),
                "apparent_va": round(va, 1), "pf": round(pf, 3),
                "import_wh": round(e.imported.value_wh(), 2), "export_wh": round(e.exported.value_wh(), 2),
                "flags": flags})
            total_p += pw
        return {
            "freq_hz": round(freq, 3) if freq is not None else None,
            "phases": out_phases,
            "power_w": round(total_p, 1),
            "import_wh": round(sum(e.imported.value_wh() for e in self.energy[:self.nphases]), 2),
            "export_wh": round(sum(e.exported.value_wh() for e in self.energy[:self.nphases]), 2),
        }
