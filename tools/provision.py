"""tools/provision: write a device's identity (serial ending in G, 8-digit PIN) as at manufacturing.

Into a simulator state folder (--state DIR) or onto a device over USB (--port PORT). Both values
are validated first; a bad one is refused and nothing is written. The PIN is never printed.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

from mpenv import VENV_BIN, use_firmware_on_cpython

use_firmware_on_cpython()
import identity  # noqa: E402


def to_state(state, serial, pin, force):
    path = os.path.join(state, "identity.json")
    if os.path.exists(path) and not force:
        try:
            current = identity.load(state)[0]
        except (OSError, ValueError):
            current = None
        if current != serial:
            raise SystemExit("provision: %s already holds serial %s (use --force to replace it)"
                             % (state, current))
    os.makedirs(state, exist_ok=True)
    identity.save(state, serial, pin)


def to_device(port, serial, pin):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"serial": serial, "pin": pin}, f)
    try:
        # Copy beside, then rename on the device: a cut cable never leaves half an identity.
        mp = os.path.join(VENV_BIN, "mpremote")
        code = subprocess.call([mp, "connect", port, "cp", f.name, ":identity.json.tmp", "+", "exec",
                                "import os; os.rename('identity.json.tmp', 'identity.json')"])
    finally:
        os.unlink(f.name)
    if code != 0:
        raise SystemExit("provision: mpremote failed (exit %d)" % code)


def main(argv=None):
    p = argparse.ArgumentParser(prog="tools/provision", description=__doc__.splitlines()[0])
    p.add_argument("--serial", required=True)
    p.add_argument("--pin", required=True)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--state", help="simulator state folder")
    where.add_argument("--port", help="serial port of a device running MicroPython")
    p.add_argument("--force", action="store_true", help="replace an existing, different identity")
    args = p.parse_args(argv)
    try:
        identity.validate_serial(args.serial)
        identity.validate_pin(args.pin)
    except ValueError as e:
        raise SystemExit("provision: %s" % e) from None
    if args.state:
        to_state(args.state, args.serial, args.pin, args.force)
    else:
        to_device(args.port, args.serial, args.pin)
    print("provision: serial %s written (access point %s)" % (args.serial, identity.ap_ssid(args.serial)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
