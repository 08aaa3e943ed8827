# The supply alarm's decision (contract §3 `alarm`): which phase is due an alarm, burst by burst. Pure logic
# on numbers and ticks, nothing allocated per burst; the uplink publishes what it decides.
import time

REPEAT_MS = 10000       # while a phase stays over the limit, the alarm is repeated this often
REARM = 0.97            # ... and it is raised anew only after dropping 3 % below it (no chatter)


class SupplyAlarm:
    def __init__(self, phases=3):
        self.over = [False] * phases     # raised and not re-armed yet
        self.last_ms = [0] * phases      # ticks_ms of the phase's latest alarm
        self.limit = None                # the limit rearm_at was worked out for ...
        self.rearm_at = None             # ... REARM times it: a float, made once per limit, not per burst

    def rearm(self):
        """No limit, or no currents: every phase starts afresh."""
        for k in range(len(self.over)):
            self.over[k] = False

    def due(self, k, amps, limit, now_ms):
        """True when phase k (0-based), carrying `amps` at ticks `now_ms`, is due an alarm against
        `limit` (amps, or None for no limit): on going over it, then every REPEAT_MS while it stays
        over; re-armed only once it is REARM times the limit or less."""
        if limit is None:
            self.over[k] = False
            return False
        if limit != self.limit:
            self.limit = limit
            self.rearm_at = limit * REARM
        if amps <= self.rearm_at:
            self.over[k] = False
            return False
        if amps <= limit:
            return False
        # A negative difference is a stamp more than 6.2 days old (the phase sat between the re-arm level
        # and the limit that long): long past, not recent. (12.4 days old it reads recent again: one
        # repeat up to REPEAT_MS late, never a suppressed alarm.)
        if self.over[k] and 0 <= time.ticks_diff(now_ms, self.last_ms[k]) < REPEAT_MS:
            return False
        self.over[k] = True
        self.last_ms[k] = now_ms
        return True
