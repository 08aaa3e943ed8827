# Helpers for firmware tests that run on both MicroPython and CPython.
import os
import sys

IS_MICROPYTHON = sys.implementation.name == "micropython"
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
