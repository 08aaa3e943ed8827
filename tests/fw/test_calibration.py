# The factory calibration (firmware/calibration.py) on every runtime: stored and read back atomically,
# bad gains refused with nothing written, out of reach of config/set, and multiplied into the meter's
# scales. End to end with tools/provision and a running simulated unit: tests/host/test_calibration.py.
import calibration
import settings
import sim
from fwfiles import LogCapture, names, read_raw, rmtree, scratch, write_raw
from fwtest import approx, raises
from meter import Meter

GAINS = {"v_gain": [0.93, 1.0, 1.07], "i_gain": [0.91, 1.02, 1.1]}


def test_a_unit_never_calibrated_has_no_correction():
    d = scratch()
    try:
        with LogCapture():
            assert calibration.load(d) == calibration.identity()
    finally:
        rmtree(d)


def test_gains_are_stored_and_read_back():
    d = scratch()
    try:
        calibration.save(d, GAINS)
        with LogCapture():
            assert calibration.load(d) == GAINS
        assert names(d) == ["calibration.json"]
    finally:
        rmtree(d)


def test_bad_gains_are_refused_and_nothing_is_written():
    d = scratch()
    try:
        calibration.save(d, GAINS)
        before = read_raw(d + "calibration.json")
        for bad, field in (({"v_gain": [1.0, 1.0], "i_gain": [1, 1, 1]}, "v_gain"),
                           ({"v_gain": [1, 1, 1], "i_gain": [1, 1, 1.11]}, "i_gain[2]"),
                           ({"v_gain": [1, 1, 0.89], "i_gain": [1, 1, 1]}, "v_gain[2]"),
                           ({"v_gain": [1, True, 1], "i_gain": [1, 1, 1]}, "v_gain[1]"),
                           ({"v_gain": [1, 1, 1], "i_gain": [1, 1, 1], "i_phase": 1}, "i_phase"),
                           ([1, 1, 1], "object")):
            err = raises(calibration.CalibrationError, calibration.save, d, bad)
            assert field in str(err), (field, str(err))
            assert read_raw(d + "calibration.json") == before
        assert names(d) == ["calibration.json"]
    finally:
        rmtree(d)


def test_a_broken_file_means_the_last_good_gains_or_none():
    d = scratch()
    try:
        write_raw(d + "calibration.json", b'{"v_gain": [5, 1, 1], "i_gain": [1, 1, 1]}')
        with LogCapture() as logs:
            assert calibration.load(d) == calibration.identity()
        assert "skipped" in logs.text()
    finally:
        rmtree(d)


def test_config_set_cannot_reach_the_factory_gains():
    for change in ({"factory": GAINS}, {"calibration": {"factory": GAINS}}, {"v_gain": [1, 1, 1]}):
        err = raises(settings.SettingsError, settings.apply_changes, settings.DEFAULTS, change)
        assert "is not a setting" in str(err), str(err)


def test_the_meter_multiplies_the_factory_gains_into_its_scales():
    s = settings.apply_changes(settings.DEFAULTS, {"voltage_inputs": 3})
    plain = Meter(sim, s)
    calibrated = Meter(sim, s, factory=GAINS)
    for p in range(3):
        assert approx(calibrated._a_scale[p], plain._a_scale[p] * GAINS["i_gain"][p], 1e-6)
    # the voltages through the power scale (volts x amps per count^2)
    for p in range(3):
        ratio = calibrated._w_scale[p] / plain._w_scale[p]
        assert approx(ratio, GAINS["v_gain"][p] * GAINS["i_gain"][p], 1e-6), (p, ratio)
