"""A simulated meter wired to a real mosquitto and a real subscriber (tests of SPEC 3)."""
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
