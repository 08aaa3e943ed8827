# The application: builds the device from its board description and runs its tasks on asyncio.
# The same code runs on the ESP32 and, with the simulated hardware layer, in tools/sim.
import asyncio
import gc
import sys
import time
from array import array

import identity
import log
from energy import EnergyStore
from meter import Meter
from netsup import NetworkSupervisor
from portal import Portal
from readings_json import Exact
from settings import Settings
from uplink import Uplink
from version import VERSION

WATCHDOG_MS = 30000          # hardware watchdog: reset when the tasks below stop making progress
HEARTBEAT_STALE_MS = 10000   # a task silent for this long counts as hung
BURST_MS = 240               # one sampling burst: 12 cycles at 50 Hz, 10 whole ones after the pre-roll
GAP_MS = 30                  # between bursts the network runs; sampling never waits for it longer
LATE_WARN_MS = 100           # a window closing later than this is logged (the uplink must never cause it)
MIN_BURST_MS = 80            # 4 cycles: a shorter burst has too few whole cycles to be worth it
UNIX_2000 = 946684800        # seconds from 1970 to 2000 (the ESP32's time() epoch)
CLOCK_SET_AFTER = 1700000000  # a Unix time before this means the clock was never set


def unix_time():
    """Unix UTC seconds, or None while the clock is not set (no NTP yet)."""
    t = time.time()
    if time.gmtime(0)[0] == 2000:
        t += UNIX_2000
    return int(t) if t >= CLOCK_SET_AFTER else None


def _load_board():
    """The validated board description. The validator is needed once, at boot: it is dropped after,
    which gives its ~6 KB of code back to the heap (12 KB on the unix port)."""
    import boardcfg

    try:
        return boardcfg.load()
    finally:
        del sys.modules["boardcfg"]


class Device:
    """What the tasks share: board, hardware layer, identity, settings and liveness."""

    def __init__(self):
        self.board = _load_board()
        self.hal = __import__(self.board.HAL).Hal(self.board)
        self.flash_dir = self.hal.flash_dir
        try:
            self.serial, self.pin = identity.load(self.flash_dir)
        except (OSError, ValueError) as e:
            # Not provisioned at manufacturing: meter anyway, the network needs an identity.
            log.error("app", "no valid identity: %s" % e)
            self.serial, self.pin = None, None
        self.settings = Settings(self.flash_dir)
        self.settings.load()
        self.energy_store = EnergyStore(self.flash_dir)
        self.meter = None
        self.net = NetworkSupervisor(self.hal, self.flash_dir, self.serial, self.pin)
        self.heartbeats = {}
        self.stopping = False
        self.readings = None          # the latest readings message (contract §4)
        self.boot_ms = time.ticks_ms()
        self.uplink = Uplink(self)
        self.max_late_ms = 0          # the latest a readings window has closed since boot

    def uplink_state(self):
        """disabled | connecting | connected (the MQTT uplink; contract §2 /api/status)."""
        return self.uplink.state

    def beat(self, task):
        self.heartbeats[task] = time.ticks_ms()

    def all_alive(self):
        now = time.ticks_ms()
        for t in self.heartbeats.values():
            if time.ticks_diff(now, t) > HEARTBEAT_STALE_MS:
                return False
        return True


