# The factory calibration: per ADC channel gain corrections, measured at manufacturing against a
# reference load (tools/provision --calibrate) and stored in calibration.json. They correct what
# differs from unit to unit: the ESP32's ADC gain (its eFuse Vref spreads 1000-1200 mV, +-9 %) and the
# front end's resistor tolerances. Not a setting: a settings reset keeps it, config/set cannot reach
# it, and the installer's own calibration (settings "calibration", the CT's errors) comes on top.
import store

FILE = "calibration.json"
MAX_CORRECTION = 0.10          # a gain further than 10 % from 1 is a wiring or reference fault
KEYS = ("v_gain", "i_gain")    # per channel: v1 v2 v3, i1 i2 i3


class CalibrationError(ValueError):
    pass


def identity():
    """No correction: a unit that was never calibrated."""
    return {"v_gain": [1.0, 1.0, 1.0], "i_gain": [1.0, 1.0, 1.0]}


def check(doc):
    """Raise CalibrationError naming the bad field unless doc is {"v_gain": [3], "i_gain": [3]} with every
    gain within MAX_CORRECTION of 1."""
    if not isinstance(doc, dict):
        raise CalibrationError("calibration must be a JSON object")
    for key in doc:
        if key not in KEYS:
            raise CalibrationError("calibration: unknown field %s" % key)
    for key in KEYS:
        gains = doc.get(key)
        if not isinstance(gains, list) or len(gains) != 3:
            raise CalibrationError("calibration.%s must be a list of 3 gains" % key)
        for k, g in enumerate(gains):
            if isinstance(g, bool) or not isinstance(g, (int, float)) or not (
                    1 - MAX_CORRECTION <= g <= 1 + MAX_CORRECTION):
                raise CalibrationError("calibration.%s[%d] = %r is not within %d %% of 1"
                                       % (key, k, g, int(MAX_CORRECTION * 100)))
    return doc


def load(flash_dir):
    """The stored gains, or no correction when the unit has none (or none usable: logged by store)."""
    doc, _ = store.read_json(store.join(flash_dir, FILE), check, 512)
    if doc is None:
        return identity()
    return {k: [float(g) for g in doc[k]] for k in KEYS}


def save(flash_dir, doc):
    """Store checked gains atomically (the previous ones become calibration.json.bak)."""
    check(doc)
    store.write_json(store.join(flash_dir, FILE), {k: [float(g) for g in doc[k]] for k in KEYS}, check, 512)
