# Helpers for firmware tests that run on both MicroPython and CPython.
import os
import sys

IS_MICROPYTHON = sys.implementation.name == "micropython"
# The runtime tests/conftest.py says this run is on: cpython, micropython or esp32-like.
RUNTIME = os.getenv("AMPGUARD_FW_RUNTIME") if IS_MICROPYTHON else "cpython"
_counter = [0]


def raises(exc_type, fn, *args, **kw):
    """Call fn and return the exception of exc_type it raised; fail if it raised none."""
    try:
        fn(*args, **kw)
    except exc_type as e:
        return e
    raise AssertionError("%s did not raise %s" % (getattr(fn, "__name__", fn), exc_type.__name__))


def tmpdir():
    """A new empty folder for one test."""
    base = (os.getenv("TMPDIR") if hasattr(os, "getenv") else None) or "/tmp"
    while True:
        _counter[0] += 1
        path = "%s/ampguard-fwtest-%d-%d-%d" % (base, os.urandom(1)[0], _counter[0],
                                                int.from_bytes(os.urandom(3), "little"))
        try:
            os.mkdir(path)
            return path
        except OSError:
            pass


def approx(a, b, rel=1e-9, abs_tol=0.0):
    return abs(a - b) <= max(abs_tol, rel * max(abs(a), abs(b)))


def json_raw(text, key, nth=0):
    """The text of the nth value of `key` in JSON `text` as written (its decimals), for a number,
    null or bool (not for strings, lists or objects)."""
    at = -1
    for _ in range(nth + 1):
        at = text.index('"%s": ' % key, at + 1)
    start = at + len(key) + 4
    end = start
    while text[end] not in ",}":
        end += 1
    return text[start:end]


TICKS_PERIOD = 1 << 30           # MicroPython's ticks_ms period (every port)


class FakeClock:
    """Stands in for `time` in firmware/app.py (and for the device's wall clock): ticks_ms wraps like
    MicroPython's, time() and unix_time() say 'clock not set'; `total` is the ms since the start, never
    wrapping (the truth to check against)."""

    def __init__(self, now=1000):
        self.now = now
        self.total = 0

    def ticks_ms(self):
        return self.now

    def ticks_add(self, t, delta):
        return (t + delta) % TICKS_PERIOD

    def ticks_diff(self, a, b):
        return (a - b + TICKS_PERIOD // 2) % TICKS_PERIOD - TICKS_PERIOD // 2

    def advance(self, ms):
        self.now = self.ticks_add(self.now, int(ms))
        self.total += int(ms)

    def time(self):
        return 0

    def unix_time(self):      # as the device's clock.Clock (dev.clock): not set
        return None

    def gmtime(self, t):
        return (1970, 1, 1, 0, 0, 0, 3, 1)


class WallClock:
    """Stands in for the device's wall clock (firmware/clock.py Clock): `now` is the Unix time, None
    while not set; `failed` says the latest try to set it failed."""

    def __init__(self, now=None, failed=False):
        self.now = now
        self.failed = failed

    def unix_time(self):
        return self.now

    @property
    def state(self):
        return "set" if self.now is not None else "failed" if self.failed else "unset"


class DeviceStub:
    """What app.metering_task asks of the device, the energy store and the uplink, answered as
    nothing to do: a test's fake device overrides what it watches. One object plays device, hardware
    layer, settings, energy store and uplink; `wake` is the uplink's event (the test's own)."""

    def __init__(self, clock, board, current, boot_ms, stop_after, wake):
        self.clock = clock
        self.board = board
        self.hal = self.settings = self.energy_store = self.uplink = self
        self.current = current
        self.boot_ms = boot_ms
        self.wake = wake
        self.stopping = False
        self.readings = None
        self.max_late_ms = 0
        self.published = []
        self.stop_after = stop_after
        self.factory = None           # no factory calibration (calibration.py): the board's scales

    def load(self):
        return None

    def due(self, now):
        return False

    def beat(self, task):
        pass

    def currents(self, amps):
        pass
