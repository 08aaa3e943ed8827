# Settings (contract §5): schema with defaults, validation that names the bad field, atomic storage.
# Rules and decisions are written up in docs/settings.md; the schema tables below are what is enforced.
import json

import log
import store

FILE = "settings.json"
RATED_A = {"home": 100, "public": 400}    # the rated current of each `sensor` (CT type), in amps
MAX_CHANGE_BYTES = 2048                   # a JSON message of changes (config/set): more is refused unread

DEFAULTS = {
    "interval_s": 1,
    "sensor": "home",
    "phases": 3,
    "voltage_inputs": 1,
    "generation": False,
    "invert": [False, False, False],
    "supply_max_a": None,
    "mqtt": {
        "host": "",
        "port": 1883,
        "tls": False,
        "username": None,
        "password": None,
        "prefix": "ampguard",
        "ca_file": "ca.pem",
    },
    "ha_discovery": False,
    "ntp_server": "pool.ntp.org",
    "calibration": {
        "v_gain": [1.0, 1.0, 1.0],
        "i_gain": [1.0, 1.0, 1.0],
        "i_phase_deg": [0.0, 0.0, 0.0],
    },
}

# Each rule is a tuple: (kind, parameters...). Objects list their keys in a fixed order, so the
# first bad field of a change is always the same one, whatever the dict order of the runtime.
_GAIN = ("list", 3, ("num", 0.5, 2.0))
_MQTT = (
    ("host", ("text", 0, 253, "host")),
    ("port", ("int", 1, 65535)),
    ("tls", ("bool",)),
    ("username", ("secret", 128)),
    ("password", ("secret", 128)),
    ("password_set", ("readonly", "mqtt.password")),
    ("prefix", ("text", 1, 64, "topic")),
    ("ca_file", ("text", 1, 64, "file")),
)
_CALIBRATION = (
    ("v_gain", _GAIN),
    ("i_gain", _GAIN),
    ("i_phase_deg", ("list", 3, ("num", -20, 20))),
)
_ROOT = (
    ("interval_s", ("num", 1, 60)),
    ("sensor", ("enum", ("home", "public"))),
    ("phases", ("ienum", (1, 3))),
    ("voltage_inputs", ("ienum", (1, 3))),
    ("generation", ("bool",)),
    ("invert", ("list", 3, ("bool",))),
    ("supply_max_a", ("opt", ("pos", 4000))),
    ("mqtt", ("obj", _MQTT)),
    ("ha_discovery", ("bool",)),
    ("ntp_server", ("text", 1, 253, "host")),
    ("calibration", ("obj", _CALIBRATION)),
)


class SettingsError(ValueError):
    """A refused setting: .field is its dotted path ("mqtt.port", "invert[1]"), .message says why."""

    def __init__(self, field, message):
        super().__init__("%s %s" % (field or "settings", message))
        self.field = field
        self.message = message


def _copy(v):
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


