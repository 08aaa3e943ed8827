"""tools/provision: write a device's identity (serial ending in G, 8-digit PIN) as at manufacturing,
and calibrate its front end against a reference load.

    tools/provision --serial S --pin P|- (--state DIR | --port PORT) [--force]
    tools/provision --calibrate --reference-v V --reference-a A --url URL (--state DIR | --port PORT)
                    [--windows N]
    tools/provision --update-key KEY.pub.json (--state DIR | --port PORT) [--force]

Into a simulator state folder (--state DIR) or onto a device over USB (--port PORT; deploy the
firmware first: the device stores the identity with its own identity.save, atomically). Both values
are validated first; a bad one is refused and nothing is written. An existing, different identity is
only replaced with --force. `--pin -` reads the PIN from stdin (keeps it out of the process list).
The PIN is never printed: it is on the device's label.

--calibrate: with the unit's inputs on a reference load (every phase's voltage at V volts, every CT
carrying A amps, in phase), reads N readings windows (default 5) from the running unit's portal
(--url, e.g. http://127.0.0.1:8080 for a simulator started with --http 127.0.0.1:8080), and sets
each ADC channel's gain so the unit reads the reference: new gain = stored gain x reference / mean
reading. Gains further than 10 % from 1 (a wiring or reference fault) are refused and nothing is
written. The gains are stored atomically in the unit's calibration.json (firmware/calibration.py):
a settings reset keeps them, MQTT cannot change them; the unit applies them from its next start
(a device is reset at the end). Calibrate with factory settings (the settings' own gains at 1).

--update-key: the vendor's public update key (KEY.pub.json from `tools/release --new-key`:
{"p256": "<128 hex digits, x||y>"}), checked to be a point of the P-256 curve, stored atomically as
the unit's update_key.json (firmware/release.py); the unit accepts only releases signed with the matching
private key (docs/releases.md). A bad key is refused and nothing is written; an existing, different key
is only replaced with --force.
"""
import argparse
import json
import os
import sys
import tempfile
import time
import urllib.request

import device

from mpenv import use_firmware_on_cpython

use_firmware_on_cpython()
import calibration  # noqa: E402
import identity  # noqa: E402
import release  # noqa: E402
import store  # noqa: E402

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


# Runs on the device: the gains arrive as a file and are stored by the firmware's calibration.save.
DEVICE_CALIBRATE = """
import json, os, calibration
flash = os.getcwd()
with open('calibration.new') as f:
    d = json.load(f)
os.remove('calibration.new')
calibration.save(flash, d)
print('calibration-saved')
"""
DEVICE_READ_CAL = """
import json, os, calibration
print('calibration-now', json.dumps(calibration.load(os.getcwd())))
"""
REFERENCE_V = (50.0, 300.0)
REFERENCE_A = (0.5, 500.0)


def read_windows(url, n, timeout_s=10.0):
    """n distinct readings windows (by seq) from a unit's /api/readings."""
    seen = {}
    deadline = time.monotonic() + timeout_s + 2.0 * n
    while len(seen) < n:
        if time.monotonic() > deadline:
            raise Refused("%s gave %d readings windows of the %d needed" % (url, len(seen), n))
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/api/readings", timeout=5) as r:
                doc = json.loads(r.read())
        except (OSError, ValueError):
            time.sleep(0.3)
            continue
        if doc.get("phases") and doc.get("seq") is not None and doc["seq"] not in seen:
            seen[doc["seq"]] = doc
        time.sleep(0.3)
    return [seen[k] for k in sorted(seen)][-n:]


