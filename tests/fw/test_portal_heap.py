# What a portal request costs the heap (issue 10): GET /api/readings is written straight from the
# Meter's own readings dict into one buffer, advice and all (it was a copy of every dict, a str, its
# bytes and the head glued to the body: 5.7 times the answer's size on the ESP32-like runtime); an open
# connection keeps only the request headers the server reads.
import asyncio
import gc
import json
import sys

import diagnostics
import httpd
import portal
import readings_json
import settings
import sim
from fwtest import IS_MICROPYTHON, WallClock
from meter import Meter
from readings_json import Exact
from test_httpd import FakeWriter, run

HOST = "192.168.251.1"
WORD = 8 if sys.maxsize > 1 << 32 else 4


class _Net:
    def status(self):
        return {"state": "connected", "network": "wifi", "ssid": "Home", "ip": "192.168.1.87", "error": None}

    def portal_used(self):
        pass

    def networks(self):
        return []


class _Dev:
    serial = "2312000042G"
    net = _Net()

    def __init__(self, readings):
        self.readings = readings
        self.clock = WallClock(1763900000)

    def uplink_state(self):
        return "connected"


def meter_readings():
    """A three-phase Meter's own readings dict after a window, figures and flags set as a site's."""
    meter = Meter(sim, settings.apply_changes(settings.DEFAULTS, {"voltage_inputs": 3}))
    r = meter.close_window(1.0)
    figures = ((230.14999, 12.3456, 2790.149, 2839.44, 0.98267), (229.5, 3.21, -700.2, 736.7, -0.9504),
               (231.02, 0.0, -0.04, 0.0, 0.0))
    for phase, (v, i, w, va, pf) in ((r["phases"][k], figures[k]) for k in range(3)):
        phase.update({"voltage_v": v, "current_a": i, "power_w": w, "apparent_va": va, "pf": pf})
        phase["import_wh"].whole, phase["import_wh"].frac = 1234567, 89
    r["phases"][1]["flags"].append("reversed")
    r["phases"][2]["flags"].extend(["no_voltage", "derived_voltage"])
    r.update({"freq_hz": 49.98765, "power_w": 2089.9, "seq": 12345, "uptime_s": Exact(88000, 31, 3),
              "time": 1763900000, "interval_s": 2.5})
    return r


def get_readings(site):
    req = httpd.Request("GET", "/api/readings", {}, {"host": HOST}, b"", "10.0.0.7:50123")
    return site.handle(req).message()


def test_the_readings_answer_is_the_published_message_with_each_phases_advice():
    r = meter_readings()
    first, rest = get_readings(portal.Portal(_Dev(r), HOST, 80))
    # Contract §2: the message of §4 as published, each phase with its advice: as a copy of the
    # readings with the advice added and written as the message is.
    copied = dict(r)
    copied["phases"] = []
    for phase in r["phases"]:
        q = dict(phase)
        q["advice"] = [diagnostics.ADVICE[f] for f in phase["flags"] if f != "derived_voltage"]
        copied["phases"].append(q)
    assert bytes(rest) == readings_json.dumps(copied).encode()
    advice = [p["advice"] for p in json.loads(bytes(rest))["phases"]]
    assert advice == [[], [diagnostics.ADVICE["reversed"]], [diagnostics.ADVICE["no_voltage"]]], advice
    head = bytes(first)     # the head apart: the body is not copied behind it
    assert head.startswith(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
    assert head.endswith(b"\r\n\r\n")
    assert b"\r\nContent-Length: %d\r\n" % len(rest) in head
    first, rest = get_readings(portal.Portal(_Dev(None), HOST, 80))     # small: head and body in one
    assert bytes(first).endswith(b'\r\n\r\n{"phases": null, "note": "no readings yet"}') and not rest


def test_building_the_readings_answer_allocates_little_beyond_the_answer():
    site = portal.Portal(_Dev(meter_readings()), HOST, 80)
    get_readings(site)       # the first answer sizes the buffer of the next
    if not IS_MICROPYTHON:
        return               # CPython cannot count allocations (the answer itself is checked above)
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        first, rest = get_readings(site)
        allocated = gc.mem_alloc() - before
    finally:
        gc.enable()
    answer = len(first) + len(rest)
    sentences = len(diagnostics.ADVICE["reversed"]) + len(diagnostics.ADVICE["no_voltage"])
    # The head and the body, each made once at about its size (the body's buffer READINGS_SLACK bigger),
    # and small pieces: the text of each float figure (five a phase, two more: about 12 words each), the
    # advice sentences' JSON, a few objects. It was 7.2 KB for this 1.3 KB answer on the 32-bit runtime
    # (9.5 KB on the 64-bit one): copies of the readings' dicts, a str grown in steps, its bytes, the
    # head joined to the body.
    beyond = allocated - answer - portal.READINGS_SLACK
    assert beyond <= (96 * 3 + 192) * WORD + sentences, (allocated, answer, beyond)


def test_a_request_keeps_only_the_headers_the_server_reads():
    seen = []

    def handler(req):
        seen.append(req.headers)
        return httpd.Response(200, b"ok")

    run([b"POST /connect HTTP/1.1\r\nHost: h\r\nUser-Agent: Mozilla/5.0 (Linux; Android 14)\r\n"
         b"Accept: */*\r\nAccept-Language: en-GB,en;q=0.9\r\nContent-Type: application/json\r\n"
         b"Referer: http://h/\r\nhost: h2\r\nContent-Length: 2\r\n\r\n{}"], handler)
    assert seen == [{"host": "h, h2", "content-type": "application/json", "content-length": "2"}], seen


def test_an_answer_too_big_for_one_buffer_goes_out_as_head_then_body_without_a_copy():
    body = b"x" * httpd.SMALL_ANSWER
    first, rest = httpd.Response(200, body, "text/plain").message()
    assert rest is body and bytes(first).endswith(b"\r\n\r\n")
    first, rest = httpd.Response(200, b"small", "text/plain").message()
    assert bytes(first).endswith(b"\r\n\r\nsmall") and not rest       # a small answer: one write
    writer = FakeWriter()
    asyncio.run(httpd._write(writer, b"head|", [b"a" * 1500, b"", b"b"]))
    assert writer.out == b"head|" + b"a" * 1500 + b"b"
