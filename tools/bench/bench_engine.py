# `make bench`: the metering engine's cost per sample set against a plain float implementation of the
# same math (tools/bench/float_engine.py), and its heap allocation per sample, burst and window.
#
#   .venv/bin/micropython tools/bench/bench_engine.py [--sets N] [--rounds N] [--reps N] [--ms N]
#   build/esp32like/micropython tools/bench/bench_engine.py [...]    (the firmware frozen in, as on the chip)
#
# Meant for the MicroPython unix ports (the figures that matter: the ESP32-like one has the chip's
# 32-bit objects and float32 heap floats); it also runs on CPython for information, where viper code is
# plain Python and the heap is not measured. Bursts come once from the simulated front end
# (tools/simhw/sim_adc.py) for two layouts: 4 channels (v1,i1,i2,i3, derived L2/L3 voltages) and
# 6 channels (three voltages). Timings: the best of --rounds rounds of --reps calls each (by default as
# many calls as fill --ms milliseconds). Heap, with the garbage collector disabled: the bytes requested
# (micropython.mem_total() deltas, which include Python frames over 11 words, allocated and freed at
# once per call) and the heap in use they take in whole blocks (gc.mem_alloc() deltas); per sample
# (the kernel), per burst and per window the way firmware/app.py's metering task runs them.
import gc
import sys

IS_MP = sys.implementation.name == "micropython"


def _setup_path():
    here = __file__.rpartition("/")[0] or "."
    root = here + "/../.."
    paths = [root + "/" + p for p in ("firmware", "boards", "tools/simhw")]
    if not IS_MP:
        paths.insert(0, root + "/tools/cpython_shims")
    # After ".frozen": on the ESP32-like runtime the firmware frozen into the binary is what runs
    # (as on the chip); elsewhere the source files are found.
    at = sys.path.index(".frozen") + 1 if ".frozen" in sys.path else 0
    for p in reversed(paths):
        if p not in sys.path:
            sys.path.insert(at, p)
    if here not in sys.path:
        sys.path.insert(0, here)
    if not IS_MP:
        import mp_compat

        mp_compat.install()


_setup_path()

from array import array  # noqa: E402

import accum  # noqa: E402
import readings_json  # noqa: E402
import scenario  # noqa: E402
import settings  # noqa: E402
import sim  # noqa: E402
from alarm import SupplyAlarm  # noqa: E402
from float_engine import FloatEngine  # noqa: E402
from meter import Meter  # noqa: E402
from sim_adc import SimAdc  # noqa: E402

if IS_MP:
    import time

    import micropython

    def now_us():
        return time.ticks_us()

    def since_us(t0):
        return time.ticks_diff(time.ticks_us(), t0)
else:
    import time

    micropython = None

    def now_us():
        return time.perf_counter()

    def since_us(t0):
        return (time.perf_counter() - t0) * 1e6

GOAL_RATIO = 30.0
BURST_TARGET = 256           # bytes allocated per burst in steady state at most (issue 10)
BURST_MS = 160               # firmware/app.py's burst length, if app cannot be imported
WINDOW_BURSTS = 4            # a 1 s readings window holds about four such bursts (with their gaps)
SEED = 7
FLOAT_HEAP_SETS = 64         # sets over which the float versions' allocation is measured
# A loaded three-phase household: harmonics, noise, CT phase errors that the calibration corrects
# (so every phase has a fractional voltage delay to compensate).
WORLD = {
    "mains": {"voltage_v": [230.0, 231.5, 228.8], "freq_hz": 50.0, "harmonics": {"3": 0.02, "5": 0.01}},
    "phases": [{"current_a": 12.0, "angle_deg": 25.0, "ct_lag_deg": 1.5, "harmonics": {"3": 0.15}},
               {"current_a": 7.5, "angle_deg": -10.0, "ct_lag_deg": -1.0},
               {"current_a": 21.0, "angle_deg": 40.0, "ct_lag_deg": 2.0, "harmonics": {"5": 0.05}}],
    "adc": {"noise_lsb": 1.5},
}
CALIBRATION = {"i_phase_deg": [1.5, -1.0, 2.0]}


