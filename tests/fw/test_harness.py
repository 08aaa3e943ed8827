# The harness itself: proves each runtime really runs (one result per runtime in pytest).
import sys
import time

import boardcfg
import log
import sim
from fwtest import IS_MICROPYTHON, RUNTIME, raises


def test_runtime_is_the_one_named():
    # Under MicroPython this module is run by mprunner.py, under CPython by pytest.
    assert sys.implementation.name == ("micropython" if IS_MICROPYTHON else "cpython")
    assert RUNTIME in ("cpython", "micropython", "esp32-like"), RUNTIME
    assert (RUNTIME == "cpython") == (not IS_MICROPYTHON)


def test_esp32_like_is_32_bit_float32_and_runs_the_frozen_firmware():
    if RUNTIME == "esp32-like":
        assert sys.maxsize == (1 << 31) - 1
        assert repr(1 / 3) == "0.33333334"                      # single precision
        assert time.ticks_add(0, -1) == (1 << 30) - 1            # ticks wrap at 2^30
        # Frozen modules have no folder in __file__: the firmware and the board files are the frozen
        # ones (a source copy found first on the path would shadow them).
        for mod in (log, boardcfg, sim):
            assert mod.__file__ == mod.__name__ + ".py", mod.__file__
    else:
        if RUNTIME == "micropython":
            assert sys.maxsize > 1 << 62 and repr(1 / 3) == "0.3333333333333333"
        # The 64-bit port and CPython import the firmware from its source folders.
        assert log.__file__.endswith("firmware/log.py") and sim.__file__.endswith("boards/sim.py")


def test_raises_helper_catches_and_fails():
    e = raises(ValueError, int, "x")
    assert isinstance(e, ValueError)
    raises(AssertionError, raises, ValueError, int, "1")
