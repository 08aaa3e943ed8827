# The simulated twin of firmware/hal_esp32.py (contract: docs/design.md). Host only: runs on the
# MicroPython unix port inside `tools/sim`, configured by the AMPGUARD_* environment variables.
import gc
import os
import socket
import sys
import time

import micropython
from scenario import Scenario
from sim_adc import SimAdc

RESET_EXIT_CODE = 75
AP_IP = "192.168.251.1"
UNIX_2000_MS = 946684800000     # the RTC's time after power-on: 2000-01-01
FLASH_KB = 2048                 # the vfs partition of a 4 MB ESP32_GENERIC
FLASH_BLOCK = 4096
# The OTA twin (docs/design.md, "Updates: frozen images"): the app partitions of ESP32_GENERIC's OTA variant
# (partitions-4MiB-ota.csv: ota_0 and ota_1, 1.5 MB each) and its otadata, as files of the state folder
# beside the simulated filesystem, not in it. tools/sim is the bootloader that reads otadata.
OTA_SIZE = 0x180000
OTA_LABELS = ("ota_0", "ota_1")
OTADATA = "otadata.json"
OTA_FILES = ("ota_0.bin", "ota_1.bin", OTADATA)


def _blocks_used(folder, top=True):
    """Bytes the files under `folder` take in whole flash blocks (a file takes at least one); the OTA
    twin's partition files are no part of the filesystem."""
    used = 0
    for entry in os.ilistdir(folder):
        if top and entry[0] in OTA_FILES:
            continue
        path = folder + "/" + entry[0]
        if entry[1] == 0x4000:
            used += FLASH_BLOCK + _blocks_used(path, False)
        else:
            used += (os.stat(path)[6] + FLASH_BLOCK - 1) // FLASH_BLOCK * FLASH_BLOCK or FLASH_BLOCK
    return used


def _env(name, default=None):
    v = os.getenv(name)
    return v if v else default


def _addr(text, default):
    host, _, port = (text or default).rpartition(":")
    return host, int(port)


def _now_us():
    # A continuous microsecond axis for the simulated world (does not wrap like ticks_us).
    return time.time_ns() // 1000


CHUNK_SETS = 256


class StopRequest:
    """tools/sim asks for an orderly shutdown by writing to the device's stdin (AMPGUARD_STOP_ON_STDIN=1),
    not by a signal: a SIGINT that lands inside a garbage collection can leave the unix port's heap
    locked (seen with collections every few KB, see docs/reliability.md), and the shutdown must then
    allocate to save the energy. Seen at the next burst, it raises KeyboardInterrupt there, in the
    metering task, from where it reaches app.main as a Ctrl-C would."""

    def __init__(self):
        self._poll = None
        if _env("AMPGUARD_STOP_ON_STDIN") == "1":
            import select

            self._poll = select.poll()
            self._poll.register(0, select.POLLIN)

    def check(self):
        if self._poll is not None:
            for _ in self._poll.ipoll(0):
                self._poll = None            # once: the shutdown itself may burst again
                raise KeyboardInterrupt


_STOP = StopRequest()


class Adc:
    """Reads the simulated front end with the ESP32's timing: a burst blocks for its real duration."""

    def __init__(self, scenario, sim):
        self._scenario = scenario
        self._sim = sim
        self.channels = sim.channels
        self.read_us = sim.read_us

    def read_burst(self, buf, nsets):
        """Fill buf with nsets interleaved sample sets; returns the burst's duration in us."""
        _STOP.check()
        t0 = _now_us()
        self._scenario.poll()
        while self._scenario.data.get("fault", {}).get("adc_hang"):
            # Fault injection: a driver that never returns, for the watchdog to catch.
            time.sleep_ms(100)
        nch = len(self.channels)
        set_us = nch * self.read_us
        done = 0
        # In chunks of real time, each from the world as it is then: a change on disk shows up in the
        # samples within a chunk (~35 ms), as a physical change would, not at the next burst.
        while done < nsets:
            n = min(CHUNK_SETS, nsets - done)
            if done:
                self._scenario.poll()
            self._sim.fill(memoryview(buf)[done * nch:], n, t0 + done * set_us)
            done += n
            wait = t0 + done * set_us - _now_us()
            if wait > 0:
                time.sleep_us(wait)
        return nsets * set_us


