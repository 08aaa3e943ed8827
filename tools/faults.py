"""make faults: a fault-injection campaign over the simulator and a real mosquitto (minutes, not hours).

Each campaign throws one kind of fault at a simulated meter and counts what went wrong: crashes
(the device process died other than by our hand), stalls (a readings window closed more than 100 ms
late), broken settings files, energy regressions (the counters went backwards or lost more than 60 s),
gaps (across a broker outage the windows were not one per second, or the energy counted differs from
the power for the time that passed).
The campaign `updates` sends one meter 50 firmware updates over MQTT (releases from a real HTTPS server)
and cuts its power at a random moment of the download, the verification or the switch, or not at all: it
must come back online on the old or the new version, with a complete firmware where app.json points, its
settings, other files and energy kept.
The campaign `heap` finds the smallest heap cap that survives a minute of a phone on the portal, Home
Assistant discovery, TLS to the broker, a broker outage and config/set traffic, on the ESP32-like runtime
(32-bit, firmware frozen), and reports it with the simulated hardware's share and the firmware's (cap
minus hardware; target 64 KB), the peak heap in use after a collection and the smallest largest free
block; `heaptable` says where the heap goes, per module and task, on both runtimes.
At the end a table; the exit status is 1 when any of those counts is not 0, or the firmware's share is
over its target.

Uses the test suite's real parts (tests/host: simctl, brokers, uplink_rig). Options: --only NAME[,NAME],
--quick (fewer rounds, for a smoke run), --seed N, --runtime micropython|esp32-like (every campaign
on it; without it the heap campaign runs on esp32-like, the others on micropython, the 64-bit unix
port), --heap-seconds N (one trial of the heap campaign, default 60), --heap-range LO-HI (KB, searched
in 8 KB steps, then 4 KB below the cap found).
"""
import argparse
import ast
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests", "host"), os.path.join(ROOT, "tools")]

import ntpd  # noqa: E402
from brokers import Mosquitto, Subscriber, make_tls_files  # noqa: E402
from simctl import Sim, free_port  # noqa: E402
from uplink_rig import (  # noqa: E402
    BASE,
    SCENARIO,
    Rig,
    api_readings,
    assert_on_time,
    broker_outage,
    continuity_problems,
    late_warnings,
    seed_state,
    windows_on_time,
)

from mpenv import use_firmware_on_cpython  # noqa: E402

use_firmware_on_cpython()
import boot_loader as fw_boot_loader  # noqa: E402
import identity as fw_identity  # noqa: E402
import settings as fw_settings  # noqa: E402
from version import VERSION as VERSION_FACTORY  # noqa: E402

DNS_QUERY = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03org\x00\x00\x01\x00\x01"
POWER_W = 230.0 * 10.0 + 230.0 * 16.0 * 0.9063     # the rig's scenario, L1 + L2
RESULTS = []


def row(name, rounds, **counts):
    counts.setdefault("crashes", 0)
    counts.setdefault("stalls", 0)
    RESULTS.append((name, rounds, counts))
    print("faults: %-34s %4d  %s" % (name, rounds, "  ".join("%s=%s" % kv for kv in counts.items())),
          flush=True)


def crashes(log):
    return log.count("device crashed") + log.count("Traceback")


def readings(sim, timeout=20):
    """The portal's latest readings, or None when the device shows none within timeout."""
    try:
        return api_readings(sim, timeout)
    except (AssertionError, OSError, ValueError):
        return None


def status(sim):
    with urllib.request.urlopen("http://%s/api/status" % sim.http, timeout=3) as r:
        return json.loads(r.read())


def online_after(rig, t, timeout):
    """Whether the device said `online` after monotonic time t, within timeout."""
    try:
        rig.sub.wait_for(BASE + "/status", lambda m: m.payload == b"online" and m.t > t, timeout)
        return True
    except AssertionError:
        return False


# -- the broker -----------------------------------------------------------------------------------
def broker_kills(work, rng, rounds):
    rig = Rig(work / "broker").start()
    reconnects = lost = 0
    try:
        rig.sub.wait_for(BASE + "/status", lambda m: m.payload == b"online", timeout=30)
        for _ in range(rounds):
            time.sleep(rng.uniform(0.2, 4.0))          # a random moment of the session
            rig.broker.kill()
            time.sleep(rng.uniform(0.5, 5.0))
            t = time.monotonic()
            rig.broker.start()
            if online_after(rig, t, 75):
                reconnects += 1
            else:
                lost += 1
        log = rig.sim.log()
        row("broker SIGKILLed and restarted", rounds, reconnected=reconnects, never_back=lost,
            crashes=crashes(log), stalls=len(late_warnings(log)))
    finally:
        rig.close()


def broker_outages(work, rng, rounds):
    """The broker down for 30 s, `rounds` times in a row (make test has one of these): metering keeps
    one window per second meanwhile, the device is back within the 60 s back-off each time, and the
    energy counted across each outage is the power for the time that passed."""
    rig = Rig(work / "outages").start()
    back = stalled = energy = 0
    try:
        rig.sub.wait_for(BASE + "/status", lambda m: m.payload == b"online", timeout=30)
        for k in range(rounds):
            try:
                seen = broker_outage(rig, 30)
            except AssertionError as e:          # no readings from the device: the rest cannot run
                print("faults: outage %d: %s" % (k, str(e).splitlines()[0]), flush=True)
                break
            first, last = seen["during"]
            if not windows_on_time(first, last) or last["import_wh"] <= first["import_wh"]:
                stalled += 1
                print("faults: outage %d: windows while down %r -> %r" % (k, first, last), flush=True)
            if not seen["back"]:
                continue
            back += 1
            problems = continuity_problems(seen["before"], seen["after"][0])
            try:
                assert_on_time(seen["after"])
            except AssertionError as e:
                problems.append("after: %s" % e)
            energy += bool(problems)
            for p in problems:
                print("faults: outage %d: %s" % (k, p), flush=True)
        log = rig.sim.log()
        row("broker down for 30 s, then back", rounds, back_online=back, never_back=rounds - back,
            gaps=energy, crashes=crashes(log), stalls=len(late_warnings(log)) + stalled)
    finally:
        rig.close()


# -- the network ----------------------------------------------------------------------------------
def network_drops(work, rng, rounds):
    rig = Rig(work / "net").start()
    back = 0
    try:
        rig.sub.wait_for(BASE + "/status", lambda m: m.payload == b"online", timeout=30)
        for _ in range(rounds):
            time.sleep(rng.uniform(0.5, 3.0))
            rig.sim.write_scenario(dict(SCENARIO, lan={"link": False}))
            time.sleep(rng.uniform(1.0, 4.0))
            t = time.monotonic()
            rig.sim.write_scenario(SCENARIO)
            back += online_after(rig, t, 30)
        log = rig.sim.log()
        row("network dropped and restored", rounds, back_online=back,
            network_lost=log.count("net: network lost"), crashes=crashes(log), stalls=len(late_warnings(log)))
    finally:
        rig.close()


