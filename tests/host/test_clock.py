"""The device's wall clock (contract §3.9, issue 11 point 1) against real NTP servers on loopback:
Debian's chronyd serving this host's clock, a port that never answers, and one where chronyd starts
late. The simulated clock starts at 2000-01-01 like an ESP32's; readings' `time`, `/api/status`,
`<base>/info` and the TLS uplink depend on it."""
import json
import time
import urllib.request

from brokers import Mosquitto, Subscriber, make_tls_files
from ntpd import Chrony, Silent
from simctl import free_port
from uplink_rig import BASE, SCENARIO, Rig, api_readings

OFFLINE = dict(SCENARIO, lan={"link": False})


def _get(sim, path):
    with urllib.request.urlopen("http://%s%s" % (sim.http, path), timeout=3) as r:
        return json.loads(r.read())


def _until(what, condition, timeout, sim):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("%s not within %s s; log:\n%s" % (what, timeout, sim.log()[-3000:]))


def test_readings_time_is_set_within_10_s_of_coming_online(tmp_path):
    with Chrony() as ntp:
        rig = Rig(tmp_path, scenario=OFFLINE)
        rig.sim.args += ["--ntp", ntp.address]
        try:
            rig.start()
            before = api_readings(rig.sim)
            time.sleep(2)                                   # offline: nobody to ask
            assert before["time"] is None and api_readings(rig.sim)["time"] is None
            assert _get(rig.sim, "/api/status")["clock"] == "unset"
            online = time.monotonic()
            rig.sim.write_scenario(SCENARIO)                # the cable goes in
            r = _until("readings with a time", lambda: (lambda r: r if r["time"] else None)(
                api_readings(rig.sim)), 10, rig.sim)
            took = time.monotonic() - online
            assert took < 10, took
            assert abs(r["time"] - time.time()) <= 2, (r["time"], time.time())
            assert _get(rig.sim, "/api/status")["clock"] == "set"
            assert "clock: set from 127.0.0.1" in rig.sim.log()
            # and on MQTT: readings carry it, info says so
            m = rig.sub.wait_for(BASE + "/readings", lambda m: m.json()["time"] is not None, timeout=10)
            assert abs(m.json()["time"] - time.time()) <= 3
            rig.sub.wait_for(BASE + "/info", lambda m: m.json()["clock"] == "set", timeout=10)
            # info alone is sent again for the clock, not config (a config message is a settings echo)
            assert len(rig.sub.messages(BASE + "/config")) == 1
        finally:
            rig.close()


def test_a_silent_ntp_server_leaves_the_clock_failed_and_reported(tmp_path):
    silent = Silent()
    rig = Rig(tmp_path)
    rig.sim.args += ["--ntp", silent.address]
    try:
        rig.start()
        rig.sim.wait_for("clock: not set: NTP server %s did not answer in 2000 ms" % silent.address,
                         timeout=15)
        assert _get(rig.sim, "/api/status")["clock"] == "failed"
        info = rig.sub.wait_for(BASE + "/info", lambda m: m.json()["clock"] == "failed", timeout=10).json()
        assert info["clock"] == "failed"
        assert api_readings(rig.sim)["time"] is None
        assert all(m.json()["time"] is None for m in rig.sub.messages(BASE + "/readings"))
        # retried, with a growing wait (2 s, 4 s, ...)
        rig.sim.wait_for("next try in 4 s", timeout=15)
    finally:
        rig.close()
        silent.close()


def test_tls_connects_only_after_the_clock_is_set(tmp_path):
    tls = make_tls_files(str(tmp_path / "pki"))
    broker = Mosquitto(str(tmp_path / "tlsbroker"), tls=tls)
    broker.start()
    ntp_port = free_port(__import__("socket").SOCK_DGRAM)         # nothing answers there yet
    settings = {"mqtt": {"host": "localhost", "port": broker.port, "tls": True}}
    rig = Rig(tmp_path, broker_arg=False, settings=settings, files={"ca.pem": tls["ca"]})
    rig.sub.close()
    rig.sub = Subscriber(broker.host, broker.port, topics=["ampguard/#"], ca=tls["ca"])
    rig.sim.args += ["--ntp", "127.0.0.1:%d" % ntp_port]
    ntp = Chrony(ntp_port)
    try:
        rig.start()
        rig.sim.wait_for("TLS waits for the clock", timeout=15)
        rig.sim.wait_for("clock: not set", timeout=15)
        time.sleep(3)
        log = rig.sim.log()
        assert log.count("TLS waits for the clock") == 1, log                 # logged once
        assert "mqtt: connected" not in log and "mqtt: localhost" not in log   # not even tried
        assert not rig.sub.messages(BASE + "/status")
        st = _get(rig.sim, "/api/status")
        assert st["clock"] == "failed" and st["uplink"] == "connecting", st
        ntp.start()                                     # the NTP server comes up
        rig.sub.wait_for(BASE + "/status", lambda m: m.payload == b"online", timeout=20)
        log = rig.sim.log()
        assert log.index("clock: set from") < log.index("mqtt: connected to localhost"), log
        assert "(TLS)" in log
    finally:
        rig.close()
        ntp.stop()
        broker.stop()