class WifiStation:
    """Join semantics of contract §6: only a listed SSID with its password joins; dhcp false gives no IP."""

    def __init__(self, scenario):
        self._scenario = scenario
        self._active = False
        self._target = None
        self._password = None
        self._since = 0
        self._state = "idle"

    def _wifi(self):
        self._scenario.poll()
        return self._scenario.data["wifi"]

    def _network(self, ssid):
        for n in self._wifi()["networks"]:
            if n.get("ssid") == ssid:
                return n
        return None

    def active(self, on=None):
        if on is not None:
            self._active = bool(on)
            if not on:
                self.disconnect()
        return self._active

    def scan(self):
        if not self._active:
            raise OSError("STA interface not active")
        if self._target is not None and self.status() == "connecting":
            # As the ESP32 (ESP-IDF): a scan while the station is joining finds nothing, without an error.
            return []
        out = []
        for n in self._wifi()["networks"]:
            out.append((n["ssid"], int(n.get("rssi", -60)), bool(n.get("password")),
                        int(n.get("channel", 1))))
        return out

    def connect(self, ssid, password):
        if not self._active:
            raise OSError("STA interface not active")
        self._target = ssid
        self._password = password or ""
        self._since = time.ticks_ms()
        self._state = "connecting"

    def disconnect(self):
        self._target = None
        self._password = None
        self._state = "idle"

    def status(self):
        if self._target is None:
            return "idle"
        wifi = self._wifi()
        net = self._network(self._target)
        elapsed = time.ticks_diff(time.ticks_ms(), self._since)
        if self._state == "got_ip":
            # A joined network that vanishes or changes its password drops the station.
            if net is None or (net.get("password") or "") != self._password:
                self._state = "no_ap_found"
                self._since = time.ticks_ms()
            return self._state
        if elapsed < int(float(wifi.get("join_s", 1.5)) * 1000):
            return "connecting"
        if net is None:
            self._state = "no_ap_found"
        elif (net.get("password") or "") != self._password:
            self._state = "wrong_password"
        elif not wifi.get("dhcp", True):
            # Associated, but no lease arrives; the ESP32 reports this only by never getting an IP.
            dhcp_ms = int(float(wifi.get("dhcp_timeout_s", 5.0)) * 1000)
            self._state = "connecting" if elapsed < dhcp_ms else "no_ip"
        else:
            self._state = "got_ip"
        return self._state

    def ip(self):
        if self.status() != "got_ip":
            return None
        return "192.168.1.%d" % (50 + sum(self._target.encode()) % 150)

    def rssi(self):
        net = self._network(self._target) if self._target else None
        return int(net.get("rssi", -60)) if net and self._state == "got_ip" else None


class AccessPoint:
    def __init__(self):
        self._essid = None

    def start(self, essid, password):
        # The simulator has no radio: the portal and DNS listen on --http / --dns instead.
        self._essid = essid
        print("hal_sim: access point '%s' up (WPA2, PIN), %s/24" % (essid, AP_IP))

    def stop(self):
        if self._essid:
            print("hal_sim: access point '%s' down" % self._essid)
        self._essid = None

    def active(self):
        return self._essid is not None

    def ip(self):
        return AP_IP


class Lan:
    def __init__(self, scenario):
        self._scenario = scenario
        self._active = False

    def _lan(self):
        self._scenario.poll()
        return self._scenario.data["lan"]

    def active(self, on=None):
        if on is not None:
            self._active = bool(on)
        return self._active

    def link(self):
        return bool(self._lan().get("link"))

    def ip(self):
        lan = self._lan()
        if self._active and lan.get("link") and lan.get("dhcp", True):
            return lan.get("ip", "192.168.0.77")
        return None


