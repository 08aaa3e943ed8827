# `make bench`: the cost of a release's signature check (firmware/p256.py, ECDSA P-256) on the runtime
# it runs on: the whole verify, the longest slice of verify_steps (what the metering task waits at most
# when the update checks between bursts), and the heap it takes.
#
#   .venv/bin/micropython tools/bench/bench_verify.py [--rounds N] [--slice-bits N] [--free BYTES]
#   build/esp32like/micropython tools/bench/bench_verify.py [...]   (the firmware frozen in, as on the chip)
#   .venv/bin/python tools/bench/bench_verify.py [...]               (CPython, for reference)
#
# Heap (MicroPython only), with the garbage collector disabled: "live" is what the generator holds between
# slices (gc.mem_alloc() after a collection, against before it started); "per slice" is the most one slice
# allocates before a collection could free it. Their sum bounds the verify's peak: the device needs that
# much free heap, the rest is garbage the collector takes back. The signature is a fixed one made with
# the cryptography package (tests/fw/p256_vectors.py). Last, the verify with the heap filled but --free
# bytes (default 4096, the device's steady-state headroom): every few KB of garbage costs a collection.
# Run it with -X heapsize=112k for the chip's heap (a collection's cost grows with the heap it marks).
import gc
import sys

IS_MP = sys.implementation.name == "micropython"


def _setup_path():
    here = __file__.rpartition("/")[0] or "."
    root = here + "/../.."
    paths = [root + "/firmware", root + "/tests/fw"]
    # After ".frozen": on the ESP32-like runtime the firmware frozen into the binary is what runs.
    at = sys.path.index(".frozen") + 1 if ".frozen" in sys.path else 0
    for p in reversed(paths):
        if p not in sys.path:
            sys.path.insert(at, p)


_setup_path()

import p256  # noqa: E402
from p256_vectors import VECTORS  # noqa: E402

if IS_MP:
    import time

    def now_us():
        return time.ticks_us()

    def since_us(t0):
        return time.ticks_diff(time.ticks_us(), t0)
else:
    import time

    def now_us():
        return time.perf_counter_ns() // 1000

    def since_us(t0):
        return now_us() - t0


def _arg(argv, name, default):
    if name in argv:
        return int(argv[argv.index(name) + 1])
    return default


def _valid():
    for name, pub, digest, sig, _ok in VECTORS:
        if name == "valid":
            return bytes.fromhex(pub), bytes.fromhex(digest), bytes.fromhex(sig)
    raise SystemExit("bench_verify: no valid vector")


def timing(pub, digest, sig, slice_bits, rounds):
    """(best whole verify, longest slice, number of slices), in microseconds."""
    best = None
    longest = 0
    slices = 0
    for _ in range(rounds):
        gc.collect()
        t0 = now_us()
        steps = p256.verify_steps(pub, digest, sig, slice_bits)
        slices = 0
        while True:
            ts = now_us()
            r = next(steps)
            longest = max(longest, since_us(ts))
            if r is not None:
                break
            slices += 1
        total = since_us(t0)
        if r is not True:
            raise SystemExit("bench_verify: the valid signature did not verify")
        best = total if best is None else min(best, total)
    return best, longest, slices


def heap(pub, digest, sig, slice_bits):
    """(live bytes between slices at most, bytes one slice allocates at most, bytes of the whole verify).
    The generator itself is live from its call: its frame is the largest single block (272 B on 32 bits)."""
    gc.collect()
    base = gc.mem_alloc()
    gc.disable()
    try:
        steps = p256.verify_steps(pub, digest, sig, slice_bits)
        live = 0
        per_slice = 0
        total = 0
        while True:
            gc.collect()
            before = gc.mem_alloc()
            live = max(live, before - base)
            r = next(steps)
            used = gc.mem_alloc() - before
            per_slice = max(per_slice, used)
            total += used
            if r is not None:
                break
    finally:
        gc.enable()
    return live, per_slice, total


def squeezed(pub, digest, sig, slice_bits, rounds, headroom):
    """timing() with the heap filled but `headroom` bytes: the collector then runs every few KB of
    garbage, as on the device in steady state, and its pauses land in the slices."""
    gc.collect()
    ballast = []
    while gc.mem_free() > headroom + 16384:
        ballast.append(bytearray(min(65536, gc.mem_free() - headroom - 8192)))
    while gc.mem_free() > headroom + 512:
        ballast.append(bytearray(256))
    free = gc.mem_free()
    try:
        return free, timing(pub, digest, sig, slice_bits, rounds)
    finally:
        del ballast
        gc.collect()


def main(argv):
    rounds = _arg(argv, "--rounds", 5)
    slice_bits = _arg(argv, "--slice-bits", p256.SLICE_BITS)
    pub, digest, sig = _valid()
    runtime = sys.implementation.name
    if IS_MP and "/" not in getattr(p256, "__file__", "/"):
        runtime += " (frozen firmware)"
    best, longest, slices = timing(pub, digest, sig, slice_bits, rounds)
    print("verify P-256 on %s %s (%s): %.1f ms (best of %d); %d slices of %d bits, longest %.1f ms"
          % (runtime, ".".join(str(v) for v in sys.implementation.version[:3]), sys.platform,
             best / 1000, rounds, slices, slice_bits, longest / 1000))
    if IS_MP:
        live, per_slice, total = heap(pub, digest, sig, slice_bits)
        print("  heap: %d B live between slices; garbage: %d B at most per slice, %d B per verify"
              % (live, per_slice, total))
        headroom = _arg(argv, "--free", 4096)
        try:
            free, (best, longest, slices) = squeezed(pub, digest, sig, slice_bits, rounds, headroom)
        except MemoryError as e:
            print("  with %d B of free heap: MemoryError (%s)" % (headroom, e))
        else:
            print("  with %d B of free heap (the collector runs every few KB): %.1f ms, longest slice %.1f ms"
                  % (free, best / 1000, longest / 1000))


main(sys.argv[1:])
