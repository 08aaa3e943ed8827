# Home Assistant discovery payloads (firmware/ha_discovery.py) against Home Assistant's rules for MQTT
# sensors: topic form and id characters, unique ids, units and state classes its sensor device classes
# accept, availability and device blocks, templates that read the right number of a contract §4 readings
# message, and the entities to clear when the phase count drops; and the text itself: json.dumps of the
# payload with its keys in the documented order, written into the caller's buffer.
import json

import ha_discovery
import readings_json

SERIAL = "2312000042G"
OTHER = "2312000043G"
BASE = "ampguard/" + SERIAL
ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"    # HA: [a-zA-Z0-9_-]
SLUG_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"                            # entity id object part

# Units Home Assistant accepts per sensor device class, and the state classes it accepts with them
# (its sensor integration: DEVICE_CLASS_UNITS and DEVICE_CLASS_STATE_CLASSES). None: no unit.
UNITS = {"voltage": ("mV", "V", "kV", "MV"), "current": ("mA", "A"),
         "power": ("mW", "W", "kW", "MW", "GW", "TW", "BTU/h"), "power_factor": (None, "%"),
         "energy": ("J", "kJ", "MJ", "GJ", "mWh", "Wh", "kWh", "MWh", "GWh", "TWh"),
         "frequency": ("Hz", "kHz", "MHz", "GHz")}
STATE_CLASSES = {"voltage": ("measurement",), "current": ("measurement",), "power": ("measurement",),
                 "power_factor": ("measurement",), "energy": ("total", "total_increasing"),
                 "frequency": ("measurement",)}
# Long option names of an MQTT sensor that this device may use: a typo would be dropped by HA in silence.
SENSOR_KEYS = ("name", "unique_id", "object_id", "default_entity_id", "state_topic", "value_template",
               "availability_topic", "payload_available", "payload_not_available", "device_class",
               "state_class", "unit_of_measurement", "suggested_display_precision", "device")
DEVICE_KEYS = ("identifiers", "connections", "name", "manufacturer", "model", "model_id", "hw_version",
               "sw_version", "serial_number", "suggested_area", "configuration_url", "via_device")


def _phase(k, n):
    # Every number distinct, so a template reading the wrong field or phase cannot pass.
    return {"l": k, "voltage_v": 230.1 + k, "current_a": 12.34 + k, "power_w": 2790.1 + 100 * k,
            "apparent_va": 2839.4 + k, "pf": -0.9 + 0.01 * k, "import_wh": 1234.5 + 1000 * k,
            "export_wh": 0.5 + 10 * k + n, "flags": []}


def _readings(n):
    """A contract §4 readings message of n phases."""
    return {"seq": 41, "uptime_s": 41.0, "time": 1763900000, "interval_s": 1.0, "freq_hz": 49.98,
            "phases": [_phase(k, n) for k in range(1, n + 1)],
            "power_w": 3210.7, "import_wh": 98765.4, "export_wh": 321.0}


def _path(template):
    """The value_json path of a '{{ value_json.a.b[0].c }}' template as [key or index, ...]."""
    head, tail = "{{ value_json.", " }}"
    assert template.startswith(head) and template.endswith(tail), template
    steps = []
    for part in template[len(head):-len(tail)].split("."):
        index = None
        if part.endswith("]"):
            part, index = part[:-1].split("[")
            assert index.isdigit(), template
        assert part and all(c in SLUG_CHARS for c in part), template
        steps.append(part)
        if index is not None:
            steps.append(int(index))
    return steps


def _evaluate(template, readings):
    value = readings
    for step in _path(template):
        value = value[step]
    return value


# The payload's keys in the order they are written (docs/contract.md §3.6), and the device's.
KEY_ORDER = ("name", "unique_id", "object_id", "default_entity_id", "state_topic", "value_template",
             "availability_topic", "payload_available", "payload_not_available", "device_class",
             "state_class", "suggested_display_precision", "device", "unit_of_measurement")
DEVICE_ORDER = ("identifiers", "name", "manufacturer", "model", "hw_version", "sw_version", "serial_number")


def _texts(serial, base, nphases, firmware="1.2.3", board="sim"):
    """(topic, payload) of every entity as bytes, copied out of the buffers they are written into."""
    message = readings_json.Message()
    return [(bytes(t), bytes(p)) for t, p in ha_discovery.entities(serial, base, nphases, firmware, board,
                                                                    message)]


def _all(nphases, serial=SERIAL):
    return [(t.decode(), json.loads(p.decode())) for t, p in _texts(serial, "ampguard/" + serial, nphases)]