def new_gains(windows, ref_v, ref_a, stored):
    """Gains so the unit reads the reference: stored x reference / mean reading, per channel; voltages
    derived from L1 keep theirs. Refused (Refused) when a phase lacks voltage or current or a gain would be
    further than calibration.MAX_CORRECTION from 1."""
    gains = {"v_gain": list(stored["v_gain"]), "i_gain": list(stored["i_gain"])}
    phases = windows[-1]["phases"]
    if len(phases) != 3:
        raise Refused("the unit measures %d phase(s); calibrate it with 3 phases" % len(phases))
    for p in range(3):
        flags = windows[-1]["phases"][p].get("flags", [])
        v = sum(w["phases"][p]["voltage_v"] for w in windows) / len(windows)
        a = sum(w["phases"][p]["current_a"] for w in windows) / len(windows)
        if "derived_voltage" not in flags:
            if not v > 0:
                raise Refused("L%d reads no voltage: is the reference voltage connected?" % (p + 1))
            gains["v_gain"][p] = stored["v_gain"][p] * ref_v / v
        if not a > 0:
            raise Refused("L%d reads no current: is its CT on the reference load?" % (p + 1))
        gains["i_gain"][p] = stored["i_gain"][p] * ref_a / a
    for key in calibration.KEYS:
        for p, g in enumerate(gains[key]):
            if abs(g - 1) > calibration.MAX_CORRECTION:
                raise Refused("%s[%d] would be %.4f, more than %d %% off: check the wiring and the reference"
                              % (key, p, g, round(calibration.MAX_CORRECTION * 100)))
    return {k: [round(g, 5) for g in gains[k]] for k in calibration.KEYS}


def stored_calibration(args):
    if args.state:
        return calibration.load(args.state)
    out = device.run(args.port, ["exec", DEVICE_READ_CAL], capture=True)
    if "calibration-now" not in out:
        raise Refused("the device did not answer (is the firmware deployed?):\n%s" % out.strip())
    doc = json.loads(out.split("calibration-now", 1)[1].strip().splitlines()[0])
    return calibration.check(doc)


