# The harness itself: proves each runtime really runs (one result per runtime in pytest).
import sys

from fwtest import IS_MICROPYTHON, raises


def test_runtime_is_the_one_named():
    # Under MicroPython this module is run by mprunner.py, under CPython by pytest.
    assert sys.implementation.name == ("micropython" if IS_MICROPYTHON else "cpython")


def test_raises_helper_catches_and_fails():
    e = raises(ValueError, int, "x")
    assert isinstance(e, ValueError)
    raises(AssertionError, raises, ValueError, int, "1")
