# Heap measurements inside a MicroPython process of the simulator (tools/faults.py starts it on either
# runtime of tools/sim.py: firmware frozen on esp32-like, .mpy on micropython). Host only.
#   AMPGUARD_PROBE=hardware (default): the bytes the simulated hardware holds after a collection (hal_sim,
#     its scenario and its ADC tables), which a device does not have: printed alone on the last line.
#   AMPGUARD_PROBE=table: where the heap goes. The firmware's modules imported one by one (leaves first,
#     AMPGUARD_PROBE_MODULES), the device built, then its tasks started one by one (app.py's own task
#     functions) and, once each has settled, the heap in use after a collection compared with before;
#     then what a portal connection, a GET / answer, Home Assistant discovery and TLS instead of plain
#     MQTT add. One line per figure: "heap<TAB>what<TAB>bytes<TAB>who<TAB>kind<TAB>note": who is
#     firmware, simulated hardware or runtime; kind is held (held while the meter runs: these add up),
#     part (a share of the held row above it), each (per open portal connection) or transient (made
#     and freed again, per request or message).
import gc
import os
import sys


def used():
    gc.collect()
    return gc.mem_alloc()


def row(what, nbytes, who, kind="held", note=""):
    print("heap\t%s\t%d\t%s\t%s\t%s" % (what, nbytes, who, kind, note))


def measured(what, who, make, kind="held", note=""):
    """Build something with make(), report what it holds (in use after a collection), return it."""
    before = used()
    obj = make()
    row(what, used() - before, who, kind, note)
    return obj


def _size(obj):
    if hasattr(obj, "length"):                 # an httpd.Response
        return obj.length()
    return sum(len(p) for p in obj) if isinstance(obj, list) else len(obj)


def transient(what, make, per="per request"):
    """Something made and dropped again (an answer, a message): what it holds once made, and what making
    it allocated in all (its garbage included: the collector is off meanwhile)."""
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    obj = make()
    made = gc.mem_alloc() - before
    gc.enable()
    row(what % _size(obj), used() - before, "firmware", "transient",
        "%s, freed after; %d bytes allocated while making it" % (per, made))
    return obj


def hardware():
    board = __import__(os.getenv("AMPGUARD_BOARD") or "sim")   # a board file is firmware: not counted
    lwip = os.getenv("AMPGUARD_PROBE_LWIP")
    if lwip:        # tools/sim's socket budget (lwip/socket.py) stands in for the chip's lwIP: not firmware
        sys.path.insert(0, lwip)
    before = used()
    import hal_sim

    hal = hal_sim.Hal(board)
    adc = hal.adc(("v1", "i1", "i2", "i3"))
    print(used() - before)
    return hal, adc


# -- the table ---------------------------------------------------------------------------------------
RUNTIME_MODULES = ("asyncio", "json", "struct", "random", "socket", "select", "errno", "array", "math",
                   "binascii", "hashlib", "time", "ssl", "micropython")


def _importer(name):
    return lambda: __import__(name)


def _loaded_settings(settings, flash):
    s = settings.Settings(flash)
    s.load()
    return s


def table():
    import asyncio

    base = used()
    row("interpreter at start, this probe's own code included", base, "runtime")
    for name in RUNTIME_MODULES:
        try:
            __import__(name)
        except ImportError:
            pass
    row("MicroPython's own modules (%s)" % ", ".join(RUNTIME_MODULES), used() - base, "runtime")
    total = 0
    for name in os.getenv("AMPGUARD_PROBE_MODULES").split(","):
        before = used()
        __import__(name)
        d = used() - before
        total += d
        row("import " + name, d, "firmware", "part")
    row("firmware modules (the imports above)", total, "firmware")
    board = measured("the board file", "firmware", _importer(os.getenv("AMPGUARD_BOARD") or "sim"))
    hal_sim = measured("simulated hardware modules (hal_sim, scenario, sim_adc)", "simulated hardware",
                       _importer("hal_sim"))
    import app
    import energy
    import netsup
    import settings
    import uplink

    before = used()
    dev = app.Device()
    whole = used() - before
    before = used()
    hal = hal_sim.Hal(board)                  # what the device's own simulated hardware layer holds
    hal_bytes = used() - before
    del hal
    row("app.Device(): board checked, identity, settings, energy store, network supervisor, uplink",
        whole - hal_bytes, "firmware", "held", "without its simulated hardware layer (next row)")
    row("simulated hardware layer (hal_sim.Hal, its scenario loaded)", hal_bytes, "simulated hardware")
    flash = dev.flash_dir
    keep = measured("  settings (a second Settings, loaded)", "firmware",
                    lambda: _loaded_settings(settings, flash), "part")
    keep = measured("  energy store (a second EnergyStore)", "firmware", lambda: energy.EnergyStore(flash),
                    "part")
    keep = measured("  network supervisor (a second one)", "firmware",
                    lambda: netsup.NetworkSupervisor(dev.hal, flash, dev.serial, dev.pin), "part")
    keep = measured("  uplink, not connected (a second Uplink)", "firmware", lambda: uplink.Uplink(dev),
                    "part")
    del keep
    asyncio.run(_tasks(app, dev, board))


