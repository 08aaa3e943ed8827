# Installer diagnostics (SPEC 4 flags): each is raised for its fault, absent on a correct installation,
# and never flickers (3 windows in a row to raise, 5 to clear).
import diagnostics
from simworld import MeterWorld, flags

GOOD = {"phases": [{"current_a": 10.0, "angle_deg": 10.0}, {"current_a": 16.0, "angle_deg": 25.0},
                   {"current_a": 6.0, "angle_deg": -20.0}]}


def world(**phase_changes):
    """GOOD with changes to some phases: world(p2={"reversed": True})."""
    phases = [dict(p) for p in GOOD["phases"]]
    for key in phase_changes:
        phases[int(key[1]) - 1].update(phase_changes[key])
    return {"phases": phases}


def test_a_correct_installation_raises_nothing_but_derived_voltage():
    last = MeterWorld(GOOD).windows(6)[-1]
    assert flags(last, 1) == []
    assert flags(last, 2) == ["derived_voltage"] and flags(last, 3) == ["derived_voltage"]
    last = MeterWorld(dict(GOOD, mains={"voltage_v": [230, 231, 229]}), {"voltage_inputs": 3}).windows(4)[-1]
    assert [flags(last, line) for line in (1, 2, 3)] == [[], [], []]


def test_reversed_ct_is_flagged_after_three_windows_on_its_phase_only():
    w = MeterWorld(world(p2={"reversed": True}))
    seen = [flags(r, 2) for r in w.windows(4)]
    assert "reversed" not in seen[0] and "reversed" not in seen[1]
    assert "reversed" in seen[2] and "reversed" in seen[3]
    last = w.window()
    assert "reversed" not in flags(last, 1) and "reversed" not in flags(last, 3)


def test_export_on_a_generation_site_is_not_reversed():
    w = MeterWorld(world(p1={"angle_deg": 180.0}, p3={"angle_deg": 175.0}), {"generation": True})
    last = w.windows(5)[-1]
    assert last["phases"][0]["power_w"] < 0
    assert flags(last, 1) == [] and "reversed" not in flags(last, 3)


def test_invert_setting_turns_a_reversed_ct_right_again():
    last = MeterWorld(world(p2={"reversed": True}), {"invert": [False, True, False]}).windows(5)[-1]
    assert last["phases"][1]["power_w"] > 0 and "reversed" not in flags(last, 2)


def test_ct_on_another_phase_is_wrong_phase_not_reversed():
    last = MeterWorld(world(p1={"on_phase": 2, "angle_deg": 0.0})).windows(5)[-1]
    assert "wrong_phase" in flags(last, 1) and "reversed" not in flags(last, 1)
    assert "wrong_phase" not in flags(last, 2) and "wrong_phase" not in flags(last, 3)


def test_current_beyond_the_sensor_range_is_overrange():
    last = MeterWorld(world(p3={"current_a": 150.0})).windows(4)[-1]      # home sensor: 100 A
    assert "overrange" in flags(last, 3) and "overrange" not in flags(last, 1)
    # The same current through a 400 A (public) CT stays inside the ADC's range.
    last = MeterWorld(dict(world(p3={"current_a": 150.0}), adc={"sensor": "public"}),
                      {"sensor": "public"}).windows(4)[-1]
    assert "overrange" not in flags(last, 3)


def test_missing_mains_is_no_voltage_on_every_phase():
    last = MeterWorld(dict(GOOD, mains={"voltage_v": [0.0, 0.0, 0.0]})).windows(4)[-1]
    for line in (1, 2, 3):
        assert "no_voltage" in flags(last, line)
    assert last["phases"][0]["voltage_v"] == 0.0 and last["phases"][0]["power_w"] == 0.0


def test_a_fault_shorter_than_three_windows_or_alternating_never_raises_a_flag():
    w = MeterWorld(GOOD)
    w.windows(2)
    w.set_world(world(p2={"reversed": True}))
    brief = w.windows(2)
    w.set_world(GOOD)
    after = w.windows(2)
    assert all("reversed" not in flags(r, 2) for r in brief + after)
    for k in range(8):          # good, bad, good, bad...
        w.set_world(world(p2={"reversed": True}) if k % 2 else GOOD)
        assert "reversed" not in flags(w.window(), 2)


def test_a_raised_flag_survives_a_single_good_window_and_clears_after_five():
    w = MeterWorld(world(p2={"reversed": True}))
    assert "reversed" in flags(w.windows(3)[-1], 2)
    w.set_world(GOOD)
    seen = [flags(r, 2) for r in w.windows(6)]
    assert all("reversed" in f for f in seen[:4]) and "reversed" not in seen[5]


def test_debounced_needs_runs_and_holds_on_unknown():
    d = diagnostics.Debounced()
    assert [d.update(True) for _ in range(3)] == [False, False, True]
    assert d.update(None) is True                   # too little current to judge: hold
    assert [d.update(False) for _ in range(5)] == [True, True, True, True, False]
    d.update(True)
    d.update(True)
    d.update(False)                                 # a run broken by one window starts again
    assert d.update(True) is False
