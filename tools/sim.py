"""tools/sim: run the whole firmware on the MicroPython unix port with simulated hardware.

See contract §6 and docs/design.md ("The simulator"). This CPython process is the device's
power supply and reset line: it starts the MicroPython child, restarts it on a reset or a
watchdog timeout, and turns SIGTERM/SIGINT into an orderly shutdown of the child.

Two runtimes (named as in tools/mpenv.py): `micropython`, the 64-bit unix port of .venv with the
firmware precompiled to .mpy (tools/simbuild.py), and `esp32-like`, the 32-bit float32 build of
tools/esp32like with the firmware frozen in, as in an ESP32 image (only the simulated hardware,
tools/simhw, is loaded from files). On both, the device has the ESP32's 10 sockets
(tools/simhw/lwip/socket.py); --ticks-start-ms starts its ticks near their wrap (docs/design.md, "The
simulator's limits").
"""
import argparse
import hashlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

import simbuild

from mpenv import MICROPYTHON, ROOT, micropython_env, use_firmware_on_cpython

use_firmware_on_cpython()

RESET_EXIT_CODE = 75          # tools/simhw/hal_sim.py: the firmware asked for a hard reset
CRASH_RESTART_S = 1.0         # an unhandled crash restarts like the device's watchdog would
SHUTDOWN_GRACE_S = 15.0       # orderly shutdown may take this long before the power is cut
STOP_REQUEST_WAIT_S = 3.0     # the stop request on stdin not taken by then (no burst came): a SIGINT
DEFAULT_SERIAL = "2312000042G"
DEFAULT_PIN = "12345678"
DEFAULT_SCENARIO = os.path.join(ROOT, "tools", "scenarios", "default.json")
SIMHW = os.path.join(ROOT, "tools", "simhw")
# The device's `socket`, keeping to the ESP32's 10 lwIP sockets (tools/simhw/lwip/socket.py)
SOCKET_BUDGET = os.path.join(SIMHW, "lwip")
RUNTIMES = ("micropython", "esp32-like")
TICKS_PERIOD_MS = 1 << 30     # the esp32-like runtime's (and the ESP32's) ticks_ms period
CLONE_NEWTIME = 0x80
CLONE_NEWUSER = 0x10000000
# The OTA twin's partitions and otadata in the state folder (tools/simhw/hal_sim.py); this launcher is its
# bootloader. Images that boot are run from a copy here, named by their content.
OTADATA = "otadata.json"
OTA_FIRST = "ota_0"
IMAGES = os.path.join(ROOT, "build", "esp32like", "images")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="tools/sim", description=__doc__.splitlines()[0])
    p.add_argument("--state", default=os.path.join(ROOT, ".sim-state"),
                   help="the device's flash folder (identity, settings, energy); new = factory-new")
    p.add_argument("--scenario", help="JSON file describing the simulated world (re-read on change); "
                   "without it no load and no Wi-Fi networks, except for --capture "
                   "(tools/scenarios/default.json)")
    p.add_argument("--http", default="127.0.0.1:8080", help="portal address HOST:PORT")
    p.add_argument("--dns", default="127.0.0.1:5353", help="DNS server address HOST:PORT")
    p.add_argument("--broker", help="MQTT broker HOST:PORT, overriding the configured one")
    p.add_argument("--ntp", help="NTP server HOST:PORT, overriding the ntp_server setting (the simulated "
                   "clock starts at 2000-01-01 until it is set, as on an ESP32)")
    p.add_argument("--serial", help="serial number for a new state folder (ends in G)")
    p.add_argument("--pin", help="8-digit PIN for a new state folder")
    p.add_argument("--heap", help="MicroPython heap size, as -X heapsize (e.g. 128K)")
    p.add_argument("--runtime", choices=RUNTIMES, default=os.environ.get("AMPGUARD_RUNTIME") or RUNTIMES[0],
                   help="micropython: the 64-bit unix port, firmware as .mpy; esp32-like: the 32-bit "
                   "float32 build (tools/esp32like), firmware frozen in (default: $AMPGUARD_RUNTIME, "
                   "else micropython)")
    p.add_argument("--capture", metavar="FILE", help="write raw ADC sample sets to FILE and exit")
    p.add_argument("--seconds", type=float, default=2.0, help="length of --capture")
    p.add_argument("--sensor", choices=("home", "public"), help="CT type for --capture")
    p.add_argument("--ticks-start-ms", type=int, metavar="N",
                   help="test option: the device's time.ticks_ms() reads N at each power-on (ticks_us "
                   "N*1000 modulo its period), e.g. a few seconds before the 2^30 ms wrap; esp32-like "
                   "runtime only; needs Linux time namespaces (docs/design.md, the simulator's limits)")
    p.add_argument("--seed", type=int, default=1,
                   help="random seed of the simulated ADC's noise (the same seed gives the same samples)")
    args = p.parse_args(argv)
    if args.ticks_start_ms is not None:
        if args.runtime != "esp32-like":
            p.error("--ticks-start-ms needs --runtime esp32-like: the 64-bit runtime's ticks wrap at 2^62 ms")
        if not 0 <= args.ticks_start_ms < TICKS_PERIOD_MS:
            p.error("--ticks-start-ms must be from 0 to 2^30 - 1")
    return args


