# Installer diagnostics (contract §4 `flags`, firmware/diagnostics.py) through the whole engine: each flag
# raised for its fault in a simulated installation, absent on a correct one, and debounced (raised after
# ON_WINDOWS windows in a row, cleared after OFF_WINDOWS, never flickering); and Debounced on its own.
from diagnostics import OFF_WINDOWS, ON_WINDOWS, Debounced
from simworld import World

VOLTS = [230.0, 233.0, 227.0]
# A correct installation: every CT on its own phase, arrow towards the load; loads of all kinds.
# (Reversing L3's 60-degree load would look like a wrong phase: the faults below use L1 and L2.)
GOOD = [{"current_a": 20.0, "angle_deg": 25.0}, {"current_a": 35.0, "angle_deg": -20.0},
        {"current_a": 8.0, "angle_deg": 60.0}]


def _world(phases=GOOD, volts=VOLTS, sensor="home"):
    return {"mains": {"voltage_v": volts}, "phases": phases, "adc": {"noise_lsb": 2.0, "sensor": sensor}}


def _with(**changes):
    """GOOD with some phases changed: _with(p2={"reversed": True})."""
    phases = [dict(p) for p in GOOD]
    for key in changes:
        phases[int(key[1]) - 1].update(changes[key])
    return _world(phases)


def _meter(world, changes=None, seed=7):
    # Two bursts per window are enough for the flags; keeps the many windows below cheap.
    return World(world, changes, seed=seed, bursts=2, nsets=1000)


def _flags(r):
    return [ph["flags"] for ph in r["phases"]]


def _history(w, n, line, flag):
    """Whether `flag` is up on phase `line` after each of the next n windows."""
    return [flag in w.window()["phases"][line - 1]["flags"] for _ in range(n)]


# -- Debounced on its own ---------------------------------------------------------------------------

def test_debounced_raises_after_on_windows_in_a_row():
    d = Debounced()
    assert [d.update(True) for _ in range(ON_WINDOWS)] == [False] * (ON_WINDOWS - 1) + [True]
    assert d.on is True and d.update(True) is True


def test_debounced_clears_after_off_windows_in_a_row():
    d = Debounced()
    for _ in range(ON_WINDOWS):
        d.update(True)
    assert [d.update(False) for _ in range(OFF_WINDOWS)] == [True] * (OFF_WINDOWS - 1) + [False]
    assert d.update(False) is False


def test_debounced_broken_runs_start_again():
    d = Debounced()
    for _ in range(ON_WINDOWS - 1):
        assert d.update(True) is False
    assert d.update(False) is False          # one good window breaks the run
    for _ in range(ON_WINDOWS - 1):
        assert d.update(True) is False
    assert d.update(True) is True
    for _ in range(OFF_WINDOWS - 1):
        assert d.update(False) is True
    assert d.update(True) is True            # one bad window breaks the run to clear
    for _ in range(OFF_WINDOWS - 1):
        assert d.update(False) is True
    assert d.update(False) is False


def test_debounced_unknown_holds_the_state_and_breaks_no_run_into_a_flip():
    d = Debounced()
    assert [d.update(None) for _ in range(10)] == [False] * 10
    for _ in range(ON_WINDOWS):
        d.update(True)
    assert [d.update(None) for _ in range(10)] == [True] * 10
    # None between two parts of a run restarts it: no flag from scattered evidence.
    d = Debounced()
    for _ in range(3 * ON_WINDOWS):
        d.update(True)
        assert d.update(None) is False


def test_debounced_alternating_never_toggles():
    for start in (False, True):
        d = Debounced()
        if start:
            for _ in range(ON_WINDOWS):
                d.update(True)
        seen = [d.update(k % 2 == 0) for k in range(40)]
        assert seen == [start] * 40


# -- a correct installation ---------------------------------------------------------------------------

def test_a_correct_installation_raises_no_flag():
    w = _meter(_world(), {"voltage_inputs": 3})
    for _ in range(ON_WINDOWS + 2):
        assert _flags(w.window()) == [[], [], []]


def test_a_correct_installation_with_only_l1_wired_says_derived_voltage_only():
    w = _meter(_world(), {"voltage_inputs": 1})
    for _ in range(ON_WINDOWS + 2):
        assert _flags(w.window()) == [[], ["derived_voltage"], ["derived_voltage"]]


def test_a_single_phase_installation_raises_no_flag():
    w = World(_world(), {"phases": 1}, seed=3, bursts=2, nsets=2000)
    for _ in range(ON_WINDOWS + 1):
        assert _flags(w.window()) == [[]]


def test_a_generation_site_exporting_is_not_reversed():
    # Solar on every phase: negative power, with some reactive power either way.
    exporting = [{"current_a": 30.0, "angle_deg": 180.0}, {"current_a": 20.0, "angle_deg": 160.0},
                 {"current_a": 10.0, "angle_deg": 200.0}]
    for vin, derived in ((3, []), (1, ["derived_voltage"])):
        w = _meter(_world(exporting), {"voltage_inputs": vin, "generation": True})
        for _ in range(ON_WINDOWS + 2):
            r = w.window()
            assert all(ph["power_w"] < 0 for ph in r["phases"]), (vin, r)
            assert _flags(r) == [[], derived, derived], (vin, r)


