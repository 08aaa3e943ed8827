# The application: builds the device from its board description and runs its tasks on asyncio.
# The same code runs on the ESP32 and, with the simulated hardware layer, in tools/sim.
import asyncio
import gc
import time

import boardcfg
import identity
import log
from settings import Settings
from version import VERSION

WATCHDOG_MS = 30000          # hardware watchdog: reset when the tasks below stop making progress
HEARTBEAT_STALE_MS = 10000   # a task silent for this long counts as hung
BURST_MS = 200               # one sampling burst: ten 50 Hz cycles


class Device:
    """What the tasks share: board, hardware layer, identity, settings and liveness."""

    def __init__(self):
        self.board = boardcfg.load()
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
        self.heartbeats = {}
        self.stopping = False

    def beat(self, task):
        self.heartbeats[task] = time.ticks_ms()

    def all_alive(self):
        now = time.ticks_ms()
        for t in self.heartbeats.values():
            if time.ticks_diff(now, t) > HEARTBEAT_STALE_MS:
                return False
        return True


async def sampling_task(dev):
    # Placeholder until the metering engine: keeps the ADC busy in bursts like the real sampler.
    channels = ("v1", "i1", "i2", "i3")
    adc = dev.hal.adc(channels)
    nsets = BURST_MS * 1000 // (len(channels) * adc.read_us)
    import array
    buf = array.array("H", bytes(2 * nsets * len(channels)))
    dev.sets_read = 0
    while not dev.stopping:
        adc.read_burst(buf, nsets)
        dev.sets_read += nsets
        dev.beat("sampling")
        await asyncio.sleep_ms(20)


async def watchdog_task(dev):
    # Feed the hardware watchdog only while every task shows progress: a hung task resets the device.
    dev.hal.wdt_start(WATCHDOG_MS)
    while True:
        if dev.all_alive():
            dev.hal.wdt_feed()
        await asyncio.sleep_ms(1000)


async def status_task(dev):
    last = 0
    while True:
        await asyncio.sleep_ms(10000)
        gc.collect()
        sets = getattr(dev, "sets_read", 0)
        log.info("app", "sampling %d sets/s, free heap %d" % ((sets - last) // 10, gc.mem_free()))
        last = sets


async def run(dev):
    log.info("app", "Amp Guard firmware %s on board %s, serial %s" % (VERSION, dev.board.NAME, dev.serial))
    dev.beat("sampling")
    asyncio.create_task(watchdog_task(dev))
    asyncio.create_task(status_task(dev))
    await sampling_task(dev)


def shutdown(dev):
    """Orderly shutdown (SIGTERM in the simulator, Ctrl-C on the device): nothing may be lost."""
    dev.stopping = True
    log.info("app", "orderly shutdown")


def main():
    dev = Device()
    try:
        asyncio.run(run(dev))
    except KeyboardInterrupt:
        shutdown(dev)
