"""make soak: the simulated meter for a long run (default 60 min) at a capped heap, under the load of
make faults' heap campaign: a phone on the portal (the page and its API calls, three at once, twice a
second), Home Assistant discovery on, TLS to the broker, config/set traffic, plus a broker that flaps
(killed for 1-20 s now and then) and a load that changes every few seconds.

By default on the ESP32-like runtime (32-bit, float32, firmware frozen) at 100K. Reports the cap, the
simulated hardware's share and the firmware's (cap minus hardware), the high-water mark of the heap in
use after a collection and the smallest largest free block (the simulated hardware's heap probe, every
second), the free heap's drift from start to end (a leak or fragmentation), MemoryErrors, readings lost
while the broker was up, portal requests that failed, and the latest a window closed. Exit 1 on a crash,
a MemoryError, a lost reading, a late window or a failed portal request.

Options: --minutes N, --runtime micropython|esp32-like, --heap SIZE (default 100K on esp32-like, 352K
on micropython), --seed N.
"""
import argparse
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests", "host"), os.path.join(ROOT, "tools")]

import faults  # noqa: E402
from uplink_rig import BASE, SCENARIO, late_warnings  # noqa: E402

DEFAULT_HEAP = {"esp32-like": "100K", "micropython": "352K"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--runtime", choices=("esp32-like", "micropython"), default="esp32-like")
    ap.add_argument("--heap", help="heap cap (default %s); make faults finds the smallest" % ", ".join(
        "%s on %s" % (v, k) for k, v in DEFAULT_HEAP.items()))
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    heap = args.heap or DEFAULT_HEAP[args.runtime]
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="ampguard-soak-"))
    rig = faults.HeapRig(work / "soak", args.runtime, heap)
    rig.start()
    if faults.readings(rig.sim, timeout=60) is None:       # booted, its portal up: the phone may come
        rig.close()
        raise SystemExit("soak: no readings from the device within 60 s of boot:\n" + rig.sim.log()[-3000:])
    end = time.monotonic() + args.minutes * 60
    up_windows = []            # (t_start, t_end) while the broker was up
    flaps = 0
    try:
        with faults.PhoneAndConfig(rig, rng) as load:
            t_up = time.monotonic()
            while time.monotonic() < end:
                # a changing load: every phase's current moves every few seconds
                phases = [{"current_a": rng.uniform(0, 60), "angle_deg": rng.uniform(-40, 60)}
                          for _ in range(3)]
                rig.sim.write_scenario(dict(SCENARIO, phases=phases))
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
        log = rig.sim.log()
        msgs = rig.sub.messages(BASE + "/readings")
        rig.close()
    probes = faults.heap_probes(log)
    late = [int(x) for x in re.findall(r"latest window close (\d+) ms late", log)]
    seqs = [(m.t, m.json()["seq"]) for m in msgs]
    lost = 0
    for a, b in zip(seqs, seqs[1:], strict=False):
        if any(s <= a[0] and b[0] <= e for s, e in up_windows) and b[1] > a[1] + 1:
            lost += b[1] - a[1] - 1
    cap = {"K": 1024, "M": 1024 * 1024}.get(heap[-1].upper(), 1) * int(heap.rstrip("KkMm"))
    hw = faults.simulator_share(args.runtime)
    errors = faults.memory_errors(log)
    crashes = faults.crashes(log)
    c = load.counts
    print("soak: %.0f min on %s at heap %s: simulated hardware %.1f KB, firmware %.1f KB (cap minus hardware)"
          % (args.minutes, args.runtime, heap, hw / 1024, (cap - hw) / 1024))
    print("soak: %d broker flaps, %d portal requests (%d failed%s), %d config/set" % (
        flaps, c["portal_ok"] + c["portal_failed"], c["portal_failed"],
        ", first: " + load.failures[0] if load.failures else "", c["config_set"]))
    if probes:
        free = [p[2] for p in probes]
        print("soak: heap in use after a collection, high-water mark %.1f KB of %.1f KB; largest free block "
              "min %.1f KB; free first %.1f, min %.1f, last %.1f KB (%d probes; a falling last-vs-first "
              "means a leak or fragmentation)" % (
                  max(p[1] for p in probes) / 1024, probes[0][0] / 1024, min(p[3] for p in probes) / 1024,
                  free[0] / 1024, min(free) / 1024, free[-1] / 1024, len(probes)))
    print("soak: MemoryError lines %d%s" % (len(errors), ", first: " + errors[0].strip() if errors else ""))
    print("soak: readings messages %d, lost while the broker was up %d" % (len(msgs), lost))
    print("soak: latest window close %d ms; windows later than 100 ms: %d; crashes: %d" % (
        max(late) if late else -1, len(late_warnings(log)), crashes))
    return 1 if crashes or lost or late_warnings(log) or errors or c["portal_failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
