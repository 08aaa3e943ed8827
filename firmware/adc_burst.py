# The sampling loop of hal_esp32: one raw ADC read per channel per sample set, as tight as MicroPython
# allows. Apart from hal_esp32 so that it runs (and is tested) on the host with stand-in readers.
import time

import micropython


@micropython.viper
def _read_sets(out: ptr16, nsets: int, readers, nch: int) -> int:
    # readers: bound methods fetched once (ADC.read), each returning a small int: nothing here
    # allocates, so the garbage collector never interrupts a burst.
    start = int(time.ticks_us())
    i = 0
    n = 0
    while n < nsets:
        c = 0
        while c < nch:
            out[i] = int(readers[c]())
            i += 1
            c += 1
        n += 1
    return int(time.ticks_diff(time.ticks_us(), start))


def read_burst(buf, nsets, readers):
    """Fill buf (array('H')) with nsets interleaved sets of len(readers) codes; returns the µs taken."""
    if nsets < 0 or len(buf) < nsets * len(readers):
        raise ValueError("buffer holds %d codes, the burst needs %d" % (len(buf), nsets * len(readers)))
    return _read_sets(buf, nsets, readers, len(readers))


def time_per_read(readers, nsets=64, tries=3):
    """Measured µs per read (the skew between channels), the fastest of a few bursts: least disturbed."""
    import array

    buf = array.array("H", bytes(2 * nsets * len(readers)))
    best = None
    for _ in range(tries):
        d = read_burst(buf, nsets, readers)
        if best is None or d < best:
            best = d
    reads = nsets * len(readers)
    return (best + reads // 2) // reads
