# Loads the board description (boards/<name>.py; /board.py on the device) and refuses a bad one
# with a message that names the board, the field and the fix.
import os

CHANNELS = ("v1", "v2", "v3", "i1", "i2", "i3")
REQUIRED_CHANNELS = ("v1", "i1", "i2", "i3")
ADC1_PINS = (32, 33, 34, 35, 36, 37, 38, 39)
ADC2_PINS = (0, 2, 4, 12, 13, 14, 15, 25, 26, 27)
# GPIOs that exist on the ESP32 (20, 24 and 28-31 are not bonded out).
GPIOS = tuple(p for p in range(40) if p not in (20, 24, 28, 29, 30, 31))
SENSORS = ("home", "public")
LAN_PIN_KEYS = ("mdc", "mdio", "power")


class BoardError(ValueError):
    pass


def _fail(board, field, why):
    raise BoardError("board %s: %s %s" % (board, field, why))


def _pin(board, field, pin):
    if not isinstance(pin, int) or isinstance(pin, bool) or pin not in GPIOS:
        _fail(board, field, "= %r is not an ESP32 GPIO (0-39 without 20, 24, 28-31)" % (pin,))


def _positive(board, field, value):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        _fail(board, field, "must be a positive number")


def validate(mod):
    """Check a board module (or any object with the same attributes); return it."""
    name = getattr(mod, "NAME", None)
    if not isinstance(name, str) or not name:
        raise BoardError("board file: NAME must be a non-empty string")
    for field in ("HAL", "ADC_PINS", "ADC_BITS", "ADC_READ_US", "V_PER_COUNT", "A_PER_COUNT"):
        if not hasattr(mod, field):
            _fail(name, field, "is missing")
    if not isinstance(mod.HAL, str) or not mod.HAL:
        _fail(name, "HAL", "must name the hardware layer module")
    pins = mod.ADC_PINS
    if not isinstance(pins, dict):
        _fail(name, "ADC_PINS", "must be a dict of channel -> GPIO")
    for ch in REQUIRED_CHANNELS:
        if ch not in pins:
            _fail(name, "ADC_PINS", "has no %s input" % ch)
    used = {}
    for ch in pins:
        field = "ADC_PINS['%s']" % ch
        if ch not in CHANNELS:
            _fail(name, field, "is not a channel (use %s)" % ", ".join(CHANNELS))
        pin = pins[ch]
        if pin in ADC2_PINS:
            _fail(name, field, "= GPIO %d is on ADC2, which stops working while Wi-Fi is up;"
                  " use ADC1 GPIO 32-39" % pin)
        _pin(name, field, pin)
        if pin not in ADC1_PINS:
            _fail(name, field, "= GPIO %d has no ADC; use ADC1 GPIO 32-39" % pin)
        if pin in used:
            _fail(name, field, "= GPIO %d is already used by ADC_PINS['%s']" % (pin, used[pin]))
        used[pin] = ch
    if mod.ADC_BITS != 12:
        _fail(name, "ADC_BITS", "must be 12 (the ESP32's ADC)")
    _positive(name, "ADC_READ_US", mod.ADC_READ_US)
    _positive(name, "V_PER_COUNT", mod.V_PER_COUNT)
    apc = mod.A_PER_COUNT
    if not isinstance(apc, dict):
        _fail(name, "A_PER_COUNT", "must be a dict of sensor -> amps per count")
    for s in SENSORS:
        if s not in apc:
            _fail(name, "A_PER_COUNT", "has no '%s' sensor" % s)
        _positive(name, "A_PER_COUNT['%s']" % s, apc[s])
    for field in ("BUTTON_PIN", "STATUS_LED"):
        pin = getattr(mod, field, None)
        if pin is not None:
            _pin(name, field, pin)
            if pin in used:
                _fail(name, field, "= GPIO %d is already an ADC input" % pin)
    lan = getattr(mod, "LAN", None)
    if lan is not None:
        if not isinstance(lan, dict):
            _fail(name, "LAN", "must be None or a dict")
        for key in LAN_PIN_KEYS:
            if key in lan and lan[key] is not None:
                field = "LAN['%s']" % key
                _pin(name, field, lan[key])
                if lan[key] in used:
                    _fail(name, field, "= GPIO %d clashes with ADC_PINS['%s']" % (lan[key], used[lan[key]]))
    maxv = getattr(mod, "MAX_VOLTAGE_INPUTS", 3 if ("v2" in pins and "v3" in pins) else 1)
    if maxv not in (1, 3) or (maxv == 3 and not ("v2" in pins and "v3" in pins)):
        _fail(name, "MAX_VOLTAGE_INPUTS", "must be 1, or 3 with v2 and v3 inputs")
    return mod


def load(name=None):
    """The running board: /board.py on the device, AMPGUARD_BOARD (a boards/ name) on the host."""
    if name is None:
        getenv = getattr(os, "getenv", None)
        name = (getenv("AMPGUARD_BOARD") if getenv else None) or "board"
    try:
        mod = __import__(name)
    except ImportError:
        raise BoardError("board %s: no such board file" % name) from None
    return validate(mod)
