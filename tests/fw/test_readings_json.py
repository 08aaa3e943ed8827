# The readings message as JSON text (firmware/readings_json.py): every figure with its decimals, the
# energy counters exact at any size, no float repr noise, null kept, extra keys passed through.
import json

import energy
import settings
import sim
from fwtest import json_raw
from meter import Meter
from readings_json import TRIM, Exact, dumps, number

READINGS = {
    "seq": 41, "uptime_s": Exact(88, 31, 3), "time": 1763900000, "interval_s": 2.5, "freq_hz": 49.98765,
    "phases": [{"l": 1, "voltage_v": 230.14999, "current_a": 12.3456, "power_w": 2790.149,
                "apparent_va": 2839.44, "pf": 0.98267, "import_wh": Exact(77, 85, 2),
                "export_wh": Exact(0, 0, 2), "flags": ["reversed"]}],
    "power_w": 2790.149, "import_wh": Exact(77, 85, 2), "export_wh": Exact(0, 0, 2)}


def test_every_field_has_its_decimals_in_the_order_of_spec_4():
    text = dumps(READINGS)
    assert text == ('{"seq": 41, "uptime_s": 88.031, "time": 1763900000, "interval_s": 2.5, "freq_hz": 49.99,'
                    ' "phases": [{"l": 1, "voltage_v": 230.1, "current_a": 12.35, "power_w": 2790.1,'
                    ' "apparent_va": 2839.4, "pf": 0.983, "import_wh": 77.85, "export_wh": 0.00,'
                    ' "flags": ["reversed"]}], "power_w": 2790.1, "import_wh": 77.85,'
                    ' "export_wh": 0.00}'), text
    back = json.loads(text)
    assert back["uptime_s"] == 88.031 and back["phases"][0]["import_wh"] == 77.85
    assert back["phases"][0]["flags"] == ["reversed"]


def test_floats_that_json_dumps_writes_with_noise_come_out_clean():
    # json.dumps writes 77.84999999999999 and 88.03100000000001 on MicroPython.
    r = {"seq": 1, "uptime_s": 88.031, "interval_s": 1, "freq_hz": 0.1 + 0.2, "power_w": 0.1 + 0.2,
         "import_wh": 77.85, "export_wh": 1234.5,
         "phases": [{"l": 1, "voltage_v": 0.1 + 0.2, "current_a": 77.85, "power_w": -0.04,
                     "apparent_va": 88.031, "pf": -0.0001, "import_wh": 77.85, "export_wh": 0.1 + 0.2,
                     "flags": []}]}
    text = dumps(r)
    assert text == ('{"seq": 1, "uptime_s": 88.031, "interval_s": 1.0, "freq_hz": 0.30, "phases": [{"l": 1,'
                    ' "voltage_v": 0.3, "current_a": 77.85, "power_w": 0.0, "apparent_va": 88.0, "pf": 0.000,'
                    ' "import_wh": 77.85, "export_wh": 0.30, "flags": []}], "power_w": 0.3,'
                    ' "import_wh": 77.85, "export_wh": 1234.50}'), text


def test_interval_has_up_to_three_decimals_and_at_least_one():
    cases = ((1, "1.0"), (1.0, "1.0"), (2.5, "2.5"), (1.25, "1.25"), (59.999, "59.999"), (10, "10.0"),
             (60, "60.0"), (1.0004, "1.0"))
    assert [number(v, TRIM) for v, _ in cases] == [t for _, t in cases]


def test_signs_nulls_and_non_finite_values():
    # Rounded, not cut: -2790.17 is "-2790.2". (Not -2790.15: its nearest float32, -2790.1499, is
    # rightly "-2790.1" on the ESP32, while the nearest double, -2790.1500000000001, is "-2790.2".)
    assert number(-1.25, 1) in ("-1.2", "-1.3") and number(-2790.17, 1) == "-2790.2"
    assert number(-0.04, 1) == "0.0" and number(-0.0004, 3) == "0.000" and number(-0.0, 2) == "0.00"
    assert number(None, 2) == "null" and number(float("nan"), 1) == "null"
    assert number(float("inf"), 1) == "null" and number(-float("inf"), 1) == "null"
    text = dumps({"seq": 2, "time": None, "freq_hz": None, "phases": []})
    assert text == '{"seq": 2, "time": null, "freq_hz": null, "phases": []}', text
    assert json.loads(text) == {"seq": 2, "time": None, "freq_hz": None, "phases": []}


