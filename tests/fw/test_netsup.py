# The network supervisor against the simulated Wi-Fi, LAN, button and access point.
import json
import os
import time

import hal_sim
import netsup
import scenario
from fwtest import TICKS_PERIOD, FakeClock, raises, tmpdir

SERIAL = "2312000042G"
PIN = "12345678"
NETS = [{"ssid": "Home", "password": "secret123", "rssi": -55, "channel": 6},
        {"ssid": "Home", "password": "secret123", "rssi": -40, "channel": 6},     # a second AP
        {"ssid": "Cafe", "rssi": -80, "channel": 1}]


class World:
    """A simulated device: scenario file, hardware twin, flash folder, supervisor."""

    def __init__(self, wifi=None, lan=None, button=False, with_lan=True):
        self.dir = tmpdir()
        self.path = self.dir + "/scenario.json"
        self.data = {"wifi": wifi or {"networks": NETS, "dhcp": True, "join_s": 0.05, "dhcp_timeout_s": 0.1},
                     "lan": lan or {"link": False}, "button": {"pressed": button}}
        self.save()

        class Board:
            LAN = {"phy": "LAN8720"} if with_lan else None
        self.hal = hal_sim.Hal(Board)
        self.hal.scenario = scenario.Scenario(self.path)
        self.hal.wifi = hal_sim.WifiStation(self.hal.scenario)
        self.hal.lan = hal_sim.Lan(self.hal.scenario) if with_lan else None
        self.sup = netsup.NetworkSupervisor(self.hal, self.dir + "/", SERIAL, PIN)

    def save(self):
        with open(self.path, "w") as f:
            json.dump(self.data, f)
        if hasattr(self, "hal"):
            self.hal.scenario.poll(force=True)

    def run(self, ms):
        end = time.ticks_add(time.ticks_ms(), ms)
        while time.ticks_diff(end, time.ticks_ms()) > 0:
            self.sup.tick()
            time.sleep_ms(10)
        return self.sup.status()

    def stored(self):
        try:
            with open(self.dir + "/wifi.json") as f:
                return json.load(f)
        except OSError:
            return None


def test_factory_new_device_is_unprovisioned_and_opens_its_access_point():
    w = World(with_lan=False)
    st = w.run(30)
    assert st["state"] == "unprovisioned" and st["network"] is None and st["error"] is None
    assert w.hal.ap.active()
    assert w.hal.ap._essid == "Amp Guard_0042G"


def test_scan_is_strongest_first_one_entry_per_ssid():
    w = World()
    nets = w.sup.networks()
    assert [n["ssid"] for n in nets] == ["Home", "Cafe"]
    assert nets[0] == {"ssid": "Home", "rssi": -40, "secure": True, "channel": 6}
    assert nets[1]["secure"] is False


def test_an_empty_scan_is_not_kept_and_no_scan_runs_during_a_join():
    w = World(with_lan=False)
    w.data["wifi"]["networks"] = []            # nothing in reach yet (the router is still booting)
    w.save()
    assert w.sup.networks() == []
    w.data["wifi"]["networks"] = NETS
    w.data["wifi"]["join_s"] = 0.3
    w.save()
    assert [n["ssid"] for n in w.sup.networks()] == ["Home", "Cafe"]    # at once, not after 20 s
    w.sup.join("Home", "secret123")
    assert w.hal.wifi.scan() == []             # the twin, as the ESP32: nothing found while joining
    assert [n["ssid"] for n in w.sup.networks()] == ["Home", "Cafe"]    # the list stays meanwhile


def test_networks_are_scanned_between_the_retries_of_a_stored_network_that_is_gone():
    # Stored credentials for a network out of reach: the supervisor says "connecting" for as long as it
    # retries, but scans between the tries, so the installer's portal lists what is in reach.
    w = World(with_lan=False)
    w.data["wifi"]["join_s"] = 0.02
    w.save()
    with open(w.dir + "/wifi.json", "w") as f:
        json.dump({"ssid": "Gone", "password": "secret123"}, f)
    w.sup = netsup.NetworkSupervisor(w.hal, w.dir + "/", SERIAL, PIN)
    for _ in range(40):
        w.run(20)
        if w.sup.status()["state"] == "connecting" and w.sup._attempt is None:
            break
    assert w.sup.status()["state"] == "connecting" and w.sup._attempt is None   # waiting to retry
    assert [n["ssid"] for n in w.sup.networks()] == ["Home", "Cafe"]