def calibrate_to_device(port, gains):
    fd, path = tempfile.mkstemp(suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(gains, f)
        out = device.run(port, ["exec", device.HOLD_WATCHDOG], ["cp", path, ":calibration.new"],
                         ["exec", DEVICE_CALIBRATE], ["reset"], capture=True)
    finally:
        os.unlink(path)
    if "calibration-saved" not in out:
        raise Refused("the device did not confirm (is the firmware deployed?):\n%s" % out.strip())


def calibrate(args):
    lo, hi = REFERENCE_V
    if args.reference_v is None or not lo <= args.reference_v <= hi:
        raise SystemExit("provision: --reference-v must be %g-%g V; nothing written" % (lo, hi))
    lo, hi = REFERENCE_A
    if args.reference_a is None or not lo <= args.reference_a <= hi:
        raise SystemExit("provision: --reference-a must be %g-%g A; nothing written" % (lo, hi))
    if not args.url:
        raise SystemExit("provision: --calibrate needs --url of the unit's portal; nothing written")
    if not 1 <= args.windows <= 60:
        raise SystemExit("provision: --windows must be 1-60; nothing written")
    try:
        stored = stored_calibration(args)
        gains = new_gains(read_windows(args.url, args.windows), args.reference_v, args.reference_a, stored)
        if args.state:
            calibration.save(args.state, gains)
        else:
            calibrate_to_device(args.port, gains)
    except (Refused, calibration.CalibrationError, device.DeviceError, OSError) as e:
        raise SystemExit("provision: %s; nothing written" % e) from None
    print("provision: calibration written to %s: v_gain %s, i_gain %s (from the next start)"
          % (args.state or args.port, gains["v_gain"], gains["i_gain"]))
    return 0


# Runs on the device: the key arrives as a file and is stored by the firmware's own release.check_key and
# store.write_json (atomic); an existing, different key is kept unless forced.
DEVICE_UPDATE_KEY = """
import json, os, release, store
flash = os.getcwd()
with open('update_key.new') as f:
    d = json.load(f)
os.remove('update_key.new')
force = d.pop('force')
release.check_key(d)
old = release.read_key(flash)
if old is not None and old.hex() != d['p256'] and not force:
    print('update-key-kept', old.hex()[:16])
else:
    store.write_json(store.join(flash, release.KEY_FILE), d, release.check_key, release.KEY_MAX)
    print('update-key-saved')
"""


def read_update_key(path):
    """The key document of a KEY.pub.json, checked ({"p256": lowercase hex}); Refused when it is bad."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise Refused("%s: not a readable JSON key file (%s)" % (path, e)) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("p256"), str):
        raise Refused('%s: expected {"p256": "<128 hex digits>"} (from tools/release --new-key)' % path)
    key = {"p256": doc["p256"].strip().lower()}
    try:
        release.check_key(key)
    except ValueError as e:
        raise Refused("%s: %s" % (path, e)) from None
    return key


def update_key_to_state(state, key, force):
    old = release.read_key(state) if os.path.exists(os.path.join(state, release.KEY_FILE)) else None
    if old is not None and old.hex() != key["p256"] and not force:
        raise Refused("%s already holds another update key (%s...; use --force to replace it)"
                      % (state, old.hex()[:16]))
    os.makedirs(state, exist_ok=True)
    store.write_json(store.join(state, release.KEY_FILE), key, release.check_key, release.KEY_MAX)


def update_key_to_device(port, key, force):
    fd, path = tempfile.mkstemp(suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(dict(key, force=force), f)
        out = device.run(port, ["exec", device.HOLD_WATCHDOG], ["cp", path, ":update_key.new"],
                         ["exec", DEVICE_UPDATE_KEY], ["reset"], capture=True)
    finally:
        os.unlink(path)
    if "update-key-kept" in out:
        kept = out.split("update-key-kept", 1)[1].split()[0]
        raise Refused("the device on %s already holds another update key (%s...; use --force to replace it)"
                      % (port, kept))
    if "update-key-saved" not in out:
        raise Refused("the device did not confirm (is the firmware deployed?):\n%s" % out.strip())


def update_key(args):
    try:
        key = read_update_key(args.update_key)
        if args.state:
            update_key_to_state(args.state, key, args.force)
        else:
            update_key_to_device(args.port, key, args.force)
    except (Refused, device.DeviceError, OSError, ValueError) as e:
        raise SystemExit("provision: %s; nothing written" % e) from None
    print("provision: update key %s... written to %s" % (key["p256"][:16], args.state or args.port))
    return 0


def read_pin(arg):
    return sys.stdin.readline().strip() if arg == "-" else arg


def main(argv=None):
    p = argparse.ArgumentParser(prog="tools/provision", description=__doc__.splitlines()[0])
    p.add_argument("--serial", help="serial number, e.g. 2312000042G")
    p.add_argument("--pin", help="the 8-digit PIN of the label, or - to read it from stdin")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--state", help="simulator state folder (the simulated device's flash)")
    where.add_argument("--port", help="serial port of a device running the firmware, e.g. /dev/ttyUSB0")
    p.add_argument("--force", action="store_true", help="replace an existing, different identity")
    p.add_argument("--calibrate", action="store_true", help="set the front end's gains from a reference load")
    p.add_argument("--reference-v", type=float, help="--calibrate: the reference voltage (V rms)")
    p.add_argument("--reference-a", type=float, help="--calibrate: the reference current (A rms)")
    p.add_argument("--url", help="--calibrate: the running unit's portal, e.g. http://127.0.0.1:8080")
    p.add_argument("--windows", type=int, default=5, help="--calibrate: readings windows to average")
    p.add_argument("--update-key", metavar="KEY.pub.json",
                   help="store the vendor's public update key (from tools/release --new-key)")
    args = p.parse_args(argv)
    if args.calibrate:
        return calibrate(args)
    if args.update_key:
        return update_key(args)
    if args.serial is None or args.pin is None:
        p.error("--serial and --pin are required (or --calibrate)")
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
