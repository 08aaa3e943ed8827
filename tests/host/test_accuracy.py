"""Accuracy suite (issues 3 and 11): the simulated ESP32 front end's captures replayed through the firmware.

Every capture comes from physical truth through the simulator's capture (12-bit codes from the ESP32's
real 11 dB curve, knee included, of a chip with a low eFuse Vref (1006 mV: its knee at 2.25 V, its gain
9 % high), 2 LSB noise, a DC bias off the design value, the multiplex skew, a CT phase lag of 2.5
degrees that the settings' calibration corrects) and is replayed by tools/replay on each MicroPython
runtime: the 64-bit unix port and the ESP32-like one (float32, small ints to 2^30, firmware frozen),
where the same table must hold. The unit is first calibrated as at the factory (tools/provision's
gains from a reference capture at 230 V / 20 A). Each row of the accuracy table is its own test per
runtime; the expected values are computed here from the scenario's physics. A capture is recorded once
and replayed on both runtimes (same samples).

ACCURACY_FRONT_END=old runs the same suite on the front end before issue 11 (boards' 1.65 V bias);
`pytest -s -k table` prints the table of docs/metering.md.
"""
import json
import math
import os
import subprocess
import sys

import pytest
from simctl import ROOT

sys.path.insert(0, os.path.join(ROOT, "tools"))
import provision  # noqa: E402

from mpenv import MICROPYTHON, micropython_env  # noqa: E402

RATED = {"home": 100.0, "public": 400.0}
CT_LAG_DEG = 2.5
V_HARMONICS = {"3": 0.02, "5": 0.01}
I_HARMONICS_30 = {"3": 0.25, "5": 0.15}       # THD 29 %
SENSOR_FREQS = [(s, f) for s in ("home", "public") for f in (50.0, 60.0)]
CHIP = {"chip_spread": True, "chip_seed": 4}     # Vref 1006 mV, offset 122 mV: the knee at 2.25 V
REFERENCE_V, REFERENCE_A = 230.0, 20.0          # the factory's reference load
# The front end before issue 11, as its boards described it (a board module for the capture).
OLD_BOARD = """NAME = "old-front-end"
ADC_READ_US = 35
ADC_BITS = 12
V_PER_COUNT = 0.2878
A_PER_COUNT = {"home": 0.1009, "public": 0.4036}
ADC_MV_PER_COUNT = 0.7568
ADC_BIAS_V = 1.65
"""
FRONT_END = os.environ.get("ACCURACY_FRONT_END", "new")


def truth(volts, phase):
    """(Vrms, Irms, P) of one phase from its scenario entry (harmonic h at h times the angle)."""
    v_h, i_h = V_HARMONICS, phase.get("harmonics", {})
    v_rms = volts * math.sqrt(1 + sum(a * a for a in v_h.values()))
    i_rms = phase["current_a"] * math.sqrt(1 + sum(a * a for a in i_h.values()))
    phi = math.radians(phase["angle_deg"])
    p = volts * phase["current_a"] * (math.cos(phi) + sum(
        v_h[h] * i_h[h] * math.cos(int(h) * phi) for h in v_h if h in i_h))
    return v_rms, i_rms, p


RUNTIMES = ("micropython", "esp32-like")


def record_capture(tmp, name, scenario, seed, seconds, front_end):
    """A capture of `scenario` from boards/sim.py (tools/sim --capture) or the old front end."""
    scen = tmp / (name + ".json")
    scen.write_text(json.dumps(scenario))
    cap = tmp / (name + ".txt")
    if front_end == "new":
        cmd = [os.path.join(ROOT, "tools", "sim"), "--capture", str(cap), "--seconds", str(seconds),
               "--scenario", str(scen), "--seed", str(seed)]
        env = None
    else:
        (tmp / "old_front_end.py").write_text(OLD_BOARD)
        cmd = [MICROPYTHON, os.path.join(ROOT, "tools", "simhw", "capture_main.py"), "--out", str(cap),
               "--seconds", str(seconds), "--scenario", str(scen), "--seed", str(seed)]
        env = micropython_env([str(tmp)])
        env["AMPGUARD_BOARD"] = "old_front_end"
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    return cap


