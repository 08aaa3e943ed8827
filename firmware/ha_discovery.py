# Home Assistant MQTT discovery (setting `ha_discovery`): one device with a sensor per quantity, all read
# from the readings topic by value templates; available while `<base>/status` says online.
DISCOVERY_PREFIX = "homeassistant"

# (object id, name, readings key, device_class, unit, state_class, display precision)
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
    return "ampguard_" + serial.lower()


def _topic(serial, object_id):
    return "%s/sensor/%s/%s/config" % (DISCOVERY_PREFIX, node_id(serial), object_id)


def _payload(serial, base, firmware, board, object_id, name, path, spec):
    device_class, unit, state_class, precision = spec
    p = {
        "name": name,
        "unique_id": "%s_%s" % (node_id(serial), object_id),
        "object_id": "%s_%s" % (node_id(serial), object_id),
        "state_topic": base + "/readings",
        "value_template": "{{ value_json.%s }}" % path,
        "availability_topic": base + "/status",
        "payload_available": "online",
        "payload_not_available": "offline",
        "device_class": device_class,
        "state_class": state_class,
        "suggested_display_precision": precision,
        "device": {"identifiers": [node_id(serial)], "name": "Amp Guard " + serial,
                   "manufacturer": "Amp Guard open firmware", "model": "Amp Guard (%s)" % board,
                   "sw_version": firmware, "serial_number": serial},
    }
    if unit:
        p["unit_of_measurement"] = unit
    return p


def entities(serial, base, nphases, firmware, board):
    """(discovery topic, payload dict) of every entity, one at a time (the heap is small)."""
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
    """Discovery topics of entities this phase count does not have (0: every entity), to be cleared with
    an empty retained message."""
    for line in range(nphases + 1, 4):
        for spec in _PHASE:
            yield _topic(serial, "l%d_%s" % (line, spec[0]))
    if nphases == 0:
        for spec in _TOTAL:
            yield _topic(serial, spec[0])
