"""`tools/sim --capture`: the file follows contract §6; its signal is the scenario's world, measured back."""
import json
import math
import os
import subprocess

import pytest
from simctl import ROOT, SIM

SCENARIO = {
    "mains": {"voltage_v": [230.0, 231.0, 229.0], "freq_hz": 60.0, "harmonics": {"3": 0.01}},
    "phases": [{"current_a": 10.0, "angle_deg": 0.0, "harmonics": {"3": 0.1}},
               {"current_a": 16.0, "angle_deg": 25.0},
               {"current_a": 0.0, "angle_deg": 0.0}],
    "adc": {"noise_lsb": 1.5},
}
CHANNELS = ["v1", "v2", "v3", "i1", "i2", "i3"]
READ_US = 35                                          # boards/sim.py ADC_READ_US
V_PER_COUNT, A_PER_COUNT = 0.4728, {"home": 0.1465, "public": 0.5859}   # boards/sim.py
BIAS_CODE = 1319                                                        # boards/sim.py ADC_BIAS_CODE


def run_capture(tmp_path, name, *args):
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(SCENARIO))
    out = tmp_path / name
    proc = subprocess.run([SIM, "--capture", str(out), "--scenario", str(scenario), *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def read_capture(path):
    with open(path) as f:
        first = f.readline()
        prefix = "# ampguard-capture v1 "
        assert first.startswith(prefix)
        head = json.loads(first[len(prefix):])
        rows = [[int(x) for x in line.split(",")] for line in f]
    return head, [list(col) for col in zip(*rows, strict=True)]


def sine_fit(col, rate_hz, f):
    """Least squares y = a sin(wt) + b cos(wt) + c at set times; returns (amplitude, phase_deg, c)."""
    n = len(col)
    w = 2 * math.pi * f / rate_hz
    basis = [(math.sin(w * s), math.cos(w * s), 1.0) for s in range(n)]
    m = [[sum(x[i] * x[j] for x in basis) for j in range(3)] for i in range(3)]
    v = [sum(x[i] * y for x, y in zip(basis, col, strict=True)) for i in range(3)]
    a, b, c = solve3(m, v)
    return math.hypot(a, b), math.degrees(math.atan2(b, a)), c


def solve3(m, v):
    def det(a):
        return (a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
                - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
                + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]))
    d = det(m)
    return [det([[v[r] if c == i else m[r][c] for c in range(3)] for r in range(3)]) / d for i in range(3)]


def rms(col):
    mean = sum(col) / len(col)
    return math.sqrt(sum((y - mean) ** 2 for y in col) / len(col))


def angle_diff(a, b):
    return (a - b + 180) % 360 - 180


def expected_rms_counts(rms_value, scale, harmonics, noise_lsb):
    signal = rms_value / scale * math.sqrt(1 + sum(r * r for r in harmonics.values()))
    return math.sqrt(signal ** 2 + noise_lsb ** 2 + 1 / 12)   # plus noise and quantisation


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    return read_capture(run_capture(tmp_path_factory.mktemp("capture"), "c.txt", "--seconds", "2"))


def test_header_follows_spec_6(capture):
    head, cols = capture
    assert head["rate_hz"] == pytest.approx(1e6 / (6 * READ_US))
    assert head["bits"] == 12
    assert head["channels"] == CHANNELS
    assert head["v_per_count"] == {c: V_PER_COUNT for c in ("v1", "v2", "v3")}
    assert head["a_per_count"] == {c: A_PER_COUNT["home"] for c in ("i1", "i2", "i3")}
    assert head["skew_us"] == {c: k * READ_US for k, c in enumerate(CHANNELS)}
    assert head["window_ms"] == 1000
    assert len(cols) == 6 and len(cols[0]) == round(2 * head["rate_hz"])
    assert all(0 <= c <= 4095 for col in cols for c in col)


def test_rms_times_scale_is_the_scenarios_voltage_and_current(capture):
    head, cols = capture
    noise = SCENARIO["adc"]["noise_lsb"]
    mains = SCENARIO["mains"]
    for n in range(3):
        want = expected_rms_counts(mains["voltage_v"][n], V_PER_COUNT, mains["harmonics"], noise)
        assert rms(cols[n]) == pytest.approx(want, rel=2e-3), CHANNELS[n]
    for j in range(2):
        p = SCENARIO["phases"][j]
        want = expected_rms_counts(p["current_a"], A_PER_COUNT["home"], p.get("harmonics", {}), noise)
        assert rms(cols[3 + j]) == pytest.approx(want, rel=2e-3), CHANNELS[3 + j]