def parse_args(argv):
    opts = {"sets": 0, "rounds": 5, "reps": 0, "ms": 100}
    i = 0
    while i < len(argv):
        key = argv[i]
        if not key.startswith("--") or key[2:] not in opts or i + 1 >= len(argv):
            raise SystemExit("usage: bench_engine.py [--sets N] [--rounds N] [--reps N] [--ms N]")
        opts[key[2:]] = int(argv[i + 1])
        i += 2
    return opts


def heap_counters():
    """[(name, function returning a monotonic count of heap bytes)], empty on CPython: the bytes the
    firmware asks for (micropython.mem_total, where the port has it) and the heap in use they take in
    whole blocks (gc.mem_alloc; 16-byte blocks on a 32-bit port, so a float takes 16)."""
    if not IS_MP:
        return []
    out = []
    if hasattr(micropython, "mem_total"):
        out.append(("bytes requested (micropython.mem_total)", micropython.mem_total))
    out.append(("heap blocks taken (gc.mem_alloc)", gc.mem_alloc))
    return out


def heap_bytes(fn, counter):
    """Heap bytes one call of fn allocates (after two warm-up calls), the collector disabled."""
    fn()
    fn()
    gc.collect()
    gc.disable()
    try:
        a = counter()
        fn()
        b = counter()
    finally:
        gc.enable()
    return b - a


def time_us(fn, opts):
    """Best over rounds of the mean time of one call of fn, in microseconds (the least disturbed by
    the host; every round runs whole calls, so the float versions' garbage collections are in it)."""
    reps = opts["reps"]
    if reps <= 0:
        fn()
        t0 = now_us()
        fn()
        one = max(since_us(t0), 1)
        reps = max(1, int(opts["ms"] * 1000 / one))
    results = []
    for _ in range(opts["rounds"]):
        gc.collect()
        t0 = now_us()
        for _ in range(reps):
            fn()
        results.append(since_us(t0) / reps)
    return min(results)


class Case:
    """One channel layout: its bursts, the firmware's meter for them, and the float reference."""

    def __init__(self, voltage_inputs, nsets):
        s = settings.apply_changes(settings.DEFAULTS,
                                   {"voltage_inputs": voltage_inputs, "calibration": CALIBRATION})
        self.settings = s
        self.meter = Meter(sim, s)
        self.channels = self.meter.channels
        self.nch = len(self.channels)
        self.nsets = nsets
        self.duration_us = nsets * self.nch * sim.ADC_READ_US
        world = scenario.Scenario()
        world.data = scenario.normalize(WORLD)
        world.version = 1
        adc = SimAdc(sim, world, self.channels, seed=SEED)
        self.bufs = []
        t = 0
        for _ in range(WINDOW_BURSTS):
            buf = array("H", bytes(2 * nsets * self.nch))
            adc.fill(buf, nsets, t)
            self.bufs.append(buf)
            t += self.duration_us
        self.buf = self.bufs[0]
        analyzer = self.analyzer = self.meter.analyzer
        for _ in range(3):              # windows that settle the tracked DC bias and frequency
            for buf in self.bufs:
                analyzer.process(buf, nsets, self.duration_us)
            analyzer.finish()
        analyzer.process(self.buf, nsets, self.duration_us)
        # The kernel's inputs for this burst, copied so that later calls cannot change them.
        self.geo = array("i", analyzer.geo)
        self.bias = array("i", analyzer.bias)
        self.pairs = array("i", analyzer.pairs)
        self.sums = array("i", [0] * len(analyzer.sums))
        self.part = array("i", [0] * len(analyzer.arrays[3]))
        self.first = self.geo[accum.G_FIRST]
        self.end = self.geo[accum.G_END]
        self.span = self.end - self.first
        # The same phase-compensation inputs for the float version: voltage at n - d + frac sets,
        # frac in (-1, 0], i.e. between sets n-d and n-d-1. The analyzer keeps d (pairs), set for
        # the frequency of the last window, and gives the whole delay in sets (delay_sets).
        set_us = self.duration_us / nsets
        spc = 1e6 / (analyzer.freq_hz * set_us)
        fpairs = []
        for p in range(analyzer.nphases):
            d = self.pairs[3 * p + 2] - accum.DELAY_OFFSET
            frac = d - analyzer.delay_sets(p, spc, set_us)
            fpairs.append((self.pairs[3 * p], self.pairs[3 * p + 1], d, -frac))
        self.float_filter = FloatEngine(self.nch, fpairs, "filter")
        self.float_burst = FloatEngine(self.nch, fpairs, "burst")

    def name(self):
        return "%d ch %s" % (self.nch, ",".join(self.channels))

    def tag(self):
        return "%d ch, %d sets" % (self.nch, self.nsets)

    def kernel(self, geo=None):
        accum.accumulate(self.buf, geo or self.geo, self.bias, self.pairs, self.sums, self.part)

    def process(self):
        return self.analyzer.process(self.buf, self.nsets, self.duration_us)

    def engine(self):
        """A window of WINDOW_BURSTS bursts (of this burst) and its close: the engine's whole work."""
        for _ in range(WINDOW_BURSTS):
            self.analyzer.process(self.buf, self.nsets, self.duration_us)
        self.analyzer.finish()

    def one_burst_window(self):
        """The statistics of a window holding just this burst."""
        self.analyzer.finish()
        self.process()
        return self.analyzer.finish()

    def floats(self):
        self.float_filter.add(self.buf, self.first, self.end)

    def floats_lean(self):
        self.float_burst.add(self.buf, self.first, self.end)

    def agreement(self, fe):
        """Largest differences float vs engine: (V %, I %, P % of VA) over the phases."""
        for _ in range(8):              # the float bias settles on this burst
            fe.add(self.buf, self.first, self.end)
        fe.reset()
        fe.add(self.buf, self.first, self.end)
        res = self.one_burst_window()
        worst = [0.0, 0.0, 0.0]
        for p in range(self.analyzer.nphases):
            vc, ic = self.pairs[3 * p], self.pairs[3 * p + 1]
            v = res.v_var[p] ** 0.5
            i = res.i_var[p] ** 0.5
            dv = abs(fe.rms(vc) - v) / v * 100 if v else 0.0
            di = abs(fe.rms(ic) - i) / i * 100 if i else 0.0
            dp = abs(fe.power(p) - res.power[p]) / (v * i) * 100 if v * i else 0.0
            worst = [max(worst[0], dv), max(worst[1], di), max(worst[2], dp)]
        return worst


