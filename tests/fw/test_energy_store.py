# Energy counters on flash: restored as they were written, a broken file falls back, bad data refused.
import energy
from fwtest import raises, tmpdir


def counters(*joules):
    """Three phases that imported (or, negative, exported) these joules."""
    phases = [energy.PhaseEnergy() for _ in range(3)]
    for p, j in enumerate(joules):
        phases[p].add(j, 1.0)        # j watts for one second
    return phases


def test_counters_come_back_exactly_as_saved():
    d = tmpdir() + "/"
    store = energy.EnergyStore(d)
    phases = counters(12345678.5, -9000.25, 0)
    store.save(phases, 0)
    again = energy.EnergyStore(d).load()
    for p in range(3):
        assert phases[p].imported.state() == again[p].imported.state()
        assert phases[p].exported.state() == again[p].exported.state()
    assert again[0].imported.wh == 3429 and again[1].exported.wh == 2


def test_a_missing_or_broken_file_falls_back_to_the_last_good_one_or_zero():
    d = tmpdir() + "/"
    assert [p.imported.value_wh() for p in energy.EnergyStore(d).load()] == [0.0, 0.0, 0.0]
    store = energy.EnergyStore(d)
    store.save(counters(7200, 0, 0), 0)
    store.save(counters(10800, 0, 0), 1)
    with open(d + "energy.json", "w") as f:
        f.write('{"l1": {"import": [3, ')          # torn by a power cut outside our writer
    assert energy.EnergyStore(d).load()[0].imported.wh == 2     # the previous save


def test_stored_state_is_checked():
    good = energy.to_state(counters(100, 0, 0))
    energy.check_state(good)
    for bad in ([], {"l4": good["l1"]}, {"l1": {"import": [-1, 0.0], "export": [0, 0.0]}},
                {"l1": {"import": [1, 9999.0], "export": [0, 0.0]}},
                {"l1": {"import": [True, 0.0], "export": [0, 0.0]}}, {"l1": {"import": [1, 0.0]}}):
        raises(ValueError, energy.check_state, bad)


def test_save_is_due_every_period():
    store = energy.EnergyStore(tmpdir() + "/")
    assert store.due(0)
    store.save(counters(0, 0, 0), 1000)
    assert not store.due(1000 + energy.SAVE_EVERY_MS - 1) and store.due(1000 + energy.SAVE_EVERY_MS)


def test_a_failed_save_never_stops_the_meter_and_is_tried_again():
    # Found by make soak: a MemoryError in the save (a fragmented heap) ended the metering task.
    import app

    class FailingStore:
        calls = 0

        def save(self, phases, now_ms):
            FailingStore.calls += 1
            raise (MemoryError, OSError, ValueError)[FailingStore.calls - 1]()

    class Dev:
        energy_store = FailingStore()

    class Meter:
        energy = counters(1, 0, 0)

    Dev.meter = Meter
    for _ in range(3):
        app.save_energy(Dev, 0)            # logs, never raises
    assert FailingStore.calls == 3
    assert energy.EnergyStore(tmpdir() + "/").due(0)     # never saved: due at once, every window


def test_reading_a_stored_file_takes_a_buffer_of_its_size_not_the_limit():
    import store as st

    d = tmpdir() + "/"
    energy.EnergyStore(d).save(counters(5, 0, 0), 0)
    reads = []

    class Spy:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def read(self, n=-1):
            reads.append(n)
            return self.f.read(n)

    real_open = open
    st.open = lambda path, mode="r": Spy(real_open(path, mode))
    try:
        doc, source = st.read_json(d + "energy.json", energy.check_state)
    finally:
        del st.open
    assert source == "main" and doc is not None
    assert reads and max(reads) < 1024, reads       # the file is ~200 bytes; the limit is 8 KB
