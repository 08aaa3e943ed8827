"""The captive portal as a phone meets it, in network namespaces made by this test.

The simulator runs in a "device" namespace with the access point's address 192.168.251.1, portal on port
80 and DNS on port 53; a "phone" namespace joined to it by a veth pair resolves
connectivitycheck.gstatic.com through that DNS and is redirected to http://192.168.251.1/. No traffic
leaves the two namespaces. Needs root and iproute2 (make test installs it); where namespaces cannot be
made the test fails and says why.
"""
import os
import subprocess
import time

import pytest
from simctl import ROOT

AP_IP = "192.168.251.1"
PHONE_IP = "192.168.251.2"
PHONE_SCRIPT = r'''
import sys, urllib.request, urllib.error
import dns.message, dns.query, dns.rdatatype
q = dns.message.make_query("connectivitycheck.gstatic.com", "A")
r = dns.query.udp(q, "%(ap)s", port=53, timeout=3)
addr = [rr.address for rrset in r.answer for rr in rrset if rrset.rdtype == dns.rdatatype.A][0]
print("resolved", addr)
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a):
        return None
req = urllib.request.Request("http://%%s/generate_204" %% addr,
                             headers={"Host": "connectivitycheck.gstatic.com"})
try:
    urllib.request.build_opener(NoRedirect).open(req, timeout=5)
    print("status 200")
except urllib.error.HTTPError as e:
    print("status", e.code, "location", e.headers.get("Location"))
''' % {"ap": AP_IP}


def sh(*args, ns=None, check=True):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


@pytest.fixture
def namespaces():
    tag = "ag%d" % os.getpid()
    dev, phone = tag + "d", tag + "p"
    made = []
    try:
        for ns in (dev, phone):
            try:
                out = sh("ip", "netns", "add", ns, check=False)
            except FileNotFoundError:
                pytest.fail("the ip command is missing: make test installs it (apt-get install iproute2)")
            if out.returncode != 0:
                pytest.fail("network namespaces cannot be made here (the test needs root and a kernel "
                            "that allows them): ip netns add: %s" % out.stderr.strip())
            made.append(ns)
        sh("ip", "link", "add", tag + "a", "type", "veth", "peer", "name", tag + "b")
        sh("ip", "link", "set", tag + "a", "netns", dev)
        sh("ip", "link", "set", tag + "b", "netns", phone)
        for ns, link, addr in ((dev, tag + "a", AP_IP), (phone, tag + "b", PHONE_IP)):
            sh("ip", "addr", "add", addr + "/24", "dev", link, ns=ns)
            sh("ip", "link", "set", link, "up", ns=ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
        yield dev, phone
    finally:
        for ns in made:
            sh("ip", "netns", "del", ns, check=False)


def test_phone_resolves_any_name_to_the_portal_and_is_redirected_to_it(tmp_path, namespaces):
    dev, phone = namespaces
    log = open(tmp_path / "sim.log", "wb")
    sim = subprocess.Popen(["ip", "netns", "exec", dev, os.path.join(ROOT, "tools", "sim"), "--state",
                            str(tmp_path / "state"), "--http", AP_IP + ":80", "--dns", AP_IP + ":53"],
                           stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline:
            text = (tmp_path / "sim.log").read_text(errors="replace")
            if "portal: serving" in text and "dns: serving" in text:
                break
            time.sleep(0.2)
        assert "portal: serving" in text and "dns: serving" in text, text
        out = sh(os.path.join(ROOT, ".venv", "bin", "python"), "-c", PHONE_SCRIPT, ns=phone)
        assert "resolved %s" % AP_IP in out.stdout, out.stdout + out.stderr
        assert "status 302 location http://%s/" % AP_IP in out.stdout, out.stdout + out.stderr
    finally:
        sim.terminate()
        sim.wait(20)
        log.close()
