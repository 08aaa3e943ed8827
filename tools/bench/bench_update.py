"""Metering during a firmware update (make bench; issue 12): a simulated meter on each runtime, a real
mosquitto, a real HTTPS server (Python's ssl, a throw-away test CA) serving releases made by tools/release.

    .venv/bin/python tools/bench/bench_update.py [--seconds 30] [--download-s 10] [--runtime R ...]

Per runtime (micropython: releases for x64; esp32-like: for x86), three stretches, side by side:
(a) idle: --seconds with the meter online and nothing else to do;
(b) downloading: the same length while downloads run back to back: a tampered release (one bit of its
    last file), served slowly (--download-s per download), which the device downloads whole and then
    refuses (bad_hash), so it never restarts;
(c) installing: one good release at full speed, from the command to `done` after the restart, and a few
    windows more.
For each: windows closed, the latest window close (ms late), readings messages missed (seq gaps), and the
device's own log: windows it logged as closed more than 100 ms late. A window's lateness comes from the
readings themselves: `uptime_s` is the close's time since boot (ms) and the schedule moves by interval_s
per `seq`, so uptime_s - seq * interval_s is constant but for the lateness; the least value of a boot is
taken as on time (the device's own figure can be a millisecond or two more).
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

from brokers import make_tls_files  # noqa: E402
from release_server import ReleaseServer  # noqa: E402
from uplink_rig import BASE, Rig, online_after  # noqa: E402

RUNTIMES = {"micropython": "x64", "esp32-like": "x86"}
NEW = "0.2.0"
PIECE = 4096                  # release_server sends 4 KB at a time, sleeping slow_s after each
LATE_WARN = "window closed"           # app.py: a window closed more than LATE_WARN_MS late
STATUS = "latest window close "         # app.py's status line every 10 s: the most since boot


def tool(*args):
    out = subprocess.run([os.path.join(ROOT, "tools", args[0])] + [str(a) for a in args[1:]], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    if out.returncode:
        raise SystemExit("bench_update: tools/%s failed:\n%s%s" % (args[0], out.stdout, out.stderr))


def make_kit(work, archs):
    """The vendor key, the test PKI and, per arch, a good release and a tampered copy of it."""
    tool("release", "--new-key", work / "vendor.pem")
    kit = {"tls": make_tls_files(str(work / "pki")), "pub": work / "vendor.pub.json", "files": {}}
    for arch in archs:
        out = work / ("good-%s.agr" % arch)
        tool("release", "--key", work / "vendor.pem", "--version", NEW, "--board", "sim", "--arch", arch,
             "--out", out)
        good = out.read_bytes()
        tampered = bytearray(good)
        tampered[-10] ^= 0x01
        kit["files"]["/%s/good.agr" % arch] = good
        kit["files"]["/%s/tampered.agr" % arch] = bytes(tampered)
    return kit


class Run:
    """One simulated meter on one runtime, and what it published."""

    def __init__(self, work, runtime, kit, server):
        self.runtime, self.arch, self.server = runtime, RUNTIMES[runtime], server
        self.rig = Rig(work / runtime, files={"ca.pem": kit["tls"]["ca"], "update_key.json": str(kit["pub"])})
        self.rig.sim.args += ["--runtime", runtime]
        self.size = len(kit["files"]["/%s/good.agr" % self.arch])

    def start(self):
        self.rig.start()
        online_after(self.rig, 0, 180)          # esp32-like: the launcher may re-freeze the firmware first
        self.rig.sub.wait_for(BASE + "/update", lambda m: m.json()["state"] == "idle", timeout=30)
        self.rig.next_readings(3)
        return self

    def close(self):
        self.rig.close()

    def log_size(self):
        return len(self.rig.sim.log())

    def send(self, path, version=None):
        command = {"url": self.server.url("/%s/%s" % (self.arch, path))}
        if version:
            command["version"] = version
        t = time.monotonic()
        self.rig.sub.publish(BASE + "/update/set", json.dumps(command))
        return t

    def state(self, states, after, timeout):
        return self.rig.sub.wait_for(BASE + "/update", lambda m: m.json()["state"] in states,
                                     timeout=timeout, after=after)

    def first_state(self, state, after):
        for m in self.rig.sub.messages(BASE + "/update"):
            if m.t > after and m.json()["state"] == state:
                return m
        return None

    def readings(self):
        return [(m.t, m.json()) for m in self.rig.sub.messages(BASE + "/readings")]


def lateness(readings):
    """[(arrival time, boot number, seq, ms late)] for every readings message, boots split where seq
    falls; each boot's least uptime_s - seq * interval_s counts as on time."""
    boots, boot, last = [], [], None
    for t, r in readings:
        if last is not None and r["seq"] <= last:
            boots.append(boot)
            boot = []
        boot.append((t, r))
        last = r["seq"]
    boots.append(boot)
    out = []
    for n, boot in enumerate(boots):
        offsets = [r["uptime_s"] - r["seq"] * r["interval_s"] for _t, r in boot]
        zero = min(offsets) if offsets else 0.0
        out += [(t, n, r["seq"], round(1000 * (off - zero)))
                for (t, r), off in zip(boot, offsets, strict=True)]
    return out


