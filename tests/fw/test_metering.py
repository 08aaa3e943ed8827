# The metering engine (firmware/burst.py + meter.py) against the physics of simulated worlds
# (issue 3 item 5; item 4: no phantom current). The simulated front end (tools/simhw/sim_adc.py) turns
# each scenario into 12-bit codes with noise, a DC bias off mid-scale, timing jitter and the multiplex
# skew; every expected value below is computed from the scenario (simworld.truth), not from the engine.
import math

from simworld import World, assert_close, truth

RATED = {"home": 100.0, "public": 400.0}
LOADS = ((0.0, "resistive"), (60.0, "lagging 60 deg"), (-60.0, "leading 60 deg"))
VOLTS = [230.0, 234.0, 226.0]          # the three mains voltages differ: each phase uses its own
ACC = 0.005                            # 0.5 %


def _check_phase(ph, v, i, p, what, rel=ACC):
    """One phase of the readings against the truth (V, I, P); VA = V I and pf = P / VA follow."""
    what = "%s L%d" % (what, ph["l"])
    assert_close(ph["voltage_v"], v, rel, what + " voltage_v")
    assert_close(ph["current_a"], i, rel, what + " current_a")
    assert_close(ph["power_w"], p, rel, what + " power_w")
    assert_close(ph["apparent_va"], v * i, rel, what + " apparent_va")
    assert_close(ph["pf"], p / (v * i), rel, what + " pf")


def _loads_world(sensor, freq, fractions=(0.25, 0.5, 0.8)):
    phases = [{"current_a": fractions[k] * RATED[sensor], "angle_deg": LOADS[k][0]} for k in range(3)]
    return {"mains": {"voltage_v": VOLTS, "freq_hz": freq}, "phases": phases,
            "adc": {"noise_lsb": 2.0, "sensor": sensor}}


def _check_loads(sensor, freq, voltage_inputs):
    world = _loads_world(sensor, freq)
    r = World(world, {"sensor": sensor, "voltage_inputs": voltage_inputs}).run(2)
    derived = voltage_inputs == 1
    total = 0.0
    for line in (1, 2, 3):
        v, i, p = truth(world, line, derived)
        what = "%s %g Hz %d voltage input(s) %s" % (sensor, freq, voltage_inputs, LOADS[line - 1][1])
        _check_phase(r["phases"][line - 1], v, i, p, what)
        total += p
    assert_close(r["power_w"], total, ACC, "total power_w")
    assert_close(r["freq_hz"], freq, 0.001, "freq_hz")
    return r


def test_resistive_lagging_and_leading_loads_home_50hz():
    _check_loads("home", 50.0, 3)


def test_resistive_lagging_and_leading_loads_home_60hz():
    _check_loads("home", 60.0, 3)


def test_resistive_lagging_and_leading_loads_public_50hz():
    _check_loads("public", 50.0, 3)


def test_resistive_lagging_and_leading_loads_public_60hz():
    _check_loads("public", 60.0, 3)


def test_derived_voltages_are_l1_shifted_home_50hz():
    # Only L1 wired: L2/L3 read L1's voltage (not their own 234/226 V), and their power is computed
    # against L1 shifted by 120/240 degrees.
    r = _check_loads("home", 50.0, 1)
    assert [ph["voltage_v"] for ph in r["phases"]] == [r["phases"][0]["voltage_v"]] * 3


def test_derived_voltages_are_l1_shifted_public_60hz():
    _check_loads("public", 60.0, 1)


def test_single_phase_reports_l1_only():
    world = _loads_world("home", 50.0)
    w = World(world, {"phases": 1}, nsets=3000)     # 2 channels: a 210 ms burst
    assert w.channels == ("v1", "i1")
    r = w.run(2)
    assert [ph["l"] for ph in r["phases"]] == [1]
    v, i, p = truth(world, 1)
    _check_phase(r["phases"][0], v, i, p, "single phase")
    assert r["power_w"] == r["phases"][0]["power_w"]
    assert r["import_wh"] == r["phases"][0]["import_wh"] and r["export_wh"] == 0.0