class Sampler:
    """The ADC, its burst buffer and the meter, rebuilt when settings change the channel layout."""

    def __init__(self, dev, settings, counters):
        self.meter = Meter(dev.board, settings, counters=counters)
        self.hal = dev.hal
        self._open()

    def _open(self):
        self.adc = self.hal.adc(self.meter.channels)
        self.set_us = len(self.meter.channels) * self.adc.read_us
        self.max_sets = BURST_MS * 1000 // self.set_us
        self.buf = array("H", bytes(2 * self.max_sets * len(self.meter.channels)))

    def reconfigure(self, settings):
        self.meter.configure(settings)
        if self.meter.channels != self.adc.channels:
            self._open()

    def burst(self, ms):
        """One burst; returns its CycleStats."""
        nsets = min(self.max_sets, ms * 1000 // self.set_us)
        return self.meter.add_burst(self.buf, nsets, self.adc.read_burst(self.buf, nsets))


async def metering_task(dev):
    """Sample in bursts, close a readings window every interval_s, keep the energy counting."""
    settings = dev.settings.current
    sampler = Sampler(dev, settings, dev.energy_store.load())
    dev.meter = sampler.meter
    seq = 0
    last_close = dev.last_close = time.ticks_ms()
    # Uptime as whole seconds + ms summed window by window: ticks_diff from boot wraps after 6.2 days.
    up_s, up_ms = 0, time.ticks_diff(last_close, dev.boot_ms)
    interval_s = settings["interval_s"]          # what the running window was scheduled for
    next_close = time.ticks_add(last_close, int(interval_s * 1000))
    while not dev.stopping:
        dev.beat("metering")
        now = time.ticks_ms()
        left = time.ticks_diff(next_close, now)
        if left > MIN_BURST_MS:
            # The window's last burst shrinks to end on time: readings keep their cadence.
            res = sampler.burst(min(BURST_MS, left))
            # The supply alarm watches every burst; without a limit there is nothing to compute.
            watch = dev.settings.current["supply_max_a"] is not None
            dev.uplink.currents(sampler.meter.burst_currents(res) if watch else None)
            await asyncio.sleep_ms(GAP_MS)
            continue
        if left > 0:
            await asyncio.sleep_ms(left)
            now = time.ticks_ms()
        late = time.ticks_diff(now, next_close)
        if late > dev.max_late_ms:
            dev.max_late_ms = late
            if late > LATE_WARN_MS:
                log.warn("meter", "window closed %d ms late" % late)
        # The window's energy covers all the time since the last close: none is lost in gaps.
        elapsed_ms = time.ticks_diff(now, last_close)
        readings = sampler.meter.close_window(elapsed_ms / 1000)
        last_close = dev.last_close = now
        up_ms += elapsed_ms
        up_s, up_ms = up_s + up_ms // 1000, up_ms % 1000
        seq += 1
        readings["seq"] = seq
        readings["uptime_s"] = Exact(up_s, up_ms, 3)
        readings["time"] = unix_time()
        readings["interval_s"] = interval_s
        dev.readings = readings
        dev.uplink.wake.set()            # new readings to publish
        if dev.energy_store.due(now):
            save_energy(dev, now)
        # New settings apply from the next window on, which runs at their interval.
        if dev.settings.current is not settings:
            settings = dev.settings.current
            sampler.reconfigure(settings)
        interval_s = settings["interval_s"]
        interval_ms = int(interval_s * 1000)
        next_close = time.ticks_add(next_close, interval_ms)
        if time.ticks_diff(next_close, now) <= 0:       # fell behind (a long stall): start afresh
            next_close = time.ticks_add(now, interval_ms)


async def network_task(dev):
    while True:
        try:
            dev.net.tick()
        except Exception as e:      # a network hiccup must never stop the device
            log.error("net", "supervisor: %r" % e)
        dev.beat("network")
        await asyncio.sleep_ms(250)


async def serve_while_portal_up(dev, tag, start):
    """Keep a portal-side server up while the portal may be used (on a device: while the access point
    is), down otherwise. start() -> a server with close() and wait_closed(); a failed start is tried
    again a second later."""
    server = None
    while True:
        want = dev.hal.ap.active() or not dev.hal.portal_needs_ap
        try:
            if want and server is None:
                server = await start()
            elif not want and server is not None:
                server.close()
                await server.wait_closed()
                server = None
                log.info(tag, "stopped")
        except Exception as e:      # e.g. the address is taken: never a dead task
            log.warn(tag, "cannot serve: %r" % e)
        await asyncio.sleep_ms(1000)


async def portal_task(dev):
    """The portal's HTTP server."""
    import httpd

    host, port = dev.hal.portal_address()
    portal = Portal(dev, host, port)

    async def start():
        server = await httpd.serve(host, port, portal.handle)
        log.info("portal", "serving %s" % portal.base)
        return server

    await serve_while_portal_up(dev, "portal", start)


async def dns_task(dev):
    """The captive DNS server, up with the portal."""
    import dnsd

    host, port = dev.hal.dns_address()
    await serve_while_portal_up(dev, "dns", lambda: dnsd.serve(host, port, dev.hal.ap.ip()))


async def watchdog_task(dev):
    # Feed the hardware watchdog only while every task shows progress: a hung task resets the device.
    dev.hal.wdt_start(WATCHDOG_MS)
    while True:
        if dev.all_alive():
            dev.hal.wdt_feed()
        await asyncio.sleep_ms(1000)


async def status_task(dev):
    # A short line every 10 s on the console: what the meter sees, and the heap.
    while True:
        await asyncio.sleep_ms(10000)
        gc.collect()
        r = dev.readings
        if r:
            parts = ["L%d %.1fV %.2fA %.0fW%s" % (p["l"], p["voltage_v"], p["current_a"], p["power_w"],
                                                 " [" + ",".join(p["flags"]) + "]" if p["flags"] else "")
                     for p in r["phases"]]
            freq = "%.2f" % r["freq_hz"] if r["freq_hz"] is not None else "-"
            log.info("meter", "#%d %s Hz  %s" % (r["seq"], freq, "  ".join(parts)))
        log.info("app", "free heap %d, uplink %s, latest window close %d ms late"
                 % (gc.mem_free(), dev.uplink.state, dev.max_late_ms))


async def run(dev):
    log.info("app", "Amp Guard firmware %s on board %s, serial %s" % (VERSION, dev.board.NAME, dev.serial))
    dev.beat("metering")
    dev.beat("network")
    asyncio.create_task(network_task(dev))
    asyncio.create_task(portal_task(dev))
    asyncio.create_task(dns_task(dev))
    asyncio.create_task(watchdog_task(dev))
    asyncio.create_task(status_task(dev))
    asyncio.create_task(dev.uplink.run())
    await metering_task(dev)


def save_energy(dev, now):
    try:
        dev.energy_store.save(dev.meter.energy, now)
    except (OSError, ValueError, MemoryError) as e:
        # A full or failing flash, or a heap too fragmented for the moment, must not stop the metering:
        # the counters stay in RAM and the next window tries again.
        log.error("energy", "counters not saved: %r" % e)


def shutdown(dev):
    """Orderly shutdown (SIGTERM in the simulator, Ctrl-C on the device): nothing may be lost."""
    dev.stopping = True
    if dev.meter is not None:
        # The energy since the last window close is not in the counters yet: close a last window.
        dev.meter.close_window(time.ticks_diff(time.ticks_ms(), dev.last_close) / 1000)
        save_energy(dev, time.ticks_ms())
        log.info("energy", "counters saved")
    dev.uplink.goodbye()
    log.info("app", "orderly shutdown")


def main():
    dev = Device()
    try:
        asyncio.run(run(dev))
    except KeyboardInterrupt:
        shutdown(dev)
