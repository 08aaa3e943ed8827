# The per-sample kernels of firmware/accum.py with the heap locked, on a MicroPython runtime (driven by
# tests/host/test_accum_overflow.py). Argument: a JSON file of cases, each with its codes in a raw file.
# Prints one JSON line: per case the kernels' results, or the MemoryError they met; and whether the lock
# and the runtime's small-int limit really are what the test relies on.
import gc
import json
import sys
from array import array

import accum
import micropython


def run_locked(fn):
    """fn() with the heap locked: None, or "MemoryError" when anything was allocated."""
    gc.collect()
    micropython.heap_lock()
    try:
        fn()
        failed = None
    except MemoryError:
        failed = "MemoryError"
    micropython.heap_unlock()
    return failed


class Case:
    """One case's buffers (module-level calls without closures: calling a closure over more than a few
    variables allocates its argument array, which would be the runner's allocation, not the kernel's)."""


def _kernels():
    k = Case
    accum.accumulate(k.codes, k.geo, k.bias, k.flat, k.sums, k.part)
    k.count[0] = accum.rising_crossings(k.codes, k.nch, k.ch, k.first, k.end, k.level, k.hyst, k.cross,
                                        len(k.cross))
    accum.clip_counts(k.codes, k.nch, k.first, k.end, k.clips)


def run_case(case):
    k = Case
    with open(case["codes"], "rb") as f:
        k.codes = array("H", f.read())
    k.nch, k.first, k.end = case["nch"], case["first"], case["end"]
    pairs = case["pairs"]
    k.geo = array("i", [k.nch, k.first, k.end, len(pairs), accum.CHUNK_SETS])
    k.bias = array("i", case["bias"])
    k.flat = array("i", [0] * (3 * len(pairs)))
    for p, (vc, ic, d) in enumerate(pairs):
        k.flat[3 * p], k.flat[3 * p + 1], k.flat[3 * p + 2] = vc, ic, d + accum.DELAY_OFFSET
    k.sums = array("i", [0] * accum.sums_words(k.nch, len(pairs)))
    k.part = array("i", [0] * accum.partial_words(k.nch, len(pairs)))
    k.cross = array("i", [0] * case["max_crossings"])
    k.clips = array("i", [0] * k.nch)
    k.count = array("i", [0])
    k.level, k.hyst, k.ch = case["level"], case["hyst"], case["cross_channel"]
    failed = run_locked(_kernels)
    n = min(k.count[0], len(k.cross))
    return {"failed": failed, "sums": list(k.sums), "crossings": list(k.cross)[:n], "count": k.count[0],
            "clips": list(k.clips)}


def _alloc():
    Case.box = [0, 1]


def _cross_2_30():
    Case.box = Case.near + 1


def main(spec_path):
    with open(spec_path) as f:
        spec = json.load(f)
    Case.near = spec["small_int_max"]        # 2^30 - 1, the ESP32's largest small int
    Case.box = None                          # exists before the lock: storing to it adds no dict slot
    out = {"lock_catches_allocation": run_locked(_alloc) == "MemoryError",
           "crossing_2_30_allocates": run_locked(_cross_2_30) == "MemoryError",
           "cases": [run_case(c) for c in spec["cases"]]}
    print(json.dumps(out))


main(sys.argv[1])