def stretch_figures(run, t0, t1, log0, log1):
    late = [x for x in lateness(run.readings()) if t0 < x[0] <= t1]
    closed, missed = 0, 0
    for boot in sorted({x[1] for x in late}):
        seqs = [x[2] for x in late if x[1] == boot]
        closed += seqs[-1] - seqs[0] + 1
        missed += sum(b - a - 1 for a, b in zip(seqs, seqs[1:], strict=False))
    gaps = [b[0] - a[0] for a, b in zip(late, late[1:], strict=False)]
    lines = run.rig.sim.log()[log0:log1].splitlines()
    warned = [ln for ln in lines if LATE_WARN in ln and "late" in ln]
    status = [int(ln.rsplit(STATUS, 1)[1].split()[0]) for ln in lines if STATUS in ln]
    return {"seconds": t1 - t0, "closed": closed, "missed": missed,
            "latest_ms": max(x[3] for x in late) if late else None,
            "longest_gap_s": max(gaps) if gaps else None, "warned": len(warned),
            "device_max_ms": status[-1] if status else None}


def idle_stretch(run, seconds):
    t0, log0 = time.monotonic(), run.log_size()
    time.sleep(seconds)
    t1 = time.monotonic()
    time.sleep(0.5)                    # the last window's readings and log line in flight
    return stretch_figures(run, t0, t1, log0, run.log_size())


def download_stretch(run, seconds):
    """Tampered releases, one after the other, for `seconds`; the one running at the end finishes after
    the stretch (not counted)."""
    t0, log0 = time.monotonic(), run.log_size()
    spans, reasons, whole = [], [], 0
    while time.monotonic() < t0 + seconds:
        sent = run.send("tampered.agr")
        failed = run.state(("failed",), sent, timeout=seconds * 3 + 60)
        began = run.first_state("downloading", sent)
        reasons.append(failed.json()["reason"])
        spans.append((began.t, failed.t))
        if failed.t <= t0 + seconds:
            whole += 1
    t1 = t0 + seconds
    figures = stretch_figures(run, t0, t1, log0, run.log_size())
    busy = sum(max(0.0, min(e, t1) - max(b, t0)) for b, e in spans)
    figures.update(downloads=whole, started=len(spans), busy_s=busy,
                   download_s=sum(e - b for b, e in spans) / len(spans), reasons=sorted(set(reasons)))
    return figures


def install_stretch(run, after_windows=10):
    """One good release: command -> done (after the restart) -> windows enough for the new firmware's
    first status line."""
    t0, log0 = time.monotonic(), run.log_size()
    sent = run.send("good.agr", NEW)
    done = run.state(("done", "failed"), sent, timeout=240)
    if done.json()["state"] != "done":
        raise SystemExit("bench_update: %s: the install failed: %s" % (run.runtime, done.json()))
    run.rig.next_readings(after_windows)
    t1 = time.monotonic()
    figures = stretch_figures(run, t0, t1, log0, run.log_size())
    marks = {s: run.first_state(s, sent) for s in ("downloading", "verifying", "installing", "restarting")}
    figures.update(
        download_s=marks["verifying"].t - marks["downloading"].t,
        verify_s=marks["installing"].t - marks["verifying"].t,
        restart_s=done.t - marks["restarting"].t,
        total_s=done.t - sent)
    return figures


