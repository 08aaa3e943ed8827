"""A MicroPython device on a serial port, driven with mpremote (tools/deploy.py, tools/provision.py)."""
import os
import re
import subprocess

from mpenv import VENV_BIN

# Tests replace mpremote with a stand-in that records its commands.
MPREMOTE = os.environ.get("AMPGUARD_MPREMOTE") or os.path.join(VENV_BIN, "mpremote")
# mpremote stops the running firmware with Ctrl-C, but its hardware watchdog (app.WATCHDOG_MS) keeps
# counting and cannot be stopped: calling WDT() again gives it a new timeout (ESP32), 10 minutes for
# the session, which always ends with a reset. On a device without firmware this starts one: the
# reset at the end stops it again.
HOLD_WATCHDOG = "import machine; machine.WDT(timeout=600000).feed()"


class DeviceError(Exception):
    pass


def run(port, *commands, capture=False):
    """One mpremote session on port: `commands` are mpremote argument lists, chained with '+'."""
    argv = [MPREMOTE, "connect", port]
    for i, cmd in enumerate(commands):
        if i:
            argv.append("+")
        argv += list(cmd)
    try:
        proc = subprocess.run(argv, capture_output=capture, text=True)
    except OSError as e:
        raise DeviceError("cannot run mpremote (%s): run `make setup` first" % e) from None
    if proc.returncode != 0:
        detail = (proc.stdout or "") + (proc.stderr or "") if capture else ""
        raise DeviceError("mpremote failed on %s (exit %d)%s" % (port, proc.returncode,
                                                                  (":\n" + detail.strip()) if detail else ""))
    return proc.stdout if capture else ""


def mpy_abi(port):
    """(mpy version, sub-version, native arch) of the device's MicroPython; holds its watchdog."""
    out = run(port, ["exec", HOLD_WATCHDOG + "; import sys; print('mpy-abi', sys.implementation._mpy)"],
              capture=True)
    m = re.search(r"mpy-abi (\d+)", out)
    if not m:
        raise DeviceError("the device on %s did not report its MicroPython version:\n%s"
                          % (port, out.strip()))
    value = int(m.group(1))
    return value & 0xFF, (value >> 8) & 3, (value >> 10) & 0x3F


def reset(port):
    run(port, ["reset"])