def test_invert_flips_the_sign_of_that_phase_only():
    world = {"mains": {"voltage_v": VOLTS}, "phases": [
        {"current_a": 20.0, "angle_deg": 30.0}, {"current_a": 30.0, "angle_deg": 10.0},
        {"current_a": 10.0, "angle_deg": 0.0, "reversed": True}]}
    r = World(world, {"voltage_inputs": 3, "invert": [False, True, True]}).run(2)
    for line, sign in ((1, 1), (2, -1), (3, -1)):
        v, i, p = truth(world, line)
        _check_phase(r["phases"][line - 1], v, i, sign * p, "invert L%d" % line)
    assert r["phases"][1]["power_w"] < 0          # a good CT turned in software exports
    assert r["phases"][2]["power_w"] > 0          # a reversed CT turned in software imports again
    assert r["phases"][1]["current_a"] > 0        # current stays an RMS: never negative


def test_gain_calibration_scales_readings():
    # L1: i_gain scales current and power; L2: v_gain scales voltage and power; L3: a CT with a
    # 6 % ratio error (ct_gain) read right by i_gain = 1/1.06.
    world = {"mains": {"voltage_v": VOLTS}, "phases": [
        {"current_a": 20.0, "angle_deg": 20.0}, {"current_a": 30.0, "angle_deg": -20.0},
        {"current_a": 40.0, "angle_deg": 0.0, "ct_gain": 1.06}]}
    cal = {"i_gain": [1.1, 1.0, 1 / 1.06], "v_gain": [1.0, 0.95, 1.0]}
    r = World(world, {"voltage_inputs": 3, "calibration": cal}).run(2)
    v, i, p = truth(world, 1)
    _check_phase(r["phases"][0], v, 1.1 * i, 1.1 * p, "i_gain 1.1")
    v, i, p = truth(world, 2)
    _check_phase(r["phases"][1], 0.95 * v, i, 0.95 * p, "v_gain 0.95")
    v, i, p = truth(world, 3)          # i includes the CT's error: the calibration takes it out
    _check_phase(r["phases"][2], v, i / 1.06, p / 1.06, "ct_gain 1.06 corrected")
    assert_close(r["phases"][2]["current_a"], 40.0, ACC, "ct_gain 1.06 corrected: the true current")
    raw = World(world, {"voltage_inputs": 3}).run(2)      # without the calibration the CT's error shows
    assert_close(raw["phases"][2]["current_a"], 1.06 * 40.0, ACC, "ct_gain 1.06 uncalibrated")


def test_derived_voltages_take_l1_voltage_gain():
    world = {"mains": {"voltage_v": VOLTS}, "phases": [{"current_a": 20.0, "angle_deg": 25.0}] * 3}
    cal = {"v_gain": [1.04, 0.8, 0.8]}          # only v1 is wired: only its gain applies
    r = World(world, {"voltage_inputs": 1, "calibration": cal}).run(2)
    for line in (1, 2, 3):
        v, i, p = truth(world, line, derived=True)
        _check_phase(r["phases"][line - 1], 1.04 * v, i, 1.04 * p, "derived v_gain")


def test_phase_calibration_compensates_a_ct_lag():
    # Every CT lags the true current by 4 degrees: calibrated on L1 and L2, left alone on L3.
    lag = 4.0
    world = {"mains": {"voltage_v": VOLTS}, "phases": [
        {"current_a": 30.0, "angle_deg": 60.0, "ct_lag_deg": lag},
        {"current_a": 30.0, "angle_deg": -60.0, "ct_lag_deg": lag},
        {"current_a": 30.0, "angle_deg": 60.0, "ct_lag_deg": lag}]}
    r = World(world, {"voltage_inputs": 3, "calibration": {"i_phase_deg": [lag, lag, 0.0]}}).run(2)
    for line in (1, 2):
        load = world["phases"][line - 1]["angle_deg"]
        v, i, _ = truth(world, line)
        _check_phase(r["phases"][line - 1], v, i, v * i * math.cos(math.radians(load)),
                     "CT lag %g compensated" % lag)
    v, i, p = truth(world, 3)                   # uncompensated: cos(64) instead of cos(60)
    _check_phase(r["phases"][2], v, i, p, "CT lag %g uncompensated" % lag)
    assert_close(p, v * i * math.cos(math.radians(64.0)), 1e-9)


