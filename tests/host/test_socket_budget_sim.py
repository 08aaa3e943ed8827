"""A phone holding every portal connection leaves the firmware its own sockets (issue 11 point 4).

The simulator keeps the ESP32's budget of 10 lwIP sockets (tools/simhw/lwip/socket.py). A phone that
keeps opening connections and never finishes a request fills the portal's share (the hardware layer's
portal_connections, 4); the firmware's own sockets (listener, DNS, MQTT, and the resolver's and the
clock's for a moment) must still find room: the broker restarts meanwhile, and the device must connect
again and keep publishing, and its DNS keep answering. A portal allowed more connections takes the slot
MQTT needs, and this test fails.
"""
import socket
import threading
import time

import dns.message
import dns.query
import pytest
from uplink_rig import BASE, Rig, assert_on_time, online_after


class Phone:
    """A phone with many tabs open on the portal: a new connection every 50 ms, each sending a request
    that never ends (headers without their blank line), each kept open until the device drops it."""

    HELD_MAX = 24

    def __init__(self, http):
        host, port = http.split(":")
        self.addr = (host, int(port))
        self.request = b"GET / HTTP/1.1\r\nHost: %s\r\nAccept: text/html\r\n" % http.encode()
        self.held = []
        self.opened = 0
        self.most_held = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(10)
        for s in self.held:
            s.close()

    def _run(self):
        while not self._stop.is_set():
            try:
                s = socket.create_connection(self.addr, timeout=2)
                s.sendall(self.request)
                s.setblocking(False)
                self.held.append(s)
                self.opened += 1
            except OSError:
                pass
            for s in list(self.held):
                if self._dropped(s):
                    s.close()
                    self.held.remove(s)
            while len(self.held) > self.HELD_MAX:
                self.held.pop(0).close()
            self.most_held = max(self.most_held, len(self.held))
            time.sleep(0.05)

    @staticmethod
    def _dropped(s):
        try:
            while True:
                if not s.recv(4096):        # closed by the device (after a 503 or a 408, or unanswered)
                    return True
        except BlockingIOError:
            return False
        except OSError:
            return True


def dns_answers(sim):
    host, port = sim.dns.split(":")
    r = dns.query.udp(dns.message.make_query("captive.apple.com", "A"), host, port=int(port), timeout=3)
    return [rr.address for rrset in r.answer for rr in rrset]


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path).start()
    yield r
    r.close()


@pytest.mark.slow
def test_a_phone_holding_every_portal_connection_leaves_mqtt_and_dns_their_sockets(rig):
    rig.sub.wait_for(BASE + "/status", lambda m: m.payload == b"online", timeout=30)
    rig.sim.wait_for("portal: serving")
    phone = Phone(rig.sim.http).start()
    try:
        time.sleep(3)                       # the portal's connections are the phone's by now
        assert phone.opened > 20, phone.opened
        assert dns_answers(rig.sim) == ["192.168.251.1"]
        # The broker restarts: the device needs a new socket for MQTT while the phone holds the portal.
        restarted = time.monotonic()
        rig.broker.restart()
        online_after(rig, restarted, timeout=20)
        assert_on_time(rig.next_readings(5))
        assert dns_answers(rig.sim) == ["192.168.251.1"]
        assert phone.most_held >= 4, phone.most_held        # the phone did hold the portal's share
    finally:
        phone.stop()
    log = rig.sim.log()
    assert "device crashed" not in log and "Traceback" not in log, log[-3000:]
