"""tools/provision: write a device's identity (serial ending in G, 8-digit PIN) as at manufacturing.

    tools/provision --serial S --pin P|- (--state DIR | --port PORT) [--force]

Into a simulator state folder (--state DIR) or onto a device over USB (--port PORT; deploy the
firmware first: the device stores the identity with its own identity.save, atomically). Both values
are validated first; a bad one is refused and nothing is written. An existing, different identity is
only replaced with --force. `--pin -` reads the PIN from stdin (keeps it out of the process list).
The PIN is never printed: it is on the device's label.
"""
import argparse
import json
import os
import sys
import tempfile

import device

from mpenv import use_firmware_on_cpython

use_firmware_on_cpython()
import identity  # noqa: E402

# Runs on the device: the identity arrives as a file (not on a command line) and is stored by the
# firmware's own identity.save into the flash root (mpremote's working folder); an existing,
# different serial is kept unless forced.
DEVICE_SAVE = """
import json, os, identity
flash = os.getcwd()
with open('identity.new') as f:
    d = json.load(f)
os.remove('identity.new')
try:
    old = identity.load(flash)[0]
except (OSError, ValueError):
    old = None
if old not in (None, d['serial']) and not d['force']:
    print('provision-kept', old)
else:
    identity.save(flash, d['serial'], d['pin'])
    print('provision-saved')
"""


class Refused(Exception):
    pass


def to_state(state, serial, pin, force):
    if os.path.exists(os.path.join(state, identity.FILE)) and not force:
        try:
            current = identity.load(state)[0]
        except (OSError, ValueError):
            current = None      # unreadable: replacing it is the repair
        if current not in (None, serial):
            raise Refused("%s already holds serial %s (use --force to replace it)" % (state, current))
    os.makedirs(state, exist_ok=True)
    identity.save(state, serial, pin)


def to_device(port, serial, pin, force):
    fd, path = tempfile.mkstemp(suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"serial": serial, "pin": pin, "force": force}, f)
        out = device.run(port, ["exec", device.HOLD_WATCHDOG], ["cp", path, ":identity.new"],
                         ["exec", DEVICE_SAVE], ["reset"], capture=True)
    finally:
        os.unlink(path)
    if "provision-kept" in out:
        kept = out.split("provision-kept", 1)[1].split()[0]
        raise Refused("the device on %s already holds serial %s (use --force to replace it)" % (port, kept))
    if "provision-saved" not in out:
        raise Refused("the device did not confirm (is the firmware deployed?):\n%s" % out.strip())


def read_pin(arg):
    return sys.stdin.readline().strip() if arg == "-" else arg


def main(argv=None):
    p = argparse.ArgumentParser(prog="tools/provision", description=__doc__.splitlines()[0])
    p.add_argument("--serial", required=True, help="serial number, e.g. 2312000042G")
    p.add_argument("--pin", required=True, help="the 8-digit PIN of the label, or - to read it from stdin")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--state", help="simulator state folder (the simulated device's flash)")
    where.add_argument("--port", help="serial port of a device running the firmware, e.g. /dev/ttyUSB0")
    p.add_argument("--force", action="store_true", help="replace an existing, different identity")
    args = p.parse_args(argv)
    serial, pin = args.serial, read_pin(args.pin)
    try:
        identity.validate_serial(serial)
        identity.validate_pin(pin)      # its messages never contain the PIN
    except ValueError as e:
        raise SystemExit("provision: %s; nothing written" % e) from None
    try:
        if args.state:
            to_state(args.state, serial, pin, args.force)
        else:
            to_device(args.port, serial, pin, args.force)
    except (Refused, device.DeviceError, OSError) as e:
        raise SystemExit("provision: %s" % e) from None
    print("provision: serial %s written to %s (access point %s)"
          % (serial, args.state or args.port, identity.ap_ssid(serial)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