def connect(sim):
    body = json.dumps({"ssid": "Home", "password": "secret123"}).encode()
    req = urllib.request.Request("http://%s/connect" % sim.http, body, {"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=5).read()


def join_vanishing(work, rng, rounds):
    """The installer's network disappears while the meter joins it; at the end it joins for real."""
    wifi = {"networks": [{"ssid": "Home", "password": "secret123", "rssi": -55, "channel": 6}],
            "dhcp": True, "join_s": 1.0}
    world = dict(SCENARIO, lan={"link": False}, wifi=wifi)
    sim = Sim(work / "join", world)
    sim.start()
    failed_right = 0
    try:
        readings(sim)
        for _ in range(rounds):
            connect(sim)
            time.sleep(rng.uniform(0.0, 0.8))
            sim.write_scenario(dict(world, wifi=dict(wifi, networks=[])))
            end = time.monotonic() + 45
            while time.monotonic() < end:
                st = status(sim)
                if st["state"] == "failed":
                    failed_right += st["error"] in ("no_ap_found", "timeout")
                    break
                time.sleep(0.3)
            sim.write_scenario(world)
        # credentials are stored only after a join that got an address: none of the above
        stored = int(os.path.exists(os.path.join(sim.state, "wifi.json")))
        connect(sim)
        end = time.monotonic() + 30
        while time.monotonic() < end and status(sim)["state"] != "connected":
            time.sleep(0.3)
        log = sim.log()
        row("AP network vanishing while joining", rounds, failed_with_reason=failed_right,
            joined_at_last=int(status(sim)["state"] == "connected"), stored_while_failing=stored,
            crashes=crashes(log), stalls=len(late_warnings(log)))
    finally:
        sim.close()


# -- power cuts -----------------------------------------------------------------------------------
def power_cuts(work, rng, rounds):
    """SIGKILL at random moments while settings change over MQTT and the energy is saved at boot."""
    broker = Mosquitto(str(work / "cuts-broker")).start()
    sub = Subscriber(broker.host, broker.port, topics=[BASE + "/#"])
    sim = Sim(work / "cuts", SCENARIO, args=["--broker", "127.0.0.1:%d" % broker.port])
    broken = regressions = overcounts = no_boot = 0
    worst_loss_s = 0.0
    last = None           # (import_wh, monotonic time) last seen before a cut
    flood_values = [1, 2, 3]
    try:
        for _ in range(rounds):
            sim.start()
            first = readings(sim)
            if first is None:
                no_boot += 1
                sim.stop(signal.SIGKILL)
                continue
            t_first = time.monotonic()
            if last is not None:
                lost_s = (last[0] - first["import_wh"]) * 3600 / POWER_W
                worst_loss_s = max(worst_loss_s, lost_s)
                if first["import_wh"] < last[0] - 60 * POWER_W / 3600:
                    regressions += 1
                if first["import_wh"] > last[0] + (t_first - last[1]) * POWER_W / 3600 + 0.05:
                    overcounts += 1
            # settings writes in flight: a burst of config/set messages, cut somewhere inside it
            for _ in range(rng.randint(0, 6)):
                sub.publish(BASE + "/config/set", json.dumps({"interval_s": rng.choice(flood_values)}), qos=0)
            time.sleep(rng.uniform(0.0, 2.5))
            r = readings(sim, timeout=2)
            if r is not None:
                last = (r["import_wh"], time.monotonic())
            sim.stop(signal.SIGKILL)
            path = os.path.join(sim.state, "settings.json")
            if os.path.exists(path):
                try:
                    with open(path) as f:
                        fw_settings.validate(json.load(f))
                except (ValueError, OSError):
                    broken += 1
        log = sim.log()
        row("simulator SIGKILLed (power cut)", rounds, no_boot=no_boot, broken_settings=broken,
            energy_backwards=regressions, counted_twice=overcounts,
            worst_loss_s="%.1f" % max(0.0, worst_loss_s), crashes=crashes(log))
    finally:
        sim.close()
        sub.close()
        broker.stop()


# -- bad input ------------------------------------------------------------------------------------
def _junk(rng, n):
    return bytes(rng.getrandbits(8) for _ in range(n))


def bad_input(work, rng, rounds):
    rig = Rig(work / "input").start()
    http_host, http_port = rig.sim.http.split(":")
    dns_host, dns_port = rig.sim.dns.split(":")
    try:
        rig.sub.wait_for(BASE + "/status", lambda m: m.payload == b"online", timeout=30)
        before = readings(rig.sim)
        http = 0
        templates = [b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n",
                     b"POST /connect HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 40\r\n\r\n{\"ssid\": [1,2], \"password\": 5}   "]
        for i in range(rounds):
            if i % 3 == 0:
                data = _junk(rng, rng.randint(1, 3000))
            else:
                t = bytearray(rng.choice(templates) % rig.sim.http.encode())
                for _ in range(rng.randint(1, 8)):
                    t[rng.randrange(len(t))] = rng.getrandbits(8)
                data = bytes(t)
            try:
                with socket.create_connection((http_host, int(http_port)), 2) as s:
                    s.settimeout(2)
                    s.sendall(data)
                    s.shutdown(socket.SHUT_WR)
                    s.recv(4096)
            except OSError:
                pass
            http += 1
        dns = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(rounds * 5):
                q = bytearray(DNS_QUERY)
                if i % 2:
                    q = bytearray(_junk(rng, rng.randint(0, 600)))
                else:
                    for _ in range(rng.randint(1, 6)):
                        q[rng.randrange(len(q))] = rng.getrandbits(8)
                s.sendto(bytes(q), (dns_host, int(dns_port)))
                dns += 1
                if i % 50 == 0:
                    time.sleep(0.01)
        mqtt_msgs = 0
        keys = list(fw_settings.DEFAULTS) + ["x", "", "mqtt.port"]
        values = [None, True, -1, 1e308, "x" * 300, [], {}, [1, 2, 3], {"a": {"b": {}}}, "public", 3]
        for i in range(rounds):
            if i % 3 == 0:
                payload = _junk(rng, rng.randint(0, 3000))
            else:
                payload = json.dumps({rng.choice(keys): rng.choice(values)
                                      for _ in range(rng.randint(1, 4))}).encode()
            rig.sub.publish(BASE + "/config/set", payload, qos=rng.choice((0, 1)))
            mqtt_msgs += 1
        captures = bad_captures(work, rng, max(10, rounds // 10))
        time.sleep(2)
        after = readings(rig.sim)
        log = rig.sim.log()
        on_time = after is not None and windows_on_time(before, after)
        row("malformed HTTP requests", http, crashes=crashes(log), stalls=len(late_warnings(log)))
        row("malformed DNS packets", dns, crashes=crashes(log), stalls=len(late_warnings(log)))
        answered = len(rig.sub.messages(BASE + "/config/error"))
        row("random config/set messages", mqtt_msgs, errors_answered=answered,
            crashes=crashes(log), stalls=len(late_warnings(log)) + (0 if on_time else 1))
        row("malformed capture files (replay)", captures[0], clear_errors=captures[1],
            crashes=captures[2])
    finally:
        rig.close()


def bad_captures(work, rng, rounds):
    """tools/replay on broken capture files: a clear message and a non-zero exit, never a traceback."""
    good = '# ampguard-capture v1 {"rate_hz": 2000, "bits": 12, "channels": ["v1", "i1"], ' \
           '"v_per_count": {"v1": 0.3}, "a_per_count": {"i1": 0.09}, "skew_us": {"v1": 0, "i1": 35}}\n' + \
           "".join("%d,%d\n" % (2048 + (k * 37) % 900, 2048 + (k * 53) % 700) for k in range(4000))
    clear = tracebacks = 0
    for k in range(rounds):
        text = bytearray(good.encode())
        for _ in range(rng.randint(1, 12)):
            pos = rng.randrange(len(text) if k % 2 else 200)
            text[pos] = rng.choice(b'{}[]",:0123456789-x\n ')
        path = work / ("capture-%d.txt" % k)
        path.write_bytes(bytes(text))
        p = subprocess.run([os.path.join(ROOT, "tools", "replay"), str(path)], capture_output=True, text=True,
                           timeout=120)
        if "Traceback" in p.stderr or "Traceback" in p.stdout:
            tracebacks += 1
        elif p.returncode != 0:
            clear += 1
    return rounds, clear, tracebacks


# -- heap -----------------------------------------------------------------------------------------
# The load of the heap figures (issue 10): a phone on the portal, Home Assistant discovery on, TLS to the
# broker, broker outages and config/set traffic. `make soak` runs the same load for longer.
HEAP_SETTINGS = {"ha_discovery": True}
PHONE_PAGES = (("/",), ("/api/status", "/api/readings", "/api/scan"))   # a page load, then its API calls
CONFIG_CHANGES = ({"supply_max_a": 40}, {"phases": 1}, {"supply_max_a": None}, {"phases": 3},
                  {"interval_s": "soon"})          # the last is refused (config/error)
PROBE_RE = re.compile(r"hal_sim: heap probe, blocks of (\d+) bytes\n(?:.*\n){0,3}?"
                      r"GC: total: (\d+), used: (\d+), free: (\d+).*\n"
                      r" No\. of 1-blocks: \d+, 2-blocks: \d+, max blk sz: \d+, max free sz: (\d+)")


def heap_probes(log):
    """The simulated hardware's heap probes (AMPGUARD_HEAP_PROBE_MS): [(total, used, free, largest free
    block)] in bytes, each after a collection."""
    return [(int(t), int(u), int(f), int(b) * int(m)) for b, t, u, f, m in PROBE_RE.findall(log)]


MEMORY_WORDS = ("MemoryError", "out of memory", "no room")    # how the firmware logs one it survived


def memory_errors(log):
    return [line for line in log.splitlines() if any(w in line for w in MEMORY_WORDS)]


_PKI = {}


def tls_files(work):
    if "files" not in _PKI:
        _PKI["files"] = make_tls_files(str(work / "pki"))
    return _PKI["files"]


class HeapRig(Rig):
    """A simulated meter on `runtime` at a heap cap, with HA discovery on, over TLS to a mosquitto that
    can be killed and restarted, and the simulated hardware's heap probe on (start/close: the tests' Rig)."""

    def __init__(self, work, runtime, heap, probe_ms=1000):
        tls = tls_files(work.parent)
        self.broker = Mosquitto(str(work / "broker"), tls=tls)
        self.broker.start()
        self.sub = Subscriber(self.broker.host, self.broker.port, topics=[BASE + "/#", "homeassistant/#"],
                              ca=tls.ca)
        args = ["--runtime", runtime] + (["--heap", heap] if heap else [])
        self.sim = Sim(work / "device", SCENARIO, args=args, env={"AMPGUARD_HEAP_PROBE_MS": str(probe_ms)})
        settings = dict(HEAP_SETTINGS, mqtt={"host": "localhost", "port": self.broker.port, "tls": True})
        seed_state(self.sim, settings, {"ca.pem": tls.ca})



class PhoneAndConfig:
    """Background load: a phone loading the portal page and its API calls (three at once) every half
    second, and a config/set message every few seconds (valid changes, which rebuild the sampler or
    republish discovery, and a refused one)."""

    def __init__(self, rig, rng):
        self.rig = rig
        self.rng = rng
        self.stop = threading.Event()
        self.counts = {"portal_ok": 0, "portal_failed": 0, "config_set": 0}
        self.failures = []
        self.threads = [threading.Thread(target=self._phone, daemon=True),
                        threading.Thread(target=self._config, daemon=True)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(15)

    def _get(self, path):
        try:
            with urllib.request.urlopen("http://%s%s" % (self.rig.sim.http, path), timeout=5) as r:
                r.read()
                ok = r.status == 200
                why = "HTTP %d" % r.status
        except (OSError, urllib.error.HTTPError) as e:
            ok, why = False, repr(e)
        self.counts["portal_ok" if ok else "portal_failed"] += 1
        if not ok and len(self.failures) < 5:
            self.failures.append("%s: %s" % (path, why))

    def _phone(self):
        with ThreadPoolExecutor(max_workers=3) as pool:
            while not self.stop.is_set():
                for batch in PHONE_PAGES:
                    list(pool.map(self._get, batch))
                self.stop.wait(0.5)

    def _config(self):
        k = 0
        while not self.stop.wait(self.rng.uniform(3, 6)):
            try:
                change = CONFIG_CHANGES[k % len(CONFIG_CHANGES)]
                self.rig.sub.publish(BASE + "/config/set", json.dumps(change), qos=1, timeout=3)
                self.counts["config_set"] += 1
            except Exception:       # the broker is down for an outage: the phone goes on
                pass
            k += 1


def heap_trial(work, runtime, heap_kb, seconds, rng):
    """One run of the heap load at a cap: (survived, why not, figures)."""
    rig = HeapRig(work / ("heap-%s-%d" % (runtime, heap_kb)), runtime, "%dK" % heap_kb)
    why = []
    figures = {}
    try:
        rig.start()
        t0 = time.monotonic()
        first = readings(rig.sim, timeout=30)
        if first is None:
            return False, ["no readings within 30 s of boot"], figures, rig.sim.log()
        if not online_after(rig, 0, 45):
            why.append("never online over TLS")
        with PhoneAndConfig(rig, rng) as load:
            time.sleep(max(0.0, seconds / 3 - (time.monotonic() - t0)))
            rig.broker.kill()                     # a broker outage
            time.sleep(5)
            rig.broker.start()
            t_back = time.monotonic()
            back = online_after(rig, t_back, 45)
            time.sleep(max(0.0, t0 + seconds - time.monotonic()))
        last = readings(rig.sim, timeout=5)
        log = rig.sim.log()
        if not back:
            why.append("not back online after the outage")
        after = [m for m in rig.sub.messages(BASE + "/readings") if m.t > t_back]
        if back and len(after) < 3:
            why.append("%d readings messages after the outage" % len(after))
        if last is None or not windows_on_time(first, last):
            why.append("readings windows not on time: %r -> %r" % (first and first.get("seq"),
                                                                    last and last.get("seq")))
        errors = memory_errors(log)
        if errors:
            why.append("%d MemoryError lines, first: %s" % (len(errors), errors[0].strip()))
        if crashes(log):
            why.append("%d crashes" % crashes(log))
        if late_warnings(log):
            why.append("%d late windows" % len(late_warnings(log)))
        if load.counts["portal_failed"]:
            why.append("%d of %d portal requests failed, first: %s" % (
                load.counts["portal_failed"], load.counts["portal_failed"] + load.counts["portal_ok"],
                load.failures[0]))
        if not rig.sub.messages(BASE + "/config"):
            why.append("no config message")
        probes = heap_probes(log)
        figures = dict(load.counts, probes=len(probes))
        if probes:
            figures.update(peak_used=max(p[1] for p in probes), min_free=min(p[2] for p in probes),
                           min_largest_free=min(p[3] for p in probes), gc_total=probes[0][0])
        return not why, why, figures, log
    finally:
        rig.close()


def _kb(n):
    return "%.1f" % (n / 1024)


def say_trial(runtime, heap_kb, ok, why, figures):
    f = figures
    print("faults: heap %s %dK: %s%s" % (
        runtime, heap_kb, "survived" if ok else "FAILED (%s)" % "; ".join(why),
        "; in use after gc peak %s KB, largest free block min %s KB, %d portal requests, %d config/set"
        % (_kb(f["peak_used"]), _kb(f["min_largest_free"]), f["portal_ok"] + f["portal_failed"],
           f["config_set"]) if "peak_used" in f else ""), flush=True)


HEAP_RANGES = {"esp32-like": (48, 256), "micropython": (160, 512)}


HEAP = {"runtime": "esp32-like", "seconds": 60, "range": None}
FIRMWARE_TARGET_KB = 64       # issue 10: the firmware's share of the smallest cap that survives


def heap_cap(work, rng, rounds):
    """The smallest cap that survives HEAP["seconds"] of the heap load: by bisection in 8 KB steps,
    then 4 KB below the cap found (one more trial: the figure to 4 KB)."""
    runtime, seconds = HEAP["runtime"], HEAP["seconds"]
    lo_kb, hi_kb = HEAP["range"] or HEAP_RANGES[runtime]
    sizes = list(range(lo_kb, hi_kb + 1, 8))
    results = {}

    def survives_kb(kb):
        ok, why, figures, _ = heap_trial(work, runtime, kb, seconds, rng)
        say_trial(runtime, kb, ok, why, figures)
        results[kb] = (ok, why, figures)
        return ok

    def survives(i):
        return survives_kb(sizes[i])

    lo, hi = 0, len(sizes) - 1
    if not survives(hi):
        row("smallest heap that survives (%s)" % runtime, 0, smallest_kb="> %d" % sizes[hi], crashes=1)
        return
    while lo < hi:                               # the smallest size in `sizes` that survives
        mid = (lo + hi) // 2
        if survives(mid):
            hi = mid
        else:
            lo = mid + 1
    cap = sizes[lo]
    if lo > 0 and survives_kb(cap - 4):
        cap -= 4
    f = results[cap][2]
    hw_kb = simulator_share(runtime) / 1024
    below = results.get(cap - 4) or results.get(cap - 8)
    row("smallest heap that survives (%s)" % runtime, 1, runtime=runtime, seconds=seconds, cap_kb=cap,
        simulated_hardware_kb="%.1f" % hw_kb, firmware_kb="%.1f" % (cap - hw_kb),
        target_firmware_kb=FIRMWARE_TARGET_KB,
        firmware_over_target_kb="%.1f" % max(0.0, cap - hw_kb - FIRMWARE_TARGET_KB),
        peak_in_use_after_gc_kb=_kb(f["peak_used"]), min_free_kb=_kb(f["min_free"]),
        min_largest_free_block_kb=_kb(f["min_largest_free"]),
        portal_requests=f["portal_ok"] + f["portal_failed"], config_set=f["config_set"],
        fails_first="%d KB: %s" % (cap - 4 if cap - 4 in results else cap - 8, "; ".join(below[1]))
        if below else "-")


def _runtime(name, heap=None):
    import sim as launcher

    return launcher.runtime(name, heap)


def simulator_share(runtime):
    """Bytes the simulated hardware (hal_sim, its scenario and its ADC tables) holds: not on a device."""
    cmd, env, cwd = _runtime(runtime)
    env.update(AMPGUARD_BOARD="sim", AMPGUARD_STATE=tempfile.mkdtemp(prefix="ampguard-probe-"),
               AMPGUARD_SCENARIO=os.path.join(ROOT, "tools", "scenarios", "default.json"),
               AMPGUARD_PROBE="hardware", AMPGUARD_PROBE_LWIP=os.path.join(ROOT, "tools", "simhw", "lwip"))
    out = subprocess.run(cmd + ["-c", "import heap_probe"], env=env, capture_output=True, text=True,
                         timeout=60, cwd=cwd)
    try:
        return int(out.stdout.split()[-1])
    except (IndexError, ValueError):
        raise SystemExit("faults: the heap probe failed: %s" % (out.stdout + out.stderr)[-2000:]) from None


def firmware_import_order():
    """The firmware modules a running simulated meter holds, leaves first, so that each import's heap is
    the module's own (boardcfg is dropped after boot, hal_esp32 is the device's, ha_discovery is
    loaded only while publishing: measured apart). Only module-level imports count: what a function
    imports for a moment (sntp, the update's modules) is loaded and dropped again."""
    fw = Path(ROOT) / "firmware"
    names = {p.stem for p in fw.glob("*.py")}
    deps = {}
    for name in names:
        tree = ast.parse((fw / (name + ".py")).read_text())
        found = set()
        for node in tree.body:
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module.split(".")[0])
        deps[name] = sorted(found & names - {"boardcfg", "hal_esp32", "main", "ha_discovery"})
    order = []

    seen = set()

    def visit(n):
        if n not in seen:
            seen.add(n)           # before its dependencies: an import cycle ends here
            for d in deps[n]:
                visit(d)
            order.append(n)

    visit("app")
    return order


def heap_table(work, rng, rounds):
    """Where the heap goes, on both runtimes (tools/simhw/heap_probe.py, table): a markdown table."""
    tls = tls_files(work)
    plain = Mosquitto(str(work / "table-plain")).start()
    secure = Mosquitto(str(work / "table-tls"), tls=tls).start()
    columns = {}
    try:
        for runtime in ("esp32-like", "micropython"):
            state = work / ("table-" + runtime)
            state.mkdir(parents=True, exist_ok=True)
            fw_identity.save(str(state), "2312000042G", "12345678")
            (state / "settings.json").write_text(json.dumps(
                dict(HEAP_SETTINGS, mqtt={"host": "127.0.0.1", "port": plain.port})))
            shutil.copyfile(tls.ca, state / "ca.pem")
            scenario = work / "table-scenario.json"
            scenario.write_text(json.dumps(SCENARIO))
            cmd, env, cwd = _runtime(runtime)
            env.update(AMPGUARD_BOARD="sim", AMPGUARD_STATE=str(state), AMPGUARD_SCENARIO=str(scenario),
                       AMPGUARD_PROBE="table", AMPGUARD_PROBE_MODULES=",".join(firmware_import_order()),
                       AMPGUARD_PROBE_TLS="localhost:%d" % secure.port, AMPGUARD_NTP=ntpd.shared(),
                       AMPGUARD_HTTP="127.0.0.1:%d" % free_port(),
                       AMPGUARD_DNS="127.0.0.1:%d" % free_port(socket.SOCK_DGRAM))
            env.pop("AMPGUARD_BROKER", None)
            out = subprocess.run(cmd + ["-c", "import heap_probe"], env=env, capture_output=True, text=True,
                                 timeout=180, cwd=cwd)
            rows = [line.split("\t")[1:] for line in out.stdout.splitlines() if line.startswith("heap\t")]
            if out.returncode != 0 or not rows or "at the end" not in out.stdout:
                print(out.stdout[-3000:] + out.stderr[-3000:], flush=True)
                row("heap table (%s)" % runtime, 0, crashes=1)
                continue
            columns[runtime] = rows
    finally:
        plain.stop()
        secure.stop()
    if not columns:
        return
    print_heap_table(columns)
    for rt, rows in columns.items():
        sums = heap_sums(rows)
        row("heap table (%s)" % rt, 1, firmware_held_kb=_kb(sums["firmware"]),
            simulated_hardware_kb=_kb(sums["simulated hardware"]), runtime_kb=_kb(sums["runtime"]),
            in_use_at_end_kb=_kb(sums["total"]))


def heap_sums(rows):
    """Bytes held by who (rows of kind held), and the probe's total in use at the end."""
    sums = {"firmware": 0, "simulated hardware": 0, "runtime": 0, "total": 0}
    for _what, nbytes, who, kind, _note in rows:
        if kind == "held":
            sums[who] += int(nbytes)
        elif kind == "total":
            sums["total"] = int(nbytes)
    return sums


def print_heap_table(columns):
    first = next(iter(columns.values()))
    runtimes = list(columns)
    print("\n| what | who | kind | " + " | ".join("%s (bytes)" % rt for rt in runtimes) + " | note |")
    print("| --- | --- | --- | " + " | ".join("---:" for _ in runtimes) + " | --- |")
    for i, (what, _, who, kind, _note) in enumerate(first):
        cells, notes = [], []
        for rt in runtimes:
            r = columns[rt][i] if i < len(columns[rt]) else None
            same = r and r[0].split(" (")[0] == what.split(" (")[0]
            cells.append(r[1] if same else "?")
            if same and r[4] and r[4] not in [n.split(": ", 1)[-1] for n in notes]:
                notes.append("%s: %s" % (rt, r[4]) if notes else r[4])
        print("| %s | %s | %s | %s | %s |" % (what.replace("|", "/"), who, kind, " | ".join(cells),
                                             "; ".join(notes)))
    sums = {rt: heap_sums(columns[rt]) for rt in runtimes}
    for who in ("firmware", "simulated hardware", "runtime"):
        print("| **held by the %s, in all** | %s | sum | %s | rows of kind held |" % (
            who, who, " | ".join(str(sums[rt][who]) for rt in runtimes)))
    print("", flush=True)

def watchdog(work, rng, rounds):
    rig = Rig(work / "wdt")
    rig.sim.env["AMPGUARD_WDT_MS"] = "3000"
    rig.start()
    back = 0
    try:
        rig.sub.wait_for(BASE + "/status", lambda m: m.payload == b"online", timeout=30)
        for k in range(rounds):
            rig.sim.write_scenario(dict(SCENARIO, fault={"adc_hang": True}))   # a task hangs
            rig.sim.wait_for("watchdog: not fed", timeout=30, count=k + 1)
            t = time.monotonic()
            rig.sim.write_scenario(SCENARIO)
            back += online_after(rig, t, 30)
        row("hung task -> watchdog reset", rounds, resets=rig.sim.log().count("watchdog: not fed"),
            back_online=back)
    finally:
        rig.close()


# -- firmware updates under power cuts --------------------------------------------------------------
# One meter updated again and again (contract §3.8): each round sends update/set for a release newer than
# what runs and cuts the power (SIGKILL of the device's MicroPython process; tools/sim boots it again as
# the chip would) at a random moment of a phase chosen at random. The moment is found on the flash
# itself (the state folder): the bytes of the new release written so far, the pointer app.json, the
# device process. After each round the meter must be online again within UPDATE_BACK_S, run the old or
# the new version (and say so on info and update), boot what app.json names (a complete, verified folder,
# or the factory install while no update was ever confirmed), keep its settings and every other file on
# flash, and its energy (a cut loses at most the last 60 s, an orderly restart nothing; never more than
# the time passed allows).
UPDATE_PHASES = ("download", "verification", "switch", "none")
UPDATE_SLOW_S = 0.15           # the server's pause per 4 KB piece: a ~110 KB release takes about 4 s
UPDATE_BACK_S = 90             # a device must be online again within this after a cut
UPDATE_MARKER = {"supply_max_a": 37}     # a setting made before the first round, kept through all
UPDATE_CHANGING = ("settings.json", "energy", "app.json", "app_a", "app_b")   # files an update may write
UPDATE_FINAL = ("idle", "done", "failed")


def _update_tool(*args):
    out = subprocess.run([os.path.join(ROOT, "tools", "release")] + [str(a) for a in args], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise SystemExit("faults: tools/release failed: %s" % (out.stdout + out.stderr)[-2000:])


def _manifest(agr):
    n = int.from_bytes(agr[7:11], "big")       # b"AGREL1\n" | length | manifest (docs/releases.md)
    return json.loads(agr[11:11 + n])


def _sha256_file(path):
    import hashlib

    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _flash_files(state):
    """{name: sha256} of the files on flash an update must never change (identity, CA, update key,
    Wi-Fi credentials, calibration...): all but settings (checked apart), energy, the pointer, the slots."""
    out = {}
    for name in sorted(os.listdir(state)):
        full = os.path.join(state, name)
        if os.path.isfile(full) and not name.startswith(UPDATE_CHANGING):
            out[name] = _sha256_file(full)
    return out


def _pointer(state):
    try:
        with open(os.path.join(state, "app.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _device_pid(sim):
    """The MicroPython process under tools/sim (None between two boots)."""
    try:
        with open("/proc/%d/task/%d/children" % (sim.proc.pid, sim.proc.pid)) as f:
            kids = f.read().split()
    except OSError:
        return None
    return int(kids[0]) if len(kids) == 1 else None


def _new_bytes(state, slot, since):
    """Bytes of the update written into app_<slot> since wall time `since` (the folder's older files are
    the firmware installed before the last one, removed once the download starts)."""
    n = 0
    try:
        for e in os.scandir(os.path.join(state, "app_" + slot)):
            st = e.stat()
            if st.st_mtime >= since:
                n += st.st_size
    except OSError:
        pass
    return n


class UpdateRounds:
    """The meter, the broker, the HTTPS server, the vendor's key and the releases built so far."""

    def __init__(self, work, rng):
        from release_server import ReleaseServer

        self.work, self.rng = work, rng
        self.kit = work / "updates-kit"
        self.kit.mkdir(parents=True, exist_ok=True)
        _update_tool("--new-key", self.kit / "vendor.pem")
        self.tls = make_tls_files(str(self.kit / "pki"))
        self.server = ReleaseServer(self.tls)
        self.releases = {}                 # version -> manifest
        wifi = self.kit / "wifi.json"      # stored Wi-Fi credentials (unused: the LAN is up), kept
        wifi.write_text(json.dumps({"ssid": "Home", "password": "secret123"}))
        self.rig = Rig(work / "updates", files={"ca.pem": self.tls.ca, "wifi.json": str(wifi),
                                                "update_key.json": str(self.kit / "vendor.pub.json")})
        self.state = self.rig.sim.state
        # how long the last uncut round took from the end of the download to the switch, and from the
        # switch to the new firmware's confirmation (first figures: guesses, replaced after round 1)
        self.verify_s, self.confirm_s = 0.5, 8.0

    def release(self, version):
        """The URL of release `version` (built when first asked for)."""
        path = "/ampguard-%s.agr" % version
        if version not in self.releases:
            out = self.kit / path[1:]
            _update_tool("--key", self.kit / "vendor.pem", "--version", version, "--board", "sim",
                         "--arch", "x64", "--out", out)
            body = out.read_bytes()
            self.server.files[path] = body
            self.server.behaviour[path] = {"slow_s": UPDATE_SLOW_S}
            self.releases[version] = _manifest(body)
        return self.server.url(path)

    def close(self):
        self.rig.close()
        self.server.close()


def _cut_moment(u, phase, ctx, aim=None):
    """Wait for the moment of `phase` chosen at random, or given by `aim`: a download's percent, the
    seconds after the download's end (verification) or after the switch, or "trial" (the new firmware's
    process has started, not yet confirmed). True to cut now (at the latest once the new firmware is
    confirmed), False for `none` (which waits for the confirmation) and when the update failed."""
    rng, state = u.rng, u.state
    total = sum(f["size"] for f in u.releases[ctx["target"]]["files"])
    percent = (rng.uniform(0, 100) if aim is None else aim) if phase == "download" else None
    ctx["stats"]["aim"] = " at %.0f %%" % percent if percent is not None else ""
    wait_after = {"verification": rng.uniform(0, u.verify_s),
                  "switch": rng.uniform(0, u.confirm_s)}.get(phase) if aim is None else aim
    deadline = time.monotonic() + 120
    t_done = t_switch = None
    while time.monotonic() < deadline:
        now = time.monotonic()
        got = _new_bytes(state, ctx["slot"], ctx["since"])
        p = _pointer(state) or {}
        if t_done is None and got >= total:
            t_done = now
        if t_switch is None and p.get("version") == ctx["target"]:
            t_switch = now
            t_done = t_done or now
        confirmed = t_switch is not None and p.get("trial") is None and p.get("version") == ctx["target"]
        if phase == "download" and got >= total * percent / 100:
            return True
        if phase == "verification" and t_done is not None and now >= t_done + wait_after:
            return True
        if phase == "switch" and t_switch is not None and (
                _device_pid(u.rig.sim) not in (ctx["pid"], None) if wait_after == "trial"
                else now >= t_switch + wait_after):
            return True
        if confirmed:           # the moment drawn was later than this update took: cut now
            if phase == "none" and t_done is not None:
                u.verify_s = max(0.05, t_switch - t_done)
                u.confirm_s = max(1.0, now - t_switch)
            return phase != "none"
        if ctx["failed"]():
            return False
        time.sleep(0.005)
    return False


def _where(u, ctx):
    """Where the update was when the power went: read off the flash after the cut, the pointer as the
    boot loader reads it (app.json is missing for a moment while it is replaced: then its .bak)."""
    p = fw_boot_loader.read_pointer(u.state) or {}
    if p.get("version") == ctx["target"]:
        if p.get("trial") is None:
            return "after confirmation"
        return "new firmware on trial" if ctx["restarted"] else "switched, not yet restarted"
    total = sum(f["size"] for f in u.releases[ctx["target"]]["files"])
    got = _new_bytes(u.state, ctx["slot"], ctx["since"])
    return "downloading" if got < total else "verifying"


def update_round(u, phase, aim, running, target, stats):
    """One round; returns (version running after it, problems)."""
    rig, state = u.rig, u.state
    problems = []
    before = rig.readings()
    if not before:
        return running, ["no readings message before the round"]
    pointer = _pointer(state) or {}
    slot = "b" if pointer.get("active") == "a" else "a"
    pid0 = _device_pid(rig.sim)
    ctx = {"target": target, "slot": slot, "since": time.time() - 1.0, "stats": stats, "pid": pid0}
    url = u.release(target)
    t0 = time.monotonic()
    rig.sub.publish(BASE + "/update/set", json.dumps({"url": url, "version": target}))
    ctx["failed"] = lambda: any(m.json()["state"] == "failed" for m in rig.sub.messages(BASE + "/update")
                                if m.t > t0)
    log_before = rig.sim.log()
    where = None
    cut = _cut_moment(u, phase, ctx, aim)
    if cut:
        pid = None
        for _ in range(200):               # between two boots there is no device to cut: a moment later
            pid = _device_pid(rig.sim)
            if pid:
                break
            time.sleep(0.005)
        ctx["restarted"] = pid != pid0
        last_before = [m for m in rig.sub.messages(BASE + "/readings")][-1:]
        os.kill(pid, signal.SIGKILL)
        t_end = time.monotonic()
        time.sleep(0.05)                   # nothing of the cut process is written after this
        where = _where(u, ctx)
        stats["where"][where] = stats["where"].get(where, 0) + 1
        stats["last_where"] = "while " + where
    else:
        if phase != "none":
            problems.append("the update ended before the %s phase could be cut" % phase)
        t_end = t0
        for m in rig.sub.messages(BASE + "/update"):    # the restart into the new firmware, if any
            if m.t > t0 and m.json()["state"] == "restarting":
                t_end = m.t
                break
        last_before = None
        stats["last_where"] = "never"
    # -- back online, settled --
    try:
        online = rig.sub.wait_for(BASE + "/status", lambda m: m.payload == b"online" and m.t > t_end,
                                  timeout=UPDATE_BACK_S)
        stats["recovery"] = max(stats["recovery"], online.t - t_end)
    except AssertionError:
        return running, problems + ["not online within %d s of the %s" % (
            UPDATE_BACK_S, "cut" if cut else "update")]
    try:
        final = rig.sub.wait_for(BASE + "/update", lambda m: m.json()["state"] in UPDATE_FINAL,
                                 timeout=60, after=t_end).json()
    except AssertionError:
        return running, problems + ["no final update state (idle/done/failed) after the round"]
    time.sleep(0.5)                        # the info and config messages of this session
    infos = [m.json() for m in rig.sub.messages(BASE + "/info") if m.t > t_end]
    firmware = infos[-1]["firmware"] if infos else None
    now_running = final["version"]
    if now_running not in (running, target):
        problems.append("runs %s: neither the old %s nor the new %s" % (now_running, running, target))
    if firmware != now_running:
        problems.append("info says firmware %s, update says %s" % (firmware, now_running))
    if final["state"] == "failed" and final["reason"] != "rolled_back":
        problems.append("update failed with %s" % final["reason"])
    if not cut and phase == "none" and (final["state"], now_running) != ("done", target):
        problems.append("an uncut update ended %r" % final)
    # One cut cannot undo a switch (a rollback takes 3 trial boots or the probation deadline), nor make
    # one: the pointer decides.
    if cut and where in ("downloading", "verifying") and now_running != running:
        problems.append("cut before the switch, yet %s runs" % now_running)
    if cut and where not in ("downloading", "verifying") and now_running != target:
        problems.append("cut after the switch (%s), yet %s runs (%r)" % (where, now_running, final))
    # -- what the boot loader starts --
    p = fw_boot_loader.read_pointer(state)
    if p is None or p.get("active") is None:
        if now_running != VERSION_FACTORY:
            problems.append("the pointer names the factory install (%r) but %s runs" % (p, now_running))
    else:
        manifest = u.releases.get(p.get("version"))
        folder = os.path.join(state, "app_" + p["active"])
        if p.get("version") != now_running or p.get("trial") is not None:
            problems.append("pointer %r after the round, %s runs" % (p, now_running))
        if manifest is None:
            problems.append("pointer names version %r, never released" % p.get("version"))
        else:
            for f in manifest["files"]:
                path = os.path.join(folder, f["name"])
                if not os.path.exists(path) or _sha256_file(path) != f["sha256"]:
                    problems.append("%s in %s differs from release %s" % (f["name"], folder, p["version"]))
                    break
    # -- settings, other files, energy --
    configs = [m.json() for m in rig.sub.messages(BASE + "/config") if m.t > t_end]
    if not configs or any(configs[-1].get(key) != v for key, v in UPDATE_MARKER.items()):
        problems.append("config after the round: %r" % (configs[-1:],))
    try:
        with open(os.path.join(state, "settings.json")) as f:
            settings = json.load(f)
        if settings != u.settings:
            problems.append("settings.json changed: %r" % settings)
    except (OSError, ValueError) as e:
        problems.append("settings.json unreadable: %r" % e)
    files = _flash_files(state)
    if files != u.files:
        problems.append("files on flash changed: %s" % sorted(
            n for n in set(files) | set(u.files) if files.get(n) != u.files.get(n)))
    after = [rig.sub.wait_for(BASE + "/readings", timeout=10, after=online.t)]     # this session's first
    a = last_before[0] if last_before else [m for m in rig.sub.messages(BASE + "/readings") if m.t < t0][-1]
    b = after[0]
    wa, wb = a.json()["import_wh"], b.json()["import_wh"]
    lost_s = (wa - wb) * 3600 / POWER_W
    stats["loss"] = max(stats["loss"], lost_s)
    if wb < wa - 60 * POWER_W / 3600:
        problems.append("energy back from %.3f to %.3f Wh (%.0f s)" % (wa, wb, lost_s))
    if wb > wa + (b.t - a.t) * POWER_W / 3600 + 0.05:
        problems.append("energy counted twice: %.3f -> %.3f Wh in %.1f s" % (wa, wb, b.t - a.t))
    if not cut and lost_s > 1.0:
        problems.append("an orderly restart lost %.1f s of energy" % lost_s)
    log = rig.sim.log()[len(log_before):]
    stats["crashes"] += crashes(log)
    stats["stalls"] += len(late_warnings(log))
    return now_running, problems


def update_rounds(work, rng, phases, say=print):
    """One meter through len(phases) updates, round k cut in phases[k] ("download", "verification",
    "switch" or "none"; a "download" may be ("download", percent)). Returns (per-phase figures, the
    version running at the end, [(round, phase, where the cut landed, problems)])."""
    u = UpdateRounds(work, rng)
    per = {ph: {"rounds": 0, "new": 0, "old": 0, "recovery": 0.0, "failures": 0, "loss": 0.0,
                "where": {}, "crashes": 0, "stalls": 0} for ph in UPDATE_PHASES}
    running = VERSION_FACTORY
    target = None
    minor = 1
    rounds = []
    try:
        u.rig.start()
        online_after(u.rig, 0, 60)
        u.rig.sub.publish(BASE + "/config/set", json.dumps(UPDATE_MARKER))
        u.rig.sub.wait_for(BASE + "/config", lambda m: all(m.json().get(k) == v for k, v in
                                                           UPDATE_MARKER.items()), timeout=15)
        time.sleep(1)
        with open(os.path.join(u.state, "settings.json")) as f:
            u.settings = json.load(f)
        u.files = _flash_files(u.state)
        say("faults: updates: files on flash kept: %s; settings %s" % (", ".join(u.files), u.settings))
        u.rig.next_readings(2)
        for k, spec in enumerate(phases):
            phase, aim = spec if isinstance(spec, tuple) else (spec, None)
            if target is None:
                minor += 1
                target = "0.%d.0" % minor
            s = per[phase]
            s["rounds"] += 1
            s["last_where"] = "-"
            t = time.monotonic()
            try:
                now, problems = update_round(u, phase, aim, running, target, s)
            except Exception as e:          # the rig itself failed: a failure, the campaign goes on
                now, problems = running, ["%r" % e]
            s["new" if now == target else "old"] += 1
            if problems:
                s["failures"] += 1
                for pr in problems:
                    say("faults: updates round %d (%s, %s -> %s): %s" % (k, phase, running, target, pr))
            say("faults: updates round %d: phase %s%s, cut %s, runs %s (%.0f s)" % (
                k, phase, s.get("aim", ""), s["last_where"], now, time.monotonic() - t))
            rounds.append((k, phase, s["last_where"], problems))
            if now == target:
                running, target = now, None        # the next round needs a newer release
            try:
                u.rig.next_readings(2)
            except AssertionError:
                pass
        per["timing"] = {"verify_s": u.verify_s, "confirm_s": u.confirm_s}
        return per, running, rounds
    finally:
        u.close()


def updates(work, rng, rounds):
    """`rounds` updates of one meter, each cut at a random moment of a random phase (the first uncut:
    it measures how long verification and the switch take, for the moments of the next rounds)."""
    phases = ["none"] + [rng.choice(UPDATE_PHASES) for _ in range(rounds - 1)]
    per, running, _ = update_rounds(work, rng, phases, say=lambda s: print(s, flush=True))
    for ph in UPDATE_PHASES:
        s = per[ph]
        where = ", ".join("%s %d" % kv for kv in sorted(s["where"].items())) or "-"
        row("update, power cut %s" % {"download": "during the download", "verification":
                                      "during verification", "switch": "around the switch",
                                      "none": "never (uncut)"}[ph],
            s["rounds"], ended_new=s["new"], ended_old=s["old"], max_recovery_s="%.1f" % s["recovery"],
            worst_energy_loss_s="%.1f" % max(0.0, s["loss"]), cut_while=where, failures=s["failures"],
            crashes=s["crashes"], stalls=s["stalls"])
    tot = {key: sum(per[ph][key] for ph in UPDATE_PHASES) for key in ("rounds", "new", "old", "failures",
                                                                    "crashes", "stalls")}
    row("updates under power cuts, in all", tot["rounds"], ended_new=tot["new"], ended_old=tot["old"],
        versions="%s to %s" % (VERSION_FACTORY, running),
        max_recovery_s="%.1f" % max(per[ph]["recovery"] for ph in UPDATE_PHASES),
        verifying_s="%.2f" % per["timing"]["verify_s"],
        switch_to_confirmed_s="%.1f" % per["timing"]["confirm_s"],
        failures=tot["failures"], crashes=tot["crashes"], stalls=tot["stalls"])

CAMPAIGNS = {"broker": (broker_kills, 20), "outages": (broker_outages, 5), "network": (network_drops, 20),
             "join": (join_vanishing, 5), "power": (power_cuts, 100), "input": (bad_input, 300),
             "heap": (heap_cap, 1), "heaptable": (heap_table, 1), "watchdog": (watchdog, 3),
             "updates": (updates, 50)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated campaigns: " + ",".join(CAMPAIGNS))
    ap.add_argument("--quick", action="store_true", help="a tenth of the rounds")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runtime", choices=("micropython", "esp32-like"),
                    help="the simulator's runtime for every campaign (default: esp32-like for heap, "
                    "micropython for the rest)")
    ap.add_argument("--heap-seconds", type=float, default=HEAP["seconds"],
                    help="the length of one trial of the heap campaign")
    ap.add_argument("--heap-range", help="LO-HI in KB, searched in 8 KB steps by the heap campaign "
                    "(then 4 KB below the cap found)")
    args = ap.parse_args()
    if args.runtime:
        os.environ["AMPGUARD_RUNTIME"] = args.runtime      # tools/sim's default for every simulator
        HEAP["runtime"] = args.runtime
    HEAP["seconds"] = args.heap_seconds
    if args.heap_range:
        lo, hi = args.heap_range.split("-")
        HEAP["range"] = (int(lo), int(hi))
    names = args.only.split(",") if args.only else list(CAMPAIGNS)
    work = Path(tempfile.mkdtemp(prefix="ampguard-faults-"))
    t0 = time.monotonic()
    try:
        for name in names:
            fn, rounds = CAMPAIGNS[name]
            rounds = max(1, rounds // 10) if args.quick else rounds
            t = time.monotonic()
            fn(work, random.Random("%s-%d" % (name, args.seed)), rounds)
            print("faults: %s took %.0f s" % (name, time.monotonic() - t), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    bad_keys = ("crashes", "stalls", "broken_settings", "energy_backwards", "counted_twice", "never_back",
                "no_boot", "stored_while_failing", "gaps", "firmware_over_target_kb", "failures")
    print("\n| campaign | rounds | results |\n| --- | --- | --- |")
    failed = False
    for name, rounds, counts in RESULTS:
        print("| %s | %d | %s |" % (name, rounds, ", ".join("%s %s" % kv for kv in counts.items())))
        failed |= any(counts.get(k, 0) not in (0, "0", "0.0") for k in bad_keys)
    print("\n%s in %.0f s" % ("FAILURES" if failed else "all clean", time.monotonic() - t0))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
