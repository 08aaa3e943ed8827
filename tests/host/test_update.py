"""Firmware updates over MQTT (contract §3.8, issue 12) with the real parts: the simulated meter, a real
mosquitto, a real HTTPS server (Python's ssl, a test CA made here) serving releases made by
tools/release with a key made here. Every failure reason is caused by a test; after each failure the old
firmware runs on with its energy and settings."""
import json
import os
import shutil
import subprocess

import pytest
from brokers import make_tls_files
from release_server import ReleaseServer, send_update, update_state
from simctl import ROOT
from uplink_rig import BASE, Rig, api_readings, assert_on_time, online_after

from mpenv import use_firmware_on_cpython

use_firmware_on_cpython()
from version import VERSION  # noqa: E402

NEW = "0.2.0"


def _tool(*args):
    out = subprocess.run([os.path.join(ROOT, "tools", args[0])] + [str(a) for a in args[1:]], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """Keys, a test PKI and the releases the tests serve (built once)."""
    d = tmp_path_factory.mktemp("kit")
    _tool("release", "--new-key", d / "vendor.pem")
    _tool("release", "--new-key", d / "other.pem")
    tls = make_tls_files(str(d / "pki"))

    def build(name, version, key="vendor.pem", board="sim", source=None):
        args = ["release", "--key", d / key, "--version", version, "--board", board, "--arch", "x64",
                "--out", d / name]
        if source:
            args += ["--source", source]
        _tool(*args)
        return (d / name).read_bytes()

    broken = d / "broken-src"
    shutil.copytree(os.path.join(ROOT, "firmware"), broken)
    with open(broken / "app.py", "a") as f:
        f.write('\nraise RuntimeError("this release cannot start")\n')
    good = build("good.agr", NEW)
    tampered = bytearray(good)
    tampered[-10] ^= 0x01                       # one bit of the last file
    return {
        "dir": d, "tls": tls, "pub": d / "vendor.pub.json",
        "files": {
            "/good.agr": good,
            "/tampered.agr": bytes(tampered),
            "/other-key.agr": build("other.agr", NEW, key="other.pem"),
            "/other-board.agr": build("board.agr", NEW, board="esp32_devkitc"),
            "/older.agr": build("older.agr", "0.0.9"),
            "/broken.agr": build("broken.agr", "0.3.0", source=str(broken)),
            "/not-a-release.agr": b"<html>hello</html>" * 100,
        },
    }


@pytest.fixture
def server(kit):
    s = ReleaseServer(kit["tls"])
    s.files.update(kit["files"])
    yield s
    s.close()


def _rig(tmp_path, kit, key=True):
    files = {"ca.pem": kit["tls"]["ca"]}
    if key:
        files["update_key.json"] = str(kit["pub"])
    rig = Rig(tmp_path, files=files)
    return rig


def test_each_failure_reason_is_reported_and_the_old_firmware_runs_on(tmp_path, kit, server):
    rig = _rig(tmp_path, kit).start()
    try:
        online_after(rig, 0, 30)
        idle = rig.sub.wait_for(BASE + "/update", timeout=10).json()
        assert idle == {"state": "idle", "percent": 0, "version": VERSION, "reason": None}
        before = api_readings(rig.sim)
        server.behaviour["/huge.agr"] = {"length": 3 << 20}
        server.files["/huge.agr"] = b"x" * 1000
        server.behaviour["/stall.agr"] = {"stall_after": 2000, "stall_s": 30}
        server.files["/stall.agr"] = kit["files"]["/good.agr"]
        server.behaviour["/drop.agr"] = {"drop_after": 5000}
        server.files["/drop.agr"] = kit["files"]["/good.agr"]
        cases = [
            (server.url("/missing.agr"), None, "bad_url"),
            (server.url("/good.agr"), "0.5.0", "bad_url"),              # not the version asked for
            ("https://localhost:1/good.agr", None, "unreachable"),       # nothing listens
            ("https://no-such-host.invalid/good.agr", None, "unreachable"),
            (server.url("/drop.agr"), None, "unreachable"),              # the server drops mid-file
            (server.url("/huge.agr"), None, "too_big"),
            (server.url("/not-a-release.agr"), None, "bad_signature"),
            (server.url("/other-key.agr"), None, "bad_signature"),
            (server.url("/tampered.agr"), None, "bad_hash"),
            (server.url("/other-board.agr"), None, "wrong_board"),
            (server.url("/older.agr"), None, "older_version"),
            (server.url("/stall.agr"), None, "timeout"),                 # no data for 10 s
        ]
        for url, version, reason in cases:
            command = {"url": url} if version is None else {"url": url, "version": version}
            t0 = send_update(rig, command)
            r = update_state(rig, "failed", t0, timeout=40)
            assert r == {"state": "failed", "percent": 0, "version": VERSION, "reason": reason}, (url, r)
        # the device's CA no longer trusts the server: tls
        shutil.copyfile(kit["tls"]["wrong_ca"], os.path.join(rig.sim.state, "ca.pem"))
        t0 = send_update(rig, {"url": server.url("/good.agr")})
        assert update_state(rig, "failed", t0)["reason"] == "tls"
        after = api_readings(rig.sim)
        assert after["seq"] > before["seq"] and after["import_wh"] >= before["import_wh"]
        assert_on_time(rig.next_readings(3))
        info = rig.sub.wait_for(BASE + "/info", timeout=5).json()
        assert info["firmware"] == VERSION
        assert not [n for n in os.listdir(rig.sim.state) if n == "app.json"]    # never switched
    finally:
        rig.close()


def test_bad_and_second_commands_are_answered_on_update_error(tmp_path, kit, server):
    rig = _rig(tmp_path, kit).start()
    try:
        online_after(rig, 0, 30)
        t0 = send_update(rig, {"url": "http://localhost/good.agr"})
        err = rig.sub.wait_for(BASE + "/update/error", timeout=10, after=t0).json()
        assert err["field"] == "url" and "https" in err["error"], err
        t0 = send_update(rig, {"url": server.url("/good.agr"), "force": True})
        assert rig.sub.wait_for(BASE + "/update/error", timeout=10, after=t0).json()["field"] == "force"
        server.behaviour["/stall.agr"] = {"stall_after": 2000, "stall_s": 30}
        server.files["/stall.agr"] = kit["files"]["/good.agr"]
        t0 = send_update(rig, {"url": server.url("/stall.agr")})
        update_state(rig, "downloading", t0)
        t1 = send_update(rig, {"url": server.url("/good.agr")})
        err = rig.sub.wait_for(BASE + "/update/error", timeout=10, after=t1).json()
        assert err["field"] == "url" and "running" in err["error"], err
        assert update_state(rig, "failed", t0, timeout=30)["reason"] == "timeout"
    finally:
        rig.close()


def test_a_device_without_an_update_key_refuses_every_release(tmp_path, kit, server):
    rig = _rig(tmp_path, kit, key=False).start()
    try:
        online_after(rig, 0, 30)
        t0 = send_update(rig, {"url": server.url("/good.agr")})
        assert update_state(rig, "failed", t0)["reason"] == "bad_signature"
        assert server.requests == []              # refused before anything was fetched
    finally:
        rig.close()


def _energy(rig):
    r = api_readings(rig.sim)
    return r["import_wh"], r["seq"]


def test_an_update_is_installed_comes_online_and_is_done_keeping_settings_and_energy(tmp_path, kit, server):
    rig = _rig(tmp_path, kit).start()
    try:
        online_after(rig, 0, 30)
        rig.sub.publish(BASE + "/config/set", json.dumps({"supply_max_a": 40}))
        rig.sub.wait_for(BASE + "/config", lambda m: m.json()["supply_max_a"] == 40, timeout=10)
        before_wh, _ = _energy(rig)
        t0 = send_update(rig, {"url": server.url("/good.agr"), "version": NEW})
        update_state(rig, "restarting", t0, timeout=60)
        done = update_state(rig, "done", t0, timeout=60)
        assert done == {"state": "done", "percent": 100, "version": NEW, "reason": None}
        states = [m.json() for m in rig.sub.messages(BASE + "/update") if m.t > t0]
        seen = [s["state"] for s in states]
        order = ["downloading", "verifying", "installing", "restarting", "done"]
        assert [s for s in order if s in seen] == order, seen
        assert [s["state"] for s in states if s["state"] not in order] == [], states
        percents = [s["percent"] for s in states if s["state"] == "downloading"]
        assert percents == sorted(percents) and percents[0] == 0 and percents[-1] >= 90, percents
        info = rig.sub.wait_for(BASE + "/info", lambda m: m.json()["firmware"] == NEW, timeout=10).json()
        assert info["firmware"] == NEW
        config = rig.sub.wait_for(BASE + "/config", lambda m: m.t > t0, timeout=10).json()
        assert config["supply_max_a"] == 40                                  # settings kept
        after_wh, seq = _energy(rig)
        assert after_wh >= before_wh and seq >= 1                            # energy kept, never back
        log = rig.sim.log()
        assert "counters saved" in log and "restarting: update to %s" % NEW in log
        assert "firmware %s confirmed" % NEW in log
        assert_on_time(rig.next_readings(3))
        with open(os.path.join(rig.sim.state, "app.json")) as f:
            pointer = json.load(f)
        assert pointer["version"] == NEW and pointer["trial"] is None
    finally:
        rig.close()


def test_a_release_that_cannot_start_is_rolled_back_and_reported(tmp_path, kit, server):
    rig = _rig(tmp_path, kit).start()
    try:
        online_after(rig, 0, 30)
        before_wh, _ = _energy(rig)
        t0 = send_update(rig, {"url": server.url("/broken.agr")})
        update_state(rig, "restarting", t0, timeout=60)
        failed = update_state(rig, "failed", t0, timeout=90)
        assert failed == {"state": "failed", "percent": 0, "version": VERSION, "reason": "rolled_back"}
        log = rig.sim.log()
        assert log.count("this release cannot start") >= 3, log[-3000:]
        info = rig.sub.wait_for(BASE + "/info", lambda m: m.t > t0, timeout=10).json()
        assert info["firmware"] == VERSION
        after_wh, _ = _energy(rig)
        assert after_wh >= before_wh
        assert_on_time(rig.next_readings(3))
    finally:
        rig.close()


def test_a_flash_too_small_for_the_release_is_no_space_and_nothing_changes(tmp_path, kit, server):
    from uplink_rig import SCENARIO

    rig = Rig(tmp_path, scenario=dict(SCENARIO, flash={"size_kb": 100}),
              files={"ca.pem": kit["tls"]["ca"], "update_key.json": str(kit["pub"])}).start()
    try:
        online_after(rig, 0, 30)
        t0 = send_update(rig, {"url": server.url("/good.agr")})
        r = update_state(rig, "failed", t0)
        assert r["reason"] == "no_space", r
        assert not os.path.exists(os.path.join(rig.sim.state, "app.json"))
        assert_on_time(rig.next_readings(2))
    finally:
        rig.close()


def test_metering_keeps_its_cadence_while_an_update_downloads(tmp_path, kit, server):
    from uplink_rig import late_warnings, windows_on_time

    server.behaviour["/slow.agr"] = {"slow_s": 0.3}           # ~110 KB in 4 KB pieces: about 8 s
    server.files["/slow.agr"] = kit["files"]["/tampered.agr"]  # downloaded whole, then refused
    rig = _rig(tmp_path, kit).start()
    try:
        online_after(rig, 0, 30)
        t0 = send_update(rig, {"url": server.url("/slow.agr")})
        update_state(rig, "downloading", t0)
        first = api_readings(rig.sim)
        during = rig.next_readings(5)
        assert rig.sub.messages(BASE + "/update")[-1].json()["state"] == "downloading"   # still at it
        last = api_readings(rig.sim)
        assert windows_on_time(first, last), (first, last)
        assert [r["seq"] for r in during] == list(range(during[0]["seq"], during[0]["seq"] + 5))
        assert update_state(rig, "failed", t0, timeout=30)["reason"] == "bad_hash"
        assert not late_warnings(rig.sim.log()), late_warnings(rig.sim.log())
    finally:
        rig.close()


def test_make_sim_devices_trust_the_checkouts_development_key(tmp_path):
    import sys

    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import run_sim

    state = str(tmp_path / "state")
    run_sim.dev_update_key(state)
    with open(os.path.join(state, "update_key.json")) as f, open(run_sim.DEV_KEY[:-4] + ".pub.json") as g:
        assert json.load(f) == json.load(g)
    assert os.stat(run_sim.DEV_KEY).st_mode & 0o077 == 0          # the private key: the owner's only
    before = os.path.getmtime(os.path.join(state, "update_key.json"))
    run_sim.dev_update_key(state)                                  # a device that has one keeps it
    assert os.path.getmtime(os.path.join(state, "update_key.json")) == before
