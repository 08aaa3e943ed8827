"""The simulator's captive DNS through real UDP, queried by a real DNS client (dnspython)."""
import os
import socket
import time

import dns.message
import dns.query
import dns.rdatatype
import pytest
from simctl import Sim


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """One device for the module (the garbage test, last, also checks that the server lives on)."""
    s = Sim(tmp_path_factory.mktemp("dnsd"), {}).start()
    s.wait_for("dns: serving")
    yield s
    s.close()


def ask(sim, name, rdtype="A"):
    host, port = sim.dns.split(":")
    return dns.query.udp(dns.message.make_query(name, rdtype), host, port=int(port), timeout=3)


def test_every_name_resolves_to_the_portal(sim):
    for name in ("connectivitycheck.gstatic.com", "captive.apple.com", "www.msftconnecttest.com",
                 "example.org", "a.b.c.d.e.f"):
        r = ask(sim, name)
        assert r.rcode() == 0
        assert [rr.address for rrset in r.answer for rr in rrset] == ["192.168.251.1"], name


def test_other_query_types_get_an_empty_noerror_answer(sim):
    for rdtype in ("AAAA", "MX", "TXT", "HTTPS"):
        r = ask(sim, "captive.apple.com", rdtype)
        assert r.rcode() == 0 and r.answer == []


def test_garbage_is_dropped_and_the_server_lives_on(sim):
    host, port = sim.dns.split(":")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(1000):
        s.sendto(os.urandom(i % 700), (host, int(port)))
        if i % 100 == 0:
            time.sleep(0.01)
    s.close()
    time.sleep(0.5)
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < 1.0:
        assert ask(sim, "after.garbage.test").answer
        n += 1
    print("dns: %d answers in 1 s after 1000 garbage datagrams" % n)
    assert "Traceback" not in sim.log()