def measure(run, seconds):
    return {"idle": idle_stretch(run, seconds), "downloading": download_stretch(run, seconds),
            "install": install_stretch(run)}


def show(results, seconds, download_s):
    names = list(results)
    print("metering during an update: %d s stretches, readings every 1 s, release %s for board sim"
          % (seconds, NEW))

    def row(label, fn):
        cells = []
        for n in names:
            try:
                cells.append(fn(results[n]))
            except (TypeError, ZeroDivisionError):
                cells.append("-")
        print("%-58s" % label + "".join("%22s" % c for c in cells))

    def ms(v):
        return "-" if v is None else "%d ms" % v

    row("", lambda r: r["runtime"])
    row("release size", lambda r: "%d bytes" % r["size"])
    for key, title in (("idle", "(a) idle"), ("downloading", "(b) downloads back to back"),
                       ("install", "(c) one install with its restart")):
        print(title)
        row("  stretch", lambda r, k=key: "%.1f s" % r[k]["seconds"])
        row("  windows closed", lambda r, k=key: r[k]["closed"])
        row("  latest window close (from readings)", lambda r, k=key: ms(r[k]["latest_ms"]))
        row("  windows the device logged > 100 ms late", lambda r, k=key: r[k]["warned"])
        row("  device's status line at the end: latest since boot",
            lambda r, k=key: ms(r[k]["device_max_ms"]))
        row("  readings messages missed (seq gaps)", lambda r, k=key: r[k]["missed"])
        row("  longest time between readings messages", lambda r, k=key: "%.2f s" % r[k]["longest_gap_s"])
        if key == "downloading":
            row("  downloads started / finished in it (reason)",
                lambda r: "%d / %d (%s)" % (r["downloading"]["started"], r["downloading"]["downloads"],
                                            ",".join(r["downloading"]["reasons"])))
            row("  time spent downloading", lambda r: "%.1f s" % r["downloading"]["busy_s"])
            row("  download time, served slowly (target %.0f s)" % download_s,
                lambda r: "%.1f s, %.0f B/s" % (r["downloading"]["download_s"],
                                                r["size"] / r["downloading"]["download_s"]))
            row("  latest window close, downloading / idle (idle >= 1 ms)",
                lambda r: "%.1fx" % (r["downloading"]["latest_ms"] / max(1, r["idle"]["latest_ms"])))
        if key == "install":
            row("  download at full speed (connect, signature, files)",
                lambda r: "%.2f s, %.0f B/s" % (r["install"]["download_s"],
                                                r["size"] / r["install"]["download_s"]))
            row("  verifying (files read back from flash)", lambda r: "%.2f s" % r["install"]["verify_s"])
            row("  restarting -> done (new firmware online)", lambda r: "%.1f s" % r["install"]["restart_s"])
            row("  command -> done", lambda r: "%.1f s" % r["install"]["total_s"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the idle and download stretches")
    ap.add_argument("--download-s", type=float, default=10.0, help="how long one slow download takes")
    ap.add_argument("--runtime", action="append", choices=sorted(RUNTIMES),
                    help="a runtime to measure (repeatable; default: both)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    runtimes = args.runtime or list(RUNTIMES)
    work = Path(tempfile.mkdtemp(prefix="ampguard-bench-update-"))
    server = None
    results = {}
    try:
        kit = make_kit(work, sorted({RUNTIMES[r] for r in runtimes}))
        server = ReleaseServer(kit["tls"])
        server.files.update(kit["files"])
        for path, body in kit["files"].items():
            if path.endswith("tampered.agr"):
                server.behaviour[path] = {"slow_s": args.download_s / max(1, -(-len(body) // PIECE))}
        # One runtime at a time: the machine's cores are not shared between the two meters measured.
        for rt in runtimes:
            run = Run(work, rt, kit, server)
            try:
                run.start()
                results[rt] = dict(measure(run, args.seconds), runtime=rt, size=run.size)
            except (AssertionError, SystemExit) as e:
                raise SystemExit("bench_update: %s: %s\nlog:\n%s"
                                 % (rt, e, run.rig.sim.log()[-3000:])) from None
            finally:
                run.close()
        show(results, args.seconds, args.download_s)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
        return 0
    finally:
        if server is not None:
            server.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
