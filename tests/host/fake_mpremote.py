"""Stand-in for mpremote in tests: a "device" whose flash is the folder FAKE_DEVICE_DIR.

Records every invocation (one JSON list per line in FAKE_MPREMOTE_LOG). `exec` code runs on the
MicroPython unix port in that folder with the firmware importable (as on a device, minus `machine`);
the watchdog-holding line is only recorded, and the ABI probe answers FAKE_MPY_ABI (sys.implementation._mpy).
`cp` copies into the folder, `reset` is recorded. FAKE_MPREMOTE_FAIL=1 makes the connection fail.
"""
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MICROPYTHON = os.path.join(ROOT, ".venv", "bin", "micropython")


def run_exec(code, flash):
    if "machine.WDT" in code:
        if "mpy-abi" in code:
            print("mpy-abi", os.environ["FAKE_MPY_ABI"])
        return 0
    env = dict(os.environ, MICROPYPATH=os.path.join(ROOT, "firmware") + ":.frozen")
    proc = subprocess.run([MICROPYTHON, "-c", code], cwd=flash, env=env, capture_output=True, text=True)
    sys.stdout.write(proc.stdout + proc.stderr)
    return proc.returncode


def main(argv):
    with open(os.environ["FAKE_MPREMOTE_LOG"], "a") as f:
        f.write(json.dumps(argv) + "\n")
    if os.environ.get("FAKE_MPREMOTE_FAIL"):
        print("mpremote: failed to access the port", file=sys.stderr)
        return 1
    flash = os.environ["FAKE_DEVICE_DIR"]
    assert argv[0] == "connect", argv
    commands, cmd = [], []
    for a in argv[2:]:
        if a == "+":
            commands.append(cmd)
            cmd = []
        else:
            cmd.append(a)
    commands.append(cmd)
    for cmd in commands:
        if cmd[0] == "exec":
            if run_exec(cmd[1], flash) != 0:
                return 1
        elif cmd[0] == "cp":
            *sources, dest = cmd[1:]
            for src in sources:
                name = dest[1:] if len(sources) == 1 and dest != ":" else os.path.basename(src)
                shutil.copyfile(src, os.path.join(flash, name))
        elif cmd[0] != "reset":
            print("fake mpremote: unknown command %r" % cmd, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
