# Time since boot that does not wrap. ticks_ms wraps every 2^30 ms (12.4 days) on every MicroPython port
# and ticks_diff reaches only +-6.2 days, so a duration longer than that cannot be taken from two ticks.
# Kept here as whole seconds plus milliseconds, summed from one reading to the next: exact as long as it
# is read at least every 6.2 days (every log line reads it, and app.py's status task logs every 10 s),
# and small ints all the way (2^30 s is 34 years: nothing allocated per reading on the ESP32).
import time

_last = time.ticks_ms()
_s = 0
_ms = 0


def _advance():
    global _last, _s, _ms
    t = time.ticks_ms()
    _ms += time.ticks_diff(t, _last)
    _last = t
    if _ms >= 1000:
        _s += _ms // 1000
        _ms %= 1000


def seconds():
    """Whole seconds since boot."""
    _advance()
    return _s


def millis():
    """The milliseconds past seconds() (0..999), as of the latest reading."""
    return _ms