def _dumps_in_order(obj, order):
    """json.dumps of a dict with its keys in `order` (MicroPython's dicts keep no order of their own)."""
    parts = []
    for key in order:
        if key in obj:
            value = obj[key]
            text = _dumps_in_order(value, DEVICE_ORDER) if key == "device" else json.dumps(value)
            parts.append(json.dumps(key) + ": " + text)
    assert len(parts) == len(obj), obj
    return "{" + ", ".join(parts) + "}"


def _id_ok(s):
    return len(s) > 0 and all(c in ID_CHARS for c in s)


def test_entities_come_one_at_a_time_written_into_the_callers_buffer():
    message = readings_json.Message()
    gen = ha_discovery.entities(SERIAL, BASE, 3, "1.2.3", "sim", message)
    assert iter(gen) is gen
    topic, payload = next(gen)
    assert bytes(topic) == b"homeassistant/sensor/ampguard_2312000042g/l1_voltage/config"
    assert bytes(payload) == bytes(message.buf[:message.n]) and payload[:9] == b'{"name": '
    topic, payload = next(gen)                 # the next entity, in the same buffer
    assert bytes(payload) == bytes(message.buf[:message.n]) and b'"L1 current"' in bytes(payload)
    assert iter(ha_discovery.removals(SERIAL, 1)) is not None


def test_each_payload_is_json_dumps_of_it_in_the_documented_key_order():
    # Also with texts that JSON must escape: a prefix may hold '"' and '\\'; other texts as a firmware
    # version or board name might.
    for serial, base, firmware, board in ((SERIAL, BASE, "1.2.3", "sim"),
                                          (SERIAL, 'a"b\\c/' + SERIAL, "1.2\t3", 'x"y')):
        for topic, payload in _texts(serial, base, 3, firmware, board):
            p = json.loads(payload.decode())
            assert payload.decode() == _dumps_in_order(p, KEY_ORDER), topic
            assert p["state_topic"] == base + "/readings" and p["device"]["hw_version"] == board
            assert p["device"]["sw_version"] == firmware


def test_topics_follow_the_discovery_topic_form():
    assert ha_discovery.DISCOVERY_PREFIX == "homeassistant"
    for nphases in (1, 3):
        topics = [t for t, _ in _all(nphases)]
        assert len(set(topics)) == len(topics)
        for topic in topics:
            parts = topic.split("/")
            assert len(parts) == 5, topic
            assert (parts[0], parts[1], parts[4]) == ("homeassistant", "sensor", "config"), topic
            assert _id_ok(parts[2]) and _id_ok(parts[3]), topic
            assert parts[2] == "ampguard_" + SERIAL.lower(), topic


def test_unique_ids_are_unique_here_and_across_meters():
    ids = [p["unique_id"] for _, p in _all(3)]
    assert len(ids) == 22 and len(set(ids)) == 22
    other = set(p["unique_id"] for _, p in _all(3, OTHER))
    assert not other & set(ids)
    assert not set(t for t, _ in _all(3, OTHER)) & set(t for t, _ in _all(3))
    for uid in ids:
        assert _id_ok(uid) and SERIAL.lower() in uid.lower(), uid


def test_entity_ids_are_valid_sensor_slugs():
    for _, p in _all(3):
        assert p["default_entity_id"] == "sensor." + p["object_id"], p["default_entity_id"]
        assert p["object_id"] and all(c in SLUG_CHARS for c in p["object_id"]), p["object_id"]
    slugs = [p["object_id"] for _, p in _all(3)] + [p["object_id"] for _, p in _all(3, OTHER)]
    assert len(set(slugs)) == len(slugs)      # no sensor.x_2 renames, even with two meters


def test_every_payload_has_state_availability_and_one_device():
    device = None
    for topic, p in _all(3):
        for key in p:
            assert key in SENSOR_KEYS, (topic, key)
        assert "expire_after" not in p
        assert p["state_topic"] == BASE + "/readings"
        assert p["availability_topic"] == BASE + "/status"
        assert (p["payload_available"], p["payload_not_available"]) == ("online", "offline")
        assert isinstance(p["name"], str) and p["name"], topic
        d = p["device"]
        for key in d:
            assert key in DEVICE_KEYS, (topic, key)
        assert isinstance(d["identifiers"], list) and d["identifiers"], topic
        assert all(isinstance(i, str) and i for i in d["identifiers"]), topic
        assert d["name"] == "Amp Guard " + SERIAL and d["serial_number"] == SERIAL
        assert d["sw_version"] == "1.2.3" and d["manufacturer"] and d["model"]
        # HA warns about an entity name that repeats the device name (it prefixes it itself).
        assert not p["name"].lower().startswith(d["name"].lower()), p["name"]
        assert not p["name"].lower().startswith("amp guard"), p["name"]
        if device is None:
            device = d
        assert d == device, topic        # all entities describe the same device