class Watchdog:
    """Fed over UDP to the launcher, which restarts the device when feeding stops (like a reset)."""

    def __init__(self, port):
        self._addr = socket.getaddrinfo("127.0.0.1", port)[0][-1] if port else None
        self._sock = None
        self._last = None

    def _send(self, msg):
        if self._addr is None:
            return
        if self._sock is None:
            # The watchdog is no socket on a device: outside the device's socket budget (lwip/socket.py)
            new = getattr(socket, "outside_budget", socket.socket)
            self._sock = new(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.sendto(msg, self._addr)
        except OSError:
            pass

    def start(self, timeout_ms):
        self._send(b"start %d" % timeout_ms)

    def feed(self):
        now = time.ticks_ms()
        if self._last is None or time.ticks_diff(now, self._last) >= 200:
            self._last = now
            self._send(b"feed")


class HeapProbe:
    """Measurement for make faults/soak (AMPGUARD_HEAP_PROBE_MS): every so often a collection, then the
    heap's figures on the console: micropython.mem_info()'s GC lines (total, used, free, and 'max free
    sz', the largest free block, in blocks of the size the marker line gives). Run from the firmware's
    watchdog task, a moment when every other task waits at an await, as in its own status line."""

    BLOCK = 32 if sys.maxsize > 0x7FFFFFFF else 16       # MicroPython's GC block: 4 machine words

    def __init__(self, every_ms, block_map=False):
        self.every_ms = every_ms
        self.block_map = block_map      # AMPGUARD_HEAP_MAP=1: also the heap's block map (what sits where)
        self.last = time.ticks_ms()

    def poll(self):
        now = time.ticks_ms()
        if time.ticks_diff(now, self.last) >= self.every_ms:
            self.last = now
            gc.collect()
            print("hal_sim: heap probe, blocks of %d bytes" % self.BLOCK)
            if self.block_map:
                micropython.mem_info(1)
            else:
                micropython.mem_info()


class OtaPartition:
    """An app partition of the twin, with esp32.Partition's block semantics (block size 4096): writeblocks
    erases the sectors it covers, then writes (a length that is not whole sectors fails, as
    esp_partition_erase_range does); never-written bytes read as erased flash, 0xFF."""

    def __init__(self, flash_dir, label):
        self.label = label
        self.path = flash_dir + "/" + label + ".bin"

    def writeblocks(self, block, buf):
        start = block * FLASH_BLOCK
        if len(buf) % FLASH_BLOCK or start < 0 or start + len(buf) > OTA_SIZE:
            raise OSError(22)       # EINVAL: ESP_ERR_INVALID_SIZE / _ARG from the erase
        try:
            f = open(self.path, "r+b")
        except OSError:
            f = open(self.path, "wb")
        try:
            f.seek(0, 2)
            end = f.tell()
            if end < start:                       # the sectors between: erased
                f.write(b"\xff" * (start - end))
            f.seek(start)
            f.write(buf)
        finally:
            f.close()

    def readblocks(self, block, buf, offset=0):
        start = block * FLASH_BLOCK + offset
        if start < 0 or start + len(buf) > OTA_SIZE:
            raise OSError(22)
        n = 0
        try:
            with open(self.path, "rb") as f:
                f.seek(start)
                n = f.readinto(buf) or 0
        except OSError:
            pass
        for i in range(n, len(buf)):
            buf[i] = 0xFF


def _read_otadata(flash_dir):
    import json

    try:
        with open(flash_dir + "/" + OTADATA) as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


class Hal:
    # the simulator has no radio: its portal listens on --http all the time
    portal_needs_ap = False
    # a host has its own resolver, used when AMPGUARD_DNS_SERVER names no DNS server (blocking is fine)
    system_resolver = True
    # the ESP32's socket budget, as hal_esp32 states it
    portal_connections = 4

    def __init__(self, board):
        self.board = board
        self.flash_dir = _env("AMPGUARD_STATE", ".sim-state")
        self.scenario = Scenario(_env("AMPGUARD_SCENARIO"))
        self.wifi = WifiStation(self.scenario)
        self.ap = AccessPoint()
        self.lan = Lan(self.scenario) if board.LAN else None
        self._wdt = Watchdog(int(_env("AMPGUARD_WDT_PORT", "0")))
        self._seed = int(_env("AMPGUARD_SEED", "1"))
        self._clock_offset_ms = UNIX_2000_MS - time.time_ns() // 1000000
        self._adc_table = None
        probe_ms = int(_env("AMPGUARD_HEAP_PROBE_MS", "0"))
        self._heap_probe = HeapProbe(probe_ms, _env("AMPGUARD_HEAP_MAP") == "1") if probe_ms > 0 else None

    def adc(self, channels):
        # One table for every ADC the firmware opens (a new one replaces the old at a settings change).
        sim = SimAdc(self.board, self.scenario, tuple(channels), self._seed, self._adc_table)
        self._adc_table = sim.table
        return Adc(self.scenario, sim)

    def button_pressed(self):
        self.scenario.poll()
        return bool(self.scenario.data.get("button", {}).get("pressed"))

    def wdt_start(self, timeout_ms):
        # Tests may shorten the watchdog (AMPGUARD_WDT_MS) so a reset need not take 30 s.
        self._wdt.start(int(_env("AMPGUARD_WDT_MS", str(timeout_ms))))

    def wdt_feed(self):
        self._wdt.feed()
        if self._heap_probe is not None:
            self._heap_probe.poll()

    def reset(self):
        print("hal_sim: reset")
        sys.exit(RESET_EXIT_CODE)

    def portal_address(self):
        return _addr(_env("AMPGUARD_HTTP"), "127.0.0.1:8080")

    def dns_address(self):
        return _addr(_env("AMPGUARD_DNS"), "127.0.0.1:5353")

    def broker_override(self):
        b = _env("AMPGUARD_BROKER")
        return _addr(b, b) if b else None

    def flash_free_bytes(self):
        """The ESP32's flash filesystem is small (2 MB on a 4 MB ESP32_GENERIC, littlefs blocks of 4 KB):
        what the scenario's `flash.size_kb` leaves beside the state folder's files, each rounded up to
        whole blocks, or what the host's disk has if that is less."""
        st = os.statvfs(self.flash_dir)
        size = int(self.scenario.data.get("flash", {}).get("size_kb", FLASH_KB)) * 1024
        return max(0, min(st[0] * st[4], size - _blocks_used(self.flash_dir)))

    # -- the OTA partitions' twin (hal_esp32's ota_* methods; tools/sim boots what otadata names) --

    def ota_running(self):
        """The app partition that runs: what tools/sim booted (AMPGUARD_OTA_RUNNING), None when this
        device has no OTA partition table: the 64-bit runtime runs no image, and a scenario with
        flash.ota false is a board flashed with the build without OTA (a factory partition only)."""
        label = _env("AMPGUARD_OTA_RUNNING")
        if label not in OTA_LABELS or self.scenario.data.get("flash", {}).get("ota") is False:
            return None
        return label

    def ota_size(self):
        """Bytes of the partition an image is written to (the next update partition); 0 without one."""
        return OTA_SIZE if self.ota_running() else 0

    def ota_supported(self):
        return self.ota_size() > 0

    def _ota_next(self):
        running = self.ota_running()
        if running is None:
            raise OSError(2)        # ENOENT, as Partition(RUNNING).get_next_update() on a factory build
        return OtaPartition(self.flash_dir, OTA_LABELS[1 - OTA_LABELS.index(running)])

    def ota_open(self, size):
        if size > OTA_SIZE:
            raise OSError(28)
        return _block_writer(self._ota_next(), size)

    def ota_readinto(self, offset, buf):
        self._ota_next().readblocks(offset // FLASH_BLOCK, buf, offset % FLASH_BLOCK)

    def ota_switch(self):
        """set_boot on the written partition: esp_ota_set_boot_partition checks that it holds an app image
        (here: an executable, ELF) and writes otadata: that partition next, state new."""
        part = self._ota_next()
        head = bytearray(4)
        part.readblocks(0, head)
        if head != b"\x7fELF":
            raise OSError(8)        # ENOEXEC: ESP_ERR_OTA_VALIDATE_FAILED
        path = self.flash_dir + "/" + OTADATA
        import json

        with open(path + ".tmp", "w") as f:
            f.write(json.dumps({"boot": part.label, "state": "new", "previous": self.ota_running()}))
        os.rename(path + ".tmp", path)

    def ota_confirm(self):
        """mark_app_valid_cancel_rollback: the running image, pending verification, becomes valid. True
        when it was pending; nothing to do (False) otherwise."""
        d = _read_otadata(self.flash_dir)
        if self.ota_running() is None or d is None or d.get("boot") != self.ota_running():
            return False
        if d.get("state") not in ("new", "pending_verify"):
            return False
        import json

        d["state"] = "valid"
        path = self.flash_dir + "/" + OTADATA
        with open(path + ".tmp", "w") as f:
            f.write(json.dumps(d))
        os.rename(path + ".tmp", path)
        return True

    def ntp_override(self):
        # The simulated world's NTP server (tools/sim --ntp; tests run a real one on loopback)
        n = _env("AMPGUARD_NTP")
        return _addr(n, n) if n else None

    def unix_time(self):
        """The simulated RTC: 2000-01-01 at boot, like an ESP32 after power-on, until set_time()."""
        return (time.time_ns() // 1000000 + self._clock_offset_ms) // 1000

    def set_time(self, unix_s, us):
        self._clock_offset_ms = unix_s * 1000 + us // 1000 - time.time_ns() // 1000000

    def dns_server(self):
        # The simulated network's DNS server (tests point it at a real one on loopback); None: the
        # host's own resolver is used.
        d = _env("AMPGUARD_DNS_SERVER")
        return _addr(d, d) if d else None


def _block_writer(part, size):
    import image_ota  # loaded by the update that calls this (update.py drops it after)

    return image_ota.BlockWriter(part, size)
