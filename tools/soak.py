"""make soak: the simulated meter for a long run (default 60 min) at a capped heap, with portal clients,
a flapping broker and a changing load. Reports the high-water mark of the heap in use after a collection
(the device logs it every 10 s), its drift from start to end (a leak or fragmentation), readings lost
while the broker was up, and the latest a window closed.

Options: --minutes N, --heap SIZE (default 320K: the smallest that survives make faults, plus margin),
--seed N.
"""
import argparse
import os
import random
import re
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests", "host"), os.path.join(ROOT, "tools")]

from uplink_rig import BASE, SCENARIO, Rig, late_warnings  # noqa: E402


def portal_clients(sim, stop, counts):
    paths = ("/", "/api/status", "/api/readings", "/api/scan", "/generate_204")
    while not stop.is_set():
        for p in paths:
            try:
                urllib.request.urlopen("http://%s%s" % (sim.http, p), timeout=5).read()
                counts["ok"] += 1
            except OSError:
                counts["failed"] += 1
        stop.wait(0.5)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--heap", default="320K", help="heap cap; make faults finds the smallest")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="ampguard-soak-"))
    rig = Rig(work, settings={"ha_discovery": True})
    rig.sim.args += ["--heap", args.heap]
    rig.start()
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0}
    clients = threading.Thread(target=portal_clients, args=(rig.sim, stop, counts), daemon=True)
    clients.start()
    end = time.monotonic() + args.minutes * 60
    up_windows = []            # (t_start, t_end) while the broker was up
    flaps = 0
    try:
        t_up = time.monotonic()
        while time.monotonic() < end:
            # a changing load: every phase's current moves every few seconds
            phases = [{"current_a": rng.uniform(0, 60), "angle_deg": rng.uniform(-40, 60)} for _ in range(3)]
            world = dict(SCENARIO, phases=phases)
            rig.sim.write_scenario(world)
            time.sleep(rng.uniform(2, 6))
            if rng.random() < 0.1:                 # the broker flaps
                up_windows.append((t_up, time.monotonic()))
                rig.broker.kill()
                time.sleep(rng.uniform(1, 20))
                rig.broker.start()
                flaps += 1
                t_up = time.monotonic() + 65       # reconnecting may take a back-off
        up_windows.append((t_up, time.monotonic()))
    finally:
        stop.set()
        clients.join(10)
        log = rig.sim.log()
        msgs = rig.sub.messages(BASE + "/readings")
        rig.close()
    free = [int(x) for x in re.findall(r"free heap (\d+)", log)]
    late = [int(x) for x in re.findall(r"latest window close (\d+) ms late", log)]
    seqs = [(m.t, m.json()["seq"]) for m in msgs]
    lost = 0
    for a, b in zip(seqs, seqs[1:], strict=False):
        if any(s <= a[0] and b[0] <= e for s, e in up_windows) and b[1] > a[1] + 1:
            lost += b[1] - a[1] - 1
    heap_bytes = {"K": 1024, "M": 1024 * 1024}.get(args.heap[-1].upper(), 1) * int(args.heap.rstrip("KkMm"))
    print("soak: %.0f min at heap %s, %d broker flaps, %d portal requests (%d failed)" % (
        args.minutes, args.heap, flaps, counts["ok"] + counts["failed"], counts["failed"]))
    if free:
        print("soak: heap in use after a collection, high-water mark %d of %d bytes (free: first %d, min %d, "
              "last %d; a falling last-vs-first means a leak or fragmentation)" % (
                  heap_bytes - min(free), heap_bytes, free[0], min(free), free[-1]))
    print("soak: readings messages %d, lost while the broker was up %d" % (len(msgs), lost))
    print("soak: latest window close %d ms; windows later than 100 ms: %d; crashes: %d" % (
        max(late) if late else -1, len(late_warnings(log)), log.count("device crashed")))
    return 1 if log.count("device crashed") or lost or late_warnings(log) else 0


if __name__ == "__main__":
    sys.exit(main())
