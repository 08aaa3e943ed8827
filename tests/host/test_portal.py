"""The captive portal of contract §2 through real sockets against tools/sim (a factory-new device)."""
import json
import os
import socket
import time
import urllib.error
import urllib.request

import pytest
from simctl import Sim

EVIL = "<script>alert(1)</script>"
PASSWORD = "secret123"
SCENARIO = {
    "wifi": {"networks": [{"ssid": "Home", "password": PASSWORD, "rssi": -55, "channel": 6},
                          {"ssid": "Home", "password": PASSWORD, "rssi": -40, "channel": 11},
                          {"ssid": EVIL, "rssi": -70, "channel": 1},
                          {"ssid": "Weak", "password": "whatever99", "rssi": -90, "channel": 3}],
             "dhcp": True, "join_s": 0.3},
    "phases": [{"current_a": 10.0}, {"current_a": 5.0, "reversed": True}, {"current_a": 0.0}]}
PROBES = ["/generate_204", "/gen_204", "/hotspot-detect.html", "/library/test/success.html",
          "/connecttest.txt", "/ncsi.txt", "/redirect", "/canonical.html", "/success.txt"]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def request(sim, path, data=None, headers=None, method=None):
    req = urllib.request.Request("http://%s%s" % (sim.http, path), data=data, headers=headers or {},
                                 method=method)
    try:
        with OPENER.open(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_json(sim, path):
    status, _, body = request(sim, path)
    assert status == 200
    return json.loads(body)


def wait_state(sim, states, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = get_json(sim, "/api/status")
        if st["state"] in states:
            return st
        time.sleep(0.2)
    raise AssertionError("state never reached %s: %s" % (states, st))


def _factory_new(path):
    s = Sim(path, SCENARIO).start()
    s.wait_for("portal: serving")
    return s


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """One factory-new device for the tests that leave it so (they check it): started once per module."""
    s = _factory_new(tmp_path_factory.mktemp("portal"))
    yield s
    s.close()


@pytest.fixture
def fresh_sim(tmp_path):
    """A factory-new device of its own, for a test that joins a network."""
    s = _factory_new(tmp_path)
    yield s
    s.close()


def test_page_shows_identity_networks_escaped_and_a_form(sim):
    status, headers, body = request(sim, "/")
    page = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "2312000042G" in page and "0.1.0" in page
    assert EVIL not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.index('value="Home"') < page.index("&lt;script&gt;") < page.index('value="Weak"')
    assert 'action="/connect"' in page and 'name="password"' in page and 'name="hidden_ssid"' in page
    assert len(body) < 20 * 1024
    # No external resources: the phone has no internet while on the access point.
    assert "http://" not in page and "https://" not in page


def test_scan_is_strongest_first_one_per_ssid(sim):
    nets = get_json(sim, "/api/scan")["networks"]
    assert [n["ssid"] for n in nets] == ["Home", EVIL, "Weak"]
    assert nets[0] == {"ssid": "Home", "rssi": -40, "secure": True, "channel": 11}
    assert nets[1]["secure"] is False


def test_probes_and_foreign_hosts_are_sent_to_the_portal(sim):
    base = "http://%s/" % sim.http
    for path in PROBES:
        status, headers, _ = request(sim, path)
        assert status == 302 and headers["Location"] == base, path
    status, headers, _ = request(sim, "/", headers={"Host": "connectivitycheck.gstatic.com"})
    assert status == 302 and headers["Location"] == base


def test_status_of_a_factory_new_device(sim):
    st = get_json(sim, "/api/status")
    assert st == {"state": "unprovisioned", "network": None, "ssid": None, "ip": None, "error": None,
                  "uplink": "disabled", "clock": "unset", "serial": "2312000042G", "firmware": "0.1.0"}


@pytest.mark.parametrize("fields,field", [
    ({"ssid": "", "password": PASSWORD}, "ssid"),
    ({"ssid": "x" * 33, "password": PASSWORD}, "ssid"),
    ({"ssid": "Home", "password": "short"}, "password"),
    ({"ssid": "Home", "password": "p" * 31}, "password"),
    ({"ssid": "Home", "password": "pässwörd12"}, "password"),
])
def test_invalid_credentials_are_refused_naming_the_field_and_nothing_is_stored(sim, fields, field):
    status, _, body = request(sim, "/connect", json.dumps(fields).encode(),
                              {"Content-Type": "application/json"})
    assert status == 400 and json.loads(body)["field"] == field
    form = "&".join("%s=%s" % (k, urllib.request.quote(v)) for k, v in fields.items()).encode()
    status, _, body = request(sim, "/connect", form,
                              {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400 and field in body.decode()
    assert get_json(sim, "/api/status")["state"] == "unprovisioned"
    assert not os.path.exists(os.path.join(sim.state, "wifi.json"))


def test_wrong_password_fails_then_the_right_one_connects_and_is_stored(fresh_sim):
    wrong = json.dumps({"ssid": "Home", "password": "wrongpass1"}).encode()
    status, _, body = request(fresh_sim, "/connect", wrong, {"Content-Type": "application/json"})
    assert status == 202
    st = wait_state(fresh_sim, ("failed",))
    assert st["error"] == "wrong_password"
    assert not os.path.exists(os.path.join(fresh_sim.state, "wifi.json"))
    status, _, body = request(fresh_sim, "/connect", ("ssid=Home&password=" + PASSWORD).encode(),
                              {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and b"/api/status" in body          # the page that follows the join
    st = wait_state(fresh_sim, ("connected",))
    assert st["network"] == "wifi" and st["ssid"] == "Home" and st["ip"]
    with open(os.path.join(fresh_sim.state, "wifi.json")) as f:
        assert json.load(f)["ssid"] == "Home"
    # No endpoint, page or log line ever shows the Wi-Fi password or the PIN.
    seen = [request(fresh_sim, p)[2].decode() for p in ("/", "/api/status", "/api/scan", "/api/readings")]
    seen.append(fresh_sim.log())
    for text in seen:
        assert PASSWORD not in text and "12345678" not in text


def test_readings_carry_each_phase_and_its_diagnostic_in_plain_words(sim):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r = get_json(sim, "/api/readings")
        if r.get("phases") and "reversed" in r["phases"][1]["flags"]:
            break
        time.sleep(0.5)
    assert [p["l"] for p in r["phases"]] == [1, 2, 3]
    assert abs(r["phases"][0]["current_a"] - 10.0) < 0.1
    assert any("reversed" in a for a in r["phases"][1]["advice"])
    assert r["phases"][0]["advice"] == []


def test_oversized_and_malformed_requests_are_refused_and_the_portal_lives(sim):
    host, port = sim.http.split(":")

    def raw(data):
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(data)
            return s.recv(200)
    assert raw(b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert raw(b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 200 + b"\r\n").startswith(b"HTTP/1.1 431")
    assert raw(b"POST /connect HTTP/1.1\r\nHost: %s\r\nContent-Length: 999999\r\n\r\n"
               % sim.http.encode()).startswith(b"HTTP/1.1 413")
    assert raw(b"GET /%zz HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert get_json(sim, "/api/status")["state"] == "unprovisioned"
