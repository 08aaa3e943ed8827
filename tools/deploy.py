"""`make deploy BOARD=... PORT=...`: build the firmware for the ESP32 and copy it onto a device.

    python tools/deploy.py --board NAME [--port PORT] [--dry-run] [--build-dir build/esp32]

The board file (boards/NAME.py) is validated first: a bad one stops everything before a file is
written. Every firmware module except main.py is compiled with mpy-cross -march=xtensawin (viper code
included); main.py stays source, as MicroPython runs it at boot; the board file becomes board.mpy.
Modules with native code need the device's exact mpy sub-version: on a device with another one they are
copied as source instead. main.py is the boot loader (it starts this install, or an update installed over
the air); an update on the device (app_a/, app_b/, app.json) is removed, so this install is what runs.
Identity, settings and energy on the device are left alone.
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys

import boardfile
import device

from mpenv import MPY_CROSS, ROOT

DEFAULT_BUILD_DIR = os.path.join(ROOT, "build", "esp32")
MARKER = ".ampguard-build"      # marks a build dir deploy may empty; other non-empty ones are refused
XTENSAWIN = 10                  # mpy arch code of the ESP32 (MP_NATIVE_ARCH_XTENSAWIN)


class Item:
    """One file of the plan: what is copied (local) under which name on the device (remote)."""

    def __init__(self, local, remote, source=None, native=False):
        self.local = local
        self.remote = remote
        self.source = source    # the .py it was compiled from, if any
        self.native = native


def mpy_header(path):
    """(version, sub-version, arch) of an .mpy file."""
    with open(path, "rb") as f:
        head = f.read(4)
    if len(head) < 4 or head[0:1] != b"M":
        raise ValueError("%s is not an .mpy file" % path)
    return head[1], head[2] & 3, head[2] >> 2


def prepare_build_dir(build_dir):
    if os.path.isdir(build_dir) and os.listdir(build_dir):
        if build_dir != DEFAULT_BUILD_DIR and not os.path.exists(os.path.join(build_dir, MARKER)):
            raise SystemExit("deploy: %s is not empty and not a deploy build folder; choose another"
                             " --build-dir" % build_dir)
        for name in os.listdir(build_dir):
            path = os.path.join(build_dir, name)
            if os.path.isfile(path):
                os.remove(path)
    os.makedirs(build_dir, exist_ok=True)
    open(os.path.join(build_dir, MARKER), "w").close()


def compile_mpy(src, out):
    proc = subprocess.run([MPY_CROSS, "-march=xtensawin", "-o", out, src], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit("deploy: %s does not compile for the ESP32:\n%s" % (src, proc.stderr.strip()))
    return mpy_header(out)[2] != 0


def build(board_path, build_dir):
    """Compile into build_dir; returns the plan, a list of Item."""
    prepare_build_dir(build_dir)
    firmware = sorted(glob.glob(os.path.join(ROOT, "firmware", "*.py")))
    sources = [(p, os.path.basename(p)[:-3]) for p in firmware]
    sources.append((board_path, "board"))
    plan = []
    for src, module in sources:
        if module == "main":
            out = os.path.join(build_dir, "main.py")
            shutil.copyfile(src, out)
            plan.append(Item(out, "main.py"))
        else:
            out = os.path.join(build_dir, module + ".mpy")
            plan.append(Item(out, module + ".mpy", src, compile_mpy(src, out)))
    return plan


def fit_to_device(plan, abi):
    """The plan for a device reporting (version, sub-version, arch); SystemExit when it cannot run it."""
    version, sub, arch = abi
    ours = next((mpy_header(i.local) for i in plan if i.native), None)
    if version != 6:
        raise SystemExit("deploy: the device's MicroPython reads .mpy version %d, this build is version 6:"
                         " flash MicroPython >= 1.22 for the ESP32" % version)
    if arch != XTENSAWIN:
        raise SystemExit("deploy: the device is not an ESP32 (native arch %d, the firmware is built for"
                         " xtensawin)" % arch)
    if ours is None or ours[1] == sub:
        return plan
    print("deploy: the device's mpy sub-version is %d, mpy-cross makes %d: native modules go as source"
          % (sub, ours[1]))
    return [Item(i.source, i.remote[:-4] + ".py") if i.native else i for i in plan]


def stale_files(plan):
    # MicroPython imports x.py before x.mpy: a leftover of the other kind must go.
    out = []
    for i in plan:
        name, ext = os.path.splitext(i.remote)
        out.append(name + (".py" if ext == ".mpy" else ".mpy"))
    return out


# What this install replaces besides the files of the plan: an update installed over the air (its folders
# and the boot loader's pointer, firmware/slots.py), so that the boot loader starts the files copied now.
UPDATE_FILES = ["app.json", "app.json.bak", "app.json.tmp"]
UPDATE_FOLDERS = ["app_a", "app_b"]


def copy_to_device(port, plan):
    remove = ("import os\nfor f in %r:\n try:\n  os.remove(f)\n except OSError:\n  pass\n"
              "for d in %r:\n try:\n  for f in os.listdir(d):\n   os.remove(d + '/' + f)\n  os.rmdir(d)\n"
              " except OSError:\n  pass") % (stale_files(plan) + UPDATE_FILES, UPDATE_FOLDERS)
    device.run(port, ["exec", device.HOLD_WATCHDOG], ["exec", remove],
               ["cp"] + [i.local for i in plan] + [":"], ["reset"])


def restart(port):
    try:
        device.reset(port)
    except device.DeviceError as e:
        print("deploy: %s" % e, file=sys.stderr)


def show(plan):
    total = 0
    for i in plan:
        size = os.path.getsize(i.local)
        total += size
        local = os.path.relpath(i.local, ROOT) if i.local.startswith(ROOT + os.sep) else i.local
        print("%-44s -> :%-18s %6d bytes%s" % (local, i.remote, size,
                                               "  (native code)" if i.native else ""))
    print("%d files, %d bytes" % (len(plan), total))


def main(argv=None):
    p = argparse.ArgumentParser(prog="tools/deploy.py", description=__doc__.splitlines()[0])
    p.add_argument("--board", required=True, help="board file in boards/, e.g. olimex_esp32_poe")
    p.add_argument("--port", help="serial port of the device, e.g. /dev/ttyUSB0")
    p.add_argument("--dry-run", action="store_true", help="build and print the plan, touch no device")
    p.add_argument("--build-dir", default=DEFAULT_BUILD_DIR)
    args = p.parse_args(argv)
    try:
        board, board_path = boardfile.load(args.board)
    except ValueError as e:
        raise SystemExit("deploy: %s" % e) from None
    if board.HAL != "hal_esp32":
        raise SystemExit("deploy: board %s runs on %s, not on a device (use tools/sim)"
                         % (board.NAME, board.HAL))
    if not args.dry_run and not args.port:
        raise SystemExit("deploy: --port is needed (or --dry-run), e.g. --port /dev/ttyUSB0")
    plan = build(board_path, os.path.abspath(args.build_dir))
    show(plan)
    if args.dry_run:
        return 0
    try:
        abi = device.mpy_abi(args.port)
    except device.DeviceError as e:
        raise SystemExit("deploy: %s" % e) from None
    try:
        plan = fit_to_device(plan, abi)
    except SystemExit:
        restart(args.port)      # back to the firmware it had
        raise
    try:
        copy_to_device(args.port, plan)
    except device.DeviceError as e:
        raise SystemExit("deploy: %s" % e) from None
    print("deploy: board %s installed on %s; the device restarts" % (board.NAME, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
