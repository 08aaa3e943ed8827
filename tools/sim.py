"""tools/sim: run the whole firmware on the MicroPython unix port with simulated hardware.

See SPEC section 6 and docs/design.md ("The simulator"). This CPython process is the device's
power supply and reset line: it starts the MicroPython child, restarts it on a reset or a
watchdog timeout, and turns SIGTERM/SIGINT into an orderly shutdown of the child.
"""
import argparse
import os
import subprocess
import sys

from mpenv import MICROPYTHON, ROOT, micropython_env


def parse_args(argv):
    p = argparse.ArgumentParser(prog="tools/sim", description=__doc__.splitlines()[0])
    p.add_argument("--state", default=os.path.join(ROOT, ".sim-state"),
                   help="the device's flash folder (identity, settings, energy); new = factory-new")
    p.add_argument("--scenario", help="JSON file describing the simulated world (re-read on change)")
    p.add_argument("--http", default="127.0.0.1:8080", help="portal address HOST:PORT")
    p.add_argument("--dns", default="127.0.0.1:5353", help="DNS server address HOST:PORT")
    p.add_argument("--broker", help="MQTT broker HOST:PORT, overriding the configured one")
    p.add_argument("--serial", help="serial number for a new state folder (ends in G)")
    p.add_argument("--pin", help="8-digit PIN for a new state folder")
    p.add_argument("--heap", help="MicroPython heap size, as -X heapsize (e.g. 128K)")
    p.add_argument("--capture", metavar="FILE", help="write raw ADC sample sets to FILE and exit")
    p.add_argument("--seconds", type=float, default=2.0, help="length of --capture")
    p.add_argument("--sensor", choices=("home", "public"), help="CT type for --capture")
    p.add_argument("--seed", type=int, default=1, help="random seed of the simulated front end")
    return p.parse_args(argv)


def capture(args):
    cmd = [MICROPYTHON]
    if args.heap:
        cmd += ["-X", "heapsize=" + args.heap]
    cmd += [os.path.join(ROOT, "tools", "simhw", "capture_main.py"), "--out", args.capture,
            "--seconds", str(args.seconds), "--seed", str(args.seed)]
    if args.scenario:
        cmd += ["--scenario", args.scenario]
    if args.sensor:
        cmd += ["--sensor", args.sensor]
    return subprocess.call(cmd, env=micropython_env())


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.capture:
        return capture(args)
    raise SystemExit("tools/sim: running the device is not built yet")


if __name__ == "__main__":
    sys.exit(main())