def test_a_generation_site_switching_between_import_and_export_stays_clean():
    w = _meter(_world(), {"voltage_inputs": 3, "generation": True})
    exporting = [dict(p, angle_deg=p["angle_deg"] + 180.0) for p in GOOD]
    for k in range(2 * ON_WINDOWS + 2):
        w.change(_world(exporting) if (k // 2) % 2 else _world())
        assert _flags(w.window()) == [[], [], []]


def test_a_small_export_below_one_percent_is_no_evidence():
    # A CT with 0.5 A reversed (below 1 % of 100 A): nothing to judge, no flag.
    w = _meter(_with(p1={"current_a": 0.5, "reversed": True}), {"voltage_inputs": 3})
    for _ in range(ON_WINDOWS + 2):
        assert _flags(w.window())[0] == []


# -- each fault ----------------------------------------------------------------------------------------

def test_reversed_ct_is_raised_after_on_windows_on_its_phase_only():
    for load in (0.0, 25.0, -30.0):
        w = _meter(_with(p2={"reversed": True, "angle_deg": load}), {"voltage_inputs": 3})
        seen = []
        for _ in range(ON_WINDOWS + 1):
            r = w.window()
            assert r["phases"][1]["power_w"] < 0
            seen.append(_flags(r))
        expected = [[], [], []]
        assert seen[:ON_WINDOWS - 1] == [expected] * (ON_WINDOWS - 1), (load, seen)
        assert seen[ON_WINDOWS - 1:] == [[[], ["reversed"], []]] * 2, (load, seen)


def test_reversed_ct_with_derived_voltages():
    for line in (2, 3):
        w = _meter(_with(**{"p%d" % line: {"reversed": True, "angle_deg": 10.0}}), {"voltage_inputs": 1})
        seen = [_flags(w.window()) for _ in range(ON_WINDOWS + 1)]
        expected = [[], ["derived_voltage"], ["derived_voltage"]]
        assert seen[:ON_WINDOWS - 1] == [expected] * (ON_WINDOWS - 1), (line, seen)
        expected[line - 1] = ["reversed", "derived_voltage"]
        assert seen[ON_WINDOWS - 1:] == [expected] * 2, (line, seen)


def test_invert_setting_turns_a_reversed_ct_right_again():
    # The installer's fix in software: a reversed CT with its `invert` set imports and raises nothing.
    for vin in (1, 3):
        w = _meter(_with(p2={"reversed": True}), {"voltage_inputs": vin, "invert": [False, True, False]})
        for _ in range(ON_WINDOWS + 2):
            r = w.window()
            assert r["phases"][1]["power_w"] > 0, (vin, r)
            assert "reversed" not in _flags(r)[1], (vin, r)


def test_ct_on_another_phase_is_wrong_phase_not_reversed():
    # CT 1 clamped on L2's conductor (resistive load: 120 degrees behind V1), CT 3 on L1's (a load
    # lagging 10 degrees: 130 degrees from V3).
    world = _with(p1={"on_phase": 2, "angle_deg": 0.0},
                  p3={"on_phase": 1, "angle_deg": 10.0, "current_a": 20.0})
    for vin in (1, 3):
        w = _meter(world, {"voltage_inputs": vin})
        seen = [_flags(w.window()) for _ in range(ON_WINDOWS)]
        for f in seen[:ON_WINDOWS - 1]:
            assert "wrong_phase" not in f[0] and "wrong_phase" not in f[2], seen
        f = seen[-1]
        assert f[0] == ["wrong_phase"], (vin, seen)
        assert f[2] == ["wrong_phase"] + (["derived_voltage"] if vin == 1 else []), (vin, seen)
        assert "wrong_phase" not in f[1] and "reversed" not in f[1]


def test_current_beyond_the_sensor_range_is_overrange():
    w = _meter(_with(p2={"current_a": 150.0}), {"voltage_inputs": 3})    # home: 100 A
    seen = [_flags(w.window()) for _ in range(ON_WINDOWS)]
    assert seen[:ON_WINDOWS - 1] == [[[], [], []]] * (ON_WINDOWS - 1), seen
    assert seen[-1] == [[], ["overrange"], []], seen


def test_rated_current_is_not_overrange():
    # 100 A through a home CT, and 150 A (or the rated 400 A) through a public one, fit the ADC.
    w = _meter(_with(p1={"current_a": 100.0}, p2={"current_a": 100.0, "angle_deg": 0.0}),
               {"voltage_inputs": 3})
    for _ in range(ON_WINDOWS + 1):
        assert _flags(w.window()) == [[], [], []]
    public = _world([{"current_a": 150.0}, {"current_a": 400.0}, {"current_a": 400.0, "angle_deg": 60.0}],
                    sensor="public")
    w = _meter(public, {"voltage_inputs": 3, "sensor": "public"})
    for _ in range(ON_WINDOWS + 1):
        assert _flags(w.window()) == [[], [], []]


def test_a_home_ct_configured_as_public_still_clips_as_overrange():
    # The clipping is the ADC's, whatever the sensor setting says.
    w = _meter(_world([{"current_a": 150.0}, {}, {}]), {"voltage_inputs": 3, "sensor": "public"})
    assert "overrange" in _flags(w.run(ON_WINDOWS))[0]


def test_no_mains_voltage_is_no_voltage_on_every_phase():
    for vin, derived in ((3, []), (1, ["derived_voltage"])):
        w = _meter(_world(volts=[0.0, 0.0, 0.0]), {"voltage_inputs": vin})
        seen = [w.window() for _ in range(ON_WINDOWS)]
        assert _flags(seen[ON_WINDOWS - 2]) == [[], derived, derived]
        r = seen[-1]
        assert _flags(r) == [["no_voltage"], ["no_voltage"] + derived, ["no_voltage"] + derived]
        for ph in r["phases"]:
            assert ph["voltage_v"] == 0.0 and ph["power_w"] == 0.0 and ph["pf"] == 0.0


def test_one_missing_voltage_is_no_voltage_on_that_phase_only():
    w = _meter(_world(volts=[230.0, 0.0, 229.0]), {"voltage_inputs": 3})
    r = w.run(ON_WINDOWS)
    assert _flags(r) == [[], ["no_voltage"], []]
    assert r["phases"][1]["voltage_v"] < 1.0


def test_derived_voltage_on_l2_and_l3_only_and_only_when_derived():
    r = _meter(_world(), {"voltage_inputs": 1}).window()        # a fact, no debouncing
    assert _flags(r) == [[], ["derived_voltage"], ["derived_voltage"]]
    r = _meter(_world(), {"voltage_inputs": 3}).window()
    assert _flags(r) == [[], [], []]


# -- no flicker through the engine -----------------------------------------------------------------

def test_a_fault_shorter_than_on_windows_raises_nothing():
    faults = (("reversed", 2, _with(p2={"reversed": True})),
              ("overrange", 3, _with(p3={"current_a": 150.0})),
              ("wrong_phase", 1, _with(p1={"on_phase": 3, "angle_deg": 0.0})))
    for flag, line, bad in faults:
        w = _meter(_world(), {"voltage_inputs": 3})
        seen = _history(w, 2, line, flag)
        w.change(bad)
        seen += _history(w, ON_WINDOWS - 1, line, flag)
        w.change(_world())
        seen += _history(w, ON_WINDOWS + 1, line, flag)
        assert not any(seen), (flag, seen)


def test_a_raised_flag_survives_a_good_window_and_clears_after_off_windows():
    faults = (("reversed", 2, _with(p2={"reversed": True})),
              ("overrange", 3, _with(p3={"current_a": 150.0})))
    for flag, line, bad in faults:
        w = _meter(bad, {"voltage_inputs": 3})
        assert _history(w, ON_WINDOWS, line, flag)[-1]
        w.change(_world())
        seen = _history(w, 1, line, flag)
        w.change(bad)
        seen += _history(w, 1, line, flag)
        w.change(_world())
        seen += _history(w, OFF_WINDOWS, line, flag)
        assert seen == [True] * (OFF_WINDOWS + 1) + [False], (flag, seen)


def test_alternating_good_and_bad_windows_never_toggle_a_flag():
    bad = _with(p2={"reversed": True})
    w = _meter(_world(), {"voltage_inputs": 3})
    seen = []
    for k in range(8):                  # from off: good, bad, good, bad...
        w.change(bad if k % 2 else _world())
        seen += _history(w, 1, 2, "reversed")
    assert seen == [False] * 8, seen
    w.change(bad)
    assert _history(w, ON_WINDOWS, 2, "reversed")[-1]
    seen = []
    for k in range(8):                  # from on: good, bad, good, bad...
        w.change(_world() if k % 2 == 0 else bad)
        seen += _history(w, 1, 2, "reversed")
    assert seen == [True] * 8, seen


def test_reversed_is_held_while_there_is_too_little_current_to_judge():
    # Raised by day; at night the load drops to nothing: the flag stays (no evidence either way),
    # and clears only after OFF_WINDOWS windows of a correct import.
    w = _meter(_with(p2={"reversed": True}), {"voltage_inputs": 3})
    assert _history(w, ON_WINDOWS, 2, "reversed")[-1]
    w.change(_with(p2={"reversed": True, "current_a": 0.0}))
    assert _history(w, OFF_WINDOWS + 1, 2, "reversed") == [True] * (OFF_WINDOWS + 1)
    w.change(_world())
    assert _history(w, OFF_WINDOWS, 2, "reversed") == [True] * (OFF_WINDOWS - 1) + [False]
