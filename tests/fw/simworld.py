# Drive the firmware's metering with the simulated front end in simulated time (tests only).
from array import array

import metering
import scenario
import settings
import sim
import sim_adc

BURSTS_PER_WINDOW = 2
BURST_SETS = 600


class MeterWorld:
    def __init__(self, world, changes=None, seed=5):
        self.scenario = scenario.Scenario()
        self.set_world(world)
        self.settings = settings.apply_changes(settings.DEFAULTS, changes or {})
        self.meter = metering.Metering(sim, self.settings)
        self.adc = sim_adc.SimAdc(sim, self.scenario, self.meter.channels, seed)
        self.set_us = len(self.meter.channels) * sim.ADC_READ_US
        self.buf = array("H", bytes(2 * BURST_SETS * len(self.meter.channels)))
        self.t_us = 0

    def set_world(self, world):
        self.scenario.data = scenario.normalize(world)
        self.scenario.version += 1

    def window(self):
        """One 1-second readings window; returns the readings."""
        for _ in range(BURSTS_PER_WINDOW):
            self.adc.fill(self.buf, BURST_SETS, self.t_us)
            self.meter.add_burst(self.buf, BURST_SETS, BURST_SETS * self.set_us)
            self.t_us += 1000000 // BURSTS_PER_WINDOW
        return self.meter.close_window(1.0)

    def windows(self, n):
        return [self.window() for _ in range(n)]


def flags(readings, line):
    return readings["phases"][line - 1]["flags"]
