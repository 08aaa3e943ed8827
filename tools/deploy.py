"""`make deploy PORT=... BOARD=...`: precompile the firmware for the ESP32 and copy it onto a device.

Every firmware module except main.py is compiled with mpy-cross -march=xtensawin (viper and native
code included); main.py stays source, as MicroPython runs it at boot; the board file becomes
board.mpy. Settings, identity and energy on the device are left alone.
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys

import boardfile

from mpenv import MPY_CROSS, ROOT, VENV_BIN


def build(board_path, build_dir):
    """Compile into build_dir; returns the (local file, device path) plan."""
    if os.path.isdir(build_dir):
        shutil.rmtree(build_dir)
    os.makedirs(build_dir)
    plan = []
    sources = sorted(glob.glob(os.path.join(ROOT, "firmware", "*.py")))
    for src in sources + [board_path]:
        base = os.path.basename(src)[:-3]
        if src == board_path:
            base = "board"
        if base == "main":
            out = os.path.join(build_dir, "main.py")
            shutil.copyfile(src, out)
        else:
            out = os.path.join(build_dir, base + ".mpy")
            proc = subprocess.run([MPY_CROSS, "-march=xtensawin", "-o", out, src],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit("deploy: %s does not compile for the ESP32:\n%s" % (src, proc.stderr))
        plan.append((out, ":" + os.path.basename(out)))
    return plan


def copy_to_device(port, plan):
    cmd = [os.path.join(VENV_BIN, "mpremote"), "connect", port]
    for local, remote in plan:
        cmd += ["cp", local, remote, "+"]
    cmd += ["reset"]
    return subprocess.call(cmd)


def main(argv=None):
    p = argparse.ArgumentParser(prog="tools/deploy.py", description=__doc__.splitlines()[0])
    p.add_argument("--board", required=True, help="board file name in boards/, e.g. olimex_esp32_poe")
    p.add_argument("--port", help="serial port of the device, e.g. /dev/ttyUSB0")
    p.add_argument("--dry-run", action="store_true", help="build and print the plan, copy nothing")
    p.add_argument("--build-dir", default=os.path.join(ROOT, "build", "esp32"))
    args = p.parse_args(argv)
    try:
        board, board_path = boardfile.load(args.board)
    except ValueError as e:
        raise SystemExit("deploy: %s" % e) from None
    if board.HAL != "hal_esp32":
        raise SystemExit("deploy: board %s is not a device board (HAL %s)" % (board.NAME, board.HAL))
    if not args.dry_run and not args.port:
        raise SystemExit("deploy: --port is needed (or --dry-run)")
    plan = build(board_path, args.build_dir)
    for local, remote in plan:
        print("%-40s -> %s" % (os.path.relpath(local, ROOT), remote))
    if args.dry_run:
        return 0
    return copy_to_device(args.port, plan)


if __name__ == "__main__":
    sys.exit(main())
