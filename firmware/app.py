# The application: builds the device from its board description and runs its tasks on asyncio.
# The same code runs on the ESP32 and, with the simulated hardware layer, in tools/sim.
import asyncio
import gc
import sys
import time
from array import array

import calibration
import identity
import log
import uptime
from clock import Clock
from energy import EnergyStore
from meter import Meter
from netsup import NetworkSupervisor
from portal import Portal
from readings_json import Exact
from settings import Settings
from update import Updater
from uplink import Uplink
from version import VERSION

WATCHDOG_MS = 30000          # hardware watchdog: reset when the tasks below stop making progress
HEARTBEAT_STALE_MS = 10000   # a task silent for this long counts as hung
BURST_MS = 160               # one sampling burst: 8 cycles at 50 Hz, 6-7 whole ones after the pre-roll
#                              (its buffer is the largest block the firmware holds: 9 KB for 4 channels)
GAP_MS = 30                  # between bursts the network runs; sampling never waits for it longer
LATE_WARN_MS = 100           # a window closing later than this is logged (the uplink must never cause it)
MIN_BURST_MS = 80            # 4 cycles: a shorter burst has too few whole cycles to be worth it
MAX_CODES = 65536            # the burst buffer's codes at most (see _codes)
GC_EVERY_BYTES = 2048        # a collection after this much allocation (see run())
NO_MEMORY_BACKOFF_MS = 1000  # a task that met a MemoryError waits this long (others free memory) and goes on


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
        self.factory = calibration.load(self.flash_dir)   # this unit's ADC gains (tools/provision)
        self.energy_store = EnergyStore(self.flash_dir)
        self.meter = None
        self.net = NetworkSupervisor(self.hal, self.flash_dir, self.serial, self.pin)
        self.heartbeats = {}
        self.stopping = False
        self.readings = None          # the latest readings message (contract §4)
        self.boot_ms = time.ticks_ms()
        self.uplink = Uplink(self)
        self.updater = Updater(self)
        self.clock = Clock(self)
        self.clock.on_change = self.uplink.clock_changed
        self.max_late_ms = 0          # the latest a readings window has closed since boot

    def restart(self, why):
        """An orderly restart (an update installed): the energy saved and `offline` said first."""
        log.info("app", "restarting: %s" % why)
        shutdown(self)
        self.hal.reset()

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


def _codes(n):
    """An array('H') of n ADC codes, allocated once at its exact size (n <= MAX_CODES): array() sizes
    itself from its initializer's len, and a range is no copy, where array("H", bytes(2 * n)) needs
    the room twice. The values mean nothing until the first burst."""
    return array("H", range(n))


