# The hardware layer of a real ESP32 board (contract: docs/design.md). The only firmware module that
# imports `machine` and `network`; tools/simhw/hal_sim.py is its simulated twin.
import time

import machine
import micropython
import network

AP_IP = "192.168.251.1"
NO_IP_AFTER_MS = 15000   # see WifiStation.status()


@micropython.viper
def _read_sets(out: ptr16, nsets: int, readers, nch: int) -> int:
    # Tight loop: one ADC read per channel per set, no allocation (readers are bound methods
    # returning small ints). Returns the burst's duration in us.
    start = int(time.ticks_us())
    i = 0
    n = 0
    while n < nsets:
        c = 0
        while c < nch:
            out[i] = int(readers[c]())
            i += 1
            c += 1
        n += 1
    return int(time.ticks_diff(time.ticks_us(), start))


class Adc:
    def __init__(self, board, channels):
        self.channels = tuple(channels)
        self.read_us = board.ADC_READ_US
        adcs = []
        for ch in self.channels:
            adc = machine.ADC(machine.Pin(board.ADC_PINS[ch]))
            adc.atten(machine.ADC.ATTN_11DB)
            adc.width(machine.ADC.WIDTH_12BIT)
            adcs.append(adc)
        self._adcs = adcs                       # keep the objects alive
        self._readers = [a.read for a in adcs]  # raw 12-bit codes, fetched once

    def read_burst(self, buf, nsets):
        """Fill buf with nsets interleaved sample sets; returns the burst's duration in us."""
        return _read_sets(buf, nsets, self._readers, len(self._readers))


_WLAN_STATES = {}


def _wlan_states():
    # network.STAT_* differ between ports and versions: look up the ones this build has.
    if not _WLAN_STATES:
        for const_name, state in (("STAT_IDLE", "idle"), ("STAT_CONNECTING", "connecting"),
                                  ("STAT_GOT_IP", "got_ip"), ("STAT_WRONG_PASSWORD", "wrong_password"),
                                  ("STAT_HANDSHAKE_TIMEOUT", "wrong_password"),
                                  ("STAT_NO_AP_FOUND", "no_ap_found"),
                                  ("STAT_BEACON_TIMEOUT", "no_ap_found"),
                                  ("STAT_ASSOC_FAIL", "no_ap_found")):
            value = getattr(network, const_name, None)
            if value is not None:
                _WLAN_STATES[value] = state
    return _WLAN_STATES


class WifiStation:
    def __init__(self):
        self._wlan = network.WLAN(network.STA_IF)
        self._since = None

    def active(self, on=None):
        if on is None:
            return self._wlan.active()
        self._wlan.active(on)
        return on

    def scan(self):
        out = []
        for ssid, _bssid, channel, rssi, authmode, _hidden in self._wlan.scan():
            try:
                name = ssid.decode()
            except UnicodeError:
                continue
            out.append((name, rssi, authmode != 0, channel))
        return out

    def connect(self, ssid, password):
        self._wlan.connect(ssid, password or "")
        self._since = time.ticks_ms()

    def disconnect(self):
        self._since = None
        try:
            self._wlan.disconnect()
        except OSError:
            pass

    def status(self):
        state = _wlan_states().get(self._wlan.status(), "connecting")
        if state == "got_ip" and self._wlan.ifconfig()[0] == "0.0.0.0":
            state = "connecting"
        if state == "connecting" and self._since is not None:
            # The ESP32 reports a wrong password or a missing AP within seconds but shows a join
            # that got no DHCP lease only as "still connecting": past this long, that is what it is.
            if time.ticks_diff(time.ticks_ms(), self._since) > NO_IP_AFTER_MS:
                return "no_ip"
        if self._since is None and state == "connecting":
            return "idle"
        return state

    def ip(self):
        return self._wlan.ifconfig()[0] if self._wlan.isconnected() else None

    def rssi(self):
        try:
            return self._wlan.status("rssi") if self._wlan.isconnected() else None
        except (OSError, ValueError):
            return None


class AccessPoint:
    def __init__(self):
        self._ap = network.WLAN(network.AP_IF)

    def start(self, essid, password):
        ap = self._ap
        ap.active(True)
        ap.config(essid=essid, password=password, authmode=network.AUTH_WPA2_PSK)
        ap.ifconfig((AP_IP, "255.255.255.0", AP_IP, AP_IP))   # DHCP for clients is built in

    def stop(self):
        self._ap.active(False)

    def active(self):
        return self._ap.active()

    def ip(self):
        return AP_IP


class Lan:
    def __init__(self, cfg):
        clock = cfg.get("clock", "GPIO0_IN")
        pin_no = int(clock[4:].split("_")[0])
        mode = machine.Pin.OUT if clock.endswith("_OUT") else machine.Pin.IN
        power = cfg.get("power")
        self._lan = network.LAN(mdc=machine.Pin(cfg["mdc"]), mdio=machine.Pin(cfg["mdio"]),
                                power=machine.Pin(power) if power is not None else None,
                                phy_addr=cfg["phy_addr"], phy_type=network.PHY_LAN8720,
                                ref_clk=machine.Pin(pin_no), ref_clk_mode=mode)

    def active(self, on=None):
        if on is None:
            return self._lan.active()
        self._lan.active(on)
        return on

    def link(self):
        return self._lan.status() in (network.ETH_CONNECTED, network.ETH_GOT_IP)

    def ip(self):
        addr = self._lan.ifconfig()[0]
        return addr if self._lan.isconnected() and addr != "0.0.0.0" else None


class Hal:
    def __init__(self, board):
        self.board = board
        self.flash_dir = "/"
        self.wifi = WifiStation()
        self.ap = AccessPoint()
        self.lan = Lan(board.LAN) if board.LAN else None
        pin = board.BUTTON_PIN
        if pin is None:
            self._button = None
        elif pin >= 34:   # input-only pins have no internal pull-up: the board provides one
            self._button = machine.Pin(pin, machine.Pin.IN)
        else:
            self._button = machine.Pin(pin, machine.Pin.IN, machine.Pin.PULL_UP)
        self._wdt = None

    def adc(self, channels):
        return Adc(self.board, channels)

    def button_pressed(self):
        return self._button is not None and self._button.value() == 0

    def wdt_start(self, timeout_ms):
        self._wdt = machine.WDT(timeout=timeout_ms)

    def wdt_feed(self):
        if self._wdt is not None:
            self._wdt.feed()

    def reset(self):
        machine.reset()

    def portal_address(self):
        return AP_IP, 80     # only on the access point's interface

    def dns_address(self):
        return AP_IP, 53

    def broker_override(self):
        return None
