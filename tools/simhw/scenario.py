# The simulated world (contract §6), read from a JSON file and re-read when it changes on disk.
# Runs on the MicroPython unix port (inside the simulated device) and on CPython.
import json
import time

DEFAULT = {
    "mains": {"voltage_v": [230.0, 230.0, 230.0], "freq_hz": 50.0, "harmonics": {}},
    "phases": [{"current_a": 0.0, "angle_deg": 0.0}, {"current_a": 0.0, "angle_deg": 0.0},
               {"current_a": 0.0, "angle_deg": 0.0}],
    "adc": {"noise_lsb": 1.5},
    "wifi": {"networks": [], "dhcp": True},
    "lan": {"link": False},
    "button": {"pressed": False},
    "flash": {"size_kb": 2048},
}
# ct_lag_deg / ct_gain: the physical CT's phase and ratio errors (what calibration corrects).
PHASE_DEFAULT = {"current_a": 0.0, "angle_deg": 0.0, "harmonics": {}, "reversed": False,
                 "ct_lag_deg": 0.0, "ct_gain": 1.0}
SENSORS = ("home", "public")
MAX_HARMONIC = 50
CHECK_EVERY_MS = 50


def summary(data):
    """One line of what matters most: each phase's current and angle, and the mains voltage."""
    parts = ["L%d %.1f A %+.0f deg" % (k + 1, p["current_a"], p["angle_deg"])
             for k, p in enumerate(data["phases"])]
    v = data["mains"]["voltage_v"]
    return "%s; mains %s V %.1f Hz" % (", ".join(parts), "/".join("%.0f" % x for x in v),
                                     data["mains"]["freq_hz"])


class ScenarioError(ValueError):
    pass


def _copy(v):
    if isinstance(v, dict):
        return _merge(v, {})
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


def _merge(base, over):
    """A deep copy of base with over's keys laid on top (dicts merged key by key)."""
    out = {}
    for k in base:
        if isinstance(base[k], dict) and isinstance(over.get(k), dict):
            out[k] = _merge(base[k], over[k])
        elif k in over:
            out[k] = _copy(over[k])
        else:
            out[k] = _copy(base[k])
    for k in over:
        if k not in base:
            out[k] = _copy(over[k])
    return out


def _number(v, field, lo, hi):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise ScenarioError("%s: a number %s-%s" % (field, lo, hi))
    return float(v)


def _harmonics(h, field):
    """{"3": 0.1}: order (2..MAX_HARMONIC, as a string key) -> amplitude relative to the fundamental."""
    if not isinstance(h, dict):
        raise ScenarioError("%s: an object of order -> relative amplitude" % field)
    out = {}
    for k in h:
        try:
            order = int(k)
        except ValueError:
            order = 0
        if not 2 <= order <= MAX_HARMONIC:
            raise ScenarioError("%s: orders are 2-%d" % (field, MAX_HARMONIC))
        out[str(order)] = _number(h[k], "%s.%s" % (field, k), 0.0, 1.0)
    return out


def _adc(adc):
    adc["noise_lsb"] = _number(adc.get("noise_lsb", 1.5), "adc.noise_lsb", 0.0, 100.0)
    adc["jitter_us"] = _number(adc.get("jitter_us", 0.5), "adc.jitter_us", 0.0, 100.0)
    adc["nonlinearity"] = _number(adc.get("nonlinearity", 0.0), "adc.nonlinearity", -50.0, 50.0)
    # The chip's transfer curve (tools/simhw/sim_adc.py): Espressif's 11 dB characteristic or an ideal
    # line; the typical chip, or one drawn from the seed (chip_spread, chip_seed), or pinned.
    adc["curve"] = adc.get("curve", "esp32")
    if adc["curve"] not in ("esp32", "linear"):
        raise ScenarioError("adc.curve: esp32 or linear")
    adc["chip_spread"] = bool(adc.get("chip_spread", False))
    if adc.get("chip_seed") is not None:
        adc["chip_seed"] = int(_number(adc["chip_seed"], "adc.chip_seed", 1, 1 << 30))
    if adc.get("vref_mv") is not None:
        adc["vref_mv"] = _number(adc["vref_mv"], "adc.vref_mv", 1000, 1200)
    if adc.get("offset_mv") is not None:
        adc["offset_mv"] = _number(adc["offset_mv"], "adc.offset_mv", 0, 300)
    adc["sensor"] = adc.get("sensor", "home")
    if adc["sensor"] not in SENSORS:
        raise ScenarioError("adc.sensor: home or public")
    bias = adc.get("bias_codes")
    if bias is not None:
        if not isinstance(bias, list) or len(bias) != 6:
            raise ScenarioError("adc.bias_codes: a list of 6 codes (v1 v2 v3 i1 i2 i3)")
        adc["bias_codes"] = [_number(b, "adc.bias_codes", 0, 4095) for b in bias]


