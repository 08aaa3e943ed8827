# The readings message (contract §4) as JSON text, every figure with a fixed number of decimals.
#
# json.dumps writes a float's repr: "import_wh": 77.84999999999999 on MicroPython. Here each field
# has its decimals (docs/metering.md), written with "%.Nf"; the counters (energy, uptime) come as
# Exact integers, since a float32 holds 12 MWh only to the Wh and 12 days only to 0.06 s.
# Keys the table does not know (the replay's window) go through json.dumps; the portal's advice is
# written by the portal itself, at the end of each phase (write's phase_tail).
#
# The message is written as bytes straight into a Message buffer that is kept from one window to the
# next (write), which MQTT sends as it is: no list of pieces, no joined string, no encoded copy. Keys
# and separators are constants; each figure costs one small bytes object.
import json
import sys

TRIM = -1          # interval_s: up to 3 decimals, trailing zeros dropped, at least one kept
# (key, its JSON text, decimals; 0 = an int as it is, None = through json.dumps), in the order written.
TOP = (("seq", b'"seq": ', 0), ("uptime_s", b'"uptime_s": ', 3), ("time", b'"time": ', 0),
       ("interval_s", b'"interval_s": ', TRIM), ("freq_hz", b'"freq_hz": ', 2),
       ("phases", b'"phases": ', None), ("power_w", b'"power_w": ', 1), ("import_wh", b'"import_wh": ', 2),
       ("export_wh", b'"export_wh": ', 2))
PHASE = (("l", b'"l": ', 0), ("voltage_v", b'"voltage_v": ', 1), ("current_a", b'"current_a": ', 2),
         ("power_w", b'"power_w": ', 1), ("apparent_va", b'"apparent_va": ', 1), ("pf", b'"pf": ', 3),
         ("import_wh", b'"import_wh": ', 2), ("export_wh", b'"export_wh": ', 2),
         ("flags", b'"flags": ', None))
_FIXED = (b"%d", b"%.1f", b"%.2f", b"%.3f")
_EXACT = (b"%d", b"%d.%01d", b"%d.%02d", b"%d.%03d")
_DIGITS = (b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8", b"9")
_SMALL = 1 << 29          # ints below this are written digit by digit (no object; 2^30 is a small int's end)
# The diagnostics' flag names (diagnostics.py) as JSON strings; others go through json.dumps.
_FLAGS = {"reversed": b'"reversed"', "wrong_phase": b'"wrong_phase"', "overrange": b'"overrange"',
          "no_voltage": b'"no_voltage"', "derived_voltage": b'"derived_voltage"'}
MESSAGE_BYTES = 1024   # a three-phase message with flags is about 800 bytes
# CPython's asyncio transports may keep a view of data they have not sent yet: there the message goes
# out as a copy. MicroPython's streams copy what they cannot write at once.
_COPY = sys.implementation.name != "micropython"


class Exact:
    """A non-negative figure kept as integers: `whole` units plus `frac` / 10^places (0 <= frac <
    10^places), written as "whole.frac" without a float on the way."""

    def __init__(self, whole, frac, places):
        self.whole = whole
        self.frac = frac
        self.places = places

    def text(self):
        return _EXACT[self.places] % (self.whole, self.frac)

    def __str__(self):
        return self.text().decode()


def _number(value, decimals):
    """number() as bytes."""
    if value is None:
        return b"null"
    if isinstance(value, Exact):
        return value.text()
    if decimals == 0 and isinstance(value, int):
        return b"%d" % value
    if not -1e30 < value < 1e30:       # NaN or infinite: JSON has no word for it
        return b"null"
    text = _FIXED[3 if decimals == TRIM else decimals] % value
    if decimals == TRIM:
        text = text.rstrip(b"0")
        if text[-1] == 46:             # "."
            text += b"0"
    if text[0] == 45 and not text.strip(b"-0."):     # "-"
        text = text[1:]                # -0.04 W is "0.0", not "-0.0"
    return text


def number(value, decimals):
    """One figure as JSON text: `decimals` digits after the point (TRIM: 1-3), null for None."""
    return _number(value, decimals).decode()


class Message:
    """A message built in one buffer, kept for the next one (it grows if ever too small)."""

    def __init__(self, size=MESSAGE_BYTES):
        self.buf = bytearray(size)
        self.n = 0

    def put(self, piece):
        end = self.n + len(piece)
        if end > len(self.buf):
            grown = bytearray(end + end // 2)
            grown[:self.n] = self.buf[:self.n]
            self.buf = grown
        self.buf[self.n:end] = piece
        self.n = end

    def view(self):
        """The message as written (a view of the buffer: valid until the next write, so only for a
        message sent at once and not kept: QoS 0, or QoS 1 published with keep=False)."""
        if _COPY:
            return bytes(self.buf[:self.n])
        return memoryview(self.buf)[:self.n]


def _digits(put, n, width=1):
    """A non-negative int below _SMALL, at least `width` digits (zero-padded): nothing allocated."""
    d = 1
    while width > 1 or d * 10 <= n:
        d *= 10
        width -= 1
    while d:
        put(_DIGITS[n // d % 10])
        d //= 10


def _figure(put, value, decimals):
    """One figure; ints and Exact counters digit by digit, floats through _number."""
    if isinstance(value, Exact) and 0 <= value.whole < _SMALL:
        _digits(put, value.whole)
        if value.places:
            put(b".")
            _digits(put, value.frac, value.places)
    elif decimals == 0 and isinstance(value, int) and 0 <= value < _SMALL:
        _digits(put, value)
    else:
        put(_number(value, decimals))


def _object(obj, table, put, phase_tail=None, tail=None):
    sep = b"{"
    for key, text, decimals in table:
        if key not in obj:
            continue
        put(sep)
        put(text)
        sep = b", "
        value = obj[key]
        if key == "phases" and value is not None:
            more = b"["
            for phase in value:
                put(more)
                more = b", "
                _object(phase, PHASE, put, None, phase_tail)
            put(b"[]" if more == b"[" else b"]")
        elif key == "flags" and isinstance(value, list):
            more = b"["
            for flag in value:
                put(more)
                more = b", "
                put(_FLAGS.get(flag) or json.dumps(flag).encode())
            put(b"[]" if more == b"[" else b"]")
        elif decimals is None:
            put(json.dumps(value).encode())
        else:
            _figure(put, value, decimals)
    for key in obj:
        if not _known(key, table):
            put(sep)
            put(json.dumps(key).encode())
            put(b": ")
            put(json.dumps(obj[key]).encode())
            sep = b", "
    if tail is not None:        # one more "key": value, written by the caller
        put(sep)
        tail(obj, put)
        sep = b", "
    put(b"{}" if sep == b"{" else b"}")


def _known(key, table):
    for k, _, _ in table:
        if k == key:
            return True
    return False


def write(readings, message, phase_tail=None):
    """The readings dict (contract §4 shape, extra keys allowed) as JSON into `message` (a Message,
    emptied first); returns message.view(). phase_tail(phase, put), if given, writes one more
    "key": value at the end of each phase (the portal's advice)."""
    message.n = 0
    _object(readings, TOP, message.put, phase_tail)
    return message.view()


def dumps(readings):
    """The readings as a JSON str (tools, tests)."""
    return str(write(readings, Message(256)), "utf-8")
