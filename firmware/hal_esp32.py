# The hardware layer of a real ESP32 board (contract: docs/design.md), for MicroPython >= 1.22.
# The only firmware module that imports `machine` and `network`; never imported on the host, where
# tools/simhw/hal_sim.py is its simulated twin.
import os
import time

import adc_burst
import esp32
import log
import machine
import network

AP_IP = "192.168.251.1"
AP_NETMASK = "255.255.255.0"
JOIN_RETRIES = 3            # reconnects of one join before the ESP32 gives up and says why
NO_IP_AFTER_MS = 15000      # associated this long without a DHCP lease: "no_ip"
STALE_FAILURE_MS = 10000    # see WifiStation.connect()
PHY_POWER_UP_MS = 100       # the PHY (and the WT32-ETH01's 50 MHz oscillator) settle after power-on
READ_US_TOLERANCE = 0.5     # warn when the measured ADC read time is this far off the board's nominal
OTA_BLOCK = 4096            # esp32.Partition's block: writeblocks(n, buf) erases whole 4 KB sectors
# time.time() counts from 2000 on the ESP32 (MICROPY_EPOCH_IS_2000, every release from 1.22); the port
# adds the 30 years itself where mbedTLS asks for the time (ports/esp32/main.c platform_mbedtls_time)
EPOCH_TO_UNIX = 946684800 if time.gmtime(0)[0] == 2000 else 0

# ESP-IDF disconnect reasons that WLAN.status() reports (network.STAT_WRONG_PASSWORD = 202,
# STAT_NO_AP_FOUND = 201, ...; others only once a join has used up its retries).
_FAILURES = {
    15: "wrong_password",    # 4-way handshake timeout: the usual WPA2 answer to a wrong passphrase
    202: "wrong_password",   # auth fail (MicroPython also reports 205, connection fail, as 202)
    204: "wrong_password",   # handshake timeout
    200: "no_ap_found",      # beacon timeout
    201: "no_ap_found",
    203: "no_ap_found",      # association failed
    210: "no_ap_found",      # no AP with compatible security / within authmode / rssi threshold
    211: "no_ap_found",
    212: "no_ap_found",
}


class Adc:
    """ADC1 inputs at 11 dB (~3.1 V full scale), raw 12-bit codes."""

    def __init__(self, board, channels):
        self.channels = tuple(channels)
        adcs = []
        for ch in self.channels:
            adc = machine.ADC(machine.Pin(board.ADC_PINS[ch]))
            adc.atten(machine.ADC.ATTN_11DB)
            adc.width(machine.ADC.WIDTH_12BIT)
            adcs.append(adc)
        self._adcs = adcs                       # keep the ADC objects alive
        self._readers = [a.read for a in adcs]  # bound once: the viper loop only calls them
        # The channel skew is what one read really takes (driver + call), not the nominal value.
        self.read_us = adc_burst.time_per_read(self._readers) or board.ADC_READ_US
        if abs(self.read_us - board.ADC_READ_US) > READ_US_TOLERANCE * board.ADC_READ_US:
            log.warn("hal", "ADC read takes %d us, board says %d us" % (self.read_us, board.ADC_READ_US))

    def read_burst(self, buf, nsets):
        """Fill buf with nsets interleaved sample sets; returns the burst's duration in us."""
        return adc_burst.read_burst(buf, nsets, self._readers)


