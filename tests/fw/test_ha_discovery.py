# Home Assistant discovery payloads against Home Assistant's rules for MQTT sensors: topic form, unique
# ids, units and state classes its device classes accept, and templates that read the readings.
import json

import ha_discovery

SERIAL = "2312000042G"
BASE = "ampguard/" + SERIAL
# Units Home Assistant accepts per sensor device class (its sensor documentation), and state classes.
UNITS = {"voltage": ("V", "mV"), "current": ("A", "mA"), "power": ("W", "kW"), "power_factor": (None, "%"),
         "energy": ("Wh", "kWh"), "frequency": ("Hz",)}
SAMPLE = {"freq_hz": 50.01, "power_w": 10.5, "import_wh": 7.25, "export_wh": 1.5,
          "phases": [{"l": k, "voltage_v": 230.0 + k, "current_a": 1.0 + k, "power_w": 100.0 * k,
                      "pf": 0.1 * k, "import_wh": 10.0 * k, "export_wh": 20.0 * k} for k in (1, 2, 3)]}


def _allowed_id(s):
    return s and all(c.isalpha() or c.isdigit() or c in "_-" for c in s)


def _evaluate(template, readings):
    """The value of a '{{ value_json.a[0].b }}' template for a readings dict."""
    assert template.startswith("{{ value_json.") and template.endswith(" }}"), template
    value = readings
    for part in template[len("{{ value_json."):-3].split("."):
        if "[" in part:
            name, index = part[:-1].split("[")
            value = value[name][int(index)]
        else:
            value = value[part]
    return value


def _all(nphases):
    return list(ha_discovery.entities(SERIAL, BASE, nphases, "1.2.3", "sim"))


def test_topics_and_unique_ids_follow_home_assistant_rules():
    seen = set()
    for topic, p in _all(3):
        parts = topic.split("/")
        assert len(parts) == 5
        assert (parts[0], parts[1], parts[4]) == ("homeassistant", "sensor", "config")
        assert _allowed_id(parts[2]) and _allowed_id(parts[3]), topic
        assert p["unique_id"] not in seen
        seen.add(p["unique_id"])
        assert SERIAL.lower() in p["unique_id"].lower()
    assert len(seen) == 22


def test_every_payload_has_state_availability_and_device():
    for topic, p in _all(3):
        assert p["state_topic"] == BASE + "/readings"
        assert p["availability_topic"] == BASE + "/status"
        assert (p["payload_available"], p["payload_not_available"]) == ("online", "offline")
        assert p["device"]["identifiers"] and p["device"]["sw_version"] == "1.2.3"
        assert p["name"]
        assert len(json.dumps(p)) < 1024, topic


def test_device_classes_units_and_state_classes_are_ones_home_assistant_accepts():
    classes = set()
    for topic, p in _all(3):
        dc = p["device_class"]
        classes.add(dc)
        assert p.get("unit_of_measurement") in UNITS[dc], topic
        expected = "total_increasing" if dc == "energy" else "measurement"
        assert p["state_class"] == expected, topic
    assert classes == set(UNITS)


def test_templates_read_the_right_numbers_from_a_readings_message():
    values = {}
    for _, p in _all(3):
        values[p["name"]] = _evaluate(p["value_template"], SAMPLE)
    for k in (1, 2, 3):
        ph = SAMPLE["phases"][k - 1]
        assert values["L%d voltage" % k] == ph["voltage_v"]
        assert values["L%d current" % k] == ph["current_a"]
        assert values["L%d power" % k] == ph["power_w"]
        assert values["L%d power factor" % k] == ph["pf"]
        assert values["L%d import energy" % k] == ph["import_wh"]
        assert values["L%d export energy" % k] == ph["export_wh"]
    assert values["Frequency"] == SAMPLE["freq_hz"] and values["Power"] == SAMPLE["power_w"]
    assert values["Import energy"] == SAMPLE["import_wh"] and values["Export energy"] == SAMPLE["export_wh"]


def test_single_phase_has_l1_and_totals_and_removes_l2_l3():
    one = {t for t, _ in _all(1)}
    three = {t for t, _ in _all(3)}
    assert len(one) == 10 and one < three
    assert all("/l2_" not in t and "/l3_" not in t for t in one)
    assert set(ha_discovery.removals(SERIAL, 1)) == three - one
    assert list(ha_discovery.removals(SERIAL, 3)) == []
    assert set(ha_discovery.removals(SERIAL, 0)) == three
