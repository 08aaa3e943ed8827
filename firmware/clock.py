# The wall clock: readings' `time` and the certificate checks of TLS need it, and an ESP32 starts at
# 2000-01-01 after power-on. Set by SNTP as soon as a network is up, from the `ntp_server` setting (a
# public pool by default; MicroPython gives no access to a DHCP-announced NTP server), then resynced
# daily. The hardware layer reads and sets the clock (the RTC on the ESP32; in the simulator an
# offset clock that boots at 2000-01-01 like the chip).
import asyncio
import random

import log
import resolver
import uptime

CLOCK_SET_AFTER = 1700000000   # a Unix time before this (2023-11) means the clock was never set
NTP_PORT = 123
TIMEOUT_MS = 2000              # per query; a server farther than that is no use to us anyway
RETRY_FIRST_S = 2              # after a failure, doubling...
RETRY_MAX_S = 300              # ...to this: a clock that cannot be set keeps being tried
RESYNC_S = 86400               # the RTC drifts a few seconds a day
STEP_LOG_S = 2                 # a resync moving the clock by more than this is logged


class Clock:
    def __init__(self, dev):
        self.dev = dev
        self.error = None          # why the latest try failed (text), None after a success
        self.server = None         # "host" the clock was last set from
        self.on_change = None      # called when state changes (the uplink republishes info)

    def unix_time(self):
        """Unix UTC seconds, or None while the clock is not set."""
        t = self.dev.hal.unix_time()
        return t if t >= CLOCK_SET_AFTER else None

    @property
    def state(self):
        """set | unset (not yet: no network, or the first try still running) | failed (not set, and the
        latest try failed: docs/contract.md)."""
        if self.unix_time() is not None:
            return "set"
        return "failed" if self.error else "unset"

    def _server(self):
        override = self.dev.hal.ntp_override()
        if override:
            return override
        return self.dev.settings.current["ntp_server"], NTP_PORT

    async def sync(self):
        """One SNTP query and, with a valid answer, the clock set. Raises OSError on failure."""
        import sntp  # only while it runs: the module's heap is given back between syncs

        dev = self.dev
        host, port = self._server()
        addr = await resolver.resolve(host, dev.hal.dns_server(), dev.hal.system_resolver)
        try:
            unix, us, rtt = await sntp.query((addr, port), TIMEOUT_MS)
        except OSError:
            resolver.forget(host)     # a pool hands out another server at the next look-up
            raise
        before = self.unix_time()
        dev.hal.set_time(unix, us)
        if before is None:
            log.info("clock", "set from %s (%s), round trip %d ms" % (host, addr, rtt))
        elif abs(unix - before) > STEP_LOG_S:
            log.info("clock", "stepped by %d s from %s" % (unix - before, host))
        self.server = host

    async def run(self):
        """The clock task: a first sync as soon as a network is up, then daily; failures retried with a
        growing, bounded back-off."""
        dev = self.dev
        retry_s = RETRY_FIRST_S
        while True:
            if dev.net.network is None:
                await asyncio.sleep_ms(1000)
                continue
            was = self.state
            try:
                await self.sync()
                self.error = None
                wait_s = RESYNC_S - random.getrandbits(10)       # a fleet does not resync all at once
                retry_s = RETRY_FIRST_S
            except Exception as e:    # never a dead task: no answer, no DNS, no heap for a moment
                self.error = str(e) or repr(e)
                log.warn("clock", "not set: %s; next try in %d s" % (self.error, retry_s)
                         if self.unix_time() is None else "resync failed: %s" % self.error)
                wait_s = retry_s
                retry_s = min(RETRY_MAX_S, retry_s * 2)
            finally:
                import sys

                sys.modules.pop("sntp", None)
            if self.state != was and self.on_change is not None:
                self.on_change()
            await self._sleep(wait_s)

    async def _sleep(self, seconds):
        """Wait, in uptime seconds (a day is past ticks_diff's reach on the ESP32); a network that
        comes back after being lost cuts a failure's wait short."""
        end = uptime.seconds() + seconds
        had_network = self.dev.net.network is not None
        while uptime.seconds() < end:
            await asyncio.sleep_ms(1000)
            up = self.dev.net.network is not None
            if up and not had_network and self.unix_time() is None:
                return
            had_network = up
