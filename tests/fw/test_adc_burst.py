# The ESP32 sampling loop (firmware/adc_burst.py) with stand-in ADC readers: order, 12-bit codes,
# bounds, and no heap allocation inside a burst (checked with the heap locked on MicroPython).
import array
import gc

import adc_burst
from fwtest import IS_MICROPYTHON, raises


class FakeAdc:
    """Like machine.ADC.read(): returns the next code of a ramp, distinct per channel."""

    def __init__(self, base):
        self.base = base
        self.n = 0

    def read(self):
        self.n += 1
        return (self.base + self.n) & 4095


def readers(nch):
    return [FakeAdc(1000 * k).read for k in range(nch)]


def test_codes_are_interleaved_per_sample_set():
    buf = array.array("H", bytes(2 * 4 * 10))
    duration = adc_burst.read_burst(buf, 10, readers(4))
    assert duration >= 0
    for s in range(10):
        assert [buf[s * 4 + k] for k in range(4)] == [1000 * k + s + 1 for k in range(4)]


def test_codes_keep_all_twelve_bits():
    buf = array.array("H", bytes(2 * 2))
    fakes = [FakeAdc(4093), FakeAdc(0)]
    adc_burst.read_burst(buf, 1, [f.read for f in fakes])
    assert list(buf) == [4094, 1]


def test_a_short_buffer_is_refused_before_anything_is_written():
    buf = array.array("H", bytes(2 * 7))
    raises(ValueError, adc_burst.read_burst, buf, 2, readers(4))
    assert list(buf) == [0] * 7
    assert adc_burst.read_burst(buf, 0, readers(4)) >= 0


def test_a_burst_allocates_nothing():
    rd = readers(4)
    buf = array.array("H", bytes(2 * 4 * 500))
    adc_burst.read_burst(buf, 2, rd)          # warm up: first calls may allocate caches
    if not IS_MICROPYTHON:
        return                                  # CPython has no heap lock; the logic ran above
    import micropython

    gc.collect()
    failed = False
    micropython.heap_lock()
    try:
        adc_burst._read_sets(buf, 500, rd, 4)
    except MemoryError:
        failed = True
    micropython.heap_unlock()
    assert not failed, "the viper burst loop allocated on the heap"
    assert buf[4 * 499] == 2 + 500


def test_time_per_read_is_a_positive_whole_number():
    us = adc_burst.time_per_read(readers(3), nsets=16, tries=2)
    assert isinstance(us, int) and us >= 0
