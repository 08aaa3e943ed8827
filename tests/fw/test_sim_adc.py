# The simulated ADC front end (tools/simhw/sim_adc.py) against the physical model of contract §6.
import math
from array import array

import sim as board
from fwtest import raises
from scenario import Scenario, ScenarioError, normalize
from sim_adc import CHANNELS, MV_PER_CODE, OFFSET_MV, SimAdc, code_to_mv

T0 = 1763900000123456            # a wall-clock-like start: the phase anchor must cope with it
SET_US = 6 * board.ADC_READ_US
QUIET = {"noise_lsb": 0.0, "jitter_us": 0.0}


def _world(raw):
    sc = Scenario()
    sc.data = normalize(raw)
    sc.version = 1
    return sc


def _fill(adc, nsets, t=T0):
    buf = array("H", range(nsets * len(adc.channels)))
    adc.fill(buf, nsets, t)
    return buf


def _column(buf, k, nch):
    return [buf[i] for i in range(k, len(buf), nch)]


def _model(data, ch, t_us):
    """The signal of contract §6 in ADC counts (bias removed) at time t_us."""
    # The fraction of a cycle in integers: a float of f * t loses the phase at wall-clock times.
    f_uhz = round(data["mains"]["freq_hz"] * 1e6)
    w = 2 * math.pi * (f_uhz * t_us % 1000000000000) / 1e12
    n = int(ch[1])
    if ch[0] == "v":
        rms, scale = data["mains"]["voltage_v"][n - 1], board.V_PER_COUNT
        theta, harm = w - (n - 1) * 2 * math.pi / 3, data["mains"]["harmonics"]
    else:
        p = data["phases"][n - 1]
        rms, scale = p["current_a"] * (-1 if p["reversed"] else 1), board.A_PER_COUNT[data["adc"]["sensor"]]
        theta = w - (p["on_phase"] - 1) * 2 * math.pi / 3 - math.radians(p["angle_deg"])
        harm = p["harmonics"]
    v = math.sin(theta) + sum(harm[h] * math.sin(int(h) * theta) for h in harm)
    return math.sqrt(2) * rms / scale * v


def _phase_deg(col, f, t0_us, set_us):
    """Phase of the fundamental of a column whose set s starts at t0_us + s * set_us."""
    mean = sum(col) / len(col)
    a = b = 0.0
    f_uhz = round(f * 1e6)
    for s, y in enumerate(col):
        # As in _model: f * t as a float is 8.8e10 cycles at T0, whose fraction a float32 loses.
        w = 2 * math.pi * (f_uhz * (t0_us + s * set_us) % 1000000000000) / 1e12
        a += (y - mean) * math.sin(w)
        b += (y - mean) * math.cos(w)
    return math.degrees(math.atan2(b, a))


def _angle_diff(a, b):
    return (a - b + 180) % 360 - 180


def _rms(col):
    mean = sum(col) / len(col)
    return math.sqrt(sum((y - mean) ** 2 for y in col) / len(col))


def test_codes_are_12_bit_and_only_the_requested_sets_are_written():
    adc = SimAdc(board, _world({"phases": [{"current_a": 50.0}]}), CHANNELS)
    assert board.NAME == "sim"                          # boards/sim.py, not tools/sim.py
    assert adc.channels == CHANNELS and adc.read_us == board.ADC_READ_US
    buf = array("H", [65535] * (100 * 6 + 5))
    assert adc.fill(buf, 100, T0) == 600
    assert all(0 <= c <= 4095 for c in buf[:600])
    assert list(buf[600:]) == [65535] * 5
    raises(ValueError, adc.fill, array("H", range(10)), 2, T0)
    raises(ValueError, SimAdc, board, _world({}), ("v1", "x9"))


