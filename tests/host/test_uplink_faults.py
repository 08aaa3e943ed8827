"""The uplink when the broker fails (contract §3, issue 5): restarts, a broker that never answers, a link that
goes silent, TLS. Metering must keep its cadence throughout and the energy must neither stop nor jump."""
import time

import pytest
from brokers import Mosquitto, SilentBroker, StallProxy, Subscriber, make_tls_files
from uplink_rig import (
    BASE,
    Rig,
    assert_on_time,
    broker_outage,
    continuity_problems,
    late_warnings,
    online_after,
    watch_portal_readings,
    windows_on_time,
)


def _watch_cadence(sim, seconds):
    """Poll the portal's readings for `seconds`: every window must have closed on time meanwhile."""
    first, last = watch_portal_readings(sim, seconds)
    # one window per interval: as many windows as seconds of uptime went by
    assert windows_on_time(first, last), (first, last)
    assert last["import_wh"] > first["import_wh"]
    return first, last


@pytest.mark.slow
def test_broker_down_for_30_s_and_back(tmp_path):
    """One outage of 30 s (make faults runs five in a row: tools/faults.py, campaign `outages`)."""
    rig = Rig(tmp_path).start()
    try:
        online_after(rig, 0, 30)
        seen = broker_outage(rig, 30)
        first, last = seen["during"]
        assert windows_on_time(first, last), (first, last)           # one window per second meanwhile
        assert last["import_wh"] > first["import_wh"]
        assert seen["back"], rig.sim.log()[-3000:]                   # back-off never above 60 s
        assert_on_time(seen["after"])
        # Windows went on at one per second all along, and the energy kept counting: no gap, no
        # double count (what it counted equals the power for the time that passed).
        assert continuity_problems(seen["before"], seen["after"][0]) == []
        log = rig.sim.log()
        assert log.count("mqtt: connected to") == 2
        assert not late_warnings(log), late_warnings(log)
    finally:
        rig.close()


@pytest.mark.slow
def test_a_broker_that_accepts_tcp_but_never_answers_stalls_nothing(tmp_path):
    silent = SilentBroker()
    rig = Rig(tmp_path, broker_arg=False)
    rig.sim.args = ["--broker", "127.0.0.1:%d" % silent.port]
    try:
        rig.start()
        _watch_cadence(rig.sim, 14)                        # through a whole CONNECT timeout (10 s)
        rig.sim.wait_for("mqtt: 127.0.0.1:%d: timed out" % silent.port, timeout=10)
        assert silent.accepted >= 1
        assert not late_warnings(rig.sim.log())
    finally:
        rig.close()
        silent.close()


@pytest.mark.slow
def test_a_link_that_goes_silent_mid_session_is_found_dead_and_replaced(tmp_path):
    rig = Rig(tmp_path, broker_arg=False)
    proxy = StallProxy(rig.broker.port)
    rig.sim.args = ["--broker", "127.0.0.1:%d" % proxy.port]
    try:
        rig.start()
        online_after(rig, 0, 30)
        rig.next_readings(2)
        proxy.stall()                      # half-open: the TCP connection stays, nothing gets through
        t0 = time.monotonic()
        _watch_cadence(rig.sim, 17)        # a ping unanswered for 5 s, at most 10 s after the stall
        rig.sim.wait_for("the link is dead", timeout=5)
        proxy.resume()
        t1 = time.monotonic()
        online_after(rig, t1, 30)
        assert_on_time(rig.next_readings(3))
        assert time.monotonic() - t0 < 60
        assert not late_warnings(rig.sim.log())
    finally:
        rig.close()
        proxy.close()


def _tls_rig(tmp_path, *cas):
    """The device's ca.pem: the named PEM files one after the other (a bundle when several)."""
    tls = make_tls_files(str(tmp_path / "pki"))
    broker = Mosquitto(str(tmp_path / "tlsbroker"), tls=tls)
    broker.start()
    settings = {"mqtt": {"host": "localhost", "port": broker.port, "tls": True}}
    bundle = tmp_path / "ca-bundle.pem"
    bundle.write_bytes(b"".join(open(tls[ca], "rb").read() for ca in cas))
    rig = Rig(tmp_path, broker_arg=False, settings=settings, files={"ca.pem": str(bundle)})
    rig.sub.close()
    rig.sub = Subscriber(broker.host, broker.port, topics=["ampguard/#"], ca=tls["ca"])
    return rig, broker


def test_tls_with_the_right_ca_connects(tmp_path):
    rig, broker = _tls_rig(tmp_path, "ca")
    try:
        rig.start()
        online_after(rig, 0, 30)
        assert "(TLS)" in rig.sim.log()
        assert_on_time(rig.next_readings(3))
    finally:
        rig.close()
        broker.stop()


def test_tls_with_the_right_ca_second_in_a_bundle_connects(tmp_path):
    # A CA file with several certificates (a provider's bundle): every one is trusted, not only the
    # first (the firmware used to keep the first certificate of the PEM file).
    rig, broker = _tls_rig(tmp_path, "wrong_ca", "ca")
    try:
        rig.start()
        online_after(rig, 0, 30)
        assert "(TLS)" in rig.sim.log()
    finally:
        rig.close()
        broker.stop()


def test_tls_with_a_wrong_ca_is_refused(tmp_path):
    rig, broker = _tls_rig(tmp_path, "wrong_ca")
    try:
        rig.start()
        rig.sim.wait_for("mqtt: localhost:%d: OSError: TLS handshake failed: The certificate is not "
                         "correctly signed by the trusted CA" % broker.port, timeout=30)
        rig.sim.wait_for("next try", timeout=10, count=2)
        assert "connected to localhost" not in rig.sim.log()
        assert not rig.sub.messages(BASE + "/status")
        first, last = _watch_cadence(rig.sim, 3)
        assert not late_warnings(rig.sim.log())
    finally:
        rig.close()
        broker.stop()


def test_losing_the_network_ends_the_session_and_its_return_starts_a_new_one(tmp_path):
    from uplink_rig import SCENARIO

    rig = Rig(tmp_path).start()
    try:
        online_after(rig, 0, 30)
        t0 = time.monotonic()
        rig.sim.write_scenario(dict(SCENARIO, lan={"link": False}))     # the cable is pulled
        # The device cannot say goodbye without a network: the broker's last will says it.
        rig.sub.wait_for(BASE + "/status", lambda m: m.payload == b"offline" and m.t > t0, timeout=10)
        rig.sim.wait_for("mqtt: 127.0.0.1:%d: OSError: network lost" % rig.broker.port, timeout=5)
        _watch_cadence(rig.sim, 3)
        t1 = time.monotonic()
        rig.sim.write_scenario(SCENARIO)
        online_after(rig, t1, 15)
        assert_on_time(rig.next_readings(3))
        assert not late_warnings(rig.sim.log())
    finally:
        rig.close()
