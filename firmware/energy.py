# Import and export energy per phase: whole watt-hours as ints, the remainder carried in joules.
#
# The ESP32's floats are 32-bit: adding 0.06 Wh to a 1,234,567.8 Wh float would simply be lost.
# So the running total is an int of Wh and only a remainder below 3600 J is a float, which keeps
# its precision (~0.2 mJ) forever: no drift, however long the meter runs. The readings show the
# counters from these integers too (hundredths()), never through a float of the whole total.
J_PER_WH = 3600.0
J_PER_HUNDREDTH_WH = 36.0


class Counter:
    """A count that only grows: whole Wh plus a remainder in J."""

    def __init__(self, wh=0, rem_j=0.0):
        self.wh = int(wh)
        self.rem_j = 0.0
        self.add_j(float(rem_j))       # a stored remainder may hold up to 2 Wh (check_state)

    def add_j(self, joules):
        if joules <= 0:
            return
        self.rem_j += joules
        if self.rem_j >= J_PER_WH:
            whole = int(self.rem_j // J_PER_WH)
            self.wh += whole
            self.rem_j -= whole * J_PER_WH

    def value_wh(self):
        return self.wh + self.rem_j / J_PER_WH

    def hundredths(self):
        """The remainder in whole hundredths of a Wh (0-99, rounded down): the count is
        wh + hundredths / 100 to the last digit, however large wh is."""
        return min(99, int(self.rem_j // J_PER_HUNDREDTH_WH))

    def state(self):
        return [self.wh, self.rem_j]


class PhaseEnergy:
    def __init__(self):
        self.imported = Counter()
        self.exported = Counter()

    def add(self, power_w, seconds):
        if power_w >= 0:
            self.imported.add_j(power_w * seconds)
        else:
            self.exported.add_j(-power_w * seconds)


def to_state(phases):
    """The stored form: {"l1": {"import": [wh, rem_j], "export": [...]}, ...}."""
    out = {}
    for i, ph in enumerate(phases):
        out["l%d" % (i + 1)] = {"import": ph.imported.state(), "export": ph.exported.state()}
    return out


def check_state(doc):
    """Raise ValueError unless doc is a stored energy state (for store.read_json)."""
    if not isinstance(doc, dict):
        raise ValueError("energy: not an object")
    for key, val in doc.items():
        if key not in ("l1", "l2", "l3") or not isinstance(val, dict):
            raise ValueError("energy: bad phase entry")
        for kind in ("import", "export"):
            pair = val.get(kind)
            if (not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], int)
                    or isinstance(pair[0], bool) or pair[0] < 0
                    or not isinstance(pair[1], (int, float)) or not 0 <= pair[1] < 2 * J_PER_WH):
                raise ValueError("energy: bad %s counter" % kind)


def from_state(doc, nphases=3):
    phases = [PhaseEnergy() for _ in range(nphases)]
    for i, ph in enumerate(phases):
        val = doc.get("l%d" % (i + 1)) if doc else None
        if val:
            ph.imported = Counter(*val["import"])
            ph.exported = Counter(*val["export"])
    return phases


FILE = "energy.json"
SAVE_EVERY_MS = 30000    # a power cut loses at most this much (contract §3 allows 60 s)


class EnergyStore:
    """The counters on flash: restored at boot, written atomically (store.py) every SAVE_EVERY_MS and
    at an orderly shutdown. Only whole states are written, so a restart never counts anything twice."""

    def __init__(self, flash_dir):
        import store

        self._store = store
        self.path = store.join(flash_dir, FILE)
        self._last = None

    def load(self):
        import log

        doc, source = self._store.read_json(self.path, check_state)
        if doc is None:
            log.info("energy", "no stored counters (%s): starting from zero" % source)
        return from_state(doc or {})

    def due(self, now_ms):
        import time

        return self._last is None or time.ticks_diff(now_ms, self._last) >= SAVE_EVERY_MS

    def save(self, phases, now_ms):
        self._store.write_json(self.path, to_state(phases), check_state)
        self._last = now_ms