def test_codes_follow_the_physical_model_with_each_channels_read_skew():
    world = _world({"mains": {"voltage_v": [230.0, 240.0, 220.0], "freq_hz": 50.0, "harmonics": {"3": 0.02}},
                    "phases": [{"current_a": 10.0, "angle_deg": 30.0, "harmonics": {"5": 0.1}},
                               {"current_a": 60.0, "angle_deg": -20.0},
                               {"current_a": 3.0, "angle_deg": 180.0}],
                    "adc": QUIET})
    for chans in (CHANNELS, ("v1", "i3", "i1")):
        adc = SimAdc(board, world, chans, seed=3)
        nch = len(chans)
        buf = _fill(adc, 300)
        worst = 0.0
        for s in range(300):
            for k, ch in enumerate(chans):
                t = T0 + s * nch * adc.read_us + k * adc.read_us
                expected = adc.bias_code(ch) + _model(world.data, ch, t)
                worst = max(worst, abs(buf[s * nch + k] - expected))
        assert worst < 0.55, worst          # rounding (0.5) plus interpolation


def test_overrange_current_clips_at_both_rails():
    adc = SimAdc(board, _world({"phases": [{"current_a": 300.0}], "adc": QUIET}), ("v1", "i1"))
    buf = _fill(adc, 400)
    i1, v1 = _column(buf, 1, 2), _column(buf, 0, 2)
    assert min(i1) == 0 and max(i1) == 4095
    assert i1.count(0) > 20 and i1.count(4095) > 20
    assert 0 < min(v1) and max(v1) < 4095     # 230 V stays inside the range


def test_bias_is_near_but_never_exactly_the_boards_design_bias():
    design = (board.ADC_BIAS_V * 1000 - OFFSET_MV) / MV_PER_CODE     # 1.204 V: code ~1319
    assert abs(design - board.ADC_BIAS_CODE) < 1
    for seed in range(1, 30):
        adc = SimAdc(board, _world({}), CHANNELS, seed)
        for ch in CHANNELS:
            off = abs(adc.bias_code(ch) - design)
            assert 8 <= off <= 60, (seed, ch, off)
    # With no signal and no noise every code is the rounded bias.
    adc = SimAdc(board, _world({"mains": {"voltage_v": 0.0}, "adc": QUIET}), CHANNELS, 5)
    buf = _fill(adc, 50)
    for k, ch in enumerate(CHANNELS):
        col = _column(buf, k, 6)
        assert col == [int(adc.bias_code(ch) + 0.5)] * 50
    # Noise averages out to the true bias.
    adc = SimAdc(board, _world({}), ("i2",), 5)
    col = list(_fill(adc, 4000))
    assert abs(sum(col) / len(col) - adc.bias_code("i2")) < 0.1


def _dc_code(mv, adc_keys=None, seed=1):
    """The code of a DC pin voltage (mV) on a quiet input: the transfer curve, point by point."""
    u = (mv - OFFSET_MV) / MV_PER_CODE
    keys = dict(QUIET, bias_codes=[max(0.0, min(4095.0, u))] * 6, **(adc_keys or {}))
    adc = SimAdc(board, _world({"mains": {"voltage_v": 0.0}, "adc": keys}), ("v1",), seed)
    return _fill(adc, 3)[0], adc


def test_the_typical_chip_follows_espressifs_11_db_characteristic():
    # Linear from the 142 mV offset at 0.8057 mV a code up to code 2880 (2.46 V) ...
    assert _dc_code(100)[0] == 0 and _dc_code(142)[0] == 0
    assert _dc_code(150)[0] == 10 and _dc_code(1000)[0] == 1065 and _dc_code(2400)[0] == 2803
    # ... then the knee of ESP-IDF's tables (Vref 1000 and 1200 mV, halfway for 1100): the codes
    # climb faster than the line (which would reach 4095 only at 3.44 V) and top out at 3.13 V.
    for code in (2944, 3008, 3392, 3776, 4032):
        mv = code_to_mv(code)
        got = _dc_code(mv)[0]
        assert abs(got - code) <= 1, (code, mv, got)
        assert mv < OFFSET_MV + code * MV_PER_CODE - 10      # the knee: below the line
    assert _dc_code(3140)[0] == 4095 and _dc_code(3000)[0] < 4095
    assert abs(code_to_mv(4096) - (3060 + 3209) / 2) < 1e-6