def measure_time(case, opts):
    t_kernel = time_us(case.kernel, opts)
    t_process = time_us(case.engine, opts) / WINDOW_BURSTS
    t_float = time_us(case.floats, opts)
    t_lean = time_us(case.floats_lean, opts)
    return t_kernel, t_process, t_float, t_lean


class Firmware:
    """The metering task's steady-state path (firmware/app.py metering_task): each burst into the
    meter's window and the supply alarm's look at its currents (Uplink.currents, which gets None
    without a limit); per window close_window, the fields the task adds, and the readings message
    written as the uplink sends it (into its kept readings_json.Message)."""

    def __init__(self, case, limit=None):
        import uplink

        self.case = case
        self.meter = Meter(sim, case.settings)
        self.message = readings_json.Message()
        self.seq = 0
        # Uplink.currents on a stand-in: the alarm's state, the limit setting, no connection.
        self.up = Stub(alarm=SupplyAlarm(), conn=None,
                       dev=Stub(settings=Stub(current={"supply_max_a": limit})))
        self.currents = uplink.Uplink.currents
        self.limit = limit

    def close(self):
        r = self.meter.close_window(1.0)
        self.seq += 1
        r["seq"] = self.seq
        r["uptime_s"] = readings_json.Exact(self.seq, 0, 3)
        r["time"] = 1763900000
        r["interval_s"] = 1
        return r

    def measure(self, counter):
        """(largest bytes of a burst, close_window's and the task's fields, the message's) in the
        fourth window (the first ones settle bias and frequency)."""
        case = self.case
        meter = self.meter
        limit = self.limit
        for w in range(4):
            if w == 3:
                gc.collect()
                gc.disable()
            burst = 0
            for buf in case.bufs:
                a = counter()
                meter.add_burst(buf, case.nsets, case.duration_us)
                self.currents(self.up, None if limit is None else meter.burst_currents(limit))
                burst = max(burst, counter() - a)
            a = counter()
            r = self.close()
            b = counter()
            readings_json.write(r, self.message)
            c = counter()
        gc.enable()
        return burst, b - a, c - b


class Stub:
    def __init__(self, **kw):
        for k in kw:
            setattr(self, k, kw[k])


