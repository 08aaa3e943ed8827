# Loads the board description (boards/<name>.py; /board.py on the device) and refuses a bad one
# with a message that names the board, the field and the fix. Runs on the ESP32, the unix port and
# CPython (tools/deploy.py validates before anything is built).
import os

from settings import is_number

DEVICE_MODULE = "board"      # tools/deploy.py installs the chosen board file as /board.py
CHANNELS = ("v1", "v2", "v3", "i1", "i2", "i3")
REQUIRED_CHANNELS = ("v1", "i1", "i2", "i3")
SENSORS = ("home", "public")
REQUIRED_FIELDS = ("HAL", "ADC_PINS", "ADC_BITS", "ADC_READ_US", "V_PER_COUNT", "A_PER_COUNT",
                   "BUTTON_PIN", "LAN", "STATUS_LED")
# GPIOs that exist on the ESP32 (20, 24 and 28-31 are not bonded out); 34-39 are inputs only.
GPIOS = tuple(p for p in range(40) if p not in (20, 24, 28, 29, 30, 31))
INPUT_ONLY = (34, 35, 36, 37, 38, 39)
ADC1_PINS = (32, 33, 34, 35, 36, 37, 38, 39)
ADC2_PINS = (0, 2, 4, 12, 13, 14, 15, 25, 26, 27)
# Ethernet: the EMAC's RMII data pins are fixed in silicon; the 50 MHz reference clock is either
# received on GPIO0 or generated on GPIO0/16/17.
RMII_PINS = ((19, "TXD0"), (21, "TX_EN"), (22, "TXD1"), (25, "RXD0"), (26, "RXD1"), (27, "CRS_DV"))
LAN_CLOCKS = {"GPIO0_IN": 0, "GPIO0_OUT": 0, "GPIO16_OUT": 16, "GPIO17_OUT": 17}
LAN_PHYS = ("LAN8720",)
LAN_KEYS = ("phy", "phy_addr", "mdc", "mdio", "power", "clock")


class BoardError(ValueError):
    pass


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


class _Checker:
    """Checks one board, remembering which field already holds each GPIO."""

    def __init__(self, name):
        self.name = name
        self.owner = {}

    def fail(self, field, why):
        raise BoardError("board %s: %s %s" % (self.name, field, why))

    def pin(self, field, pin, output=False):
        """A GPIO number that exists, is not taken yet and, if it must drive, is not input-only."""
        if not _is_int(pin) or pin not in GPIOS:
            self.fail(field, "= %r is not an ESP32 GPIO (0-39 without 20, 24, 28-31)" % (pin,))
        if output and pin in INPUT_ONLY:
            self.fail(field, "= GPIO %d is input-only (34-39) and cannot drive an output" % pin)
        self.take(field, pin)

    def take(self, field, pin):
        if pin in self.owner:
            self.fail(field, "= GPIO %d is already used by %s" % (pin, self.owner[pin]))
        self.owner[pin] = field

    def names(self, field, table, allowed, kind, required, missing):
        """Every key of `table` is one of `allowed` (a `kind`), and each of `required` is there."""
        for name in table:
            if name not in allowed:
                self.fail("%s['%s']" % (field, name), "is not a %s (use %s)" % (kind, ", ".join(allowed)))
        for name in required:
            if name not in table:
                self.fail(field, missing % name)

    def positive(self, field, value):
        if not is_number(value) or not value > 0:
            self.fail(field, "= %r must be a positive number" % (value,))

    def adc_pins(self, pins):
        if not isinstance(pins, dict):
            self.fail("ADC_PINS", "must be a dict of channel -> GPIO")
        self.names("ADC_PINS", pins, CHANNELS, "channel", REQUIRED_CHANNELS,
                   "has no %s input (v1, i1, i2 and i3 are required)")
        if ("v2" in pins) != ("v3" in pins):
            self.fail("ADC_PINS", "has only one of v2 and v3: give both (3 voltages) or neither")
        for ch in CHANNELS:     # fixed order: the same board always gives the same message
            if ch not in pins:
                continue
            field, pin = "ADC_PINS['%s']" % ch, pins[ch]
            if _is_int(pin) and pin in ADC2_PINS:
                self.fail(field, "= GPIO %d is on ADC2, which stops working while Wi-Fi is up;"
                          " use ADC1 GPIO 32-39" % pin)
            if _is_int(pin) and pin in GPIOS and pin not in ADC1_PINS:
                self.fail(field, "= GPIO %d has no ADC; use ADC1 GPIO 32-39" % pin)
            self.pin(field, pin)

    def lan(self, lan):
        if lan is None:
            return
        if not isinstance(lan, dict):
            self.fail("LAN", "must be None or a dict with %s" % ", ".join(LAN_KEYS))
        for key in lan:
            if key not in LAN_KEYS:
                self.fail("LAN['%s']" % key, "is not a LAN setting (use %s)" % ", ".join(LAN_KEYS))
        for key in LAN_KEYS:
            if key not in lan:
                self.fail("LAN", "has no '%s' (None for no PHY power switch)" % key
                          if key == "power" else "has no '%s'" % key)
        if lan["phy"] not in LAN_PHYS:
            self.fail("LAN['phy']", "= %r is not supported (use %s)" % (lan["phy"], ", ".join(LAN_PHYS)))
        if not _is_int(lan["phy_addr"]) or not 0 <= lan["phy_addr"] <= 31:
            self.fail("LAN['phy_addr']", "= %r must be a PHY address 0-31" % (lan["phy_addr"],))
        clock = lan["clock"]
        if not isinstance(clock, str) or clock not in LAN_CLOCKS:
            self.fail("LAN['clock']", "= %r is not an ESP32 RMII clock (use %s)"
                      % (clock, ", ".join(sorted(LAN_CLOCKS))))
        self.pin("LAN['mdc']", lan["mdc"], output=True)
        self.pin("LAN['mdio']", lan["mdio"], output=True)
        if lan["power"] is not None:
            self.pin("LAN['power']", lan["power"], output=True)
        self.take("LAN['clock']", LAN_CLOCKS[clock])
        for pin, signal in RMII_PINS:
            self.take("LAN RMII %s" % signal, pin)

    def voltage_inputs(self, mod, pins):
        three = "v2" in pins and "v3" in pins
        if not hasattr(mod, "MAX_VOLTAGE_INPUTS"):
            if not three:   # readers default to 3 voltage inputs
                self.fail("MAX_VOLTAGE_INPUTS", "is missing: a board without v2 and v3 inputs needs"
                          " MAX_VOLTAGE_INPUTS = 1")
            return
        maxv = mod.MAX_VOLTAGE_INPUTS
        if not _is_int(maxv) or maxv not in (1, 3):
            self.fail("MAX_VOLTAGE_INPUTS", "= %r must be 1 or 3" % (maxv,))
        if maxv == 3 and not three:
            self.fail("MAX_VOLTAGE_INPUTS", "= 3 needs v2 and v3 in ADC_PINS")


