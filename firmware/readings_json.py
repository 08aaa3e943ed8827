# The readings message (contract §4) as JSON text, every figure with a fixed number of decimals.
#
# json.dumps writes a float's repr: "import_wh": 77.84999999999999 on MicroPython. Here each field
# has its decimals (docs/metering.md), written with "%.Nf"; the counters (energy, uptime) come as
# Exact integers, since a float32 holds 12 MWh only to the Wh and 12 days only to 0.06 s.
# Keys the table does not know (the portal's advice, the replay's window) go through json.dumps.
import json

TRIM = -1          # interval_s: up to 3 decimals, trailing zeros dropped, at least one kept
# (key, decimals; 0 = an int as it is, None = through json.dumps), in the order written.
TOP = (("seq", 0), ("uptime_s", 3), ("time", 0), ("interval_s", TRIM), ("freq_hz", 2), ("phases", None),
       ("power_w", 1), ("import_wh", 2), ("export_wh", 2))
PHASE = (("l", 0), ("voltage_v", 1), ("current_a", 2), ("power_w", 1), ("apparent_va", 1), ("pf", 3),
         ("import_wh", 2), ("export_wh", 2), ("flags", None))
_FIXED = ("%d", "%.1f", "%.2f", "%.3f")
_EXACT = ("%d", "%d.%01d", "%d.%02d", "%d.%03d")


class Exact:
    """A non-negative figure kept as integers: `whole` units plus `frac` / 10^places (0 <= frac <
    10^places), written as "whole.frac" without a float on the way."""

    def __init__(self, whole, frac, places):
        self.whole = whole
        self.frac = frac
        self.places = places

    def __str__(self):
        return _EXACT[self.places] % (self.whole, self.frac)


def number(value, decimals):
    """One figure as JSON text: `decimals` digits after the point (TRIM: 1-3), null for None."""
    if value is None:
        return "null"
    if isinstance(value, Exact):
        return str(value)
    if decimals == 0 and isinstance(value, int):
        return "%d" % value
    if not -1e30 < value < 1e30:       # NaN or infinite: JSON has no word for it
        return "null"
    text = _FIXED[3 if decimals == TRIM else decimals] % value
    if decimals == TRIM:
        text = text.rstrip("0")
        if text[-1] == ".":
            text += "0"
    if text[0] == "-" and not text.strip("-0."):
        text = text[1:]                # -0.04 W is "0.0", not "-0.0"
    return text


def _object(obj, table, out):
    sep = "{"
    for key, decimals in table:
        if key not in obj:
            continue
        out.append('%s"%s": ' % (sep, key))
        sep = ", "
        value = obj[key]
        if key == "phases" and value is not None:
            out.append("[")
            for k, phase in enumerate(value):
                if k:
                    out.append(", ")
                _object(phase, PHASE, out)
            out.append("]")
        elif decimals is None:
            out.append(json.dumps(value))
        else:
            out.append(number(value, decimals))
    for key in obj:
        if not _known(key, table):
            out.append("%s%s: %s" % (sep, json.dumps(key), json.dumps(obj[key])))
            sep = ", "
    out.append("{}" if sep == "{" else "}")


def _known(key, table):
    for k, _ in table:
        if k == key:
            return True
    return False


def dumps(readings):
    """The readings dict (contract §4 shape, extra keys allowed) as JSON text."""
    out = []
    _object(readings, TOP, out)
    return "".join(out)
