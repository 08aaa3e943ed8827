"""Uplink latency on loopback (make bench): a simulated meter, a real mosquitto and a real subscriber.

Prints, over --rounds changes of the simulated world:
- scenario file changed on disk -> first readings message that reflects it (goal: one interval + 300 ms);
- over-limit current -> `alarm` message (checked on every ~0.27 s burst, so it need not wait for the
  window), and its distance from the readings message of the window that saw it (negative: earlier;
  goal: within 300 ms of that window's end).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(ROOT, "tests", "host"), os.path.join(ROOT, "tools")]

from brokers import Mosquitto, Subscriber  # noqa: E402
from simctl import free_port  # noqa: E402

BASE = "ampguard/2312000042G"
LIMIT_A = 60.0


def world(l1_amps):
    return {"mains": {"voltage_v": [230.0, 230.0, 230.0]}, "lan": {"link": True},
            "phases": [{"current_a": l1_amps}, {"current_a": 5.0}, {"current_a": 0.0}]}


def write_json(path, obj):
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f)
    os.replace(path + ".tmp", path)


def first(sub, topic, pred, after, timeout=15):
    """Arrival time and payload of the first message on topic after `after` that pred accepts."""
    m = sub.wait_for(topic, lambda m: m.t > after and pred(m.payload), timeout)
    return m.t, m.payload


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="ampguard-bench-uplink-")
    broker = Mosquitto(str(Path(work) / "broker")).start()
    port = broker.port
    sim = None
    try:
        state = os.path.join(work, "state")
        os.makedirs(state)
        write_json(os.path.join(state, "settings.json"), {"supply_max_a": LIMIT_A})
        scen = os.path.join(work, "scenario.json")
        write_json(scen, world(10.0))
        watch = Subscriber(broker.host, port, topics=[BASE + "/#"])
        sim = subprocess.Popen([os.path.join(ROOT, "tools", "sim"), "--state", state, "--scenario", scen,
                                "--broker", "127.0.0.1:%d" % port, "--http", "127.0.0.1:%d" % free_port(),
                                "--dns", "127.0.0.1:%d" % free_port()],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        first(watch, BASE + "/readings", lambda p: True, 0, timeout=30)
        change, settled, alarm, alarm_vs_window = [], [], [], []
        for k in range(args.rounds):
            amps = 40.0 + k            # a new value each round, far from 10 A: even a few ms of it show
            time.sleep((0.37 * (k + 1)) % 1)   # changes land at different moments of the window
            t0 = time.monotonic()
            write_json(scen, world(amps))
            # Reflecting it: the first window with samples after the change (even 1 % of a window at 40 A
            # lifts 10 A by 0.7 A; the noise is 0.01 A); settled: a whole window at the new value.
            t1, _ = first(watch, BASE + "/readings",
                                lambda p: json.loads(p)["phases"][0]["current_a"] > 10.1, t0)
            t2, _ = first(watch, BASE + "/readings",
                                lambda p, a=amps: abs(json.loads(p)["phases"][0]["current_a"] - a) < 0.3, t0)
            change.append(t1 - t0)
            settled.append(t2 - t0)
            time.sleep(1.5)
            t0 = time.monotonic()
            write_json(scen, world(LIMIT_A + 10))
            ta, _ = first(watch, BASE + "/alarm", lambda p: json.loads(p)["l"] == 1, t0)
            tw, _ = first(watch, BASE + "/readings",
                                lambda p: json.loads(p)["phases"][0]["current_a"] > LIMIT_A, t0)
            alarm.append(ta - t0)
            alarm_vs_window.append(ta - tw)
            write_json(scen, world(10.0))
            time.sleep(1.5)

        def row(name, xs, goal):
            print("%-46s min %6.0f ms  median %6.0f ms  max %6.0f ms   (goal %s)" % (
                name, 1000 * min(xs), 1000 * sorted(xs)[len(xs) // 2], 1000 * max(xs), goal))

        print("uplink latency on loopback, interval 1 s, %d rounds" % args.rounds)
        row("scenario change -> first readings reflecting it", change, "<= 1300 ms")
        row("scenario change -> first whole window at it", settled, "information")
        row("over-limit current -> alarm", alarm, "<= 1300 ms")
        row("alarm - readings of the window that saw it", alarm_vs_window, "<= 300 ms")
        return 0
    finally:
        if sim is not None:
            sim.terminate()
            sim.wait(20)
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