def _front_end(check, mod):
    """The optional front-end facts (boards/esp32_devkitc.py): the bias code inside the linear range."""
    lin = getattr(mod, "ADC_LINEAR_CODES", (1, 4094))
    if (not isinstance(lin, (tuple, list)) or len(lin) != 2 or not all(_is_int(c) for c in lin)
            or not 0 <= lin[0] < lin[1] <= 4095):
        check.fail("ADC_LINEAR_CODES", "= %r must be (lowest, highest) code, 0 <= lowest < highest <= 4095"
                   % (lin,))
    bias = getattr(mod, "ADC_BIAS_CODE", 2048)
    if not _is_int(bias) or not lin[0] < bias < lin[1]:
        check.fail("ADC_BIAS_CODE", "= %r must be a whole code inside ADC_LINEAR_CODES" % (bias,))


def validate(mod):
    """Check a board module (or any object with the same attributes); return it."""
    if not hasattr(mod, "NAME"):
        raise BoardError("board file: NAME is missing")
    name = mod.NAME
    if not isinstance(name, str) or not name:
        raise BoardError("board file: NAME = %r must be a non-empty string" % (name,))
    check = _Checker(name)
    for field in REQUIRED_FIELDS:
        if not hasattr(mod, field):
            check.fail(field, "is missing (see docs/design.md, board descriptions)")
    if not isinstance(mod.HAL, str) or not mod.HAL:
        check.fail("HAL", "= %r must name the hardware layer module" % (mod.HAL,))
    check.adc_pins(mod.ADC_PINS)
    if not _is_int(mod.ADC_BITS) or mod.ADC_BITS != 12:
        check.fail("ADC_BITS", "= %r must be 12 (the ESP32's ADC)" % (mod.ADC_BITS,))
    if not _is_int(mod.ADC_READ_US) or mod.ADC_READ_US <= 0:
        check.fail("ADC_READ_US", "= %r must be a positive whole number of microseconds"
                   % (mod.ADC_READ_US,))
    check.positive("V_PER_COUNT", mod.V_PER_COUNT)
    apc = mod.A_PER_COUNT
    if not isinstance(apc, dict):
        check.fail("A_PER_COUNT", "must be a dict of sensor -> amps per count")
    check.names("A_PER_COUNT", apc, SENSORS, "sensor", SENSORS, "has no '%s' sensor")
    for s in SENSORS:
        check.positive("A_PER_COUNT['%s']" % s, apc[s])
    _front_end(check, mod)
    check.lan(mod.LAN)
    if mod.BUTTON_PIN is not None:
        check.pin("BUTTON_PIN", mod.BUTTON_PIN)
    if mod.STATUS_LED is not None:
        check.pin("STATUS_LED", mod.STATUS_LED, output=True)
    check.voltage_inputs(mod, mod.ADC_PINS)
    return mod


def load(name=None):
    """The running board, validated: /board.py on the device, AMPGUARD_BOARD (a boards/ name) on the host."""
    if name is None:
        getenv = getattr(os, "getenv", None)     # the ESP32's os has no getenv
        name = (getenv("AMPGUARD_BOARD") if getenv else None) or DEVICE_MODULE
    try:
        mod = __import__(name)
    except ImportError:
        if name == DEVICE_MODULE:
            raise BoardError("no board file: install one with tools/deploy.py --board NAME") from None
        raise BoardError("board %s: no such board file" % name) from None
    return validate(mod)