def normalize(raw):
    """Fill defaults and check types; raise ScenarioError naming the bad field."""
    if not isinstance(raw, dict):
        raise ScenarioError("scenario: top level must be a JSON object")
    data = _merge(DEFAULT, raw)
    mains = data["mains"]
    volts = mains["voltage_v"]
    if isinstance(volts, (int, float)):
        volts = [volts, volts, volts]
    if not isinstance(volts, list) or not 1 <= len(volts) <= 3:
        raise ScenarioError("mains.voltage_v: a number or a list of 1-3 numbers")
    while len(volts) < 3:
        volts.append(volts[0])
    mains["voltage_v"] = [float(v) for v in volts]
    mains["freq_hz"] = float(mains["freq_hz"])
    if not 10.0 <= mains["freq_hz"] <= 100.0:
        raise ScenarioError("mains.freq_hz: 10-100")
    mains["harmonics"] = _harmonics(mains["harmonics"], "mains.harmonics")
    phases = data["phases"]
    if not isinstance(phases, list) or len(phases) > 3:
        raise ScenarioError("phases: a list of at most 3 objects")
    out = []
    for i in range(3):
        p = _merge(PHASE_DEFAULT, phases[i] if i < len(phases) else {})
        p["current_a"] = float(p["current_a"])
        p["angle_deg"] = float(p["angle_deg"])
        p["reversed"] = bool(p["reversed"])
        p["ct_lag_deg"] = float(p["ct_lag_deg"])
        p["ct_gain"] = float(p["ct_gain"])
        if not (-30.0 <= p["ct_lag_deg"] <= 30.0 and 0.5 <= p["ct_gain"] <= 2.0):
            raise ScenarioError("phases[%d]: ct_lag_deg -30..30, ct_gain 0.5..2" % i)
        p["on_phase"] = int(p.get("on_phase", i + 1))
        if not 1 <= p["on_phase"] <= 3:
            raise ScenarioError("phases[%d].on_phase: 1, 2 or 3" % i)
        p["harmonics"] = _harmonics(p["harmonics"], "phases[%d].harmonics" % i)
        out.append(p)
    data["phases"] = out
    if not isinstance(data["adc"], dict):
        raise ScenarioError("adc: an object")
    _adc(data["adc"])
    flash = data["flash"]
    size = flash.get("size_kb") if isinstance(flash, dict) else None
    if not isinstance(size, int) or isinstance(size, bool) or not 64 <= size <= 16384:
        raise ScenarioError("flash.size_kb: a whole number 64-16384 (KB of the flash filesystem)")
    nets = data["wifi"]["networks"]
    if not isinstance(nets, list):
        raise ScenarioError("wifi.networks: a list")
    for n in nets:
        if not isinstance(n, dict) or not isinstance(n.get("ssid"), str):
            raise ScenarioError("wifi.networks: objects with an ssid")
    return data


class Scenario:
    """Holds the current world; `poll()` (at most every 50 ms) takes the file again when its bytes changed.

    `version` grows by one at every change, so users can cache what they derived from `data`.
    A file that fails to parse keeps the previous world and logs why (an editor mid-save is normal).
    """

    def __init__(self, path=None):
        self.path = path
        self.data = normalize({})
        self.version = 0
        self._stamp = None
        self._next_check = time.ticks_ms()
        if path:
            self.poll(force=True)

    def poll(self, force=False):
        if not self.path:
            return False
        now = time.ticks_ms()
        if not force and time.ticks_diff(now, self._next_check) < 0:
            return False
        self._next_check = time.ticks_add(now, CHECK_EVERY_MS)
        # The file's bytes, not its mtime: MicroPython's stat has whole seconds, so two edits of the same
        # size within a second would look alike. A scenario is small; reading it costs microseconds.
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except OSError:
            return False
        if raw == self._stamp and not force:
            return False
        self._stamp = raw
        try:
            data = normalize(json.loads(raw))
        except (ValueError, TypeError, KeyError) as e:
            print("scenario: keeping the previous world, %s is not usable: %s" % (self.path, e))
            return False
        self.data = data
        self.version += 1
        if not force:       # an edit while running: say that the world follows it
            print("scenario: %s changed, the simulated world follows: %s" % (self.path, summary(data)))
        return True