def test_bias_is_near_but_not_exactly_the_design_bias(capture):
    head, cols = capture
    for name, col in zip(CHANNELS, cols, strict=True):
        bias = sine_fit(col, head["rate_hz"], 60.0)[2]
        assert 6 <= abs(bias - BIAS_CODE) <= 62, (name, bias)


def test_noise_on_a_channel_without_current_is_the_scenarios(capture):
    head, cols = capture
    i3 = cols[5]
    assert rms(i3) ** 2 == pytest.approx(SCENARIO["adc"]["noise_lsb"] ** 2 + 1 / 12, abs=0.15)


def test_phase_of_each_channel_is_its_angle_plus_its_read_skew(capture):
    head, cols = capture
    f = SCENARIO["mains"]["freq_hz"]
    fits = [sine_fit(col, head["rate_hz"], f) for col in cols]
    true_angle = {"v1": 0, "v2": -120, "v3": -240, "i1": 0.0, "i2": -145.0}
    for k, name in enumerate(CHANNELS[:5]):
        skew_deg = 360 * f * (head["skew_us"][name] - head["skew_us"]["v1"]) / 1e6
        got = fits[k][1] - fits[0][1]
        # 5 sigma of a sine fit's phase in this noise, plus a little for the simulator's tables
        scale = V_PER_COUNT if name[0] == "v" else A_PER_COUNT["home"]
        noise_deg = math.degrees(SCENARIO["adc"]["noise_lsb"] / (fits[k][0] * math.sqrt(len(cols[k]) / 2)))
        assert abs(angle_diff(got, true_angle[name] + skew_deg)) < 5 * noise_deg + 0.005, (name, got)
        rms_value = SCENARIO["mains"]["voltage_v"][k] if k < 3 else SCENARIO["phases"][k - 3]["current_a"]
        assert fits[k][0] * scale / math.sqrt(2) == pytest.approx(rms_value, rel=1e-3), name


def test_third_harmonics_have_the_scenarios_level_and_phase(capture):
    head, cols = capture
    f = SCENARIO["mains"]["freq_hz"]
    for k, rel in ((0, 0.01), (3, 0.1)):
        a1, ph1, _ = sine_fit(cols[k], head["rate_hz"], f)
        a3, ph3, _ = sine_fit(cols[k], head["rate_hz"], 3 * f)
        assert a3 / a1 == pytest.approx(rel, rel=0.03), CHANNELS[k]
        # harmonic h has h times the fundamental's phase (its read skew included)
        assert abs(angle_diff(ph3, 3 * ph1)) < 1.5, CHANNELS[k]


def test_public_sensor_option_changes_scale_and_header(tmp_path):
    head, cols = read_capture(run_capture(tmp_path, "p.txt", "--seconds", "0.5", "--sensor", "public",
                                          "--seed", "2"))
    assert head["a_per_count"] == {c: A_PER_COUNT["public"] for c in ("i1", "i2", "i3")}
    assert len(cols[0]) == round(0.5 * head["rate_hz"])
    want = expected_rms_counts(16.0, A_PER_COUNT["public"], {}, SCENARIO["adc"]["noise_lsb"])
    assert rms(cols[4]) == pytest.approx(want, rel=3e-3)


def test_same_seed_same_file_and_a_bad_scenario_is_refused(tmp_path):
    a = run_capture(tmp_path, "a.txt", "--seconds", "0.2", "--seed", "5")
    b = run_capture(tmp_path, "b.txt", "--seconds", "0.2", "--seed", "5")
    assert a.read_bytes() == b.read_bytes()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"adc": {"sensor": "industrial"}}))
    proc = subprocess.run([SIM, "--capture", str(tmp_path / "x.txt"), "--scenario", str(bad)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode != 0 and "adc.sensor" in proc.stdout + proc.stderr
    assert not os.path.exists(tmp_path / "x.txt")