class WifiStation:
    def __init__(self):
        self._wlan = network.WLAN(network.STA_IF)
        self._since = None      # ticks_ms of the current join, None when not joining
        self._joined = False
        self._stale = None

    def active(self, on=None):
        if on is None:
            return self._wlan.active()
        if not on:
            self._since = None
        self._wlan.active(on)
        return on

    def scan(self):
        """[(ssid, rssi, secure, channel)]; blocks for the scan (about 2 s)."""
        out = []
        for ssid, _bssid, channel, rssi, security, _hidden in self._wlan.scan():
            try:
                name = ssid.decode()
            except UnicodeError:
                continue        # cannot be typed into the portal anyway
            if name:            # hidden networks answer with an empty name
                out.append((name, rssi, security != 0, channel))
        return out

    def connect(self, ssid, password):
        if self._since is not None:
            self.disconnect()
        # The ESP32 keeps the last failure reason until a new event replaces it: right after a retry
        # with corrected credentials it would still read "wrong password". Trust that same code
        # again only after STALE_FAILURE_MS (a real repeat failure is then still reported).
        raw = self._wlan.status()
        self._stale = raw if raw in _FAILURES else None
        # Few retries while joining, so a failure shows up as its reason instead of endless
        # "connecting"; status() lifts the limit once joined.
        self._wlan.config(reconnects=JOIN_RETRIES)
        self._joined = False
        self._wlan.connect(ssid, password or "")
        self._since = time.ticks_ms()

    def disconnect(self):
        self._since = None
        try:
            self._wlan.disconnect()
        except OSError:
            pass

    def status(self):
        if self._since is None:
            return "idle"
        raw = self._wlan.status()
        if raw == network.STAT_GOT_IP:
            if not self._joined:
                self._joined = True
                self._stale = None
                self._wlan.config(reconnects=-1)    # joined: rejoin by itself after an outage
            return "got_ip"
        elapsed = time.ticks_diff(time.ticks_ms(), self._since)
        failure = _FAILURES.get(raw)
        if failure and not (raw == self._stale and elapsed < STALE_FAILURE_MS):
            return failure
        # Associated but no lease shows only as "still connecting": past a while, that is what it is.
        if elapsed > NO_IP_AFTER_MS and self._associated():
            return "no_ip"
        return "connecting"

    def _associated(self):
        try:
            self._wlan.status("rssi")   # the driver has AP info only while associated
            return True
        except OSError:
            return False

    def ip(self):
        return self._wlan.ifconfig()[0] if self._wlan.isconnected() else None

    def rssi(self):
        try:
            return self._wlan.status("rssi") if self._wlan.isconnected() else None
        except OSError:
            return None


class AccessPoint:
    def __init__(self):
        self._ap = network.WLAN(network.AP_IF)

    def start(self, essid, password):
        ap = self._ap
        ap.active(True)
        ap.config(ssid=essid, key=password, security=network.AUTH_WPA2_PSK)
        # Setting the address restarts the ESP32's built-in DHCP server on the new subnet; it
        # offers the AP's own address as DNS server, where the portal's DNS answers.
        ap.ifconfig((AP_IP, AP_NETMASK, AP_IP, AP_IP))

    def stop(self):
        self._ap.active(False)

    def active(self):
        return self._ap.active()

    def ip(self):
        return AP_IP


class Lan:
    """LAN8720 on the ESP32's EMAC, configured from the board's LAN dict."""

    def __init__(self, cfg):
        clock = cfg["clock"]                                    # e.g. "GPIO17_OUT"
        clock_pin = int(clock[4:clock.index("_")])
        clock_mode = machine.Pin.IN if clock.endswith("_IN") else machine.Pin.OUT
        power = cfg["power"]
        if power is not None:
            # The EMAC needs the PHY's clock while it starts; MicroPython 1.22 only pulses this pin
            # as a PHY reset (1.23+ switches it on itself), so switch the PHY on first.
            machine.Pin(power, machine.Pin.OUT, value=1)
            time.sleep_ms(PHY_POWER_UP_MS)
        self._lan = network.LAN(mdc=machine.Pin(cfg["mdc"]), mdio=machine.Pin(cfg["mdio"]),
                                power=machine.Pin(power) if power is not None else None,
                                phy_type=network.PHY_LAN8720, phy_addr=cfg["phy_addr"],
                                ref_clk=machine.Pin(clock_pin), ref_clk_mode=clock_mode)

    def active(self, on=None):
        if on is None:
            return self._lan.active()
        try:
            self._lan.active(on)
        except OSError as e:            # PHY not answering: the device carries on with Wi-Fi
            log.error("hal", "LAN %s failed: %s" % ("start" if on else "stop", e))
            return False
        return on

    def link(self):
        return self._lan.status() in (network.ETH_CONNECTED, network.ETH_GOT_IP)

    def ip(self):
        if not self._lan.isconnected():     # active, link up and a DHCP lease
            return None
        addr = self._lan.ifconfig()[0]
        return addr if addr != "0.0.0.0" else None


