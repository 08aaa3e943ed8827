# `tools/sim --capture FILE`: the simulated front end's raw sample sets in the capture format of
# contract §6, for tools/replay. Runs on the MicroPython unix port (started by tools/sim.py) with
#   --out FILE --seconds N [--seed N] [--scenario FILE] [--sensor home|public] [--channels v1,i1,...]
# Simulated time starts at 0 µs and runs continuously (no sleeping); the file is written in chunks.
import json
import os
import sys
from array import array

from scenario import Scenario, ScenarioError, normalize
from sim_adc import CHANNELS, SimAdc

CHUNK_SETS = 500
OPTIONS = ("--out", "--seconds", "--seed", "--scenario", "--sensor", "--channels")


class UsageError(ValueError):
    pass


def parse_args(argv):
    opts = {"--seconds": "2", "--seed": "1", "--channels": ",".join(CHANNELS)}
    i = 0
    while i < len(argv):
        if argv[i] not in OPTIONS or i + 1 >= len(argv):
            raise UsageError("unknown option or missing value: %s" % argv[i])
        opts[argv[i]] = argv[i + 1]
        i += 2
    if "--out" not in opts:
        raise UsageError("--out FILE is required")
    try:
        opts["--seconds"] = float(opts["--seconds"])
        opts["--seed"] = int(opts["--seed"])
    except ValueError:
        raise UsageError("--seconds and --seed take numbers") from None
    if not opts["--seconds"] > 0:
        raise UsageError("--seconds must be positive")
    if opts.get("--sensor", "home") not in ("home", "public"):
        raise UsageError("--sensor: home or public")
    channels = tuple(opts["--channels"].split(","))
    if not channels or any(c not in CHANNELS for c in channels) or len(set(channels)) != len(channels):
        raise UsageError("--channels: distinct names among " + " ".join(CHANNELS))
    opts["--channels"] = channels
    return opts


def load_scenario(path):
    scenario = Scenario()
    if path:
        # Unlike the running simulator, a capture refuses a world it cannot read.
        try:
            with open(path) as f:
                scenario.data = normalize(json.load(f))
        except (OSError, ValueError) as e:
            raise ScenarioError("scenario %s: %s" % (path, e)) from None
        scenario.version += 1
    return scenario


def _object(pairs):
    # JSON object text with its keys in the given order (MicroPython dicts do not keep order).
    return "{" + ", ".join(json.dumps(k) + ": " + v for k, v in pairs) + "}"


def header(board, adc, sensor):
    """The header JSON of contract §6, keys in a readable order."""
    chans = adc.channels
    per = lambda kind, value: _object([(c, json.dumps(value)) for c in chans if c[0] == kind])
    return _object([
        ("rate_hz", json.dumps(1e6 / (len(chans) * adc.read_us))),
        ("bits", json.dumps(board.ADC_BITS)),
        ("channels", json.dumps(list(chans))),
        ("v_per_count", per("v", board.V_PER_COUNT)),
        ("a_per_count", per("i", board.A_PER_COUNT[sensor])),
        ("skew_us", _object([(c, json.dumps(k * adc.read_us)) for k, c in enumerate(chans)])),
        ("window_ms", "1000"),
    ])


def write_capture(out, adc, nsets_total):
    nch = len(adc.channels)
    set_us = nch * adc.read_us
    buf = array("H", bytearray(2 * CHUNK_SETS * nch))
    done = 0
    while done < nsets_total:
        n = min(CHUNK_SETS, nsets_total - done)
        adc.fill(buf, n, done * set_us)
        lines = []
        for s in range(0, n * nch, nch):
            lines.append(",".join([str(c) for c in buf[s:s + nch]]))
        lines.append("")
        out.write("\n".join(lines))
        done += n


def main(argv):
    try:
        opts = parse_args(argv)
        scenario = load_scenario(opts.get("--scenario"))
    except (UsageError, ScenarioError) as e:
        print("capture: %s" % e)
        return 2
    board = __import__(os.getenv("AMPGUARD_BOARD") or "sim")
    sensor = opts.get("--sensor") or scenario.data["adc"]["sensor"]
    scenario.data["adc"]["sensor"] = sensor
    adc = SimAdc(board, scenario, opts["--channels"], opts["--seed"])
    rate_hz = 1e6 / (len(adc.channels) * adc.read_us)
    nsets = int(opts["--seconds"] * rate_hz + 0.5)
    with open(opts["--out"], "w") as out:
        out.write("# ampguard-capture v1 " + header(board, adc, sensor) + "\n")
        write_capture(out, adc, nsets)
    print("capture: %d sample sets of %s at %.1f Hz -> %s"
          % (nsets, " ".join(adc.channels), rate_hz, opts["--out"]))
    return 0


sys.exit(main(sys.argv[1:]))
