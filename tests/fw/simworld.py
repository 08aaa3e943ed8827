# Drive the firmware's metering with the simulated front end in simulated time (tests only), and the
# physical truth the readings are checked against.
import json
import math
from array import array

import readings_json
import scenario
import settings
import sim
import sim_adc
from meter import Meter

WINDOW_US = 1000000


class World:
    """The firmware's Meter on a simulated world: `bursts` bursts of `nsets` sample sets per window of
    WINDOW_US simulated µs, their starts spread evenly over the window (the rest of it is unsampled,
    as on the device). The default is the firmware's own scale: ~0.2 s bursts."""

    def __init__(self, world=None, changes=None, seed=1, bursts=4, nsets=1000, board=sim):
        self.scenario = scenario.Scenario()
        self.scenario.data = scenario.normalize(world or {})
        self.scenario.version = 1
        self.settings = settings.apply_changes(settings.DEFAULTS, changes or {})
        self.meter = Meter(board, self.settings)
        self.channels = self.meter.channels
        self.adc = sim_adc.SimAdc(board, self.scenario, self.channels, seed)
        self.bursts = bursts
        self.nsets = nsets
        self.set_us = len(self.channels) * board.ADC_READ_US
        if nsets * self.set_us > WINDOW_US // bursts:
            raise ValueError("bursts overlap: %d x %d sets of %d us" % (bursts, nsets, self.set_us))
        self.buf = array("H", bytes(2 * nsets * len(self.channels)))
        self.t_us = 0
        self.readings = None

    def change(self, world):
        """Replace the simulated world (from the next burst on)."""
        self.scenario.data = scenario.normalize(world)
        self.scenario.version += 1

    def window(self, elapsed_s=None):
        """Sample one window and close it; returns its readings as published (readings_json, parsed
        back), so every figure is checked with the decimals it goes out with. elapsed_s defaults to
        the window."""
        step = WINDOW_US // self.bursts
        for b in range(self.bursts):
            self.adc.fill(self.buf, self.nsets, self.t_us + b * step)
            self.meter.add_burst(self.buf, self.nsets, self.nsets * self.set_us)
        self.t_us += WINDOW_US
        r = self.meter.close_window(WINDOW_US / 1e6 if elapsed_s is None else elapsed_s)
        self.readings = json.loads(readings_json.dumps(r))
        return self.readings

    def run(self, windows):
        """Run `windows` windows; returns the last readings."""
        for _ in range(windows):
            self.window()
        return self.readings


def truth(world, line, derived=False):
    """(V, I, P) of phase `line` (1-3) from the scenario's physics (fundamentals only): the voltage
    the meter has for that phase (L1's when derived), the current the CT delivers (its ratio error
    included) and the active power between them (reversed CT, wrong phase and CT lag included)."""
    data = scenario.normalize(world)
    ph = data["phases"][line - 1]
    v = data["mains"]["voltage_v"][0 if derived else line - 1]
    i = ph["current_a"] * ph["ct_gain"]
    # How far the CT's current lags the voltage used for this phase, whose own angle is
    # -(line - 1) * 120 degrees, measured or derived alike.
    lag = ph["angle_deg"] + ph["ct_lag_deg"] + (ph["on_phase"] - line) * 120.0
    if ph["reversed"]:
        lag += 180.0
    return v, i, v * i * math.cos(math.radians(lag))


def assert_close(measured, expected, rel, what=""):
    """measured within rel (relative) of a non-zero expected value."""
    err = (measured - expected) / abs(expected)
    assert abs(err) <= rel, "%s: %r vs %r expected (%+.3f %%, limit %.2f %%)" % (
        what, measured, expected, 100 * err, 100 * rel)
