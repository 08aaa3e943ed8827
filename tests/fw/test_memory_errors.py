# A MemoryError never stops the metering (issue 10): firmware/app.py's metering task on a simulated clock
# meets one in the ADC driver at boot, in the burst buffer, in a burst and in a window's close, logs
# it, backs off and goes on; the burst buffer is allocated at its exact size, once.
import asyncio

import app
import energy
import readings_json
import settings
import sim
from fwtest import IS_MICROPYTHON, DeviceStub
from fwtest import FakeClock as Clock


class Sleeper:
    """Stands in for `asyncio` in app: a sleep only moves the clock on, and is recorded."""

    def __init__(self, dev):
        self.dev = dev

    async def sleep_ms(self, ms):
        self.dev.sleeps.append(ms)
        self.dev.clock.advance(ms)


class Adc:
    """An ADC whose bursts take their time on the clock; fails with MemoryError at the bursts listed."""

    def __init__(self, dev, channels):
        self.dev = dev
        self.channels = channels
        self.read_us = 1000

    def read_burst(self, buf, nsets):
        dev = self.dev
        dev.bursts += 1
        dev.burst_sets.append(nsets)
        if dev.bursts in dev.failing_bursts:
            raise MemoryError("memory allocation failed (test)")
        us = nsets * len(self.channels) * self.read_us
        dev.clock.advance(us // 1000)
        return us


class Event:
    def __init__(self, dev):
        self.dev = dev

    def set(self):
        dev = self.dev
        dev.published.append(readings_json.dumps(dev.readings))
        if len(dev.published) == dev.stop_after:
            dev.stopping = True


class Dev(DeviceStub):
    """What metering_task uses of app.Device; hal.adc fails `adc_failures` times first."""

    def __init__(self, adc_failures=0, failing_bursts=(), stop_after=3):
        clock = Clock()
        DeviceStub.__init__(self, clock, sim, settings.DEFAULTS, clock.now, stop_after, Event(self))
        self.adc_failures = adc_failures
        self.failing_bursts = failing_bursts
        self.bursts = 0
        self.burst_sets = []
        self.sleeps = []

    def adc(self, channels):
        if self.adc_failures:
            self.adc_failures -= 1
            raise MemoryError("memory allocation failed (test)")
        return Adc(self, channels)

    def load(self):
        return [energy.PhaseEnergy() for _ in range(3)]


def _run(dev, codes=None):
    """metering_task(dev) on the simulated clock; `codes` replaces app._codes (the burst buffer)."""
    real = app.time, app.asyncio, app._codes
    app.time, app.asyncio = dev.clock, Sleeper(dev)
    if codes is not None:
        app._codes = codes
    try:
        asyncio.run(app.metering_task(dev))
    finally:
        app.time, app.asyncio, app._codes = real
    return dev


def test_the_adc_failing_at_boot_is_tried_again_after_a_back_off():
    dev = _run(Dev(adc_failures=2))
    assert dev.sleeps[:2] == [app.NO_MEMORY_BACKOFF_MS] * 2
    assert len(dev.published) == 3 and dev.meter is not None


def test_no_room_for_the_burst_buffer_makes_the_bursts_shorter():
    asked = []
    full = app.BURST_MS * 1000 // (4 * 1000)           # sets of a whole burst, 4 channels of 1 ms reads

    def codes(n):
        asked.append(n)
        if n > 4 * full // 2:                          # room for half a burst at most
            raise MemoryError("memory allocation failed (test)")
        return real_codes(n)

    real_codes = app._codes
    dev = _run(Dev(), codes)
    assert asked[0] == 4 * full and asked[-1] <= 4 * full // 2 and len(asked) > 1
    assert max(dev.burst_sets) == asked[-1] // 4       # every burst fits the smaller buffer
    assert len(dev.published) == 3


def test_the_burst_buffer_is_allocated_at_its_size_once():
    # array("H", bytes(2 * n)) asks the heap for the room twice: the bytes, then the array.
    n = 6856
    before = _requested()
    buf = app._codes(n)
    asked = _requested() - before
    buf[n - 1] = 4095
    assert len(buf) == n and buf[n - 1] == 4095
    if IS_MICROPYTHON:
        assert 2 * n <= asked < 2 * n + 256, asked


def _requested():
    """Heap bytes asked for so far (MicroPython), else 0."""
    if not IS_MICROPYTHON:
        return 0
    import micropython

    return micropython.mem_total()


def test_a_burst_that_meets_a_memory_error_costs_only_itself():
    dev = _run(Dev(failing_bursts=(2, 3)))
    assert dev.sleeps.count(app.NO_MEMORY_BACKOFF_MS) == 2
    assert len(dev.published) == 3
    assert dev.bursts > 5                              # it went on sampling


def test_a_window_that_fails_to_close_is_not_counted_twice():
    # The first close meets a MemoryError after its energy was counted: the next window's energy
    # covers only its own time, not the failed window's again.
    dev = Dev(stop_after=2)
    fail = [True]
    real = app.Meter.close_window

    def close_window(meter, elapsed_s):
        out = real(meter, elapsed_s)
        if fail[0]:
            fail[0] = False
            raise MemoryError("memory allocation failed (test)")
        dev.elapsed.append(elapsed_s)
        return out

    dev.elapsed = []
    app.Meter.close_window = close_window
    try:
        _run(dev)
    finally:
        app.Meter.close_window = real
    assert len(dev.published) == 2
    assert all(0.9 <= s <= 1.2 for s in dev.elapsed), dev.elapsed


def _sampler_and_allocations(first_codes=None):
    """An app.Sampler on Dev's ADC (1 ms reads) with app._codes recorded: (sampler, [n asked], restore)."""
    asked = []
    real_codes = app._codes

    def codes(n):
        asked.append(n)
        if first_codes is not None and len(asked) == 1:
            n = first_codes
        return real_codes(n)

    app._codes = codes
    sampler = app.Sampler(Dev(), settings.DEFAULTS, None)
    return sampler, asked, real_codes


def test_a_change_of_channel_layout_keeps_the_burst_buffer():
    # phases 3 -> 1 -> 3 (4, 2, 4 channels): the buffer holds 160 ms of reads whatever the layout, and a
    # second 9 KB block, which a heap in use may no longer have in one piece, is never asked for.
    sampler, asked, real_codes = _sampler_and_allocations()
    try:
        buf = sampler.buf
        full = app.BURST_MS * 1000 // 1000             # reads in a burst at 1 ms a read
        for phases, nch in ((1, 2), (3, 4), (1, 2)):
            sampler.reconfigure(settings.apply_changes(settings.DEFAULTS, {"phases": phases}))
            assert sampler.buf is buf and len(sampler.meter.channels) == nch
            assert sampler.max_sets == full // nch      # a whole burst of this layout
    finally:
        app._codes = real_codes
    assert asked == [full]


def test_a_shrunk_burst_buffer_is_made_whole_again_at_the_next_layout_change():
    full = app.BURST_MS * 1000 // 1000
    sampler, asked, real_codes = _sampler_and_allocations(first_codes=full // 2)   # as if room was short
    try:
        assert len(sampler.buf) == full // 2 and sampler.max_sets == full // 2 // 4
        sampler.reconfigure(settings.apply_changes(settings.DEFAULTS, {"phases": 1}))
    finally:
        app._codes = real_codes
    assert len(asked) == 2 and len(sampler.buf) == full and sampler.max_sets == full // 2
