"""The whole firmware runs through a ticks wrap on the ESP32-like runtime (issue 11 point 2).

On the ESP32 (and the esp32-like runtime: 31-bit small ints) time.ticks_ms() wraps at 2^30 ms, 12.4 days
after power-on, and ticks_us with it. `tools/sim --ticks-start-ms N` starts the device's clock N ms after
its power-on (a Linux time namespace shifts its CLOCK_MONOTONIC: ticks_ms, ticks_us and asyncio's own
queue, in C, all move together), here 12 s before the wrap. Through the wrap the readings keep coming once
a second with consecutive seq, uptime_s and energy keep growing, the portal answers, and the broker,
down across the wrap, is found again by the back-off timers within their seconds.
"""
import time

import pytest
from uplink_rig import BASE, Rig, api_readings, assert_on_time, online_after

PERIOD_MS = 1 << 30
BEFORE_WRAP_MS = 12000


def device_pid(sim):
    """The MicroPython process under the launcher (one device: one child)."""
    with open("/proc/%d/task/%d/children" % (sim.proc.pid, sim.proc.pid)) as f:
        children = f.read().split()
    assert len(children) == 1, children
    return int(children[0])


def device_ticks_ms(pid):
    """What time.ticks_ms() reads in the device now: its CLOCK_MONOTONIC (ours plus its time
    namespace's offset) modulo the ticks period."""
    offset_ns = 0
    with open("/proc/%d/timens_offsets" % pid) as f:
        for line in f:
            name, sec, nsec = line.split()
            if name == "monotonic":
                offset_ns = int(sec) * 1000000000 + int(nsec)
    return (time.monotonic_ns() + offset_ns) // 1000000 % PERIOD_MS


def since_wrap_ms(pid):
    """Milliseconds since the device's ticks_ms() wrapped (negative: before it wraps)."""
    t = device_ticks_ms(pid)
    return t - PERIOD_MS if t >= PERIOD_MS // 2 else t


def wait_until(pid, since_wrap):
    left = since_wrap - since_wrap_ms(pid)
    assert left > -1000, "the device is past that point already: %d ms" % left
    time.sleep(max(0.0, left / 1000))


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    r.sim.args += ["--runtime", "esp32-like", "--ticks-start-ms", str(PERIOD_MS - BEFORE_WRAP_MS)]
    r.start()
    yield r
    r.close()


@pytest.mark.slow
def test_a_run_through_the_ticks_wrap_keeps_readings_portal_and_uplink(rig):
    online_after(rig, 0, timeout=20)
    pid = device_pid(rig.sim)
    start = since_wrap_ms(pid)
    assert -BEFORE_WRAP_MS < start < -3000, start         # the device's ticks really start near the wrap
    # The broker goes away 3 s before the wrap and comes back 4 s after it: the back-off's timers run
    # across the wrap. Meanwhile the portal shows every reading, through the wrap.
    wait_until(pid, -3000)
    rig.broker.stop()
    seen = {}

    def look():
        r = api_readings(rig.sim, 3)
        seen[r["seq"]] = r
        time.sleep(0.25)

    while since_wrap_ms(pid) < 4000:
        look()
    assert 4000 <= since_wrap_ms(pid) < 6000              # wrapped: ticks_ms counts from 0 again
    back = time.monotonic()
    rig.broker.start()
    while True:
        look()
        try:
            online_after(rig, back, timeout=0.1)
            break
        except AssertionError:                            # a back-off of seconds, not of days
            assert time.monotonic() - back < 12, "not online 12 s after the broker came back"
    look()
    through = [seen[k] for k in sorted(seen)]
    assert len(through) >= 8
    assert_on_time(through)
    time.sleep(5)
    # Every reading published, from power-on to now: those made while the broker was down went nowhere
    # (readings are not queued), so they come in two runs, with the portal's between them.
    got = rig.readings()
    runs = [[got[0]]]
    for r in got[1:]:
        if r["seq"] == runs[-1][-1]["seq"] + 1:
            runs[-1].append(r)
        else:
            runs.append([r])
    assert len(runs) == 2, [[r["seq"] for r in run] for run in runs]
    assert runs[0][0]["seq"] == 1 and len(runs[1]) >= 4
    every = {r["seq"]: r for r in got + through}
    every = [every[k] for k in sorted(every)]
    assert [r["seq"] for r in every] == list(range(1, every[-1]["seq"] + 1))
    assert_on_time(every)                                  # uptime_s one second per reading throughout
    for a, b in zip(every, every[1:], strict=False):
        assert b["uptime_s"] > a["uptime_s"] >= 0
        assert b["import_wh"] >= a["import_wh"] and b["export_wh"] >= a["export_wh"]
    assert every[-1]["import_wh"] > every[0]["import_wh"]
    # The first after the reconnect is the latest window's, sent at the CONNACK whenever that came:
    # from the second on they arrive one a second.
    arrivals = [m.t for m in rig.sub.messages(BASE + "/readings")][-len(runs[1]) + 1:]
    for a, b in zip(arrivals, arrivals[1:], strict=False):
        assert 0.7 <= b - a <= 1.3, arrivals               # one a second after the wrap
    log = rig.sim.log()
    assert "device crashed" not in log and "Traceback" not in log and "watchdog" not in log, log[-3000:]
    tries = [float(line.split("next try in ")[1].split()[0]) for line in log.splitlines()
             if "next try in" in line]
    assert tries and max(tries) <= 8, tries               # the back-off grew from 1 s, not from days