def test_phase_calibration_shifts_the_power_by_its_angle():
    # No CT error: i_phase_deg moves the angle between voltage and current by itself, either way.
    world = {"mains": {"voltage_v": VOLTS}, "phases": [
        {"current_a": 30.0, "angle_deg": 60.0}, {"current_a": 30.0, "angle_deg": -60.0},
        {"current_a": 30.0, "angle_deg": 60.0}]}
    cal = [5.0, 5.0, -5.0]
    r = World(world, {"voltage_inputs": 3, "calibration": {"i_phase_deg": cal}}).run(2)
    for line in (1, 2, 3):
        load = world["phases"][line - 1]["angle_deg"]
        v, i, _ = truth(world, line)
        p = v * i * math.cos(math.radians(load - cal[line - 1]))
        _check_phase(r["phases"][line - 1], v, i, p, "i_phase_deg %g" % cal[line - 1])


def test_derived_voltages_with_a_calibrated_ct_lag():
    lag = 3.0
    world = {"phases": [{"current_a": 25.0, "angle_deg": a, "ct_lag_deg": lag} for a in (0.0, 60.0, -60.0)]}
    r = World(world, {"voltage_inputs": 1, "calibration": {"i_phase_deg": [lag] * 3}}).run(2)
    for line in (1, 2, 3):
        v, i, _ = truth(world, line, derived=True)
        load = world["phases"][line - 1]["angle_deg"]
        _check_phase(r["phases"][line - 1], v, i, v * i * math.cos(math.radians(load)), "derived+lag")


def _no_phantom(noise, voltage_inputs, seeds, windows, sensor="home"):
    world = {"phases": [{"current_a": 0.0}] * 3, "adc": {"noise_lsb": noise, "sensor": sensor}}
    bad = []
    for seed in seeds:
        w = World(world, {"voltage_inputs": voltage_inputs, "sensor": sensor}, seed=seed)
        for k in range(windows):
            r = w.window()
            for ph in r["phases"]:
                if (ph["current_a"], ph["power_w"], ph["apparent_va"], ph["pf"]) != (0.0, 0.0, 0.0, 0.0):
                    bad.append("seed %d window %d L%d: %g A %g W pf %g" % (
                        seed, k, ph["l"], ph["current_a"], ph["power_w"], ph["pf"]))
            if r["power_w"] != 0.0 or r["import_wh"] != 0.0 or r["export_wh"] != 0.0:
                bad.append("seed %d window %d: total %g W, %g Wh imported, %g Wh exported" % (
                    seed, k, r["power_w"], r["import_wh"], r["export_wh"]))
    assert not bad, "phantom current at %g LSB noise (%d voltage input(s), %s): %s" % (
        noise, voltage_inputs, sensor, "; ".join(bad))


def test_no_phantom_current_at_2_lsb_noise():
    _no_phantom(2.0, 1, range(1, 5), 4)
    _no_phantom(2.0, 3, range(1, 3), 3, "public")


def test_no_phantom_current_at_5_lsb_noise():
    _no_phantom(5.0, 1, range(1, 7), 4)
    _no_phantom(5.0, 3, range(1, 4), 4, "public")


def _small_current(sensor):
    """2 % of rated current at 2 LSB noise: each reading within 1 % and, over seeds, not biased up."""
    amps = 0.02 * RATED[sensor]
    world = {"phases": [{"current_a": amps, "angle_deg": a} for a in (0.0, 60.0, -60.0)],
             "adc": {"noise_lsb": 2.0, "sensor": sensor}}
    errors = []
    for seed in range(1, 5):
        w = World(world, {"voltage_inputs": 3, "sensor": sensor}, seed=seed)
        w.window()
        for _ in range(2):
            r = w.window()
            for line in (1, 2, 3):
                v, i, p = truth(world, line)
                ph = r["phases"][line - 1]
                assert_close(ph["current_a"], i, 0.01, "%s %g A seed %d L%d" % (sensor, amps, seed, line))
                errors.append((ph["current_a"] - i) / i)
                if line == 1:
                    assert_close(ph["power_w"], p, 0.01,
                                 "%s %g A seed %d resistive power" % (sensor, amps, seed))
    mean = sum(errors) / len(errors)
    assert mean < 0.003, "small current biased up by noise: mean error %+.3f %%" % (100 * mean)


def test_small_current_is_not_biased_up_by_noise_home():
    _small_current("home")