def test_a_scan_during_a_join_with_nothing_known_yet_is_not_kept():
    w = World(with_lan=False)
    w.data["wifi"]["join_s"] = 0.3
    w.save()
    w.sup.join("Home", "secret123")
    assert w.sup.networks() == []              # not scanned while joining
    assert w.run(600)["state"] == "connected"
    assert [n["ssid"] for n in w.sup.networks()] == ["Home", "Cafe"]


def test_wrong_password_fails_and_stores_nothing_then_the_right_one_connects_and_is_stored():
    w = World(with_lan=False)
    w.sup.join("Home", "wrong-pass")
    assert w.sup.status()["state"] == "connecting"
    st = w.run(300)
    assert st["state"] == "failed" and st["error"] == "wrong_password"
    assert w.stored() is None and w.hal.ap.active()      # the portal stays up to try again
    w.sup.join("Home", "secret123")
    st = w.run(300)
    assert st == {"state": "connected", "network": "wifi", "ssid": "Home", "ip": w.hal.wifi.ip(),
                  "error": None}
    assert w.stored() == {"ssid": "Home", "password": "secret123"}


def test_the_access_point_stays_up_during_a_join_from_the_portal():
    w = World()                      # a board with a LAN port, no cable
    w.run(30)
    assert w.hal.ap.active()
    w.sup.join("Home", "secret123")
    while w.sup.status()["state"] == "connecting":
        w.run(20)
        if w.sup.status()["state"] == "connecting":
            assert w.hal.ap.active()   # the installer's phone must not be dropped mid-join
    assert w.sup.status()["state"] == "connected"


def test_missing_network_and_missing_dhcp_lease_are_named():
    w = World(with_lan=False)
    w.sup.join("Nowhere", "secret123")
    assert w.run(300)["error"] == "no_ap_found"
    w.data["wifi"]["dhcp"] = False
    w.save()
    w.sup.join("Home", "secret123")
    assert w.run(400)["error"] == "no_ip"
    assert w.stored() is None


def test_a_join_that_never_ends_times_out():
    saved = netsup.JOIN_TIMEOUT_MS
    netsup.JOIN_TIMEOUT_MS = 150
    try:
        w = World(wifi={"networks": NETS, "dhcp": False, "join_s": 0.05, "dhcp_timeout_s": 60})
        w.sup.join("Home", "secret123")
        assert w.run(300)["error"] == "timeout"
    finally:
        netsup.JOIN_TIMEOUT_MS = saved


def test_stored_credentials_are_used_at_boot_and_after_a_router_outage():
    w = World(with_lan=False)
    w.sup.join("Home", "secret123")
    assert w.run(300)["state"] == "connected"
    again = netsup.NetworkSupervisor(w.hal, w.dir + "/", SERIAL, PIN)      # a reboot
    w.hal.wifi.disconnect()
    w.sup = again
    assert w.run(300)["state"] == "connected"
    nets = w.data["wifi"]["networks"]
    w.data["wifi"]["networks"] = [n for n in nets if n["ssid"] != "Home"]  # the router goes away
    w.save()
    st = w.run(200)
    assert st["state"] == "connecting" and st["network"] is None
    w.data["wifi"]["networks"] = nets                                     # and comes back
    w.save()
    assert w.run(3500)["state"] == "connected"                            # by itself, no reboot


def test_lan_wins_and_switches_wifi_off():
    w = World(lan={"link": True})
    w.sup.join("Home", "secret123")
    st = w.run(200)
    assert st["network"] == "lan" and st["state"] == "connected" and st["ssid"] is None
    assert not w.hal.wifi.active()