def test_device_classes_units_and_state_classes_are_ones_home_assistant_accepts():
    classes = set()
    for topic, p in _all(3):
        dc = p["device_class"]
        classes.add(dc)
        assert dc in UNITS, topic
        unit = p.get("unit_of_measurement")
        assert "unit_of_measurement" not in p or unit is not None, topic    # no unit: key left out
        assert unit in UNITS[dc], topic
        assert p["state_class"] in STATE_CLASSES[dc], topic
        # Counters that only grow are total_increasing; everything else is a momentary value.
        assert p["state_class"] == ("total_increasing" if dc == "energy" else "measurement"), topic
        prec = p["suggested_display_precision"]
        assert isinstance(prec, int) and not isinstance(prec, bool) and 0 <= prec <= 3, topic
    assert classes == set(UNITS)


def test_the_signed_power_factor_has_no_unit():
    pfs = [p for _, p in _all(3) if p["device_class"] == "power_factor"]
    assert len(pfs) == 3
    for p in pfs:
        assert "unit_of_measurement" not in p      # our pf is -1..1; HA's % would read 0.98 as 0.98 %


def _expected(name, readings):
    """What contract §4 says the entity called `name` shows."""
    totals = {"Power": "power_w", "Import energy": "import_wh", "Export energy": "export_wh",
              "Frequency": "freq_hz"}
    if name in totals:
        return readings[totals[name]]
    per_phase = {"voltage": "voltage_v", "current": "current_a", "power": "power_w", "power factor": "pf",
                 "import energy": "import_wh", "export energy": "export_wh"}
    assert name[0] == "L" and name[2] == " ", name
    phase = [ph for ph in readings["phases"] if ph["l"] == int(name[1])]
    assert len(phase) == 1, name
    return phase[0][per_phase[name[3:]]]


def test_templates_read_the_right_numbers_from_a_readings_message():
    for nphases in (1, 3):
        readings = _readings(nphases)
        numbers = []
        for _, p in _all(nphases):
            value = _evaluate(p["value_template"], readings)
            assert value == _expected(p["name"], readings), p["name"]
            assert isinstance(value, (int, float)) and not isinstance(value, bool), p["name"]
            numbers.append(value)
        assert len(set(numbers)) == len(numbers)      # each entity reads its own quantity


def test_payloads_serialize_and_stay_under_one_kilobyte():
    # Also with the longest serial (20 characters) and topic prefix (64) the settings allow.
    # The payload fits the uplink's kept 1 KB buffer, the topic the topics' own: neither ever grows.
    serial = "1234567890123456789G"
    message = readings_json.Message()
    longest = ha_discovery.entities(serial, "p" * 64 + "/" + serial, 3, "10.20.30", "olimex_esp32_poe",
                                    message)
    for topic, payload in _texts(SERIAL, BASE, 3) + [(bytes(t), bytes(p)) for t, p in longest]:
        p = json.loads(payload.decode())
        assert isinstance(p, dict) and p["unique_id"], topic
        assert len(payload) < 1024, (topic, len(payload))
        assert len(topic) <= ha_discovery.TOPIC_BYTES, topic
    assert len(message.buf) == readings_json.MESSAGE_BYTES == 1024


def _phase_of(topic):
    """1, 2 or 3 for a per-phase entity's topic, None for a total."""
    object_id = topic.split("/")[3]
    if object_id[0] == "l" and object_id[1] in "123" and object_id[2] == "_":
        return int(object_id[1])
    return None


def test_single_phase_has_l1_and_totals_and_three_phases_have_all():
    one = [t for t, _ in _all(1)]
    three = [t for t, _ in _all(3)]
    assert sorted(_phase_of(t) or 0 for t in one) == [0] * 4 + [1] * 6
    assert sorted(_phase_of(t) or 0 for t in three) == [0] * 4 + [1] * 6 + [2] * 6 + [3] * 6
    assert set(one) < set(three)


def test_removals_clear_exactly_what_a_switch_to_one_phase_leaves_behind():
    one = set(t for t, _ in _all(1))
    three = set(t for t, _ in _all(3))
    gone = [t.decode() for t in ha_discovery.removals(SERIAL, 1)]
    assert len(gone) == len(set(gone)) == 12
    assert set(gone) == three - one
    assert all(_phase_of(t) in (2, 3) for t in gone)
    assert list(ha_discovery.removals(SERIAL, 3)) == []
    # Discovery switched off (the uplink passes 0): every entity goes.
    assert set(t.decode() for t in ha_discovery.removals(SERIAL, 0)) == three
