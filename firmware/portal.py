# The captive portal's routes (contract §2) on the hardened HTTP core (httpd.py). Answers only for its own
# address: every other Host, and the phones' captive-portal probes, are sent to the portal's base URL.

import json

import diagnostics
import httpd
import netsup
import portal_page
import readings_json
from version import VERSION

PROBES = ("/generate_204", "/gen_204", "/hotspot-detect.html", "/library/test/success.html",
          "/connecttest.txt", "/ncsi.txt", "/redirect", "/canonical.html", "/success.txt")
STATE_WORDS = {"unprovisioned": "Not set up yet", "connecting": "Connecting", "connected": "Connected",
               "failed": "Not connected"}
ERROR_WORDS = {"wrong_password": "the network did not accept the password",
               "no_ap_found": "the network was not found (is it 2.4 GHz and within reach?)",
               "no_ip": "the network gave no address (DHCP)",
               "timeout": "the network did not answer in time"}
NO_READINGS = b'{"phases": null, "note": "no readings yet"}'
FIRST_READINGS_BYTES = 768   # the first /api/readings buffer: three phases without flags are ~700 bytes
READINGS_SLACK = 32          # bytes beyond the last answer's length: figures may grow by a digit or two


def _advice(phase, put):
    """A phase's "advice" (readings_json's phase_tail): the installer's sentence for each raised flag
    but derived_voltage."""
    put(b'"advice": ')
    sep = b"["
    for flag in phase["flags"]:
        if flag != "derived_voltage":
            put(sep)
            sep = b", "
            put(json.dumps(diagnostics.ADVICE[flag]).encode())
    put(b"[]" if sep == b"[" else b"]")


class Portal:
    def __init__(self, dev, host, port):
        self.dev = dev
        self.hosts = (host, "%s:%d" % (host, port)) if port == 80 else ("%s:%d" % (host, port),)
        self.base = "http://%s/" % self.hosts[0]     # no ":80" in the address phones are sent to
        self.readings_bytes = FIRST_READINGS_BYTES

    # --- the JSON API -----------------------------------------------------------------------
    def status(self):
        st = self.dev.net.status()
        st["uplink"] = self.dev.uplink_state()
        st["clock"] = self.dev.clock.state
        st["serial"] = self.dev.serial
        st["firmware"] = VERSION
        return st

    def readings(self):
        """The /api/readings body: the latest readings (the Meter's own dict, not copied: nothing runs
        while it is written) with each phase's advice, as JSON in one buffer sized by the last answer
        (a view of it on MicroPython: no str, no bytes copy)."""
        r = self.dev.readings
        if r is None:
            return NO_READINGS
        message = readings_json.Message(self.readings_bytes)
        body = readings_json.write(r, message, _advice)
        self.readings_bytes = message.n + READINGS_SLACK
        return body

    # --- requests ---------------------------------------------------------------------------
    def handle(self, req):
        self.dev.net.portal_used()
        host = req.headers.get("host", "")
        if host not in self.hosts or req.path in PROBES:
            return httpd.redirect(self.base)
        route = (req.method if req.method != "HEAD" else "GET", req.path)
        if route == ("GET", "/"):
            return httpd.Response(200, self.page())
        if route == ("GET", "/api/status"):
            return httpd.json_response(self.status())
        if route == ("GET", "/api/scan"):
            return httpd.json_response({"networks": self.dev.net.networks()})
        if route == ("GET", "/api/readings"):
            return httpd.Response(200, self.readings(), "application/json")
        if route == ("POST", "/connect"):
            return self.connect(req)
        return httpd.json_response({"error": "not found"}, 404)

    def connect(self, req):
        ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
        as_json = ctype == "application/json"
        try:
            data = httpd.parse_json_object(req.body) if as_json else httpd.parse_form(req.body)
        except httpd.HttpError as e:
            return self._refuse(as_json, "body", e.message)
        # The form posts the picked network as ssid and a hidden network's name as hidden_ssid.
        ssid = data.get("hidden_ssid") or data.get("ssid")
        password = data.get("password", "")
        try:
            self.dev.net.join(ssid, password)
        except netsup.CredentialError as e:
            return self._refuse(as_json, e.field, e.message)
        if as_json:
            return httpd.json_response({"state": "connecting", "ssid": ssid}, 202)
        return httpd.Response(200, self.page(following=True))

    def _refuse(self, as_json, field, message):
        if as_json:
            return httpd.json_response({"error": message, "field": field}, 400)
        esc = httpd.html_escape
        note = '<p class="bad"><b>%s:</b> %s</p>' % (esc(field), esc(message))
        return httpd.Response(400, self.page(note=note))

    # --- the page -----------------------------------------------------------------------------
    def page(self, following=False, note=""):
        st = self.dev.net.status()
        esc = httpd.html_escape
        refresh = '<meta http-equiv="refresh" content="3;url=/">' if following else ""
        P = portal_page
        parts = [P.HEAD_OPEN, refresh, P.HEAD_SERIAL, esc(self.dev.serial or "?"), P.HEAD_FIRMWARE,
                 esc(VERSION), P.HEAD_CLOSE]
        line = STATE_WORDS.get(st["state"], st["state"])
        if st["state"] == "connected":
            line += " (%s%s, address %s)" % ("wired network" if st["network"] == "lan" else "Wi-Fi ",
                                             "" if st["network"] == "lan" else esc(st["ssid"] or ""),
                                             esc(st["ip"] or ""))
        elif st["state"] == "connecting" and st["ssid"]:
            line += " to %s" % esc(st["ssid"])
        elif st["state"] == "failed":
            line += ": %s. Please try again." % ERROR_WORDS.get(st["error"], "")
        parts.append('<div class="card"><b>Status:</b> <span id="status">%s</span>%s</div>'
                     % (line, note))
        nets = []
        for n in self.dev.net.networks():
            name = esc(n["ssid"])
            nets.append('<div class="net"><label><input type="radio" name="ssid" value="%s"> %s%s'
                        '</label><span class="muted">%d dBm</span></div>'
                        % (name, name, "" if n["secure"] else " (open)", n["rssi"]))
        listing = "".join(nets) or '<p class="muted">No networks found.</p>'
        parts += (P.FORM_OPEN, listing, P.FORM_CLOSE, P.LIVE, P.SCRIPT_OPEN,
                  b"true" if following or st["state"] == "connecting" else b"false", P.SCRIPT_CLOSE, P.TAIL)
        # Sent part by part (httpd.Response): never one block as big as the page, and the constant
        # parts straight from flash.
        return parts
