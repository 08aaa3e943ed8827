# Installer diagnostics (contract §4 `flags`): each flag needs several windows in a row to turn on and
# several to turn off again, so a passing load change or noise never makes it flicker.
import math

ON_WINDOWS = 3           # windows in a row that show a fault before its flag is raised
OFF_WINDOWS = 5          # windows in a row without it before the flag is cleared
MIN_CURRENT_FRACTION = 0.01   # below 1 % of the rated current the angle says nothing
WRONG_PHASE_DEG = (100.0, 140.0)   # current about 120 degrees from its voltage
NO_VOLTAGE_V = 50.0


class Debounced:
    """A flag that follows a condition only after ON / OFF windows in a row; None holds the state."""

    def __init__(self):
        self.on = False
        self._run = 0

    def update(self, condition):
        if condition is None or condition == self.on:
            self._run = 0
            return self.on
        self._run += 1
        if self._run >= (ON_WINDOWS if condition else OFF_WINDOWS):
            self.on = condition
            self._run = 0
        return self.on


class PhaseDiagnostics:
    def __init__(self):
        self.reversed = Debounced()
        self.wrong_phase = Debounced()
        self.overrange = Debounced()
        self.no_voltage = Debounced()
        self.flags = []          # the flags raised: one list, refilled by every update


    def update(self, voltage_v, current_a, power_w, reactive_var, clipped, rated_a, generation,
               derived, voltage_ok):
        """Feed one window's values; returns the list of flag names now raised (self.flags)."""
        self.no_voltage.update(not voltage_ok or voltage_v < NO_VOLTAGE_V)
        self.overrange.update(clipped > 0)
        wrong = rev = None        # unknown: too little current to judge, state is held
        if voltage_ok and current_a >= MIN_CURRENT_FRACTION * rated_a:
            angle = abs(math.degrees(math.atan2(reactive_var, power_w)))
            wrong = WRONG_PHASE_DEG[0] <= angle <= WRONG_PHASE_DEG[1]
            # A reversed CT turns an import into an export: negative power on a site that has no
            # generation. (A current 120 degrees off is the wrong-phase fault instead.)
            rev = (not generation) and power_w < 0 and not wrong
        self.wrong_phase.update(wrong)
        self.reversed.update(rev if not generation else False)
        flags = self.flags
        while flags:
            flags.pop()
        if self.reversed.on:
            flags.append("reversed")
        if self.wrong_phase.on:
            flags.append("wrong_phase")
        if self.overrange.on:
            flags.append("overrange")
        if self.no_voltage.on:
            flags.append("no_voltage")
        if derived:
            flags.append("derived_voltage")
        return flags


# What each flag means for the installer, in plain words (portal and logs).
ADVICE = {
    "reversed": "the clamp seems to be reversed: turn it so its arrow points towards the load",
    "wrong_phase": "the clamp seems to sit on another phase's conductor: move it to its own phase",
    "overrange": "the current is beyond the sensor's range: check the sensor type setting",
    "no_voltage": "no mains voltage is measured on this phase",
    "derived_voltage": "voltage derived from L1 (only L1 is wired)",
}
