"""Energy over one simulated hour of a changing load (imports, exports, reactive loads): within 0.5 %."""
import json
import os
import subprocess

from simctl import ROOT

from mpenv import MICROPYTHON, micropython_env


def test_one_simulated_hour_of_energy_within_half_a_percent():
    here = os.path.join(ROOT, "tests", "host")
    out = subprocess.run([MICROPYTHON, "-X", "heapsize=4M", os.path.join(here, "mp_energy_hour.py")],
                         env=micropython_env([here]), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["true_import_wh"] > 1000 and r["true_export_wh"] > 100     # both directions exercised
    assert abs(r["import_wh"] - r["true_import_wh"]) <= 0.005 * r["true_import_wh"], r
    assert abs(r["export_wh"] - r["true_export_wh"]) <= 0.005 * r["true_export_wh"], r
