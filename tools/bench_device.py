# Benchmark of the metering path on a real board: ADC sample sets per second through the hardware
# layer's read_burst, the engine's time per readings window on those real samples, and the free heap.
#
# On a board, after `make deploy` (it imports the deployed firmware and /board.py):
#     .venv/bin/mpremote connect /dev/ttyUSB0 run tools/bench_device.py
# On the host, with the simulated hardware layer (its read_burst sleeps for the burst's real duration,
# so the ADC rate is the simulated board's, not the host's):
#     AMPGUARD_BOARD=sim AMPGUARD_SCENARIO=tools/scenarios/default.json \
#     MICROPYPATH=firmware:boards:tools/simhw:.frozen .venv/bin/micropython tools/bench_device.py
# (`--quick` on the host: fewer and shorter bursts, for tests.)
#
# Stopping the app with Ctrl-C (which mpremote does) leaves the hardware watchdog running: this script
# takes it over and feeds it, and once it ends the board resets into the app within 30 s.
import gc
import sys
import time
from array import array


def _leave_tools_dir():
    # On the host the script's folder (tools/) heads the path, and its sim.py (the simulator launcher)
    # would shadow boards/sim.py. On a board (mpremote run) there is no such folder.
    import os

    for d in list(sys.path):
        try:
            os.stat(d + "/bench_device.py")
            os.stat(d + "/sim.py")
        except OSError:
            continue
        sys.path.remove(d)


_leave_tools_dir()

import boardcfg  # noqa: E402
from meter import Meter  # noqa: E402
from settings import DEFAULTS, Settings  # noqa: E402

BURST_MS = 160          # as firmware/app.py: one sampling burst ...
GAP_MS = 30             # ... and the pause after it
ADC_BURSTS = 8          # bursts timed for the ADC rate
WINDOWS = 3             # readings windows timed for the engine
WATCHDOG_MS = 30000


def heap(label):
    gc.collect()
    free = gc.mem_free()
    print("heap %s: %d bytes free, %d allocated" % (label, free, gc.mem_alloc()))
    return free


def main(quick=False):
    burst_ms, adc_bursts, windows = (80, 2, 1) if quick else (BURST_MS, ADC_BURSTS, WINDOWS)
    free0 = heap("at start")
    board = boardcfg.load()
    hal = __import__(board.HAL).Hal(board)
    try:
        hal.wdt_start(WATCHDOG_MS)
    except Exception as e:   # a watchdog already running that cannot be re-armed: stay short
        print("watchdog: not taken over (%r)" % (e,))
    try:
        settings = Settings(hal.flash_dir).load()
    except Exception as e:
        print("settings: using the defaults (%r)" % (e,))
        settings = DEFAULTS
    meter = Meter(board, settings)
    adc = hal.adc(meter.channels)
    nch = len(adc.channels)
    nsets = burst_ms * 1000 // (nch * adc.read_us)
    buf = array("H", bytes(2 * nsets * nch))
    interval_s = settings["interval_s"]
    bursts = max(1, -(-int(interval_s * 1000) // (burst_ms + GAP_MS)))   # per window, rounded up
    print("board %s (%s) on %s: channels %s, %d sets per %d ms burst, %d bursts per %s s window" % (
        board.NAME, board.HAL, sys.platform, ",".join(adc.channels), nsets, burst_ms, bursts,
        interval_s))
    heap("after the buffers")

    # 1. The ADC through the hardware layer.
    adc.read_burst(buf, nsets)
    hal.wdt_feed()
    reported = 0
    t0 = time.ticks_us()
    for _ in range(adc_bursts):
        reported += adc.read_burst(buf, nsets)
        hal.wdt_feed()
    wall = time.ticks_diff(time.ticks_us(), t0)
    sets = adc_bursts * nsets
    print("adc read_burst: %.0f sample sets/s (%.0f reads/s) by the wall clock, %.0f sets/s by the"
          " durations it returns" % (sets * 1e6 / wall, sets * nch * 1e6 / wall, sets * 1e6 / reported))
    print("adc read_burst: %.2f us per channel read (board ADC_READ_US %d)" % (
        reported / (sets * nch), board.ADC_READ_US))

    # 2. The engine on those samples: every burst of a window, then close_window.
    low_free = None
    best = None
    readings = None
    for _ in range(windows):
        spent = 0
        slowest_burst = 0
        for _ in range(bursts):
            duration = adc.read_burst(buf, nsets)
            hal.wdt_feed()
            t0 = time.ticks_us()
            meter.add_burst(buf, nsets, duration)
            dt = time.ticks_diff(time.ticks_us(), t0)
            spent += dt
            slowest_burst = max(slowest_burst, dt)
        t0 = time.ticks_us()
        readings = meter.close_window(interval_s)
        close = time.ticks_diff(time.ticks_us(), t0)
        spent += close
        free = gc.mem_free()
        low_free = free if low_free is None else min(low_free, free)
        if best is None or spent < best[0]:
            best = (spent, slowest_burst, close)
    spent, slowest_burst, close = best
    print("engine: %.2f ms per window (%d bursts, slowest %.2f ms; close_window %.2f ms) = %.2f%% of"
          " the window" % (spent / 1000, bursts, slowest_burst / 1000, close / 1000,
                           spent / 10 / (interval_s * 1000)))
    phases = ", ".join("L%d %.1f V %.2f A %.0f W" % (p["l"], p["voltage_v"], p["current_a"], p["power_w"])
                       for p in readings["phases"])
    print("last readings: %s Hz, %s" % (readings["freq_hz"], phases))

    # 3. Heap: what one window allocates (on the last burst's samples), and what stays free.
    gc.collect()
    gc.disable()
    try:
        a = gc.mem_alloc()
        for _ in range(bursts):
            meter.add_burst(buf, nsets, duration)
        meter.close_window(interval_s)
        allocated = gc.mem_alloc() - a
    finally:
        gc.enable()
    print("engine heap: %d bytes allocated per window (gc.mem_alloc delta)" % allocated)
    print("heap lowest free between windows: %d bytes (without gc.collect)" % low_free)
    free = heap("at end")
    print("heap used by the benchmark: %d bytes" % (free0 - free))
    hal.wdt_feed()
    if sys.platform == "esp32":
        print("note: the hardware watchdog keeps running: the board resets into the app within 30 s")


main(quick="--quick" in getattr(sys, "argv", ()))
