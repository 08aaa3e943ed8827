"""A simulated meter wired to a real mosquitto and a real subscriber (tests of contract §3)."""
import json
import os
import time
import urllib.request

from brokers import Mosquitto, Subscriber
from simctl import Sim

SERIAL = "2312000042G"
BASE = "ampguard/" + SERIAL
# Online over LAN at once; L1 10 A resistive, L2 16 A lagging 25 degrees, L3 idle.
SCENARIO = {"mains": {"voltage_v": [230.0, 230.0, 230.0], "freq_hz": 50.0},
            "phases": [{"current_a": 10.0}, {"current_a": 16.0, "angle_deg": 25.0}, {"current_a": 0.0}],
            "adc": {"noise_lsb": 1.5}, "lan": {"link": True}}


def seed_state(sim, settings=None, files=None):
    """Flash contents before the first boot: settings.json and other files (e.g. the CA)."""
    os.makedirs(sim.state, exist_ok=True)
    if settings is not None:
        with open(os.path.join(sim.state, "settings.json"), "w") as f:
            json.dump(settings, f)
    for name, src in (files or {}).items():
        with open(src, "rb") as f, open(os.path.join(sim.state, name), "wb") as g:
            g.write(f.read())


class Rig:
    """mosquitto + a subscriber to the device's topics + the simulator pointed at that broker."""

    def __init__(self, tmp_path, scenario=SCENARIO, broker_arg=True, settings=None, files=None,
                 topics=("ampguard/#", "homeassistant/#"), env=None):
        self.broker = Mosquitto(str(tmp_path / "broker"))
        self.broker.start()
        self.sub = Subscriber(self.broker.host, self.broker.port, topics=list(topics))
        args = ["--broker", "127.0.0.1:%d" % self.broker.port] if broker_arg else []
        self.sim = Sim(tmp_path / "device", scenario, args=args, env=env)
        seed_state(self.sim, settings, files)

    def start(self):
        self.sim.start()
        return self

    def close(self):
        for c in (self.sim.close, self.sub.close, self.broker.stop):
            try:
                c()
            except Exception:
                pass

    def readings(self, after=None):
        return [m.json() for m in self.sub.messages(BASE + "/readings")
                if after is None or m.t > after]

    def next_readings(self, n, timeout=None):
        """The next n readings messages from now."""
        start = time.monotonic()
        deadline = start + (timeout or n * 2 + 10)
        while time.monotonic() < deadline:
            got = self.readings(after=start)
            if len(got) >= n:
                return got[:n]
            time.sleep(0.1)
        raise AssertionError("%d readings in %.0f s; log:\n%s" % (
            len(self.readings(after=start)), deadline - start, self.sim.log()[-3000:]))


def api_readings(sim, timeout=20):
    """The portal's latest readings; waits (bounded) for the device's first window after a boot."""
    end = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen("http://%s/api/readings" % sim.http, timeout=3) as r:
                body = json.loads(r.read())
            if body.get("seq"):
                return body
        except OSError:
            if time.monotonic() > end:
                raise
        if time.monotonic() > end:
            raise AssertionError("no readings from the portal in %d s" % timeout)
        time.sleep(0.2)


def late_warnings(log):
    """The window closes the device logged as late (more than 100 ms)."""
    return [line for line in log.splitlines() if "window closed" in line and "late" in line]


def windows_on_time(first, last, interval=1.0):
    """Between two readings, one window closed per interval of uptime (within one window)."""
    return abs((last["seq"] - first["seq"]) - (last["uptime_s"] - first["uptime_s"]) / interval) <= 1


def assert_on_time(readings, interval=1.0, slack=0.1):
    """Consecutive readings: seq grows by one and uptime_s by the interval (within slack)."""
    for a, b in zip(readings, readings[1:], strict=False):
        assert b["seq"] == a["seq"] + 1, (a["seq"], b["seq"])
        assert abs(b["uptime_s"] - a["uptime_s"] - interval) <= slack, (a["uptime_s"], b["uptime_s"])


# -- a broker outage: one in make test (tests/host/test_uplink_faults.py), five in a row in make faults --
POWER_W = 230.0 * 10.0 + 230.0 * 16.0 * 0.9063      # SCENARIO's active power: L1 + L2 (25 degrees)


def online_after(rig, t, timeout):
    """The device's `online` status that arrived after monotonic time t (AssertionError if none came)."""
    return rig.sub.wait_for(BASE + "/status", lambda m: m.payload == b"online" and m.t > t, timeout=timeout)


def watch_portal_readings(sim, seconds):
    """Poll the portal's readings for `seconds`; (first, last) of what it showed meanwhile."""
    seen = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        r = api_readings(sim)
        seen[r["seq"]] = r
        time.sleep(0.25)
    return seen[min(seen)], seen[max(seen)]


def broker_outage(rig, seconds=30.0, back_within=75.0):
    """Stop the rig's broker for `seconds` while watching the portal's readings, start it again on its
    port and wait for the device to say `online`. Returns what was seen, for the caller to judge:
    before (the last readings message before the stop), during ((first, last) portal readings while the
    broker was down), back (whether `online` came within back_within s: the back-off is at most 60 s)
    and after (the next 3 readings messages once back, else [])."""
    before = rig.next_readings(2)[-1]
    rig.broker.stop()
    t_stop = time.monotonic()
    during = watch_portal_readings(rig.sim, seconds - (time.monotonic() - t_stop))
    rig.broker.start()
    t_start = time.monotonic()
    try:
        online_after(rig, t_start, back_within)
    except AssertionError:
        return {"before": before, "during": during, "back": False, "after": []}
    return {"before": before, "during": during, "back": True, "after": rig.next_readings(3)}


def continuity_problems(a, b, power_w=POWER_W, interval=1.0):
    """What went wrong between two readings messages of a steady load: windows not one per interval of
    uptime (a gap or a stall), or energy that does not equal the power for the time that passed (within
    1 %: lost, or counted twice). Empty when nothing did."""
    problems = []
    dt = b["uptime_s"] - a["uptime_s"]
    if abs((b["seq"] - a["seq"]) - dt / interval) > 1:
        problems.append("windows: seq %d -> %d in %.1f s of uptime" % (a["seq"], b["seq"], dt))
    counted = b["import_wh"] - a["import_wh"]
    expected = power_w * dt / 3600
    if abs(counted - expected) > 0.01 * expected:
        problems.append("energy: %.3f Wh counted, %.3f Wh expected in %.1f s" % (counted, expected, dt))
    return problems