def measure_heap(case, counter):
    """Heap bytes: kernel per call for two span lengths, process per burst, window, float per set."""
    short = array("i", case.geo)
    short[accum.G_END] = case.first + accum.CHUNK_SETS
    k_short = heap_bytes(lambda: case.kernel(short), counter)
    k_long = heap_bytes(case.kernel, counter)
    per_sample = (k_long - k_short) / (case.span - accum.CHUNK_SETS)
    locked = None
    if hasattr(micropython, "heap_lock"):
        micropython.heap_lock()
        try:
            case.kernel()
            locked = True
        except MemoryError:
            locked = False
        finally:
            micropython.heap_unlock()
    process = heap_bytes(case.process, counter)
    burst, close, message = Firmware(case).measure(counter)
    # A supply limit over every phase (the alarm checks, nothing near it), and one that a phase is
    # over (its current computed in floats, the alarm repeating).
    under = Firmware(case, limit=63).measure(counter)[0]
    over = Firmware(case, limit=16).measure(counter)[0]
    # The float versions allocate per sample: a short stretch keeps them within the heap.
    n = min(FLOAT_HEAP_SETS, case.span)
    floats = heap_bytes(lambda: case.float_filter.add(case.buf, case.first, case.first + n), counter) / n
    lean = heap_bytes(lambda: case.float_burst.add(case.buf, case.first, case.first + n), counter) / n
    return {"k_call": k_short, "k_sample": per_sample, "locked": locked, "process": process,
            "burst": burst, "under": under, "over": over, "close": close, "message": message,
            "window": WINDOW_BURSTS * burst + close + message, "float": floats, "lean": lean}


def fmt_bytes(x):
    return "%d" % x if x == int(x) else "%.2f" % x


def app_burst_sets(nch):
    """Sets in one of the firmware's sampling bursts (firmware/app.py BURST_MS) for nch channels."""
    burst_ms = BURST_MS
    try:
        import app

        burst_ms = app.BURST_MS
    except Exception:  # app needs the frozen asyncio; without it use the figure above
        pass
    return burst_ms * 1000 // (nch * sim.ADC_READ_US)