class Sampler:
    """The ADC, its burst buffer and the meter, rebuilt when settings change the channel layout."""

    def __init__(self, dev, settings, counters):
        self.meter = Meter(dev.board, settings, counters=counters, factory=dev.factory)
        self.hal = dev.hal
        self.buf = None
        self._open()

    def _open(self):
        """The ADC and the burst buffer for the meter's channels. The buffer is the largest block the
        firmware holds (9.1 KB: 160 ms of reads, whatever the channel count), so it is made once and
        kept across layouts (a burst of N channels is len // N sets); it is made anew only when far too
        small (a shrunk one, or a much faster ADC), the old one going first. When the heap has no room
        the bursts get shorter (down to MIN_BURST_MS) rather than the metering stopping."""
        nch = len(self.meter.channels)
        self.adc = self.hal.adc(self.meter.channels)
        self.set_us = nch * self.adc.read_us
        sets = min(BURST_MS * 1000 // self.set_us, MAX_CODES // nch)
        if self.buf is None or len(self.buf) < sets * nch * 7 // 8:
            self.buf = None
            self.buf = self._alloc(sets, MIN_BURST_MS * 1000 // self.set_us, nch)
        self.max_sets = min(sets, len(self.buf) // nch)

    def _alloc(self, sets, least, nch):
        while True:
            try:
                return _codes(sets * nch)
            except MemoryError:
                if sets <= least:
                    raise
                sets = max(least, sets * 3 // 4)
                try:        # the log line itself may find no heap: that must not end the shrinking
                    log.error("meter", "no room for the burst buffer: bursts of %d ms"
                              % (sets * self.set_us // 1000))
                except MemoryError:
                    pass

    def reconfigure(self, settings):
        self.meter.configure(settings)
        if self.meter.channels != self.adc.channels:
            self._open()

    def burst(self, ms):
        """One burst into the meter's window."""
        if self.buf is None:         # a settings change found no room for it: try again
            self._open()
        nsets = min(self.max_sets, ms * 1000 // self.set_us)
        self.meter.add_burst(self.buf, nsets, self.adc.read_burst(self.buf, nsets))


def report(task, what, e):
    """Log an exception a task met and survived; the logging itself may find no heap for its text."""
    try:
        log.error(task, "%s: %r" % (what, e))
    except MemoryError:
        pass


def no_memory(task, e):
    report(task, "out of memory, backing off", e)


async def keep_running(task, run):
    """await run(), started again (after a back-off) whenever it ends with a MemoryError: a task the
    heap ran out on is logged, never dead."""
    while True:
        try:
            return await run()
        except MemoryError as e:
            no_memory(task, e)
        await asyncio.sleep_ms(NO_MEMORY_BACKOFF_MS)


async def start_sampler(dev, settings):
    """The Sampler for these settings, however long the heap takes to have room for it."""
    counters = dev.energy_store.load()
    while True:
        try:
            return Sampler(dev, settings, counters)
        except MemoryError as e:
            no_memory("meter", e)
        dev.beat("metering")
        await asyncio.sleep_ms(NO_MEMORY_BACKOFF_MS)


async def metering_task(dev, sampler=None):
    """Sample in bursts, close a readings window every interval_s, keep the energy counting. A
    MemoryError costs a burst or a window's readings, never the task: it backs off and goes on.
    sampler: made at boot for the current settings, or None."""
    if sampler is None:
        sampler = await start_sampler(dev, dev.settings.current)
    settings = sampler.meter.settings
    dev.meter = sampler.meter
    seq = 0
    last_close = dev.last_close = time.ticks_ms()
    # Uptime as whole seconds + ms summed window by window: ticks_diff from boot wraps after 6.2 days.
    up_s, up_ms = 0, time.ticks_diff(last_close, dev.boot_ms)
    interval_s = settings["interval_s"]          # what the running window was scheduled for
    next_close = time.ticks_add(last_close, int(interval_s * 1000))
    while not dev.stopping:
        dev.beat("metering")
        try:
            now = time.ticks_ms()
            left = time.ticks_diff(next_close, now)
            # The window's last burst shrinks so that it and the gap after it end by the close:
            # readings keep their cadence (a tail too short for a burst goes unsampled; energy counts
            # the window's whole duration all the same).
            burst_ms = min(BURST_MS, left - GAP_MS)
            if burst_ms >= MIN_BURST_MS:
                sampler.burst(burst_ms)
                # The supply alarm watches every burst; without a limit there is nothing to compute.
                limit = dev.settings.current["supply_max_a"]
                dev.uplink.currents(None if limit is None else sampler.meter.burst_currents(limit))
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
            # The window's energy covers all the time since the last close: none is lost in gaps. The
            # schedule moves on first, so a window that fails to close (MemoryError) is not counted twice.
            elapsed_ms = time.ticks_diff(now, last_close)
            last_close = dev.last_close = now
            up_ms += elapsed_ms
            up_s, up_ms = up_s + up_ms // 1000, up_ms % 1000
            closed_interval_s = interval_s
            # New settings apply from the next window on, which runs at their interval.
            interval_s = dev.settings.current["interval_s"]
            interval_ms = int(interval_s * 1000)
            next_close = time.ticks_add(next_close, interval_ms)
            if time.ticks_diff(next_close, now) <= 0:       # fell behind (a long stall): start afresh
                next_close = time.ticks_add(now, interval_ms)
            readings = sampler.meter.close_window(elapsed_ms / 1000)
            seq += 1
            readings["seq"] = seq
            readings["uptime_s"] = Exact(up_s, up_ms, 3)
            readings["time"] = dev.clock.unix_time()
            readings["interval_s"] = closed_interval_s
            dev.readings = readings
            dev.uplink.wake.set()            # new readings to publish
            if dev.energy_store.due(now):
                save_energy(dev, now)
            if dev.settings.current is not settings:
                sampler.reconfigure(dev.settings.current)
                settings = dev.settings.current
        except MemoryError as e:
            no_memory("meter", e)
            await asyncio.sleep_ms(NO_MEMORY_BACKOFF_MS)


async def network_task(dev):
    while True:
        pause = 250
        try:
            dev.net.tick()
        except MemoryError as e:
            no_memory("net", e)
            pause = NO_MEMORY_BACKOFF_MS
        except Exception as e:      # a network hiccup must never stop the device
            report("net", "supervisor", e)
        dev.beat("network")
        await asyncio.sleep_ms(pause)


async def serve_while_portal_up(dev, tag, host, port, start):
    """Keep a portal-side server on host:port up while the portal may be used (on a device: while the
    access point is), down otherwise. start() -> a server with close() and wait_closed(), and
    is_serving() when it can end by itself; a failed start, or a server that ended by itself, is
    started again a second later."""
    server = None
    while True:
        try:
            want = dev.hal.ap.active() or not dev.hal.portal_needs_ap
            if server is not None and hasattr(server, "is_serving") and not server.is_serving():
                log.warn(tag, "%s:%d stopped by itself: starting it again" % (host, port))
                server.close()
                await server.wait_closed()
                server = None
            if want and server is None:
                server = await start()
            elif not want and server is not None:
                server.close()
                await server.wait_closed()
                server = None
                log.info(tag, "stopped")
        except Exception as e:      # e.g. the address is taken, or no heap: never a dead task
            try:
                log.warn(tag, "cannot serve on %s:%d: %r" % (host, port, e))
            except MemoryError:     # no heap for the text either
                pass
        await asyncio.sleep_ms(1000)


async def portal_task(dev):
    """The portal's HTTP server."""
    import httpd

    host, port = dev.hal.portal_address()
    portal = Portal(dev, host, port)

    async def start():
        server = await httpd.serve(host, port, portal.handle, dev.hal.portal_connections)
        log.info("portal", "serving %s" % portal.base)
        return server

    await serve_while_portal_up(dev, "portal", host, port, start)


async def dns_task(dev):
    """The captive DNS server, up with the portal."""
    import dnsd

    host, port = dev.hal.dns_address()
    await serve_while_portal_up(dev, "dns", host, port,
                                lambda: dnsd.serve(host, port, dev.hal.ap.ip()))


async def watchdog_task(dev):
    # Feed the hardware watchdog only while every task shows progress: a hung task resets the device.
    dev.hal.wdt_start(WATCHDOG_MS)
    while True:
        try:
            if dev.all_alive():
                dev.hal.wdt_feed()
        except MemoryError as e:    # the next second feeds it: never a dead watchdog task
            no_memory("app", e)
        await asyncio.sleep_ms(1000)


async def status_task(dev):
    # A short line every 10 s on the console: what the meter sees, and the heap.
    while True:
        await asyncio.sleep_ms(10000)
        gc.collect()
        try:
            r = dev.readings
            if r:
                parts = ["L%d %.1fV %.2fA %.0fW%s" % (p["l"], p["voltage_v"], p["current_a"], p["power_w"],
                                                     " [" + ",".join(p["flags"]) + "]" if p["flags"] else "")
                         for p in r["phases"]]
                freq = "%.2f" % r["freq_hz"] if r["freq_hz"] is not None else "-"
                log.info("meter", "#%d %s Hz  %s" % (r["seq"], freq, "  ".join(parts)))
            log.info("app", "free heap %d, uplink %s, latest window close %d ms late"
                     % (gc.mem_free(), dev.uplink.state, dev.max_late_ms))
        except MemoryError as e:
            no_memory("app", e)


def _slots(call, *args):
    """slots.<call>(flash_dir, ...) with the module loaded for the call only: its code costs heap."""
    import slots

    try:
        return getattr(slots, call)(*args)
    finally:
        del sys.modules["slots"]


def start_probation(dev):
    """A firmware on trial (slots.py, after an update) confirms itself once it has come online: the
    uplink's first readings message after a CONNACK (its on_online hook). Without that by the deadline
    it goes back to the previous firmware itself (a crash loop is the boot loader's to catch, a hang
    the watchdog's)."""
    try:
        deadline_s = _slots("on_trial", dev.flash_dir)
        if deadline_s is None:
            deadline_s = dev.updater.image_trial()     # a new frozen image (update.py, image_ota.py)
    except Exception as e:      # an unreadable pointer: the boot loader started the factory install
        report("update", "trial check", e)
        return
    if deadline_s is None:
        dev.updater.outcome_after_boot()     # a rollback before this boot is reported
        return
    dev.updater.on_trial()
    log.warn("update", "firmware %s on trial: to come online within %d s of uptime" % (VERSION, deadline_s))
    dev.on_trial = True
    dev.uplink.on_online = lambda: came_online(dev)
    asyncio.create_task(probation_task(dev, deadline_s))


def came_online(dev):
    """MQTT connected and a readings message published: a firmware on trial has proven itself."""
    try:
        if _slots("confirm", dev.flash_dir) or dev.updater.confirm_image():     # image: hal.ota_confirm
            log.info("update", "firmware %s confirmed" % VERSION)
        dev.on_trial = False
        dev.updater.outcome_after_boot()     # done
        dev.uplink.update_report(dev.updater.report)
    except Exception as e:      # the flash refused: the next readings message tries again
        report("update", "confirm", e)
        dev.uplink.on_online = lambda: came_online(dev)


async def probation_task(dev, deadline_s):
    while dev.on_trial:
        if uptime.seconds() >= deadline_s:
            log.error("update", "firmware %s not online within %d s: back to the previous one"
                      % (VERSION, deadline_s))
            try:
                if not dev.updater.image:     # an image: the chip's bootloader goes back at the reset
                    _slots("rollback", dev.flash_dir, "rolled_back")
            except Exception as e:      # the loader rolls back after the trial boots run out
                report("update", "rollback", e)
            dev.restart("rolled back")
        await asyncio.sleep_ms(1000)


async def run(dev):
    log.info("app", "Amp Guard firmware %s on board %s, serial %s" % (VERSION, dev.board.NAME, dev.serial))
    # Collect little and often. MicroPython allocates first-fit from the lowest free block and, left
    # alone, collects only when the heap is full: garbage then sweeps the whole heap between
    # collections, and whatever lives on (a window's results, a session's objects) lands wherever the
    # sweep is, strewn over the heap. Collected every few KB, the heap fills from the bottom, what
    # lives stays low, and the top stays in one piece for the big transient blocks (a portal page).
    gc.threshold(GC_EVERY_BYTES)
    # The metering's big blocks (ADC, burst buffer) first, while the heap is still in one piece.
    try:
        sampler = Sampler(dev, dev.settings.current, dev.energy_store.load())
    except MemoryError as e:
        no_memory("meter", e)
        sampler = None                    # metering_task keeps trying
    dev.beat("metering")
    dev.beat("network")
    # Each task survives a MemoryError: in its own loop, or started again (keep_running).
    asyncio.create_task(network_task(dev))
    asyncio.create_task(keep_running("portal", lambda: portal_task(dev)))
    asyncio.create_task(keep_running("dns", lambda: dns_task(dev)))
    asyncio.create_task(watchdog_task(dev))
    asyncio.create_task(status_task(dev))
    asyncio.create_task(keep_running("mqtt", dev.uplink.run))
    asyncio.create_task(keep_running("clock", dev.clock.run))
    start_probation(dev)
    await metering_task(dev, sampler)


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