def test_small_current_is_not_biased_up_by_noise_public():
    _small_current("public")


def test_frequency():
    for freq in (47.5, 50.0, 60.0, 63.0):
        world = {"mains": {"freq_hz": freq}, "phases": [{"current_a": 10.0}] * 3, "adc": {"noise_lsb": 2.0}}
        r = World(world).run(2)
        assert abs(r["freq_hz"] - freq) <= 0.02, (freq, r["freq_hz"])
        r = World(world, {"phases": 1}, bursts=2, nsets=3000).run(2)
        assert abs(r["freq_hz"] - freq) <= 0.02, ("single phase", freq, r["freq_hz"])


def _check_energy_step(before, after, elapsed_s, truths):
    """Per phase: the window's energy went to import or export by its sign and matches P x elapsed."""
    for line in (1, 2, 3):
        b, a = before["phases"][line - 1], after["phases"][line - 1]
        p = truths[line - 1]
        d_imp, d_exp = a["import_wh"] - b["import_wh"], a["export_wh"] - b["export_wh"]
        assert d_imp >= 0 and d_exp >= 0, ("energy went backwards", line, b, a)
        # What the window reports (power_w rounded to 0.1 W, energy to 0.01 Wh) ...
        reported = a["power_w"] * elapsed_s / 3600
        assert abs((d_imp - d_exp) - reported) <= 0.011, (line, d_imp, d_exp, reported)
        # ... and the physics.
        if p > 0:
            assert d_exp == 0.0
            assert_close(d_imp, p * elapsed_s / 3600, 0.01, "L%d import" % line)
        elif p < 0:
            assert d_imp == 0.0
            assert_close(d_exp, -p * elapsed_s / 3600, 0.01, "L%d export" % line)
        else:
            assert d_imp == 0.0 and d_exp == 0.0
    for key in ("import_wh", "export_wh"):     # the total is the sum of the phases as shown
        assert abs(after[key] - sum(ph[key] for ph in after["phases"])) < 0.001


def test_energy_imports_and_exports_by_sign_and_only_grows():
    # A generation site: L1 imports, L2 exports, L3 is idle; then L1 turns to export and L2 to import.
    world = {"mains": {"voltage_v": VOLTS}, "phases": [
        {"current_a": 40.0, "angle_deg": 0.0}, {"current_a": 30.0, "angle_deg": 170.0}, {"current_a": 0.0}]}
    w = World(world, {"voltage_inputs": 3, "generation": True})
    prev = w.window()
    truths = [truth(world, line)[2] for line in (1, 2, 3)]
    for elapsed in (1.0, 1.0, 2.5):       # the energy follows the elapsed time it is given
        cur = w.window(elapsed)
        _check_energy_step(prev, cur, elapsed, truths)
        prev = cur
    turned = {"mains": world["mains"], "phases": [
        {"current_a": 40.0, "angle_deg": 180.0}, {"current_a": 30.0, "angle_deg": 20.0}, {"current_a": 0.0}]}
    w.change(turned)
    w.window()
    prev = w.window()
    truths = [truth(turned, line)[2] for line in (1, 2, 3)]
    for elapsed in (1.0, 1.0):
        cur = w.window(elapsed)
        _check_energy_step(prev, cur, elapsed, truths)
        prev = cur
    assert prev["phases"][0]["export_wh"] > 0 and prev["phases"][1]["import_wh"] > 0
    assert prev["phases"][2]["import_wh"] == 0.0 and prev["phases"][2]["export_wh"] == 0.0


def test_reversed_ct_period_goes_to_export():
    world = {"phases": [{"current_a": 40.0}, {"current_a": 0.0}, {"current_a": 0.0}]}
    w = World(world)
    w.window()
    before = w.window()
    rev = {"phases": [{"current_a": 40.0, "reversed": True}, {"current_a": 0.0}, {"current_a": 0.0}]}
    w.change(rev)
    after = w.run(3)
    _, _, p = truth(world, 1)
    assert truth(rev, 1)[2] < 0
    l1b, l1a = before["phases"][0], after["phases"][0]
    assert l1a["import_wh"] == l1b["import_wh"]           # nothing more imported
    assert_close(l1a["export_wh"] - l1b["export_wh"], 3 * p / 3600, 0.01, "3 s of reversed power")