def test_bad_credentials_are_refused_naming_the_field_and_nothing_starts():
    w = World()
    for ssid, pw, field in (("", "secret123", "ssid"), ("x" * 33, "secret123", "ssid"),
                            ("Home", "short", "password"), ("Home", "p" * 31, "password"),
                            ("Home", "pässword1", "password"), (None, "secret123", "ssid")):
        e = raises(netsup.CredentialError, w.sup.join, ssid, pw)
        assert e.field == field
        assert pw not in str(e) or not pw
    assert w.sup.status()["state"] != "connecting" and w.stored() is None
    assert netsup.validate_credentials("Home", "") == ("Home", "")          # open network
    assert netsup.validate_credentials("Home", "p" * 30) == ("Home", "p" * 30)


def test_long_button_press_opens_the_access_point_and_it_closes_when_online_and_idle():
    saved = (netsup.LONG_PRESS_MS, netsup.AP_LINGER_MS)
    netsup.LONG_PRESS_MS, netsup.AP_LINGER_MS = 100, 200
    try:
        w = World(lan={"link": True})
        assert w.run(100)["network"] == "lan" and not w.hal.ap.active()
        w.data["button"]["pressed"] = True
        w.save()
        w.run(200)
        assert w.hal.ap.active()
        w.data["button"]["pressed"] = False
        w.save()
        w.run(350)
        assert not w.hal.ap.active()        # online and nobody used the portal
    finally:
        netsup.LONG_PRESS_MS, netsup.AP_LINGER_MS = saved


def test_a_broken_credentials_file_is_ignored():
    w = World(with_lan=False)
    with open(w.dir + "/wifi.json", "w") as f:
        f.write('{"ssid": ')
    sup = netsup.NetworkSupervisor(w.hal, w.dir + "/", SERIAL, PIN)
    assert sup.status()["state"] == "unprovisioned"
    assert os.stat(w.dir + "/wifi.json")


def test_a_device_offline_longer_than_the_grace_period_opens_its_access_point():
    saved = (netsup.OFFLINE_GRACE_MS, netsup.AP_LINGER_MS)
    netsup.OFFLINE_GRACE_MS, netsup.AP_LINGER_MS = 300, 100
    try:
        w = World(with_lan=False)
        w.sup.join("Home", "secret123")
        assert w.run(300)["state"] == "connected"
        w.run(150)
        assert not w.hal.ap.active()                  # online and the installer is done
        nets = w.data["wifi"]["networks"]
        w.data["wifi"]["networks"] = []               # the site's router dies
        w.save()
        w.run(150)
        assert not w.hal.ap.active()                  # a short outage: no access point yet
        w.run(400)
        assert w.hal.ap.active()                      # offline past the grace period
        w.data["wifi"]["networks"] = nets
        w.save()
        assert w.run(3500)["state"] == "connected"
    finally:
        netsup.OFFLINE_GRACE_MS, netsup.AP_LINGER_MS = saved


def test_a_scan_a_week_old_is_not_served_as_fresh():
    # A week after the last scan its stamp is past what ticks_diff can tell (6.2 days) and would read as
    # recent: the supervisor's ticks drop it once it is 20 s old.
    w = World(with_lan=False)
    clock = FakeClock(TICKS_PERIOD - 2500)             # ticks_ms wraps on the way
    real = netsup.time
    netsup.time = clock
    try:
        w.sup = netsup.NetworkSupervisor(w.hal, w.dir + "/", SERIAL, PIN)
        assert [n["ssid"] for n in w.sup.networks()] == ["Home", "Cafe"]
        w.data["wifi"]["networks"] = [{"ssid": "Shop", "rssi": -50, "channel": 3}]
        w.save()
        for _ in range(7 * 24):                         # a week of ticks, an hour apart
            clock.advance(3600 * 1000)
            w.sup.tick()
        assert [n["ssid"] for n in w.sup.networks()] == ["Shop"]
    finally:
        netsup.time = real