def test_extra_keys_go_through_as_json():
    # The portal adds advice per phase, or says there are no readings yet; the replay adds its window.
    assert dumps({"phases": None, "note": "no readings yet"}) == '{"phases": null, "note": "no readings yet"}'
    r = {"seq": 3, "phases": [{"l": 2, "pf": 0.5, "flags": ["reversed"], "advice": ['turn it "round"']}],
         "window": 7}
    back = json.loads(dumps(r))
    assert back == {"seq": 3, "phases": [{"l": 2, "pf": 0.5, "flags": ["reversed"],
                                          "advice": ['turn it "round"']}], "window": 7}
    assert dumps({}) == "{}"


def _counters(*wh_rem):
    """PhaseEnergy objects whose import counters hold (wh, rem_j) each; exports hold 1 Wh + 1 J."""
    out = []
    for wh, rem in wh_rem:
        ph = energy.PhaseEnergy()
        ph.imported = energy.Counter(wh, rem)
        ph.exported = energy.Counter(1, 1.0)
        out.append(ph)
    return out


def test_energy_at_12_and_123_mwh_is_exact_to_the_hundredth():
    # 12 MWh + 0.85 Wh, 123 MWh + 0.99 Wh (3599.9 J), 0.01 Wh (36 J); a float32 holds none of
    # these large ones to 0.01 Wh (its step is 1 Wh at 12 MWh and 8 Wh at 123 MWh).
    meter = Meter(sim, settings.DEFAULTS, counters=_counters((12000000, 3060.0), (123000000, 3599.9),
                                                            (0, 36.0)))
    text = dumps(meter.close_window(0.0))
    assert [json_raw(text, "import_wh", k) for k in range(4)] == [
        "12000000.85", "123000000.99", "0.01", "135000001.85"], text
    assert [json_raw(text, "export_wh", k) for k in range(4)] == ["1.00", "1.00", "1.00", "3.00"], text
    back = json.loads(text)
    assert back["import_wh"] == sum(ph["import_wh"] for ph in back["phases"])


def test_energy_rounds_down_and_carries_into_whole_wh():
    # Just under a hundredth shows nothing yet; a restored remainder over 3600 J (check_state allows
    # up to 2 Wh) is carried into the whole Wh.
    meter = Meter(sim, settings.DEFAULTS,
                  counters=_counters((5, 35.99), (99999999, 3599.99), (7, 3600.0 + 72.0)))
    text = dumps(meter.close_window(0.0))
    assert [json_raw(text, "import_wh", k) for k in range(4)] == [
        "5.00", "99999999.99", "8.02", "100000013.01"], text


def test_a_meters_readings_carry_every_spec_field_with_its_decimals():
    meter = Meter(sim, settings.apply_changes(settings.DEFAULTS, {"voltage_inputs": 3}))
    r = meter.close_window(1.0)          # no burst: zeros, no frequency
    r.update({"seq": 1, "uptime_s": Exact(1, 5, 3), "time": None, "interval_s": 1})
    text = dumps(r)
    back = json.loads(text)
    assert sorted(back) == sorted(["seq", "uptime_s", "time", "interval_s", "freq_hz", "phases", "power_w",
                                   "import_wh", "export_wh"])
    assert back["freq_hz"] is None and back["time"] is None and json_raw(text, "uptime_s") == "1.005"
    for k in range(3):
        assert sorted(back["phases"][k]) == sorted(["l", "voltage_v", "current_a", "power_w", "apparent_va",
                                                    "pf", "import_wh", "export_wh", "flags"])
        decimals = [json_raw(text, key, k)
                    for key in ("voltage_v", "current_a", "power_w", "apparent_va", "pf", "import_wh")]
        assert decimals == ["0.0", "0.00", "0.0", "0.0", "0.000", "0.00"], (k, text)
