"""Energy counters survive power cuts and restarts (contract §3): never backwards, never counted twice, at
most 60 s lost on a sudden power cut (SIGKILL of the simulator), nothing on an orderly restart."""
import json
import random
import signal
import time
import urllib.request

import pytest
from simctl import Sim

POWER_W = 230.0 * 10.0
SCENARIO = {"mains": {"voltage_v": [230.0, 230.0, 230.0]},
            "phases": [{"current_a": 10.0}, {"current_a": 0.0}, {"current_a": 0.0}]}


def import_wh(sim, timeout=20):
    """The latest import_wh and when it was read; waits for the first readings after a boot."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen("http://%s/api/readings" % sim.http, timeout=3) as r:
                body = json.loads(r.read())
            if body.get("seq"):
                return body["import_wh"], time.monotonic()
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("no readings; log:\n" + sim.log()[-3000:])


@pytest.mark.slow
def test_power_cuts_lose_at_most_60_s_and_an_orderly_restart_loses_nothing(tmp_path):
    rng = random.Random(7)
    sim = Sim(tmp_path, SCENARIO)
    wh_per_s = POWER_W / 3600
    last = None
    try:
        for cut in range(4):
            sim.start()
            first, t_first = import_wh(sim)
            if last is not None:
                seen, t_seen = last
                assert first >= seen - 60 * wh_per_s, (cut, first, seen)        # at most 60 s lost
                assert first <= seen + (t_first - t_seen) * wh_per_s + 0.05      # never counted twice
            time.sleep(rng.uniform(1.0, 6.0))
            last = import_wh(sim)
            assert last[0] >= first                                             # never backwards
            sim.stop(signal.SIGKILL)                                            # a power cut
        sim.start()
        first, _ = import_wh(sim)
        time.sleep(3)
        before, _ = import_wh(sim)
        assert sim.stop(signal.SIGTERM) == 0                                    # an orderly shutdown
        sim.start()
        after, _ = import_wh(sim)
        assert after >= before                                                  # nothing lost
        assert after <= before + 3 * wh_per_s
    finally:
        sim.close()
