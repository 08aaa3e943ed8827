# Home Assistant MQTT discovery (setting `ha_discovery`): one device with a sensor per quantity, all read
# from the readings topic by value templates; available while `<base>/status` says online.
# Payloads are made one at a time (a generator): all 22 at once would take much of the small heap.
DISCOVERY_PREFIX = "homeassistant"

# (object id, name, readings key, device_class, unit, state_class, display precision).
# pf is a signed fraction (-1..1), not %, so it has no unit. Energy only ever grows: total_increasing.
_PHASE = (
    ("voltage", "voltage", "voltage_v", "voltage", "V", "measurement", 1),
    ("current", "current", "current_a", "current", "A", "measurement", 2),
    ("power", "power", "power_w", "power", "W", "measurement", 0),
    ("power_factor", "power factor", "pf", "power_factor", None, "measurement", 3),
    ("import_energy", "import energy", "import_wh", "energy", "Wh", "total_increasing", 0),
    ("export_energy", "export energy", "export_wh", "energy", "Wh", "total_increasing", 0),
)
_TOTAL = (
    ("power", "Power", "power_w", "power", "W", "measurement", 0),
    ("import_energy", "Import energy", "import_wh", "energy", "Wh", "total_increasing", 0),
    ("export_energy", "Export energy", "export_wh", "energy", "Wh", "total_increasing", 0),
    ("frequency", "Frequency", "freq_hz", "frequency", "Hz", "measurement", 2),
)


def node_id(serial):
    # Serials are uppercase letters and digits (identity.py): lowercased they are valid HA ids and
    # entity-id slugs alike. Also the device identifier and the prefix of every unique_id.
    return "ampguard_" + serial.lower()


def _topic(serial, object_id):
    return "%s/sensor/%s/%s/config" % (DISCOVERY_PREFIX, node_id(serial), object_id)


def _payload(serial, base, firmware, board, object_id, name, path, spec):
    device_class, unit, state_class, precision = spec
    uid = "%s_%s" % (node_id(serial), object_id)
    p = {
        "name": name,    # HA shows it after the device name: "Amp Guard <serial> L1 voltage"
        "unique_id": uid,
        # The entity id sensor.<uid>: "object_id" for HA before 2025.10, "default_entity_id" from then on
        # (HA drops the key it does not know, and stays quiet about object_id when both are given).
        "object_id": uid,
        "default_entity_id": "sensor." + uid,
        "state_topic": base + "/readings",
        "value_template": "{{ value_json.%s }}" % path,
        "availability_topic": base + "/status",
        "payload_available": "online",
        "payload_not_available": "offline",
        "device_class": device_class,
        "state_class": state_class,
        "suggested_display_precision": precision,
        "device": {"identifiers": [node_id(serial)], "name": "Amp Guard " + serial,
                   "manufacturer": "Amp Guard open firmware", "model": "Amp Guard (open firmware)",
                   "hw_version": board, "sw_version": firmware, "serial_number": serial},
    }
    if unit:
        p["unit_of_measurement"] = unit
    return p


def entities(serial, base, nphases, firmware, board):
    """(discovery topic, payload dict) of every entity, one at a time; `base` is `<prefix>/<serial>`.
    The caller publishes each payload as JSON, retained, QoS 1."""
    for line in range(1, nphases + 1):
        for oid, name, key, dc, unit, sc, prec in _PHASE:
            object_id = "l%d_%s" % (line, oid)
            yield _topic(serial, object_id), _payload(
                serial, base, firmware, board, object_id, "L%d %s" % (line, name),
                "phases[%d].%s" % (line - 1, key), (dc, unit, sc, prec))
    for oid, name, key, dc, unit, sc, prec in _TOTAL:
        yield _topic(serial, oid), _payload(serial, base, firmware, board, oid, name, key,
                                            (dc, unit, sc, prec))


def removals(serial, nphases):
    """Discovery topics of entities this phase count does not have (L2 and L3 for 1 phase; 0: every
    entity, for discovery switched off), to be cleared with an empty retained message."""
    for line in range(nphases + 1, 4):
        for spec in _PHASE:
            yield _topic(serial, "l%d_%s" % (line, spec[0]))
    if nphases == 0:
        for spec in _TOTAL:
            yield _topic(serial, spec[0])
