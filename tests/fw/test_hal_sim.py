# The simulated hardware twin: Wi-Fi join semantics of contract §6, LAN link, button, scenario re-read.
import json
import time

import hal_sim
import scenario
from fwtest import raises, tmpdir

WORLD = {"wifi": {"networks": [{"ssid": "Home", "password": "secret123", "rssi": -55, "channel": 6},
                               {"ssid": "Cafe", "rssi": -80, "channel": 1}],
                  "dhcp": True, "join_s": 0.05, "dhcp_timeout_s": 0.1},
         "lan": {"link": False}}


def world(data):
    path = tmpdir() + "/scenario.json"
    with open(path, "w") as f:
        json.dump(data, f)
    return path, scenario.Scenario(path)


def wait_status(sta, timeout_ms=2000):
    start = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), start) < timeout_ms:
        st = sta.status()
        if st != "connecting":
            return st
        time.sleep_ms(10)
    return sta.status()


def test_scan_lists_the_scenario_networks():
    _, sc = world(WORLD)
    sta = hal_sim.WifiStation(sc)
    raises(OSError, sta.scan)              # like the ESP32: scanning needs an active interface
    sta.active(True)
    assert sta.scan() == [("Home", -55, True, 6), ("Cafe", -80, False, 1)]


def test_join_outcomes_follow_the_scenario():
    _, sc = world(WORLD)
    sta = hal_sim.WifiStation(sc)
    sta.active(True)
    sta.connect("Home", "secret123")
    assert sta.status() == "connecting"
    assert wait_status(sta) == "got_ip" and sta.ip() and sta.rssi() == -55
    sta.connect("Home", "wrong-password")
    assert wait_status(sta) == "wrong_password" and sta.ip() is None
    sta.connect("Nowhere", "secret123")
    assert wait_status(sta) == "no_ap_found"
    sta.connect("Cafe", "")
    assert wait_status(sta) == "got_ip"


def test_no_dhcp_means_no_ip_after_the_timeout():
    data = json.loads(json.dumps(WORLD))
    data["wifi"]["dhcp"] = False
    _, sc = world(data)
    sta = hal_sim.WifiStation(sc)
    sta.active(True)
    sta.connect("Home", "secret123")
    time.sleep_ms(80)
    assert sta.status() == "connecting"    # associated, waiting for a lease
    time.sleep_ms(100)
    assert sta.status() == "no_ip" and sta.ip() is None


def test_a_joined_network_that_vanishes_drops_the_station():
    path, sc = world(WORLD)
    sta = hal_sim.WifiStation(sc)
    sta.active(True)
    sta.connect("Home", "secret123")
    assert wait_status(sta) == "got_ip"
    data = json.loads(json.dumps(WORLD))
    data["wifi"]["networks"] = data["wifi"]["networks"][1:]
    with open(path, "w") as f:
        json.dump(data, f)
    sc.poll(force=True)
    assert sta.status() == "no_ap_found" and sta.ip() is None


def test_lan_has_an_address_only_with_link_and_when_active():
    path, sc = world(dict(WORLD, lan={"link": True}))
    lan = hal_sim.Lan(sc)
    assert lan.link() and lan.ip() is None
    lan.active(True)
    assert lan.ip()
    with open(path, "w") as f:
        json.dump(dict(WORLD, lan={"link": False}), f)
    sc.poll(force=True)
    assert not lan.link() and lan.ip() is None


def test_scenario_file_is_re_read_when_it_changes_and_a_broken_edit_keeps_the_old_world():
    path, sc = world({"mains": {"freq_hz": 50.0}})
    v = sc.version
    with open(path, "w") as f:
        json.dump({"mains": {"freq_hz": 60.0}, "phases": [{"current_a": 7.5}]}, f)
    assert sc.poll(force=True) and sc.version == v + 1
    assert sc.data["mains"]["freq_hz"] == 60.0 and sc.data["phases"][0]["current_a"] == 7.5
    with open(path, "w") as f:
        f.write('{"mains": {"freq_hz": ')       # an editor half-way through saving
    assert not sc.poll(force=True) and sc.data["mains"]["freq_hz"] == 60.0


def test_button_follows_the_scenario():
    path, sc = world(dict(WORLD, button={"pressed": True}))

    class Board:
        LAN = None
    hal = hal_sim.Hal(Board)
    hal.scenario = sc
    assert hal.button_pressed()
    with open(path, "w") as f:
        json.dump(WORLD, f)
    sc.poll(force=True)
    assert not hal.button_pressed()


def test_two_edits_of_the_same_size_within_a_second_are_both_seen():
    # stat's mtime has whole seconds on MicroPython: the world is compared by the file's bytes.
    path, sc = world({"phases": [{"current_a": 10.0}]})
    for amps in (40.0, 41.0):                       # same length, well within one second
        with open(path, "w") as f:
            json.dump({"phases": [{"current_a": amps}]}, f)
        time.sleep_ms(scenario.CHECK_EVERY_MS + 5)
        assert sc.poll(), amps
        assert sc.data["phases"][0]["current_a"] == amps
    time.sleep_ms(scenario.CHECK_EVERY_MS + 5)
    assert not sc.poll()                            # unchanged: nothing re-read
