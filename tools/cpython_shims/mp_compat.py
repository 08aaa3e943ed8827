"""Install the MicroPython built-ins that firmware code expects into CPython (tests only)."""
import builtins
import time


def _cast(x):
    return x


class _Poll:
    """select.poll with MicroPython's ipoll() (an iterator over the ready objects)."""

    def __init__(self, poll):
        self._poll = poll

    def register(self, obj, mask=None):
        self._poll.register(obj, *(() if mask is None else (mask,)))

    def unregister(self, obj):
        self._poll.unregister(obj)

    def modify(self, obj, mask):
        self._poll.modify(obj, mask)

    def poll(self, timeout=-1):
        return self._poll.poll(None if timeout < 0 else timeout)

    def ipoll(self, timeout=-1, flags=0):
        return iter(self.poll(timeout))


def install():
    import asyncio
    import select

    if not hasattr(select, "_mp_poll"):
        select._mp_poll = select.poll
        select.poll = lambda: _Poll(select._mp_poll())

    if not hasattr(asyncio, "sleep_ms"):
        asyncio.sleep_ms = lambda ms: asyncio.sleep(ms / 1000)
    for name in ("ptr", "ptr8", "ptr16", "ptr32", "uint"):
        if not hasattr(builtins, name):
            setattr(builtins, name, _cast)
    if not hasattr(time, "ticks_ms"):
        period = 1 << 30
        time.ticks_ms = lambda: int(time.monotonic() * 1000) % period
        time.ticks_us = lambda: int(time.monotonic() * 1000000) % period
        time.ticks_add = lambda t, d: (t + d) % period
        time.ticks_diff = lambda a, b: ((a - b + period // 2) % period) - period // 2
        time.sleep_ms = lambda ms: time.sleep(ms / 1000)
        time.sleep_us = lambda us: time.sleep(us / 1000000)
