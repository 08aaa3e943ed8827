"""A load-balancing group's config: one JSON file per group, validated whole with field-named errors.

The fields are the ones the Charge Amps installation guide sets per group in its cloud (see
docs/balancer.md, "The group file", for each rule and why each default is what it is). A file with any bad
field is refused whole: GroupError names the first bad field ("chargers[1].offline_phase") and says what
it must be, in the style of the firmware's settings (firmware/settings.py).
"""
import json

MAX_FILE_BYTES = 65536      # a group file is a few hundred bytes per charger; more is refused unread
MAX_CHARGERS = 256
MIN_CHARGE_A = 6            # IEC 61851-1: the least current a car can be told to charge with
MAX_SUPPLY_A = 4000         # the same bound as the meter's own supply_max_a setting

# Fields in the order they are checked (so the first bad field reported is always the same one).
ROOT_FIELDS = ("group", "meter", "phases_order", "supply_max_a", "min_a", "margin_a", "max_a_online",
               "max_a_offline", "chargers_included", "chargers")
CHARGER_FIELDS = ("id", "phases", "phase", "offline_a", "offline_phase")
REQUIRED = ("group", "meter", "supply_max_a", "chargers")
CHARGER_REQUIRED = ("id",)


class GroupError(ValueError):
    """A refused group file: .field is the dotted path of the first bad field ("chargers[1].phase", ""
    for the file as a whole), .message says what it must be, .path is the file (None for a dict)."""

    def __init__(self, field, message, path=None):
        text = "%s %s" % (field or "group file", message)
        super().__init__("%s: %s" % (path, text) if path else text)
        self.field = field
        self.message = message
        self.path = path


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def _fmt(x):
    return "%d" % x if x == int(x) else "%s" % x


def _number(field, value, lo, hi):
    if _is_number(value) and lo <= value <= hi:
        return value
    raise GroupError(field, "must be a number from %s to %s" % (_fmt(lo), _fmt(hi)))


def _one_of(field, value, choices):
    if _is_number(value) and value in choices:
        return int(value)
    raise GroupError(field, "must be %s" % " or ".join(", ".join("%d" % c for c in choices).rsplit(", ", 1)))


def _bool(field, value):
    if isinstance(value, bool):
        return value
    raise GroupError(field, "must be true or false")


def _name(field, value, hi):
    """An identifier that goes into MQTT topics and OCPP URLs: letters, digits, '.', '-', '_'."""
    if not isinstance(value, str) or not 1 <= len(value) <= hi:
        raise GroupError(field, "must be text of 1 to %d characters" % hi)
    for c in value:
        if not (c.isascii() and (c.isalnum() or c in ".-_")):
            raise GroupError(field, "must be letters, digits, '.', '-' or '_' only")
    return value


def _triple(field, value, lo, hi):
    if not isinstance(value, list) or len(value) != 3:
        raise GroupError(field, "must be a list of 3 numbers (phases 1, 2, 3)")
    return [_number("%s[%d]" % (field, i), v, lo, hi) for i, v in enumerate(value)]


def _object(field, value, known, required):
    if not isinstance(value, dict):
        raise GroupError(field, "must be a JSON object")
    for key in value:
        if key not in known:
            raise GroupError(("%s.%s" % (field, key)) if field else "%s" % (key,), "is not a group setting")
    for key in required:
        if key not in value:
            raise GroupError(("%s.%s" % (field, key)) if field else key, "is required")


def _charger(field, c, g):
    _object(field, c, CHARGER_FIELDS, CHARGER_REQUIRED)
    out = {"id": _name(field + ".id", c["id"], 48)}
    out["phases"] = _one_of(field + ".phases", c.get("phases", 3), (1, 3))
    out["phase"] = _one_of(field + ".phase", c.get("phase", 1), (1, 2, 3))
    offline_a = _number(field + ".offline_a", c.get("offline_a", g["min_a"]), 0, g["supply_max_a"])
    if 0 < offline_a < MIN_CHARGE_A:
        raise GroupError(field + ".offline_a", "must be 0 (stop charging) or at least %d (no car charges "
                         "with less)" % MIN_CHARGE_A)
    out["offline_a"] = offline_a
    out["offline_phase"] = _one_of(field + ".offline_phase", c.get("offline_phase", out["phase"]), (1, 2, 3))
    return out