class Hal:
    # the portal answers only on the access point: its address exists only while it is up
    portal_needs_ap = True
    # no DNS server from DHCP is no look-up: socket.getaddrinfo would block the event loop
    system_resolver = False
    # lwIP's 10 sockets (ESP-IDF's default, MicroPython keeps it): the portal's listener and this many
    # connections, the DNS server, MQTT and the resolver's look-up leave one spare
    portal_connections = 4

    def __init__(self, board):
        self.board = board
        self.flash_dir = "/"
        self.wifi = WifiStation()
        self.ap = AccessPoint()
        self.lan = None
        if board.LAN is not None:
            try:
                self.lan = Lan(board.LAN)
            except (OSError, ValueError) as e:  # a missing or dead PHY must not stop the meter
                log.error("hal", "LAN unavailable, Wi-Fi only: %s" % e)
        pin = board.BUTTON_PIN
        if pin is None:
            self._button = None
        elif pin >= 34:     # input-only pins have no internal pull-up: the board provides one
            self._button = machine.Pin(pin, machine.Pin.IN)
        else:
            self._button = machine.Pin(pin, machine.Pin.IN, machine.Pin.PULL_UP)
        self._wdt = None

    def adc(self, channels):
        return Adc(self.board, channels)

    def button_pressed(self):
        return self._button is not None and self._button.value() == 0

    def wdt_start(self, timeout_ms):
        # Cannot be stopped once started (tools/deploy.py lengthens it for the copy, then resets).
        self._wdt = machine.WDT(timeout=timeout_ms)

    def wdt_feed(self):
        if self._wdt is not None:
            self._wdt.feed()

    def reset(self):
        machine.reset()

    def portal_address(self):
        return AP_IP, 80    # bound to the access point's address only

    def dns_address(self):
        return AP_IP, 53

    def broker_override(self):
        return None

    def ntp_override(self):
        return None

    def flash_free_bytes(self):
        """Free space on the flash filesystem (an update's files must fit beside the running ones)."""
        st = os.statvfs(self.flash_dir)
        return st[0] * st[4]     # f_bsize * f_bavail: littlefs gives the same f_frsize

    def unix_time(self):
        """Unix seconds of the RTC (kept across a soft reset, 2000-01-01 after power-on)."""
        return time.time() + EPOCH_TO_UNIX

    def set_time(self, unix_s, us):
        # RTC.datetime() sets ESP-IDF's system time (settimeofday): mbedTLS and time.time() read it
        tm = time.gmtime(unix_s - EPOCH_TO_UNIX)
        machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6], tm[3], tm[4], tm[5], us))

    def dns_server(self):
        """(ip, 53) of the DNS server the uplink's network gave us (DHCP), or None."""
        for iface in (self.lan, self.wifi):
            if iface is not None and iface.ip():
                wlan = getattr(iface, "_lan", None) or iface._wlan
                dns = wlan.ifconfig()[3]
                if dns and dns != "0.0.0.0":
                    return dns, 53
        return None

    # -- frozen images: the OTA app partitions (esp32.Partition; ESP32_GENERIC's OTA variant) --

    def _ota_next(self):
        """The partition an image goes to: OSError (ENOENT) on a build without OTA partitions."""
        return esp32.Partition(esp32.Partition.RUNNING).get_next_update()

    def ota_size(self):
        """Bytes of the next update partition (1.5 MB on ESP32_GENERIC-OTA); 0 when the partition table
        has none (the default ESP32_GENERIC build: one factory partition)."""
        try:
            return self._ota_next().info()[3]
        except OSError:
            return 0

    def ota_supported(self):
        return self.ota_size() > 0

    def ota_running(self):
        """The running app partition's label (ota_0, ota_1, factory)."""
        return esp32.Partition(esp32.Partition.RUNNING).info()[4]

    def ota_open(self, size):
        """A writer (write(chunk), close()) of an image of `size` bytes into the next update partition."""
        part = self._ota_next()
        if size > part.info()[3]:
            raise OSError(28)
        return _block_writer(part, size)

    def ota_readinto(self, offset, buf):
        """len(buf) bytes of the written image from `offset` (the read-back for its sha256)."""
        self._ota_next().readblocks(offset // OTA_BLOCK, buf, offset % OTA_BLOCK)

    def ota_switch(self):
        """Boot the written partition next: set_boot (esp_ota_set_boot_partition checks the image and
        writes otadata). With CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE (every MicroPython ESP32 build
        since 1.21) the bootloader starts it in state PENDING_VERIFY, and rolls back to this partition at
        the next reset unless ota_confirm() was called first."""
        self._ota_next().set_boot()

    def ota_confirm(self):
        """mark_app_valid_cancel_rollback: the running image stays. A no-op for an image that is valid
        already; a build without otadata (or a blank one, after a serial flash) raises inside: False."""
        try:
            esp32.Partition.mark_app_valid_cancel_rollback()
            return True
        except OSError:
            return False


def _block_writer(part, size):
    import image_ota  # loaded by the update that calls this (update.py drops it after)

    return image_ota.BlockWriter(part, size)
