"""Install the MicroPython built-ins that firmware code expects into CPython (tests only)."""
import builtins
import time


def _cast(x):
    return x


def install():
    import asyncio

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