def test_a_chips_vref_scales_its_gain_and_is_drawn_per_seed():
    # Pinned: a chip with Vref 1000 mV counts 10 % more codes for the same volts, in its linear part.
    typical = _dc_code(1500)[0]
    low = _dc_code(1500, {"vref_mv": 1000.0})[0]
    assert abs((low - 0) / typical - 1.1) < 0.002, (low, typical)
    # Its knee (code 2880) comes at 2.25 V, not 2.46 V.
    assert _dc_code(2240, {"vref_mv": 1000.0})[0] < 2880 < _dc_code(2270, {"vref_mv": 1000.0})[0]
    # Drawn from the seed with chip_spread: 1000-1200 mV, the same unit each time, others differ.
    vrefs = set()
    for seed in range(1, 12):
        a = _dc_code(1500, {"chip_spread": True}, seed)[1]
        b = _dc_code(1500, {"chip_spread": True}, seed)[1]
        assert (a.vref_mv, a.offset_mv) == (b.vref_mv, b.offset_mv)
        assert 1000 <= a.vref_mv <= 1200 and abs(a.offset_mv - OFFSET_MV) <= 25
        vrefs.add(round(a.vref_mv))
    assert len(vrefs) >= 8 and max(vrefs) - min(vrefs) > 100, vrefs
    # chip_seed names the chip whatever the noise seed; without chip_spread the chip is typical.
    a = _dc_code(1500, {"chip_spread": True, "chip_seed": 99}, 1)[1]
    b = _dc_code(1500, {"chip_spread": True, "chip_seed": 99}, 2)[1]
    assert a.vref_mv == b.vref_mv
    assert _dc_code(1500, {}, 3)[1].vref_mv == 1100


def test_linear_curve_is_the_ideal_converter():
    assert _dc_code(3000, {"curve": "linear"})[0] == round((3000 - OFFSET_MV) / MV_PER_CODE)
    assert _dc_code(3000)[0] > round((3000 - OFFSET_MV) / MV_PER_CODE) + 200


def test_the_front_end_keeps_120_percent_of_rated_inside_the_linear_range():
    # 120 % of a home CT's rating and 390 V (the voltage range): every code within ADC_LINEAR_CODES.
    world = _world({"mains": {"voltage_v": 390.0}, "phases": [{"current_a": 120.0}] * 3,
                    "adc": {"noise_lsb": 2.0, "vref_mv": 1000.0}})
    buf = _fill(SimAdc(board, world, CHANNELS, 3), 2000)
    lo, hi = board.ADC_LINEAR_CODES
    assert lo <= min(buf) and max(buf) <= hi and hi < 2880, (min(buf), max(buf))


def test_the_old_front_end_runs_into_the_knee():
    # The boards until issue 11: 1.65 V bias, 0.7568 mV a count assumed, 120 % peaks at 2.92 V.
    class Old:
        NAME = "old"
        ADC_READ_US = board.ADC_READ_US
        ADC_BITS = 12
        V_PER_COUNT = 0.2878
        A_PER_COUNT = {"home": 0.1009, "public": 0.4036}
        ADC_MV_PER_COUNT = 0.7568
        ADC_BIAS_V = 1.65
    world = _world({"phases": [{"current_a": 120.0}], "adc": QUIET})
    col = list(_fill(SimAdc(Old, world, ("i1",), 3), 4000))
    assert max(col) > 3500                       # deep in the knee
    # Its RMS against the same chip's straight line: the knee stretches the peaks.
    line = _world({"phases": [{"current_a": 120.0}], "adc": dict(QUIET, curve="linear")})
    ideal = list(_fill(SimAdc(Old, line, ("i1",), 3), 4000))
    assert _rms(col) / _rms(ideal) > 1.01, (_rms(col), _rms(ideal))


