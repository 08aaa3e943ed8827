# tools/replay: feed a capture (contract §6) through the exact firmware metering code, on MicroPython.
# Prints one JSON line per window: {"freq_hz", "phases", "power_w", "import_wh", "export_wh", "window",
# "t_s"}, written as the device writes its readings (readings_json). A bad capture or config is
# refused with a message naming the line and the problem.
import json
import sys
from array import array

import readings_json
import settings as settings_mod
from burst import channel_layout
from meter import Meter

MAGIC = "# ampguard-capture v1 "
CHANNELS = ("v1", "v2", "v3", "i1", "i2", "i3")


USAGE = "tools/replay [--runtime micropython|esp32-like] CAPTURE [--config SETTINGS.json]"
HELP = """usage: %s

A capture (contract section 6) through the firmware's metering code; one readings JSON line per window.
  --config FILE   settings for the meter (the config/set document), e.g. {"sensor": "public"}
  --runtime NAME  the MicroPython that runs it (also $AMPGUARD_RUNTIME; default micropython):
                  micropython  the 64-bit unix port, doubles, firmware from firmware/
                  esp32-like   32-bit, float32, small ints to 2^30, firmware frozen in, as on the
                               ESP32 (build/esp32like/micropython, built by make setup)""" % USAGE


class CaptureError(ValueError):
    pass


class CaptureBoard:
    """What the meter needs of a board, from the capture header (scales come per channel)."""
    NAME = "capture"
    V_PER_COUNT = 1.0
    A_PER_COUNT = {"home": 1.0, "public": 1.0}


def _number(h, key, lo, hi):
    v = h.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise CaptureError("header: %s must be a number in %s..%s" % (key, lo, hi))
    return v


def parse_header(line):
    if not line.startswith(MAGIC):
        raise CaptureError("line 1: not an ampguard capture (expected '%s{...}')" % MAGIC.strip())
    try:
        h = json.loads(line[len(MAGIC):])
    except ValueError:
        raise CaptureError("line 1: header is not valid JSON") from None
    if not isinstance(h, dict):
        raise CaptureError("line 1: header must be a JSON object")
    rate = _number(h, "rate_hz", 100, 1000000)
    bits = _number(h, "bits", 8, 16)
    if bits != int(bits):
        raise CaptureError("header: bits must be a whole number")
    chans = h.get("channels")
    if not isinstance(chans, list) or not chans or len(chans) > 6:
        raise CaptureError("header: channels must be a list of 1-6 names")
    for c in chans:
        if c not in CHANNELS or chans.count(c) > 1:
            raise CaptureError("header: channels: %r is not one of %s (once each)" % (c, " ".join(CHANNELS)))
    scale = {}
    for key, prefix in (("v_per_count", "v"), ("a_per_count", "i")):
        obj = h.get(key)
        if not isinstance(obj, dict):
            raise CaptureError("header: %s must be an object of channel -> units per count" % key)
        for c in chans:
            if c[0] == prefix:
                scale[c] = _number(obj, c, 1e-9, 1e6) if c in obj else None
                if scale[c] is None:
                    raise CaptureError("header: %s has no value for %s" % (key, c))
    skew = h.get("skew_us", {})
    if not isinstance(skew, dict):
        raise CaptureError("header: skew_us must be an object of channel -> microseconds")
    skews = {}
    set_us = 1e6 / rate
    for k, c in enumerate(chans):
        skews[c] = _number(skew, c, 0, set_us) if c in skew else k * set_us / len(chans)
    window_ms = _number(h, "window_ms", 20, 600000) if "window_ms" in h else 1000
    return {"rate_hz": rate, "bits": int(bits), "channels": chans, "scale": scale, "skew_us": skews,
            "window_ms": window_ms}


def load_config(path):
    try:
        with open(path) as f:
            changes = json.load(f)
    except OSError as e:
        raise CaptureError("--config %s: cannot read (%s)" % (path, e)) from None
    except ValueError:
        raise CaptureError("--config %s: not valid JSON" % path) from None
    try:
        return settings_mod.apply_changes(settings_mod.DEFAULTS, changes)
    except settings_mod.SettingsError as e:
        raise CaptureError("--config %s: %s: %s" % (path, e.field, e.message)) from None


def replay(path, settings, out=sys.stdout):
    with open(path) as f:
        head = parse_header(f.readline().rstrip("\n"))
        # The channels these settings need must all be in the capture, before the meter looks them up.
        for c in channel_layout(settings["phases"], settings["voltage_inputs"]):
            if c not in head["channels"]:
                raise CaptureError("capture has no %s channel, needed for phases=%d voltage_inputs=%d"
                                   % (c, settings["phases"], settings["voltage_inputs"]))
        meter = Meter(CaptureBoard, settings, skew_us=head["skew_us"], scale=head["scale"],
                      burst_s=head["window_ms"] / 1000)       # a window is one burst here
        cols = [head["channels"].index(c) for c in meter.channels]
        ncols = len(head["channels"])
        nch = len(cols)
        top = (1 << head["bits"]) - 1
        per_window = int(head["rate_hz"] * head["window_ms"] / 1000 + 0.5)
        buf = array("H", bytes(2 * nch * per_window))
        window_s = per_window / head["rate_hz"]
        lineno = 1
        n = 0
        k = 0
        for line in f:
            lineno += 1
            line = line.strip()
            if not line:
                continue
            fields = line.split(",")
            if len(fields) != ncols:
                raise CaptureError("line %d: %d values, the header names %d channels"
                                   % (lineno, len(fields), ncols))
            base = n * nch
            for j in range(nch):
                try:
                    code = int(fields[cols[j]])
                except ValueError:
                    raise CaptureError("line %d: %r is not an integer ADC code"
                                       % (lineno, fields[cols[j]])) from None
                if not 0 <= code <= top:
                    raise CaptureError("line %d: code %d is outside 0..%d (%d bits)"
                                       % (lineno, code, top, head["bits"]))
                buf[base + j] = code
            n += 1
            if n == per_window:
                meter.add_burst(buf, n, n * 1e6 / head["rate_hz"])
                r = meter.close_window(window_s)
                r["window"] = k
                r["t_s"] = round(k * window_s, 6)
                out.write(readings_json.dumps(r) + "\n")
                k += 1
                n = 0
    if k == 0:
        raise CaptureError("capture holds less than one window (%d sample sets needed)" % per_window)
    return k


def main(argv):
    config = None
    path = None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--config" and i + 1 < len(argv):
            config = argv[i + 1]
            i += 2
        elif a in ("-h", "--help"):
            print(HELP)
            return 0
        elif path is None and not a.startswith("-"):
            path = a
            i += 1
        else:
            print("tools/replay: unexpected argument %r (usage: %s)" % (a, USAGE), file=sys.stderr)
            return 2
    if path is None:
        print("usage: " + USAGE, file=sys.stderr)
        return 2
    try:
        settings = load_config(config) if config else settings_mod.apply_changes(settings_mod.DEFAULTS, {})
        replay(path, settings)
    except OSError as e:
        print("tools/replay: %s: cannot read (%s)" % (path, e), file=sys.stderr)
        return 1
    except UnicodeError:
        print("tools/replay: %s: not a text file" % path, file=sys.stderr)
        return 1
    except CaptureError as e:
        print("tools/replay: %s: %s" % (path, e), file=sys.stderr)
        return 1
    return 0


sys.exit(main(sys.argv[1:]))