def validate(doc):
    """The complete group (defaults filled, whole numbers of enumerations as ints) or GroupError."""
    _object("", doc, ROOT_FIELDS, REQUIRED)
    g = {"group": _name("group", doc["group"], 64), "meter": _name("meter", doc["meter"], 64)}
    order = doc.get("phases_order", [1, 2, 3])
    if not (isinstance(order, list) and len(order) == 3 and all(_is_number(p) for p in order)
            and sorted(order) == [1, 2, 3]):
        raise GroupError("phases_order", "must be the phases 1, 2 and 3 in some order, e.g. [1, 2, 3] or "
                         "[3, 2, 1]")
    g["phases_order"] = [int(p) for p in order]
    supply = g["supply_max_a"] = _number("supply_max_a", doc["supply_max_a"], 1, MAX_SUPPLY_A)
    g["min_a"] = _number("min_a", doc.get("min_a", MIN_CHARGE_A), MIN_CHARGE_A, 80)
    g["margin_a"] = _number("margin_a", doc.get("margin_a", 1), 0, 100)
    if g["min_a"] + g["margin_a"] > supply:
        raise GroupError("min_a", "plus margin_a must be at most supply_max_a (%s A): no car could ever "
                         "charge" % _fmt(supply))
    g["max_a_online"] = _triple("max_a_online", doc.get("max_a_online", [supply] * 3), 0, supply)
    g["max_a_offline"] = _triple("max_a_offline", doc.get("max_a_offline", [g["min_a"]] * 3), 0, supply)
    g["chargers_included"] = _bool("chargers_included", doc.get("chargers_included", True))
    chargers = doc["chargers"]
    if not isinstance(chargers, list) or not 1 <= len(chargers) <= MAX_CHARGERS:
        raise GroupError("chargers", "must be a list of 1 to %d chargers" % MAX_CHARGERS)
    g["chargers"] = []
    seen = {}
    for i, c in enumerate(chargers):
        field = "chargers[%d]" % i
        out = _charger(field, c, g)
        if out["id"] in seen:
            raise GroupError(field + ".id", "must be unique (chargers[%d] has the same id)" % seen[out["id"]])
        seen[out["id"]] = i
        g["chargers"].append(out)
    return g


def parse(text, path=None):
    """A group from the text of a group file; GroupError (with `path`) for anything wrong in it."""
    if len(text) > MAX_FILE_BYTES:
        raise GroupError("", "is too large (at most %d bytes)" % MAX_FILE_BYTES, path)
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise GroupError("", "is not valid JSON (%s)" % e, path) from None
    try:
        return validate(doc)
    except GroupError as e:
        raise GroupError(e.field, e.message, path) from None


def load(path):
    """The group in the JSON file at `path`; GroupError naming the file and the first bad field."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise GroupError("", "cannot be read (%s)" % (e.strerror or e), str(path)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeError:
        raise GroupError("", "is not UTF-8 text", str(path)) from None
    return parse(text, str(path))


def load_all(paths):
    """The groups of several files, keyed by meter serial (one group per meter); GroupError when a
    group id or a meter appears in two files."""
    by_meter, by_id = {}, {}
    for path in paths:
        g = load(path)
        if g["meter"] in by_meter:
            raise GroupError("meter", "is already the meter of group %s" % by_meter[g["meter"]]["group"],
                             str(path))
        if g["group"] in by_id:
            raise GroupError("group", "is already the id of another group file", str(path))
        by_meter[g["meter"]] = by_id[g["group"]] = g
    return by_meter


def supply_phases(group, charger):
    """The supply phases of a charger's L1, L2, L3 (one for a 1-phase charger): L1 is on `phase`, the
    others follow the group's phase rotation, `phases_order` read as a cycle ([3, 2, 1] from phase 2:
    2, 1, 3)."""
    if charger["phases"] == 1:
        return [charger["phase"]]
    order = group["phases_order"]
    k = order.index(charger["phase"])
    return [order[(k + i) % 3] for i in range(3)]
