"""Factory calibration (issue 11 point 8): tools/provision --calibrate against a reference load, on a
simulated unit whose ADC has a gain error (a chip with a low eFuse Vref), through the firmware's own
calibration.json; bad input is refused and nothing is written."""
import json
import os
import subprocess
import time
import urllib.request

from simctl import ROOT, Sim

PROVISION = os.path.join(ROOT, "tools", "provision")
# Vref 1006 mV: ~9 % more codes per volt than the typical chip the boards' scale factors assume.
CHIP = {"chip_spread": True, "chip_seed": 4, "noise_lsb": 2.0}
REFERENCE = {"mains": {"voltage_v": 230.0}, "phases": [{"current_a": 20.0}] * 3, "adc": CHIP}


def provision(*args):
    return subprocess.run([PROVISION, *args], capture_output=True, text=True, timeout=120)


def readings(sim, n=3, timeout=40):
    """n fresh readings windows (after the first two of a boot, which settle the bias)."""
    seen = {}
    deadline = time.monotonic() + timeout
    while len(seen) < n + 2:
        assert time.monotonic() < deadline, "no readings; log:\n" + sim.log()[-3000:]
        try:
            with urllib.request.urlopen("http://%s/api/readings" % sim.http, timeout=3) as r:
                body = json.loads(r.read())
            if body.get("seq") and body.get("phases"):
                seen[body["seq"]] = body
        except OSError:
            pass
        time.sleep(0.3)
    return [seen[k] for k in sorted(seen)][-n:]


def worst(windows, key, want):
    return max(abs(w["phases"][p][key] - want) / want * 100 for w in windows for p in range(3))


def test_a_unit_with_a_gain_error_reads_the_reference_after_calibration(tmp_path):
    sim = Sim(tmp_path, REFERENCE).start()
    cal = os.path.join(sim.state, "calibration.json")
    try:
        before = readings(sim)
        assert worst(before, "current_a", 20.0) > 5 and worst(before, "voltage_v", 230.0) > 5
        out = provision("--calibrate", "--reference-v", "230", "--reference-a", "20", "--url",
                        "http://" + sim.http, "--state", sim.state)
        assert out.returncode == 0, out.stdout + out.stderr
        with open(cal) as f:
            gains = json.load(f)
        assert all(0.90 <= g <= 0.93 for g in gains["i_gain"] + gains["v_gain"][:1]), gains
        sim.stop()
        sim.start()                     # the unit applies its calibration from its next start
        after = readings(sim)
        assert worst(after, "current_a", 20.0) <= 0.3, after
        assert worst(after, "voltage_v", 230.0) <= 0.3, after
        # A second calibration on the calibrated unit changes its gains only a little.
        out = provision("--calibrate", "--reference-v", "230", "--reference-a", "20", "--url",
                        "http://" + sim.http, "--state", sim.state)
        assert out.returncode == 0, out.stdout + out.stderr
        with open(cal) as f:
            again = json.load(f)
        for key in ("v_gain", "i_gain"):
            for a, b in zip(gains[key], again[key], strict=True):
                assert abs(a - b) < 0.005, (gains, again)
    finally:
        sim.close()


def test_bad_calibration_input_is_refused_and_nothing_is_written(tmp_path):
    sim = Sim(tmp_path, dict(REFERENCE, phases=[{"current_a": 20.0}, {"current_a": 20.0},
                                                {"current_a": 0.0}])).start()
    cal = os.path.join(sim.state, "calibration.json")
    url = "http://" + sim.http
    try:
        readings(sim, 1)
        cases = (
            (["--reference-v", "400", "--reference-a", "20"], "--reference-v must be"),
            (["--reference-v", "230", "--reference-a", "0"], "--reference-a must be"),
            (["--reference-v", "230", "--reference-a", "20"], "L3 reads no current"),
        )
        for args, message in cases:
            out = provision("--calibrate", *args, "--url", url, "--state", sim.state)
            assert out.returncode != 0 and message in out.stderr and "nothing written" in out.stderr, (
                args, out.stdout, out.stderr)
            assert not os.path.exists(cal)
        # A reference far from what the unit reads (a wrong load, a CT off its conductor): refused.
        sim.write_scenario(REFERENCE)
        time.sleep(3)
        out = provision("--calibrate", "--reference-v", "230", "--reference-a", "30", "--url", url,
                        "--state", sim.state)
        assert out.returncode != 0 and "i_gain[0] would be" in out.stderr, out.stderr
        assert not os.path.exists(cal)
        out = provision("--calibrate", "--reference-v", "230", "--reference-a", "20", "--url",
                        "http://127.0.0.1:9", "--windows", "2", "--state", sim.state)
        assert out.returncode != 0 and "nothing written" in out.stderr
        assert not os.path.exists(cal)
    finally:
        sim.close()
