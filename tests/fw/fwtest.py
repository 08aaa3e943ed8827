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