def test_bias_codes_from_the_scenario_override_the_seeded_ones():
    bias = [2000, 2010.5, 2020, 2030, 2040, 2100]
    adc = SimAdc(board, _world({"adc": {"bias_codes": bias, "noise_lsb": 0.0, "jitter_us": 0.0}}), CHANNELS)
    assert [adc.bias_code(ch) for ch in CHANNELS] == bias
    buf = _fill(adc, 10)
    assert _column(buf, 5, 6) == [2100] * 10


def test_same_seed_gives_the_same_codes_and_another_seed_others():
    world = _world({"phases": [{"current_a": 10.0}]})
    a = list(_fill(SimAdc(board, world, CHANNELS, 7), 200))
    b = list(_fill(SimAdc(board, world, CHANNELS, 7), 200))
    c = list(_fill(SimAdc(board, world, CHANNELS, 8), 200))
    assert a == b
    assert a != c


def test_consecutive_fills_join_seamlessly():
    world = _world({"phases": [{"current_a": 20.0, "harmonics": {"3": 0.2}}]})
    whole = _fill(SimAdc(board, world, CHANNELS, 2), 400)
    adc = SimAdc(board, world, CHANNELS, 2)
    parts = list(_fill(adc, 150)) + list(_fill(adc, 250, T0 + 150 * SET_US))
    diffs = [abs(whole[i] - parts[i]) for i in range(len(whole))]
    assert max(diffs) <= 1 and sum(diffs) <= 5    # only sub-LSB rounding of the phase step may differ


def test_scenario_change_is_picked_up_when_its_version_changes():
    world = _world({"phases": [{"current_a": 0.0}], "adc": QUIET})
    adc = SimAdc(board, world, ("i1",))
    assert _rms(list(_fill(adc, 500))) == 0
    world.data = normalize({"phases": [{"current_a": 20.0}], "adc": QUIET})
    assert _rms(list(_fill(adc, 500))) == 0           # same version: cached tables still used
    world.version += 1
    rms = _rms(list(_fill(adc, 4000)))                # 35 µs sets: exactly 7 cycles at 50 Hz
    assert abs(rms * board.A_PER_COUNT["home"] - 20.0) < 0.05, rms


def test_reversed_ct_mirrors_the_current_about_its_bias():
    normal = SimAdc(board, _world({"phases": [{"current_a": 30.0}], "adc": QUIET}), ("i1",))
    rev = SimAdc(board, _world({"phases": [{"current_a": 30.0, "reversed": True}], "adc": QUIET}), ("i1",))
    b = normal.bias_code("i1")
    assert b == rev.bias_code("i1")
    n, r = _fill(normal, 300), _fill(rev, 300)
    assert max(abs((n[i] - b) + (r[i] - b)) for i in range(300)) <= 1.01
    assert max(n) - min(n) > 500


def test_ct_on_another_phase_and_its_angle_move_its_phase():
    chans = ("v1", "i1", "i2", "i3")
    world = _world({"phases": [{"current_a": 20.0, "on_phase": 2},
                               {"current_a": 20.0, "angle_deg": 25.0},
                               {"current_a": 20.0, "on_phase": 1, "reversed": True}], "adc": QUIET})
    adc = SimAdc(board, world, chans)
    nsets = 1000                                       # 140 µs sets: exactly 7 cycles at 50 Hz
    set_us = len(chans) * adc.read_us
    buf = _fill(adc, nsets)
    ph = [_phase_deg(_column(buf, k, 4), 50.0, T0 + k * adc.read_us, set_us) for k in range(4)]
    assert abs(_angle_diff(ph[1] - ph[0], -120)) < 0.5, ph       # i1 on L2's conductor
    assert abs(_angle_diff(ph[2] - ph[0], -120 - 25)) < 0.5, ph  # i2 on L2, lagging 25 degrees
    assert abs(_angle_diff(ph[3] - ph[0], 180)) < 0.5, ph        # i3 on L1, reversed


