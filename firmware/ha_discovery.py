# Home Assistant MQTT discovery (setting `ha_discovery`): one device with a sensor per quantity, all read
# from the readings topic by value templates; available while `<base>/status` says online.
# Written as bytes, one entity at a time, into buffers that are reused (readings_json.Message): the
# JSON's constant parts are bytes literals (in flash when frozen), the only texts made per (re)publish
# are the device's own (node id, serial, base topic, board, firmware), and no dict, list or string is
# built per entity. The text is what json.dumps makes of the payload with its keys in the order written
# here, which is the order of docs/contract.md §3.6.
import json

import readings_json

DISCOVERY_PREFIX = "homeassistant"
_TOPIC_HEAD = b"homeassistant/sensor/"
TOPIC_BYTES = 96           # the topics' buffer: the longest is 74 bytes (a 20-character serial)

# (object id, name, readings key, device_class, unit, state_class, display precision), as JSON text.
# pf is a signed fraction (-1..1), not %, so it has no unit. Energy only ever grows: total_increasing.
_PHASE = (
    (b"voltage", b"voltage", b"voltage_v", b"voltage", b"V", b"measurement", b"1"),
    (b"current", b"current", b"current_a", b"current", b"A", b"measurement", b"2"),
    (b"power", b"power", b"power_w", b"power", b"W", b"measurement", b"0"),
    (b"power_factor", b"power factor", b"pf", b"power_factor", None, b"measurement", b"3"),
    (b"import_energy", b"import energy", b"import_wh", b"energy", b"Wh", b"total_increasing", b"0"),
    (b"export_energy", b"export energy", b"export_wh", b"energy", b"Wh", b"total_increasing", b"0"),
)
_TOTAL = (
    (b"power", b"Power", b"power_w", b"power", b"W", b"measurement", b"0"),
    (b"import_energy", b"Import energy", b"import_wh", b"energy", b"Wh", b"total_increasing", b"0"),
    (b"export_energy", b"Export energy", b"export_wh", b"energy", b"Wh", b"total_increasing", b"0"),
    (b"frequency", b"Frequency", b"freq_hz", b"frequency", b"Hz", b"measurement", b"2"),
)
# What a phase's entities start their object id, name and readings path with; the totals' start bare.
_LINES = ((b"l1_", b"L1 ", b"phases[0]."), (b"l2_", b"L2 ", b"phases[1]."), (b"l3_", b"L3 ", b"phases[2]."))
_WHOLE = (b"", b"", b"")
# The three keys that all hold the unique id (one prefixed with "sensor."), each opened by the one before.
_ID_KEYS = (b'", "unique_id": "', b'", "object_id": "', b'", "default_entity_id": "sensor.')


def node_id(serial):
    # Serials are uppercase letters and digits (identity.py): lowercased they are valid HA ids and
    # entity-id slugs alike. Also the device identifier and the prefix of every unique_id.
    return "ampguard_" + serial.lower()


def _text(s):
    """s as it stands between JSON quotes, as bytes. What needs escaping (a topic prefix may hold '"')
    goes through json.dumps; plain text, the usual case, costs just its bytes."""
    b = s.encode()
    for c in b:
        if c < 0x20 or c > 0x7E or c == 0x22 or c == 0x5C:     # control, non-ASCII, '"', '\\'
            return json.dumps(s)[1:-1].encode()
    return b


def _device_texts(serial, base, firmware, board):
    """(node id, serial, base, board, firmware) as JSON text: made once per (re)publish."""
    return _text(node_id(serial)), _text(serial), _text(base), _text(board), _text(firmware)


def _topic(put, node, line, object_id):
    put(_TOPIC_HEAD)
    put(node)
    put(b"/")
    put(line[0])
    put(object_id)
    put(b"/config")


def _payload(put, texts, line, entity):
    node, serial, base, board, firmware = texts
    object_id, name, key, device_class, unit, state_class, precision = entity
    put(b'{"name": "')     # HA shows it after the device name: "Amp Guard <serial> L1 voltage"
    put(line[1])
    put(name)
    # The entity id sensor.<uid>: "object_id" for HA before 2025.10, "default_entity_id" from then on
    # (HA drops the key it does not know, and stays quiet about object_id when both are given).
    for id_key in _ID_KEYS:
        put(id_key)
        put(node)
        put(b"_")
        put(line[0])
        put(object_id)
    put(b'", "state_topic": "')
    put(base)
    put(b'/readings", "value_template": "{{ value_json.')
    put(line[2])
    put(key)
    put(b' }}", "availability_topic": "')
    put(base)
    put(b'/status", "payload_available": "online", "payload_not_available": "offline", "device_class": "')
    put(device_class)
    put(b'", "state_class": "')
    put(state_class)
    put(b'", "suggested_display_precision": ')
    put(precision)
    put(b', "device": {"identifiers": ["')
    put(node)
    put(b'"], "name": "Amp Guard ')
    put(serial)
    put(b'", "manufacturer": "Amp Guard open firmware", "model": "Amp Guard (open firmware)", '
        b'"hw_version": "')
    put(board)
    put(b'", "sw_version": "')
    put(firmware)
    put(b'", "serial_number": "')
    put(serial)
    put(b'"}')
    if unit:
        put(b', "unit_of_measurement": "')
        put(unit)
        put(b'"')
    put(b"}")


def entities(serial, base, nphases, firmware, board, message):
    """(discovery topic, JSON payload) of every entity, one at a time, both bytes: the payload written
    into `message` (a readings_json.Message the caller keeps, 1 KB: a payload is at most ~1000 bytes),
    the topic into a small buffer of this call's; each valid until the next entity (on MicroPython,
    views of the buffers). `base` is `<prefix>/<serial>`. The caller publishes each payload retained,
    QoS 1."""
    texts = _device_texts(serial, base, firmware, board)
    topic = readings_json.Message(TOPIC_BYTES)
    put_topic, put_payload = topic.put, message.put       # a bound method costs heap: made once
    for line in _LINES[:nphases] + (_WHOLE,):
        for entity in _TOTAL if line is _WHOLE else _PHASE:
            topic.n = message.n = 0
            _topic(put_topic, texts[0], line, entity[0])
            _payload(put_payload, texts, line, entity)
            yield topic.view(), message.view()


def removals(serial, nphases):
    """Discovery topics (bytes) of entities this phase count does not have (L2 and L3 for 1 phase; 0:
    every entity, for discovery switched off), to be cleared with an empty retained message."""
    node = _text(node_id(serial))
    for line in _LINES[nphases:]:
        for entity in _PHASE:
            yield b"".join((_TOPIC_HEAD, node, b"/", line[0], entity[0], b"/config"))
    if nphases == 0:
        for entity in _TOTAL:
            yield b"".join((_TOPIC_HEAD, node, b"/", entity[0], b"/config"))
