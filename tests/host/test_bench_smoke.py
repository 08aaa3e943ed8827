"""`make bench` and tools/bench_device.py run on the MicroPython unix port and print what they promise.

Smoke tests only: a tiny iteration count, numbers parsed, no timing asserted. The one hard figure is
the kernel's heap use per sample set, which must be 0.
"""
import os
import re
import subprocess

from mpenv import MICROPYTHON, ROOT, micropython_env

NUMBER = r"([0-9]+(?:\.[0-9]+)?)"


def run_micropython(args, env=None, timeout=300):
    proc = subprocess.run([MICROPYTHON, *args], env=micropython_env(env=env), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_engine_bench_prints_ratios_and_allocations():
    out = run_micropython([os.path.join("tools", "bench", "bench_engine.py"), "--reps", "1", "--rounds", "1"])
    layouts = {}
    for kind in ("kernel", "engine"):
        found = re.findall(r"^%s vs float \(([46]) ch, ([0-9]+) sets\): %sx faster per sample set"
                           % (kind, NUMBER), out, re.M)
        assert found, out
        for nch, sets, ratio in found:
            assert float(ratio) > 0
            layouts.setdefault((int(nch), int(sets)), set()).add(kind)
    assert {n for n, _ in layouts} == {4, 6}, out
    assert all(kinds == {"kernel", "engine"} for kinds in layouts.values()), out
    per_sample = re.findall(r"^heap kernel accum\.accumulate \(([46]) ch, [0-9]+ sets\): %s bytes per"
                            r" sample set, ([0-9]+) bytes per call; runs with the heap locked: (\S+)"
                            % NUMBER, out, re.M)
    assert len(per_sample) == len(layouts), out
    for _nch, bytes_per_sample, _per_call, locked in per_sample:
        assert float(bytes_per_sample) == 0, out
        assert locked == "yes", out
    bursts = re.findall(r"^heap engine BurstAnalyzer\.process \([46] ch, [0-9]+ sets\): ([0-9]+) bytes per"
                        r" burst \(%s per sample set\)" % NUMBER, out, re.M)
    windows = re.findall(r"^heap window Meter\.close_window \([46] ch, [0-9]+ sets\): ([0-9]+) bytes"
                         r" per window; whole window of [0-9]+ bursts: ([0-9]+) bytes", out, re.M)
    assert len(bursts) == len(windows) == len(layouts), out
    for close, whole in windows:
        assert int(whole) >= int(close)


def test_device_bench_runs_on_the_simulated_board(tmp_path):
    env = dict(os.environ, AMPGUARD_BOARD="sim", AMPGUARD_STATE=str(tmp_path),
               AMPGUARD_SCENARIO=os.path.join(ROOT, "tools", "scenarios", "default.json"))
    out = run_micropython([os.path.join("tools", "bench_device.py"), "--quick"], env=env)
    rate = re.search(r"^adc read_burst: %s sample sets/s" % NUMBER, out, re.M)
    assert rate and float(rate.group(1)) > 0, out
    assert re.search(r"^adc read_burst: %s us per channel read \(board ADC_READ_US 35\)" % NUMBER, out, re.M)
    assert re.search(r"^engine: %s ms per window" % NUMBER, out, re.M), out
    assert re.search(r"^engine heap: [0-9]+ bytes allocated per window", out, re.M), out
    assert re.search(r"^heap at end: [0-9]+ bytes free", out, re.M), out
    assert re.search(r"^last readings: %s Hz, L1 2[0-9]{2}\.[0-9] V" % NUMBER, out, re.M), out