def replay(runtime, cap, config):
    out = subprocess.run([os.path.join(ROOT, "tools", "replay"), "--runtime", runtime, str(cap),
                          "--config", str(config)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    windows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(windows) >= 2
    return windows[1:]        # the first window also settles the bias tracker


@pytest.fixture(scope="module", params=RUNTIMES)
def runtime(request):
    return request.param


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("captures")


@pytest.fixture(scope="module")
def factory_gains(tmp, runtime):
    """The unit calibrated as at the factory: tools/provision's gains from the reference load."""
    phases = [{"current_a": REFERENCE_A, "angle_deg": 0.0, "ct_lag_deg": CT_LAG_DEG}] * 3
    scenario = {"mains": {"voltage_v": REFERENCE_V, "freq_hz": 50.0}, "phases": phases,
                "adc": dict(CHIP, noise_lsb=2.0, sensor="home")}
    cap = record_capture(tmp, "reference-" + runtime, scenario, 11, 3.0, FRONT_END)
    config = tmp / "reference.config.json"
    config.write_text(json.dumps({"sensor": "home", "voltage_inputs": 3,
                                  "calibration": {"i_phase_deg": [CT_LAG_DEG] * 3}}))
    return provision.new_gains(replay(runtime, cap, config), REFERENCE_V, REFERENCE_A,
                               {"v_gain": [1.0] * 3, "i_gain": [1.0] * 3})


@pytest.fixture(scope="module")
def recorder(tmp):
    """Records a capture once per module (the simulated hardware does not depend on the runtime)."""
    done = {}

    def record(name, sensor, freq, volts, phases, seed, seconds):
        if name in done:
            return done[name]
        scenario = {"mains": {"voltage_v": volts, "freq_hz": freq, "harmonics": V_HARMONICS},
                    "phases": [dict(p, ct_lag_deg=CT_LAG_DEG) for p in phases],
                    "adc": dict(CHIP, noise_lsb=2.0, sensor=sensor)}
        done[name] = record_capture(tmp, name, scenario, seed, seconds, FRONT_END)
        return done[name]

    return record


def capture_and_replay(recorder, runtime, gains, name, sensor, freq, volts, phases, seed, seconds=3.0):
    cap = recorder(name, sensor, freq, volts, phases, seed, seconds)
    config = cap.parent / (name + "-" + runtime + ".config.json")
    config.write_text(json.dumps({"sensor": sensor, "voltage_inputs": 3,
                                  "calibration": dict(gains, i_phase_deg=[CT_LAG_DEG] * 3)}))
    return replay(runtime, cap, config)


def case(fractions, angles, sensor, thd_on=()):
    return [{"current_a": f * RATED[sensor], "angle_deg": a,
             "harmonics": I_HARMONICS_30 if k in thd_on else {}}
            for k, (f, a) in enumerate(zip(fractions, angles, strict=True))]


@pytest.fixture(scope="module")
def replays(recorder, runtime, factory_gains):
    """Two captures per sensor and frequency: 10-120 % of rated (with THD) and 2-10 %."""
    out = {}
    for k, (sensor, freq) in enumerate(SENSOR_FREQS):
        volts = [[207.0, 230.0, 253.0], [253.0, 207.0, 230.0]][k % 2]
        high = case([0.10, 1.20, 0.60], [0.0, 60.0, -60.0], sensor, thd_on=(1,))
        low = case([0.02, 0.05, 0.10], [0.0, 60.0, -60.0], sensor)
        for name, phases in (("high", high), ("low", low)):
            tag = "%s-%d-%s" % (sensor, freq, name)
            windows = capture_and_replay(recorder, runtime, factory_gains, tag, sensor, freq, volts, phases,
                                         seed=k + 7)
            out[(sensor, freq, name)] = (volts, phases, windows)
    return out


def worst_error(replays, sensor, freq, name, quantity):
    """Largest relative error (%) of a quantity over all windows and phases of one capture."""
    volts, phases, windows = replays[(sensor, freq, name)]
    index = {"voltage": 0, "current": 1, "power": 2}[quantity]
    key = {"voltage": "voltage_v", "current": "current_a", "power": "power_w"}[quantity]
    worst = 0.0
    for w in windows:
        for p, ph in enumerate(phases):
            want = truth(volts[p], ph)[index]
            got = w["phases"][p][key]
            worst = max(worst, abs(got - want) / abs(want) * 100)
    return worst


@pytest.mark.parametrize("sensor,freq", SENSOR_FREQS)
def test_active_power_10_to_120_percent_within_half_a_percent(replays, sensor, freq):
    assert worst_error(replays, sensor, freq, "high", "power") <= 0.5


@pytest.mark.parametrize("sensor,freq", SENSOR_FREQS)
def test_active_power_2_to_10_percent_within_one_percent(replays, sensor, freq):
    assert worst_error(replays, sensor, freq, "low", "power") <= 1.0


@pytest.mark.parametrize("sensor,freq", SENSOR_FREQS)
def test_current_10_to_120_percent_within_half_a_percent(replays, sensor, freq):
    assert worst_error(replays, sensor, freq, "high", "current") <= 0.5


@pytest.mark.parametrize("sensor,freq", SENSOR_FREQS)
def test_current_2_to_10_percent_within_one_percent(replays, sensor, freq):
    assert worst_error(replays, sensor, freq, "low", "current") <= 1.0


@pytest.mark.parametrize("sensor,freq", SENSOR_FREQS)
def test_voltage_207_to_253_within_0_3_percent(replays, sensor, freq):
    for name in ("high", "low"):
        assert worst_error(replays, sensor, freq, name, "voltage") <= 0.3


@pytest.mark.parametrize("freq", [47.5, 50.0, 55.0, 60.0, 63.0])
def test_frequency_within_0_02_hz(recorder, runtime, factory_gains, freq):
    phases = case([0.3, 0.3, 0.3], [0.0, 20.0, 40.0], "home")
    windows = capture_and_replay(recorder, runtime, factory_gains, "f%s" % freq, "home", freq, [230.0] * 3,
                                 phases, seed=3, seconds=2.5)
    for w in windows:
        assert abs(w["freq_hz"] - freq) <= 0.02


@pytest.mark.parametrize("sensor", ["home", "public"])
def test_no_load_reads_zero_amps_and_zero_watts(recorder, runtime, factory_gains, sensor):
    phases = case([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], sensor)
    windows = capture_and_replay(recorder, runtime, factory_gains, "zero-" + sensor, sensor, 50.0,
                                 [230.0] * 3, phases, seed=5)
    for w in windows:
        for ph in w["phases"]:
            assert ph["current_a"] == 0.0 and ph["power_w"] == 0.0


def test_the_factory_calibration_corrects_the_chips_gain(factory_gains):
    # The chip's Vref of 1006 mV makes ~9 % more codes per volt than the typical chip's the boards
    # assume: the factory's gains take that off (with the new front end; the old one assumed 0.7568 mV).
    if FRONT_END == "new":
        for g in factory_gains["v_gain"] + factory_gains["i_gain"]:
            assert 0.90 <= g <= 0.93, factory_gains


def full_load_power_error(replays, sensor, freq):
    """Worst power error (%) of the 120 % of rated phase (L2, THD 29 %)."""
    volts, phases, windows = replays[(sensor, freq, "high")]
    want = truth(volts[1], phases[1])[2]
    return max(abs(w["phases"][1]["power_w"] - want) / abs(want) * 100 for w in windows)


def test_the_old_front_end_misses_class_0_5_near_full_load(tmp, runtime, replays):
    """The front end before issue 11 (1.65 V bias, +-1.45 V): 120 % of rated peaks at 2.92 V, deep in
    the knee of the chip's curve, and calibration at the reference cannot take that off."""
    ref = [{"current_a": REFERENCE_A, "angle_deg": 0.0, "ct_lag_deg": CT_LAG_DEG}] * 3
    cap = record_capture(tmp, "old-reference", {"mains": {"voltage_v": REFERENCE_V}, "phases": ref,
                                                "adc": dict(CHIP, noise_lsb=2.0)}, 11, 3.0, "old")
    config = tmp / "old-reference.config.json"
    config.write_text(json.dumps({"voltage_inputs": 3, "calibration": {"i_phase_deg": [CT_LAG_DEG] * 3}}))
    gains = provision.new_gains(replay(runtime, cap, config), REFERENCE_V, REFERENCE_A,
                                {"v_gain": [1.0] * 3, "i_gain": [1.0] * 3})
    volts = [207.0, 230.0, 253.0]
    phases = case([0.10, 1.20, 0.60], [0.0, 60.0, -60.0], "home", thd_on=(1,))
    cap = record_capture(tmp, "old-high", {"mains": {"voltage_v": volts, "harmonics": V_HARMONICS},
                                           "phases": [dict(p, ct_lag_deg=CT_LAG_DEG) for p in phases],
                                           "adc": dict(CHIP, noise_lsb=2.0)}, 7, 3.0, "old")
    config = tmp / ("old-high-%s.config.json" % runtime)
    config.write_text(json.dumps({"voltage_inputs": 3,
                                  "calibration": dict(gains, i_phase_deg=[CT_LAG_DEG] * 3)}))
    old = full_load_power_error({("home", 50.0, "high"): (volts, phases, replay(runtime, cap, config))},
                                "home", 50.0)
    new = full_load_power_error(replays, "home", 50.0)
    assert old > 0.5 and new <= 0.5, (old, new)


def test_table(replays, runtime):
    """Prints the accuracy table (docs/metering.md) of the front end under test."""
    rows = (("active power (+-0.5 %)", "high", "power"), ("active power (+-1.0 %)", "low", "power"),
            ("current (+-0.5 %)", "high", "current"), ("current (+-1.0 %)", "low", "current"))
    print("\n%s front end, %s" % (FRONT_END, runtime))
    for label, name, q in rows:
        print("| %s | %s |" % (label, " | ".join("%.3f %%" % worst_error(replays, s, f, name, q)
                                                for s, f in SENSOR_FREQS)))
    print("| voltage | %s |" % " | ".join("%.3f %%" % max(worst_error(replays, s, f, n, "voltage")
                                                          for n in ("high", "low")) for s, f in SENSOR_FREQS))
    print("| power at 120 %% | %s |" % " | ".join("%.3f %%" % full_load_power_error(replays, s, f)
                                                  for s, f in SENSOR_FREQS))
    assert FRONT_END in ("new", "old")
