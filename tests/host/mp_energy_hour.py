# One simulated hour of a changing load through the firmware's metering, on MicroPython, with the
# device's own burst pattern (bursts of 160 ms with 30 ms gaps, the window's last one shortened to end
# with its gap by the close, one window per second). The simulated world switches load at the first
# burst after each change time.
# Prints one JSON line: the meter's totals and the physical truth integrated over the same hour.
import json
import math
import sys
from array import array

import scenario
import settings
import sim
import sim_adc
from meter import Meter

HOUR_S = 3600
BURST_MS = 160               # as firmware/app.py
GAP_MS = 30
MIN_BURST_MS = 80
# (start s, [(amps, angle deg) per phase]): imports, exports (angle 180), reactive loads.
PROFILE = [
    (0.0, [(10.0, 0.0), (16.0, 25.0), (2.0, -30.0)]),
    (300.37, [(32.0, 10.0), (5.0, 60.0), (0.0, 0.0)]),
    (600.91, [(20.0, 180.0), (20.0, 175.0), (20.0, 185.0)]),    # solar exporting
    (901.13, [(63.0, 5.0), (40.0, 35.0), (12.0, 0.0)]),
    (1500.5, [(3.0, 0.0), (1.5, 45.0), (80.0, 20.0)]),
    (2100.77, [(8.0, 150.0), (25.0, 0.0), (25.0, -20.0)]),
    (2700.03, [(0.0, 0.0), (0.0, 0.0), (0.0, 0.0)]),
    (3000.42, [(45.0, 0.0), (45.0, 0.0), (45.0, 0.0)]),
]
VOLTS = [229.0, 232.0, 227.0]


def world(loads):
    return scenario.normalize({
        "mains": {"voltage_v": VOLTS, "freq_hz": 50.02},
        "phases": [{"current_a": a, "angle_deg": d} for a, d in loads],
        "adc": {"noise_lsb": 2.0}})


def truth():
    imp = exp = 0.0
    for k, (start, loads) in enumerate(PROFILE):
        end = PROFILE[k + 1][0] if k + 1 < len(PROFILE) else HOUR_S
        for p, (a, d) in enumerate(loads):
            e = VOLTS[p] * a * math.cos(math.radians(d)) * (end - start) / 3600
            if e >= 0:
                imp += e
            else:
                exp -= e
    return imp, exp


def main():
    sc = scenario.Scenario()
    cfg = settings.apply_changes(settings.DEFAULTS, {"voltage_inputs": 3, "generation": True})
    meter = Meter(sim, cfg)
    adc = sim_adc.SimAdc(sim, sc, meter.channels, seed=11)
    set_us = len(meter.channels) * sim.ADC_READ_US
    buf = array("H", bytes(2 * (BURST_MS * 1000 // set_us) * len(meter.channels)))
    step = 0
    t_ms = 0
    r = None
    for window in range(HOUR_S):
        end_ms = (window + 1) * 1000
        while end_ms - t_ms - GAP_MS >= MIN_BURST_MS:
            while step < len(PROFILE) and PROFILE[step][0] * 1000 <= t_ms:
                sc.data = world(PROFILE[step][1])
                sc.version += 1
                step += 1
            ms = min(BURST_MS, end_ms - t_ms - GAP_MS)
            nsets = ms * 1000 // set_us
            adc.fill(buf, nsets, t_ms * 1000)
            meter.add_burst(buf, nsets, nsets * set_us)
            t_ms += ms + GAP_MS
        t_ms = end_ms
        r = meter.close_window(1.0)
    imp, exp = truth()
    print(json.dumps({"import_wh": float(str(r["import_wh"])), "export_wh": float(str(r["export_wh"])),
                      "true_import_wh": imp, "true_export_wh": exp}))


main()
sys.exit(0)