def test_noise_level_matches_the_scenario():
    adc = SimAdc(board, _world({"adc": {"noise_lsb": 2.0}}), ("i3",), 11)
    col = list(_fill(adc, 6000))
    var = _rms(col) ** 2
    assert abs(var - (4.0 + 1 / 12)) < 0.3, var


def test_timing_jitter_shows_on_a_steep_signal():
    world = _world({"adc": {"noise_lsb": 0.0, "jitter_us": 20.0}})
    adc = SimAdc(board, world, ("v1",))
    buf = _fill(adc, 3000)
    resid = [buf[s] - adc.bias_code("v1") - _model(world.data, "v1", T0 + s * adc.read_us)
             for s in range(3000)]
    rms = math.sqrt(sum(r * r for r in resid) / len(resid))
    # slope RMS = A * w / sqrt(2); times 20 µs sigma: about 4.8 counts (plus 1/12 LSB^2 rounding)
    expected = math.sqrt(2) * 230 / board.V_PER_COUNT * 2 * math.pi * 50 / math.sqrt(2) * 20e-6
    assert abs(rms - expected) < 0.15 * expected, (rms, expected)


def test_nonlinearity_bows_the_transfer_towards_the_ends():
    def mean_code(nl):
        adc = SimAdc(board, _world({"phases": [{"current_a": 100.0}],
                                    "adc": {"noise_lsb": 0.0, "nonlinearity": nl}}), ("i1",))
        col = list(_fill(adc, 4000))                  # 7 cycles
        return sum(col) / len(col)
    # 100 A home swings about 0.75 of the half range: mean of x^2 is about 0.28 -> +1.1 LSB at nl=4
    shift = mean_code(4.0) - mean_code(0.0)
    assert 0.7 < shift < 1.6, shift


def test_public_sensor_scales_the_current():
    def amplitude(sensor):
        adc = SimAdc(board, _world({"phases": [{"current_a": 100.0}],
                                    "adc": {"noise_lsb": 0.0, "sensor": sensor}}), ("i1",))
        col = list(_fill(adc, 4000))
        return _rms(col)
    ratio = amplitude("home") / amplitude("public")
    assert abs(ratio - board.A_PER_COUNT["public"] / board.A_PER_COUNT["home"]) < 0.01, ratio


def test_scenario_refuses_bad_adc_settings_naming_the_field():
    for raw, field in (({"adc": {"sensor": "x"}}, "adc.sensor"),
                       ({"adc": {"bias_codes": [2048] * 5}}, "adc.bias_codes"),
                       ({"adc": {"noise_lsb": -1}}, "adc.noise_lsb"),
                       ({"adc": {"jitter_us": "1"}}, "adc.jitter_us"),
                       ({"adc": {"curve": "cubic"}}, "adc.curve"),
                       ({"adc": {"vref_mv": 900}}, "adc.vref_mv"),
                       ({"adc": {"offset_mv": -5}}, "adc.offset_mv"),
                       ({"adc": {"chip_seed": 0}}, "adc.chip_seed"),
                       ({"mains": {"harmonics": {"1": 0.1}}}, "mains.harmonics"),
                       ({"phases": [{"harmonics": {"3": 2.0}}]}, "phases[0].harmonics")):
        e = raises(ScenarioError, normalize, raw)
        assert field in str(e), (field, str(e))
    adc = normalize({})["adc"]
    assert adc["sensor"] == "home" and adc["jitter_us"] == 0.5 and adc["nonlinearity"] == 0.0
    assert adc["curve"] == "esp32" and adc["chip_spread"] is False
