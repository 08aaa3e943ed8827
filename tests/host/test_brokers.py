"""The test suite's own MQTT parts (brokers.py) do what the uplink tests rely on."""
import json
import socket
import ssl
import time

import paho.mqtt.client as paho
import pytest
from brokers import HOST, Mosquitto, SilentBroker, StallProxy, Subscriber, make_tls_files


@pytest.fixture
def broker(tmp_path):
    with Mosquitto(str(tmp_path / "broker")) as b:
        yield b


def _publish(port, topic, payload, retain=False, ca=None):
    """One message from a separate, plain paho client (not the subscriber under test)."""
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="pub-%d" % time.monotonic_ns())
    if ca:
        c.tls_set(ca_certs=ca)
    c.connect(HOST, port)
    c.loop_start()
    try:
        c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()


def test_a_paho_publish_reaches_the_subscriber(broker):
    with Subscriber(broker.host, broker.port, topics=["t/#"]) as sub:
        _publish(broker.port, "t/a", json.dumps({"x": 1}), retain=True)
        m = sub.wait_for("t/a")
        assert (m.json(), m.qos, m.retain) == ({"x": 1}, 1, False)     # live, so not flagged retained
        mark = sub.mark()
        _publish(broker.port, "t/a", b"second")
        assert sub.wait_for("t/a", after=mark).payload == b"second"
        assert [m.payload for m in sub.messages("t/a")] == [b'{"x": 1}', b"second"]
        with pytest.raises(AssertionError, match="t/a"):
            sub.wait_for("t/a", lambda m: m.payload == b"never", timeout=0.3)
        sub.clear()
        assert sub.messages() == []
    with Subscriber(broker.host, broker.port, topics=["t/a"]) as late:
        assert late.wait_for("t/a").retain                              # kept by the broker
    assert "t/a" in broker.log()


def test_a_restart_on_the_same_port_and_the_subscriber_comes_back(broker):
    with Subscriber(broker.host, broker.port) as sub:
        port, sessions = broker.port, sub.sessions
        broker.restart()
        assert broker.running and broker.port == port
        sub.wait_subscribed(sessions + 1, timeout=5)
        t0 = time.monotonic()
        _publish(broker.port, "after/restart", b"1")
        assert sub.wait_for("after/restart", after=t0, timeout=3).payload == b"1"
        broker.kill()
        assert not broker.running
        broker.start()
        sub.wait_subscribed(sessions + 2, timeout=5)
        sub.publish("after/kill", b"2")
        sub.wait_for("after/kill", timeout=3)


def test_tls_right_ca_connects_and_a_wrong_ca_is_refused(tmp_path):
    tls = make_tls_files(str(tmp_path / "pki"))
    with Mosquitto(str(tmp_path / "broker"), tls=tls) as broker:
        # by name, as the device connects: the certificate must name localhost
        with Subscriber("localhost", broker.port, topics=["tls/#"], ca=tls.ca) as sub:
            _publish(broker.port, "tls/x", b"secret", ca=tls["ca"])
            assert sub.wait_for("tls/x", timeout=3).payload == b"secret"
        bad = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="wrong-ca")
        bad.tls_set(ca_certs=tls.wrong_ca)
        with pytest.raises(ssl.SSLCertVerificationError):
            bad.connect(HOST, broker.port)
        bad.disconnect()


def test_the_silent_broker_accepts_but_never_answers():
    with SilentBroker() as silent, socket.create_connection((HOST, silent.port), 2) as s:
        s.sendall(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")    # CONNECT, empty client id
        s.settimeout(1)
        with pytest.raises(TimeoutError):
            s.recv(1)
        assert silent.accepted == 1
        silent.close()
        s.settimeout(2)
        try:
            assert s.recv(1) == b"", "close() must end the connections it held"
        except ConnectionResetError:
            pass                        # closed with our CONNECT unread: the kernel resets instead


def test_the_stall_proxy_forwards_and_black_holes(broker):
    with StallProxy(broker.port) as proxy, \
            Subscriber(broker.host, broker.port, topics=["p/#"]) as direct, \
            Subscriber(HOST, proxy.port, topics=["p/#"]) as via:
        via.publish("p/1", b"round trip")                               # PUBACK came back through it
        direct.wait_for("p/1", timeout=3)
        via.wait_for("p/1", timeout=3)
        proxy.stall()
        mark, sessions = direct.mark(), via.sessions
        via.publish("p/2", b"lost", qos=0)                              # QoS 0: sent, no answer awaited
        with pytest.raises(AssertionError):
            direct.wait_for("p/2", after=mark, timeout=1)
        assert via.client.is_connected()                                # open, as a half-open link is
        proxy.resume()
        via.wait_subscribed(sessions + 1, timeout=5)                    # paho reconnected through it
        via.publish("p/3", b"again")
        direct.wait_for("p/3", timeout=3)
        assert proxy.connections == 2