def is_number(v):
    """An int or float, not a bool (JSON true is no number)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fmt(x):
    return "%d" % x if x == int(x) else "%s" % x


def _text_problem(s, rule):
    """None when `s` follows `rule`, else what is wrong (never echoes the value: it may be secret)."""
    for c in s:
        o = ord(c)
        if rule == "secret":
            if o < 0x20 or o == 0x7F:
                return "must not contain control characters"
        elif o <= 0x20 or o >= 0x7F:
            return "must be printable ASCII without spaces"
        elif rule == "host" and not (c.isalpha() or c.isdigit() or c in ".-_"):
            return "must be a host name or IPv4 address (letters, digits, '.', '-', '_'; the port " \
                   "goes in mqtt.port)"
        elif rule == "file" and not (c.isalpha() or c.isdigit() or c in ".-_"):
            return "must be a file name of letters, digits, '.', '-', '_'"
        elif rule == "topic" and c in "+#":
            return "must not contain MQTT wildcards '+' or '#'"
    if rule == "file" and s[0] == ".":
        return "must not start with '.'"
    if rule == "topic":
        if s[0] == "$":
            return "must not start with '$' (reserved for the broker)"
        if s[0] == "/" or s[-1] == "/" or "//" in s:
            return "must not start or end with '/' nor contain empty levels ('//')"
    return None


def _value(field, rule, value, current):
    """The checked (normalised) value of one setting; raises SettingsError naming `field`."""
    kind = rule[0]
    if kind == "obj":
        return _merge(field, rule[1], current, value)
    if kind == "num" or kind == "int":
        lo, hi = rule[1], rule[2]
        if is_number(value) and lo <= value <= hi:
            if kind == "num":
                return value
            if value == int(value):
                return int(value)     # 8883.0 is accepted as 8883, 8883.5 is not
        raise SettingsError(field, "must be a %s from %s to %s"
                            % ("whole number" if kind == "int" else "number", _fmt(lo), _fmt(hi)))
    if kind == "pos":
        if is_number(value) and 0 < value <= rule[1]:
            return value
        raise SettingsError(field, "must be a number above 0 and at most %s" % _fmt(rule[1]))
    if kind == "ienum":
        if is_number(value) and value in rule[1]:
            return int(value)
        raise SettingsError(field, "must be one of %s" % ", ".join(_fmt(c) for c in rule[1]))
    if kind == "enum":
        if isinstance(value, str) and value in rule[1]:
            return value
        raise SettingsError(field, "must be one of %s" % ", ".join('"%s"' % c for c in rule[1]))
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise SettingsError(field, "must be true or false")
    if kind == "opt":
        if value is None:
            return None
        try:
            return _value(field, rule[1], value, current)
        except SettingsError as e:
            raise SettingsError(field, "must be null or " + e.message[len("must be "):]) from None
    if kind == "list":
        n, item = rule[1], rule[2]
        if not isinstance(value, list) or len(value) != n:
            raise SettingsError(field, "must be a list of %d values" % n)
        return [_value("%s[%d]" % (field, i), item, value[i], None) for i in range(n)]
    if kind == "secret":
        # An empty user name or password is no user name or password: both are stored as null.
        if value is None or value == "":
            return None
        if not isinstance(value, str) or len(value) > rule[1]:
            raise SettingsError(field, "must be null or text of at most %d characters" % rule[1])
        why = _text_problem(value, "secret")
        if why:
            raise SettingsError(field, why)
        return value
    if kind == "text":
        lo, hi, how = rule[1], rule[2], rule[3]
        if not isinstance(value, str) or not lo <= len(value) <= hi:
            raise SettingsError(field, "must be text of %d to %d characters" % (lo, hi))
        why = _text_problem(value, how)
        if why:
            raise SettingsError(field, why)
        return value
    if kind == "readonly":
        raise SettingsError(field, "is read-only (set %s instead)" % rule[1])
    raise SettingsError(field, "has no rule")    # a schema mistake, never user input


def _merge(path, schema, current, changes):
    if not isinstance(changes, dict):
        raise SettingsError(path, "must be a JSON object")
    for key in changes:
        for name, _rule in schema:
            if key == name:
                break
        else:
            raise SettingsError(("%s.%s" % (path, key)) if path else "%s" % (key,), "is not a setting")
    merged = _copy(current)
    for name, rule in schema:
        if name in changes:
            field = path + "." + name if path else name
            merged[name] = _value(field, rule, changes[name], current.get(name))
    return merged


def apply_changes(current, changes):
    """A new settings dict: `current` (a valid document) with `changes` applied.

    Objects are merged key by key ({"mqtt": {"port": 8883}} changes only the port); lists are
    replaced whole. Raises SettingsError naming the first bad field; `current` is never modified.
    """
    return _merge("", _ROOT, current, changes)


def parse_changes(msg):
    """The changes of a JSON message of settings (config/set): a dict for apply_changes; SettingsError
    with field "" for a message that is too large, not JSON or not an object."""
    if len(msg) > MAX_CHANGE_BYTES:
        raise SettingsError("", "message too large (at most %d bytes)" % MAX_CHANGE_BYTES)
    try:
        changes = json.loads(msg)
    except (ValueError, UnicodeError):
        raise SettingsError("", "is not valid JSON") from None
    if not isinstance(changes, dict):
        raise SettingsError("", "must be a JSON object of settings")
    return changes


def validate(doc):
    """The complete settings from a stored document, or SettingsError.

    Keys the document lacks (written by older firmware) take their defaults; unknown keys are refused.
    """
    return _merge("", _ROOT, DEFAULTS, doc)


def public_view(settings):
    """A view safe to publish: the MQTT password is dropped, "password_set" tells whether one is set.
    Only read it (json.dumps): all but its `mqtt` object are the settings' own, not copies (a deep copy
    cost about 800 bytes of heap per config message)."""
    view = dict(settings)
    mqtt = dict(settings["mqtt"])
    mqtt["password_set"] = mqtt.pop("password", None) is not None
    view["mqtt"] = mqtt
    return view


class Settings:
    """The device's settings, stored in `settings.json` in the flash folder."""

    def __init__(self, flash_dir):
        self.path = store.join(flash_dir, FILE)
        self.current = _copy(DEFAULTS)   # read-only for callers: changes go through update()
        self.source = "defaults"

    def load(self):
        """Load the stored settings (falling back to the last good copy, then the defaults)."""
        obj, source = store.read_json(self.path, validate)
        if obj is None:
            self.current, self.source = _copy(DEFAULTS), "defaults"
            if source == "missing":
                log.info("settings", "none stored: using defaults")
            else:
                log.error("settings", "no usable %s: using defaults" % FILE)
        else:
            self.current, self.source = validate(obj), source
        return self.current

    def save(self, new):
        """Store a complete settings document atomically and make it current."""
        new = validate(new)
        store.write_json(self.path, new, validate)
        self.current = new
        self.source = "main"

    def update(self, changes):
        """Apply, store and return the changed settings; on any error nothing is stored or changed."""
        new = apply_changes(self.current, changes)
        if new != self.current:     # no flash write for a change that changes nothing
            self.save(new)
            log.info("settings", "stored new %s" % ", ".join(sorted("%s" % (k,) for k in changes)))
        return new