def main(argv):
    opts = parse_args(argv)
    impl = sys.implementation
    version = ".".join(str(v) for v in impl.version[:3])
    print("engine bench: %s %s on %s, %s" % (
        impl.name, version, sys.platform,
        "best of %d rounds of %s" % (opts["rounds"],
                                       "%d calls" % opts["reps"] if opts["reps"] > 0
                                       else "%d ms" % opts["ms"])))
    if not IS_MP:
        print("note: CPython runs viper code as plain Python: these timings say nothing about the device")
    cases = []
    for vin, nch in ((1, 4), (3, 6)):
        sizes = [opts["sets"]] if opts["sets"] > 0 else [app_burst_sets(nch), 1000]
        for nsets in sizes:
            cases.append(Case(vin, nsets))
    rows = []
    for case in cases:
        rows.append((case, measure_time(case, opts)))
    print("")
    print("microseconds per sample set (of the whole-cycle span):")
    print("%-22s %5s %5s %8s %8s %15s %12s" % ("layout", "sets", "span", "kernel", "engine",
                                             "float(EmonLib)", "float(lean)"))
    for case, (tk, tp, tf, tl) in rows:
        print("%-22s %5d %5d %8.3f %8.3f %15.3f %12.3f" % (
            case.name(), case.nsets, case.span, tk / case.span, tp / case.span, tf / case.span,
            tl / case.span))
    print("kernel = accum.accumulate; engine = BurstAnalyzer.process of the whole burst (crossings, kernel,")
    print("clipping, folding into the window) and its share of finish (the float math once per window of")
    print("%d bursts); float = tools/bench/float_engine.py over the span only" % WINDOW_BURSTS)
    print("(EmonLib: low-pass bias updated per sample; lean: bias from the previous burst's mean)")
    print("")
    for case, (tk, tp, tf, tl) in rows:
        ratio = tf / tp
        print("kernel vs float (%s): %.1fx faster per sample set" % (case.tag(), tf / tk))
        print("engine vs float (%s): %.1fx faster per sample set (goal %.0fx: %s;"
              " per burst %.3f ms vs %.3f ms)" % (
                  case.tag(), ratio, GOAL_RATIO, "met" if ratio >= GOAL_RATIO else "NOT met",
                  tp / 1000, tf / 1000))
        print("engine vs lean float (%s): %.1fx faster per sample set" % (case.tag(), tl / tp))
    print("")
    print("per-sample cost = the marginal cost of one more sample set (slope between the two burst")
    print("sizes of a layout); the rest is a fixed cost per burst (crossings, float math, set-up):")
    by_nch = {}
    for case, t in rows:
        by_nch.setdefault(case.nch, []).append((case, t))
    for nch in sorted(by_nch):
        pair = by_nch[nch]
        if len(pair) < 2:
            continue
        (a, ta), (b, tb) = pair[0], pair[1]
        dspan = a.span - b.span
        if dspan == 0:
            continue
        slope = [(ta[k] - tb[k]) / dspan for k in range(4)]
        if slope[1] <= 0:     # too few --reps: the longer burst did not time longer (timer noise)
            print("per-sample (%d ch): not measurable at this --reps (timer noise)" % nch)
            continue
        fixed = tb[1] - slope[1] * b.span
        ratio = slope[2] / slope[1]
        print("per-sample (%d ch): engine %.3f us, float %.3f us (lean %.3f us): %.1fx faster"
              " (goal %.0fx: %s; lean %.1fx); engine fixed cost %.0f us per burst" % (
                  nch, slope[1], slope[2], slope[3], ratio, GOAL_RATIO,
                  "met" if ratio >= GOAL_RATIO else "NOT met", slope[3] / slope[1], fixed))
    seen = []
    for case in cases:
        if case.nch in seen:
            continue
        seen.append(case.nch)
        for label, fe in (("float", case.float_filter), ("lean float", case.float_burst)):
            dv, di, dp = case.agreement(fe)
            print("%s vs engine results (%d ch): V within %.2f%%, I within %.2f%%, P within %.2f%% of VA"
                  % (label, case.nch, dv, di, dp))
    print("")
    counters = heap_counters()
    if not counters:
        print("heap: not measured on CPython (MicroPython only)")
        return
    firmware = meter_module_origin()
    name, counter = counters[0]
    print("heap (%s deltas, gc disabled; firmware %s):" % (name, firmware))
    summary = []
    for case in cases:
        h = measure_heap(case, counter)
        lock = {True: "yes", False: "NO (MemoryError)", None: "n/a"}[h["locked"]]
        print("heap kernel accum.accumulate (%s): %s bytes per sample set, %d bytes per call;"
              " runs with the heap locked: %s" % (case.tag(), fmt_bytes(h["k_sample"]), h["k_call"], lock))
        print("heap engine BurstAnalyzer.process (%s): %d bytes per burst (%.2f per sample set)" % (
            case.tag(), h["process"], h["process"] / case.nsets))
        print("heap burst Meter.add_burst (%s): %d bytes per burst; with a supply limit: %d (every phase"
              " under it), %d (a phase over it)" % (case.tag(), h["burst"], h["under"], h["over"]))
        print("heap window Meter.close_window (%s): %d bytes per window; whole window of %d bursts: %d bytes"
              " (readings message written: %d bytes)" % (
                  case.tag(), h["close"], WINDOW_BURSTS, h["window"], h["message"]))
        print("heap float engine (%s): %.1f bytes per sample set (lean: %.1f)" % (
            case.tag(), h["float"], h["lean"]))
        summary.append((case, h))
    print("")
    print("heap per sample / burst / window, steady state (targets: 0 / %d / as small as reasonable):"
          % BURST_TARGET)
    for name, counter in counters:
        for case, h in summary:
            if counter is not counters[0][1]:
                h = measure_heap(case, counter)
            worst = max(h["burst"], h["under"])
            print("heap %s (%s): per sample %s, per burst %d (with a supply limit %d; a phase over it %d),"
                  " per window %d: per burst %s" % (
                      name, case.tag(), fmt_bytes(h["k_sample"]), h["burst"], h["under"], h["over"],
                      h["window"], "met" if h["k_sample"] == 0 and worst <= BURST_TARGET else "NOT met"))


def meter_module_origin():
    """Where the firmware came from: frozen into the binary, or source files."""
    import meter

    path = getattr(meter, "__file__", "")
    return "frozen" if "/" not in path else "from " + path.rpartition("/")[0]


main(sys.argv[1:])