def esp32like_binary():
    """build/esp32like/micropython with the current firmware frozen in: tools/esp32like/build.py
    re-freezes it first when the firmware changed (seconds; one build at a time, build.py locks)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "esp32like_build", os.path.join(ROOT, "tools", "esp32like", "build.py"))
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    return recipe.build()


def ota_boot(state, flashed):
    """(binary, partition label) of what the ESP-IDF bootloader starts on the esp32-like runtime, from the
    twin's otadata (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE, every MicroPython ESP32 build since 1.21):
    - no otadata (blank, as after a serial flash): ota_0, holding the binary that was flashed (the build's);
    - state "new" (set_boot since the last boot): that partition, now "pending_verify";
    - still "pending_verify" at this reset, never marked valid (mark_app_valid_cancel_rollback): rolled back
      to the previous partition, the image "aborted" (the firmware that runs reports failed/rolled_back);
    - otherwise the partition otadata names. A partition never written is ota_0's flashed binary."""
    path = os.path.join(state, OTADATA)
    try:
        with open(path) as f:
            data = json.load(f)
        label = data["boot"]
    except (OSError, ValueError, KeyError, TypeError):
        return flashed, OTA_FIRST
    if data.get("state") == "pending_verify":
        back = data.get("previous") or OTA_FIRST
        say("bootloader: %s was not marked valid before this reset: rolled back to %s" % (label, back))
        data = {"boot": back, "state": "valid", "previous": None, "aborted": label}
        label = back
    elif data.get("state") == "new":
        data["state"] = "pending_verify"
    else:
        data = None
    if data is not None:
        with open(path + ".tmp", "w") as f:
            json.dump(data, f)
        os.replace(path + ".tmp", path)
    image = os.path.join(state, label + ".bin")
    if not os.path.exists(image):
        return flashed, label
    with open(image, "rb") as f:
        blob = f.read()
    os.makedirs(IMAGES, exist_ok=True)
    run = os.path.join(IMAGES, hashlib.sha256(blob).hexdigest()[:16])
    if not os.path.exists(run):
        with open(run + ".%d" % os.getpid(), "wb") as f:
            f.write(blob)
        os.chmod(run + ".%d" % os.getpid(), 0o755)
        os.replace(run + ".%d" % os.getpid(), run)
    return run, label


def runtime(name, heap=None):
    """(command, environment, working folder) of a MicroPython process of the simulated device on the
    runtime `name`; the caller appends a script or ["-c", code].
    micropython: the firmware precompiled to .mpy first on the path (source where this machine has no
    native emitter). esp32-like: the firmware is frozen in the binary, and the path holds only ".frozen" and
    the simulated hardware's folder, which is also the working folder: the unix port puts a script's
    folder (with -c: the working folder) first on sys.path, and a firmware file there would shadow
    the frozen module."""
    env = micropython_env()
    if name == "esp32-like":
        cmd = [esp32like_binary()]
        env["MICROPYPATH"] = ".frozen:" + SIMHW
        cwd = SIMHW
    else:
        cmd = [MICROPYTHON]
        image = simbuild.build()
        if image:
            env["MICROPYPATH"] = image + ":" + env["MICROPYPATH"]
        cwd = image or ROOT
    if heap:
        cmd += ["-X", "heapsize=" + heap]
    return cmd, env, cwd


def capture(args):
    cmd, env, _ = runtime(args.runtime, args.heap)
    cmd += [os.path.join(SIMHW, "capture_main.py"), "--out", os.path.abspath(args.capture),
            "--seconds", str(args.seconds), "--seed", str(args.seed)]
    # A capture of nothing is no use as an example: without --scenario, the default world (a load).
    cmd += ["--scenario", os.path.abspath(args.scenario or DEFAULT_SCENARIO)]
    if args.sensor:
        cmd += ["--sensor", args.sensor]
    return subprocess.call(cmd, env=env)


def say(msg):
    print("sim: " + msg, flush=True)


def prepare_state(args):
    """A new state folder is a factory-new device: it gets its identity as at manufacturing."""
    import identity

    os.makedirs(args.state, exist_ok=True)
    path = os.path.join(args.state, "identity.json")
    if os.path.exists(path):
        with open(path) as f:
            serial = json.load(f).get("serial")
        if args.serial and args.serial != serial:
            raise SystemExit("tools/sim: %s already belongs to serial %s (use a new --state for %s)"
                             % (args.state, serial, args.serial))
        return serial
    serial = args.serial or DEFAULT_SERIAL
    pin = args.pin or DEFAULT_PIN
    try:
        identity.save(args.state, serial, pin)
    except ValueError as e:
        raise SystemExit("tools/sim: %s" % e) from None
    return serial


def _die_with_launcher():
    # SIGKILL of the launcher is a power cut: the device must go down with it, not linger.
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def monotonic_offset_ns(ticks_start_ms):
    """How far ahead of this process's CLOCK_MONOTONIC the device's must run for its ticks_ms() to read
    ticks_start_ms now: the unix port's ticks_ms/ticks_us (and asyncio's, in C) are CLOCK_MONOTONIC
    modulo the ticks period, so the shift moves all of them, consistently, as on a device that has been
    running that long (ticks_us then reads ticks_start_ms*1000 modulo 2^30: both wrap together)."""
    period_ns = TICKS_PERIOD_MS * 1000000
    return (ticks_start_ms * 1000000 - time.monotonic_ns()) % period_ns


def _enter_shifted_clock(offset_ns):
    """In the device's process before exec: a new Linux time namespace (5.6+) whose CLOCK_MONOTONIC runs
    offset_ns ahead; the exec'd runtime starts in it. Needs CAP_SYS_ADMIN (root); without it, in a
    user namespace of its own first (where the process is root, mapped to the caller's uid)."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.unshare(CLONE_NEWTIME) != 0:
        uid, gid = os.getuid(), os.getgid()
        if libc.unshare(CLONE_NEWUSER | CLONE_NEWTIME) != 0:
            err = ctypes.get_errno()
            raise OSError(err, "unshare(CLONE_NEWTIME): " + os.strerror(err))
        for name, text in (("setgroups", "deny"), ("uid_map", "0 %d 1" % uid), ("gid_map", "0 %d 1" % gid)):
            with open("/proc/self/" + name, "w") as f:
                f.write(text)
    with open("/proc/self/timens_offsets", "w") as f:
        f.write("monotonic %d %d\n" % divmod(offset_ns, 1000000000))


def _device_preexec(offset_ns):
    def preexec():
        _die_with_launcher()
        if offset_ns is not None:
            _enter_shifted_clock(offset_ns)
    return preexec


class Device:
    """One simulated power-on of the device: the MicroPython child process."""

    def __init__(self, args, wdt_port):
        cmd, env, cwd = runtime(args.runtime, args.heap)
        # Before the simulated hardware and the firmware (after ".frozen", which has no socket module):
        # `import socket` on the device finds the socket budget, not the built-in.
        path = env["MICROPYPATH"].split(":")
        path.insert(1 if path[0] == ".frozen" else 0, SOCKET_BUDGET)
        env["MICROPYPATH"] = ":".join(path)
        if args.runtime == "esp32-like":
            # The image in the app partition the twin's bootloader picks (frozen-image updates)
            cmd[0], env["AMPGUARD_OTA_RUNNING"] = ota_boot(os.path.abspath(args.state), cmd[0])
            # The boot loader (firmware/main.py, not frozen) from a folder of its own: it starts the
            # frozen firmware, or an update installed in the state folder's app_a/app_b (.mpy files
            # for x86, put before .frozen on sys.path; docs/design.md, "Updates").
            cmd.append(os.path.join(simbuild.loader(), "main.py"))
        else:       # the loader beside the .mpy image (tools/simbuild.py), else firmware/main.py
            folder = cwd if cwd != ROOT else os.path.join(ROOT, "firmware")
            cmd.append(os.path.join(folder, "main.py"))
            cwd = ROOT
        env.update({
            "AMPGUARD_BOARD": "sim",
            "AMPGUARD_STATE": os.path.abspath(args.state),
            "AMPGUARD_SCENARIO": os.path.abspath(args.scenario) if args.scenario else "",
            "AMPGUARD_HTTP": args.http,
            "AMPGUARD_DNS": args.dns,
            "AMPGUARD_BROKER": args.broker or "",
            "AMPGUARD_NTP": args.ntp or "",
            "AMPGUARD_WDT_PORT": str(wdt_port),
            "AMPGUARD_SEED": str(args.seed),
        })
        # Its own session: a terminal's Ctrl-C reaches only the launcher, which passes on exactly one.
        env["AMPGUARD_STOP_ON_STDIN"] = "1"           # see stop() and hal_sim.StopRequest
        shift = None if args.ticks_start_ms is None else monotonic_offset_ns(args.ticks_start_ms)
        try:
            self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, start_new_session=True, stdin=subprocess.PIPE,
                                         preexec_fn=_device_preexec(shift))
        except subprocess.SubprocessError as e:     # only the clock's shift can fail in the child
            raise SystemExit("tools/sim: --ticks-start-ms: cannot shift the device's clock (Linux time "
                             "namespaces, kernel 5.6+, as root or with user namespaces): %s" % e) from None
        self.wdt_timeout_s = None
        self.last_feed = time.monotonic()

    def on_watchdog_message(self, msg):
        if msg.startswith(b"start "):
            self.wdt_timeout_s = int(msg.split()[1]) / 1000.0
        self.last_feed = time.monotonic()

    def watchdog_expired(self):
        return self.wdt_timeout_s is not None and time.monotonic() - self.last_feed > self.wdt_timeout_s

    def stop(self):
        """Ask for an orderly shutdown: a line on its stdin, seen at its next sampling burst (a
        signal landing inside a garbage collection can leave the unix port's heap locked)."""
        try:
            self.proc.stdin.write(b"stop\n")
            self.proc.stdin.flush()
        except OSError:       # it is going already
            pass

    def interrupt(self):
        """The stop as a Ctrl-C, when the stdin request was not seen (no sampling burst comes)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def run_device(args):
    serial = prepare_state(args)
    wdt = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    wdt.bind(("127.0.0.1", 0))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    say("device %s, state %s, portal http://%s/, DNS %s%s, runtime %s" % (
        serial, args.state, args.http, args.dns, ", broker " + args.broker if args.broker else "",
        args.runtime))
    if args.ticks_start_ms is not None:
        say("ticks_ms() starts at %d at each power-on, %.1f s before it wraps"
            % (args.ticks_start_ms, (TICKS_PERIOD_MS - args.ticks_start_ms) / 1000))
    boots = 0
    while True:
        boots += 1
        dev = Device(args, wdt.getsockname()[1])
        stopping_since = None
        while dev.proc.poll() is None:
            if stop and stopping_since is None:
                stopping_since = time.monotonic()
                dev.stop()
                interrupted = False
            if (stopping_since is not None and not interrupted
                    and time.monotonic() - stopping_since > STOP_REQUEST_WAIT_S):
                dev.interrupt()
                interrupted = True
            if stopping_since is not None and time.monotonic() - stopping_since > SHUTDOWN_GRACE_S:
                say("orderly shutdown took too long, cutting power")
                dev.kill()
                return 1
            ready, _, _ = select.select([wdt], [], [], 0.2)
            if ready:
                dev.on_watchdog_message(wdt.recv(64))
            if stopping_since is None and dev.watchdog_expired():
                say("watchdog: not fed for %.1f s, resetting the device" % dev.wdt_timeout_s)
                dev.kill()
                break
        code = dev.proc.returncode
        if dev.watchdog_expired():
            continue
        if stop:
            say("stopped (exit %s)" % code)
            return 0 if code == 0 else 1
        if code == RESET_EXIT_CODE:
            say("device reset, booting again")
        elif code == -signal.SIGKILL:
            say("device lost power (SIGKILL), booting again")
        else:
            say("device crashed (exit %s), restarting in %.0f s" % (code, CRASH_RESTART_S))
            time.sleep(CRASH_RESTART_S)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.capture:
        return capture(args)
    return run_device(args)


if __name__ == "__main__":
    sys.exit(main())
