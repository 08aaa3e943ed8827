"""make faults: a fault-injection campaign over the simulator and a real mosquitto (minutes, not hours).

Each campaign throws one kind of fault at a simulated meter and counts what went wrong: crashes
(the device process died other than by our hand), stalls (a readings window closed more than 100 ms
late), broken settings files, energy regressions (the counters went backwards or lost more than 60 s),
gaps (across a broker outage the windows were not one per second, or the energy counted differs from
the power for the time that passed).
At the end a table; the exit status is 1 when any of those counts is not 0.

Uses the test suite's real parts (tests/host: simctl, brokers, uplink_rig). Options: --only NAME[,NAME],
--quick (fewer rounds, for a smoke run), --seed N.
"""
import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests", "host"), os.path.join(ROOT, "tools")]

from brokers import Mosquitto, Subscriber  # noqa: E402
from simctl import Sim  # noqa: E402
from uplink_rig import (  # noqa: E402
    BASE,
    SCENARIO,
    Rig,
    api_readings,
    assert_on_time,
    broker_outage,
    continuity_problems,
    late_warnings,
    windows_on_time,
)

from mpenv import use_firmware_on_cpython  # noqa: E402

use_firmware_on_cpython()
import settings as fw_settings  # noqa: E402

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


# -- heap and watchdog ----------------------------------------------------------------------------
def _survives(work, heap_kb, seconds):
    rig = Rig(work / ("heap-%d" % heap_kb), settings={"ha_discovery": True})
    rig.sim.args += ["--heap", "%dK" % heap_kb]
    try:
        rig.start()
        end = time.monotonic() + seconds
        first = readings(rig.sim, timeout=15)
        if first is None:
            return False, rig.sim.log()
        while time.monotonic() < end:          # portal clients meanwhile
            for path in ("/", "/api/status", "/api/readings", "/api/scan"):
                try:
                    urllib.request.urlopen("http://%s%s" % (rig.sim.http, path), timeout=3).read()
                except (OSError, urllib.error.HTTPError):
                    pass
            time.sleep(0.2)
        last = readings(rig.sim, timeout=3)
        log = rig.sim.log()
        ok = (last is not None and crashes(log) == 0 and "MemoryError" not in log
              and len(rig.sub.messages(BASE + "/readings")) >= seconds - 3
              and windows_on_time(first, last))
        return ok, log
    finally:
        rig.close()


def heap_cap(work, rng, rounds, seconds=20):
    sizes = list(range(64, 513, 16))
    lo, hi = 0, len(sizes) - 1
    if not _survives(work, sizes[hi], seconds)[0]:
        row("smallest heap that survives", 0, smallest_kb="> %d" % sizes[hi], crashes=1)
        return
    while lo < hi:                               # the smallest size in `sizes` that survives
        mid = (lo + hi) // 2
        if _survives(work, sizes[mid], seconds)[0]:
            hi = mid
        else:
            lo = mid + 1
    sim_kb = simulator_share_kb()
    row("smallest heap that survives", 1, smallest_kb=sizes[lo], simulated_hardware_kb=sim_kb,
        firmware_kb=sizes[lo] - sim_kb, target_kb=128)


def simulator_share_kb():
    """What the simulated hardware (hal_sim and its ADC tables) holds of the heap: not on a device."""
    import simbuild

    from mpenv import MICROPYTHON, micropython_env

    image = simbuild.build()
    env = micropython_env()
    env.update(MICROPYPATH=image + ":" + env["MICROPYPATH"], AMPGUARD_BOARD="sim",
               AMPGUARD_STATE=tempfile.mkdtemp(prefix="ampguard-probe-"),
               AMPGUARD_SCENARIO=os.path.join(ROOT, "tools", "scenarios", "default.json"))
    out = subprocess.run([MICROPYTHON, "-c", "import heap_probe"], env=env, capture_output=True, text=True,
                         timeout=60, cwd=image)
    return int(out.stdout.split()[-1]) // 1024


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


CAMPAIGNS = {"broker": (broker_kills, 20), "outages": (broker_outages, 5), "network": (network_drops, 20),
             "join": (join_vanishing, 5), "power": (power_cuts, 100), "input": (bad_input, 300),
             "heap": (heap_cap, 1), "watchdog": (watchdog, 3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated campaigns: " + ",".join(CAMPAIGNS))
    ap.add_argument("--quick", action="store_true", help="a tenth of the rounds")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
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
                "no_boot", "stored_while_failing", "gaps")
    print("\n| campaign | rounds | results |\n| --- | --- | --- |")
    failed = False
    for name, rounds, counts in RESULTS:
        print("| %s | %d | %s |" % (name, rounds, ", ".join("%s %s" % kv for kv in counts.items())))
        failed |= any(counts.get(k, 0) not in (0, "0") for k in bad_keys)
    print("\n%s in %.0f s" % ("FAILURES" if failed else "all clean", time.monotonic() - t0))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
