# firmware/app.py metering_task on a simulated clock: each readings message says the interval its own
# window ran for (also right after interval_s changes), and uptime_s is exact, across a ticks wrap and
# past the 2^29 ms (6.2 days) up to which ticks_diff can measure the time since boot.
import asyncio

import app
import readings_json
import settings
import sim
from fwtest import TICKS_PERIOD as PERIOD
from fwtest import DeviceStub, json_raw
from fwtest import FakeClock as Clock

START = PERIOD - 2500            # the clock wraps in the third window
STALL_MS = 1 << 28               # a burst that holds the clock for 3.1 days: a window apiece


class Sleeper:
    """Stands in for `asyncio` in app: a sleep only moves the clock on."""

    def __init__(self, clock):
        self.clock = clock

    async def sleep_ms(self, ms):
        self.clock.advance(ms)


class Adc:
    """An ADC whose bursts take their real duration on the clock (the codes do not matter here)."""

    def __init__(self, dev, channels):
        self.dev = dev
        self.channels = channels
        self.read_us = 1000          # slow reads: a few sample sets per burst keep the test quick

    def read_burst(self, buf, nsets):
        us = nsets * len(self.channels) * self.read_us
        self.dev.clock.advance(us // 1000 + self.dev.stall_ms)
        self.dev.on_burst()
        return us


class Event:
    def __init__(self, dev):
        self.dev = dev

    def set(self):                   # a readings message is out: what it says and when it closed
        dev = self.dev
        dev.published.append((readings_json.dumps(dev.readings), dev.clock.now, dev.clock.total))
        if len(dev.published) == dev.stop_after:
            dev.stopping = True


class Dev(DeviceStub):
    """What metering_task uses of app.Device; `change` = (after ms, new settings) during the run."""

    def __init__(self, clock, boot_ms, first, change, stop_after, stall_ms=0):
        DeviceStub.__init__(self, clock, sim, first, boot_ms, stop_after, Event(self))
        self.stall_ms = stall_ms         # added to every burst's duration
        self.change = change
        self.start = clock.now

    def adc(self, channels):
        return Adc(self, channels)

    def on_burst(self):
        if self.change and self.clock.ticks_diff(self.clock.now, self.start) >= self.change[0]:
            self.current = self.change[1]
            self.change = None



def _run(first_interval, change_after_ms, new_interval, windows, boot_ms_before=0, stall_ms=0):
    clock = Clock(START)
    first = settings.apply_changes(settings.DEFAULTS, {"interval_s": first_interval})
    new = settings.apply_changes(settings.DEFAULTS, {"interval_s": new_interval})
    dev = Dev(clock, clock.ticks_add(START, -boot_ms_before), first, (change_after_ms, new), windows,
              stall_ms)
    real_time, real_asyncio = app.time, app.asyncio
    app.time, app.asyncio = clock, Sleeper(clock)
    try:
        asyncio.run(app.metering_task(dev))
    finally:
        app.time, app.asyncio = real_time, real_asyncio
    return dev


def _windows(dev):
    """Per readings message: the interval_s it says, and the ms since the previous message's window
    closed (None for the first: it starts with the task, and every close may come a gap late)."""
    out = []
    prev = None
    for text, closed, _ in dev.published:
        since = None if prev is None else dev.clock.ticks_diff(closed, prev)
        out.append((json_raw(text, "interval_s"), since))
        prev = closed
    return out


def test_each_readings_message_says_the_interval_its_window_ran_for():
    # interval_s goes from 1 to 2 s in the middle of the second window: that window still closes
    # after 1 s and says 1.0, every later one runs 2 s and says 2.0.
    dev = _run(1, 1500, 2, 5)
    assert _windows(dev) == [("1.0", None), ("1.0", 1000), ("2.0", 2000), ("2.0", 2000), ("2.0", 2000)]
    # ... and the other way, to a fractional interval.
    dev = _run(2, 500, 1.5, 4)
    assert _windows(dev) == [("2.0", None), ("1.5", 1500), ("1.5", 1500), ("1.5", 1500)]


def test_uptime_is_exact_milliseconds_since_boot_across_a_ticks_wrap_and_past_6_days():
    # Each window holds one burst that stalls the clock 2^28 ms: four windows reach 12.4 days, twice
    # the most ticks_diff(now, boot) can tell, and wrap ticks_ms on the way.
    dev = _run(1.5, 10 ** 9, 1, 4, boot_ms_before=1234, stall_ms=STALL_MS)
    said = [json_raw(text, "uptime_s") for text, _, _ in dev.published]
    since_boot = [1234 + total for _, _, total in dev.published]
    assert said == ["%d.%03d" % (ms // 1000, ms % 1000) for ms in since_boot], (said, since_boot)
    # past ticks_diff's reach by the third window, and ticks_ms wrapped (after a whole period) by the fourth
    assert since_boot[0] > STALL_MS and since_boot[2] > 1 << 29 and since_boot[3] > PERIOD
    assert [json_raw(text, "seq") for text, _, _ in dev.published] == ["1", "2", "3", "4"]