async def _settle(ms=1500, n=3):
    """The heap in use after a collection once things have settled: the median of n looks."""
    import asyncio

    vals = []
    for _ in range(n):
        await asyncio.sleep_ms(ms // n)
        vals.append(used())
    vals.sort()
    return vals[n // 2]


async def _until(cond, what, timeout_ms=30000):
    import asyncio
    import time

    end = time.ticks_add(time.ticks_ms(), timeout_ms)
    while not cond():
        if time.ticks_diff(end, time.ticks_ms()) < 0:
            raise SystemExit("heap_probe: %s did not happen in %d ms" % (what, timeout_ms))
        await asyncio.sleep_ms(100)


async def _tasks(app, dev, board):
    import asyncio
    import json
    import socket

    import httpd
    import meter
    import portal
    import readings_json

    last = await _settle()

    async def step(what, note="", cond=None, label=None):
        """Start something, wait for cond, and report what the heap in use grew by."""
        nonlocal last
        if cond is not None:
            await _until(cond, label or what)
        now = await _settle()
        row(what, now - last, "firmware", "held", note)
        last = now

    adc = dev.hal.adc(("v1", "i1", "i2", "i3"))
    del adc
    now = await _settle()
    row("simulated ADC's tables (the Hal keeps them for every ADC the firmware opens)", now - last,
        "simulated hardware")
    last = now
    counters = dev.energy_store.load()
    m = meter.Meter(dev.board, dev.settings.current, counters=counters)
    now = await _settle()
    row("  of which a meter (meter.Meter: burst analysis, window sums, energy counters)", now - last,
        "firmware", "part")
    del m, counters
    last = await _settle()
    asyncio.create_task(app.metering_task(dev))
    await step("metering task: burst buffer, meter, ADC driver, latest readings",
               cond=lambda: dev.readings, label="the first readings window",
               note="the simulated ADC's tables are the row above")
    asyncio.create_task(app.network_task(dev))
    await step("network task (supervisor online over LAN)", cond=lambda: dev.net.network is not None,
               label="online over LAN")
    asyncio.create_task(app.watchdog_task(dev))
    asyncio.create_task(app.status_task(dev))
    await step("watchdog and status tasks")
    asyncio.create_task(app.portal_task(dev))
    await step("portal task: HTTP server listening")
    asyncio.create_task(app.dns_task(dev))
    await step("DNS task: captive DNS server")
    asyncio.create_task(dev.clock.run())
    await step("clock task, the clock set by SNTP (sntp.py loaded only while it asks)",
               cond=lambda: dev.clock.state == "set", label="the clock set")
    asyncio.create_task(dev.uplink.run())
    await step("MQTT uplink task, session up over plain TCP (info, config, discovery sent)",
               cond=lambda: dev.uplink.state == "connected" and dev.uplink.sent_seq is not None,
               label="the MQTT session")
    # Portal clients held half-way through their request: what each open connection costs.
    host, port = dev.hal.portal_address()
    addr = socket.getaddrinfo(host, port)[0][-1]
    clients = []
    for _ in range(4):
        s = socket.socket()
        s.connect(addr)
        s.send(b"GET / HTTP/1.1\r\nHost: %s:%d\r\n" % (host.encode(), port))
        clients.append(s)
    now = await _settle()
    row("portal connection, open mid-request (each, of 4)", (now - last) // 4, "firmware", "each",
        "task, streams, request so far (the probe's client socket included)")
    for s in clients:
        s.close()
    del clients
    last = await _settle()
    site = portal.Portal(dev, host, port)
    page = transient("GET / answer, the page (%d bytes)", lambda: httpd.Response(200, site.page()))
    body = transient("GET /api/readings answer (%d bytes)", site.readings)
    msg = transient("readings message (%d bytes)", lambda: readings_json.dumps(dev.readings), "per window")
    del page, body, msg

    def discovery():
        import ha_discovery

        biggest = 0
        for _, payload in ha_discovery.entities(dev.serial, dev.uplink.base(), 3, "0.0.0", board.NAME,
                                                dev.uplink.buffer()):
            biggest = max(biggest, len(payload))
        del sys.modules["ha_discovery"]
        return memoryview(dev.uplink.buffer().buf)[:biggest]    # as long as the biggest payload, no copy

    biggest = transient("Home Assistant discovery, all entities made one by one (biggest payload %d bytes)",
                        discovery, "per (re)publish")
    del biggest
    last = await _settle()
    tls = os.getenv("AMPGUARD_PROBE_TLS")
    if tls:
        host_port = tls.rpartition(":")
        change = {"mqtt": {"host": host_port[0], "port": int(host_port[2]), "tls": True}}
        seq = dev.uplink.sent_seq
        dev.uplink.config_set(json.dumps(change).encode())
        await step("MQTT session over TLS instead of plain TCP (after a config/set)",
                   note="what TLS adds in the MicroPython heap; mbedTLS's own buffers are in the C heap, "
                   "here as on the ESP32",
                   cond=lambda: (dev.uplink.state == "connected" and dev.uplink.sent_seq != seq
                                 and dev.settings.current["mqtt"]["tls"]),
                   label="the TLS session")
    row("heap in use after a collection, at the end", last, "all", "total")


if (os.getenv("AMPGUARD_PROBE") or "hardware") == "table":
    table()
else:
    hardware()
