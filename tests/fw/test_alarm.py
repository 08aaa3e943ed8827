# The supply alarm's decision (firmware/alarm.py, contract §3 `alarm`): raised at once over the limit,
# repeated every 10 s while the phase stays over, raised anew only after dropping 3 % below the limit,
# never without a limit; on both runtimes, with ticks that wrap.
import gc
import time

from alarm import REARM, REPEAT_MS, SupplyAlarm
from fwtest import IS_MICROPYTHON

LIMIT = 16
T0 = time.ticks_add(0, -3000)       # 3 s before ticks_ms wraps: the repeat must not care


def at(ms):
    return time.ticks_add(T0, ms)


def test_a_phase_over_the_limit_raises_an_alarm_at_once_and_not_at_or_under_it():
    a = SupplyAlarm()
    assert not a.due(0, LIMIT, LIMIT, at(0))           # at the limit is not over it
    assert not a.due(0, 10.0, LIMIT, at(0))
    assert a.due(0, 16.5, LIMIT, at(300))
    assert not a.due(0, 16.5, LIMIT, at(600))          # raised: not again at the next burst


def test_the_alarm_repeats_every_10_s_while_the_phase_stays_over():
    a = SupplyAlarm()
    raised = [ms for ms in range(0, 30001, 250) if a.due(1, 20.0, LIMIT, at(ms))]
    assert raised == [0, REPEAT_MS, 2 * REPEAT_MS, 3 * REPEAT_MS] == [0, 10000, 20000, 30000]


def test_it_is_raised_anew_only_after_dropping_3_percent_below_the_limit():
    assert REARM == 0.97
    a = SupplyAlarm()
    assert a.due(2, 17.0, LIMIT, at(0))
    assert not a.due(2, 15.6, LIMIT, at(1000))         # 97.5 %: not re-armed ...
    assert not a.due(2, 17.0, LIMIT, at(2000))         # ... so going over again is no new alarm
    assert not a.due(2, LIMIT * 0.97 + 0.01, LIMIT, at(3000))
    assert a.due(2, 17.0, LIMIT, at(REPEAT_MS))        # the repeat still comes
    assert not a.due(2, LIMIT * 0.97, LIMIT, at(REPEAT_MS + 250))     # 97 %: re-armed
    assert a.due(2, 17.0, LIMIT, at(REPEAT_MS + 500))  # a new alarm at once


def test_no_limit_means_no_alarm_and_re_arms():
    a = SupplyAlarm()
    assert not any(a.due(0, amps, None, at(ms)) for ms, amps in ((0, 0.0), (250, 50.0), (500, 4000.0)))
    assert a.due(0, 20.0, LIMIT, at(1000))
    assert not a.due(0, 20.0, None, at(1250))           # the limit is taken away ...
    assert a.due(0, 20.0, LIMIT, at(1500))              # ... and set again: a new alarm at once
    a.rearm()                                           # no currents at all (no limit to watch)
    assert a.due(0, 20.0, LIMIT, at(1750))


def test_phases_are_independent():
    a = SupplyAlarm()
    assert a.due(0, 20.0, LIMIT, at(0))
    assert a.due(1, 20.0, LIMIT, at(500))
    assert not a.due(0, 20.0, LIMIT, at(1000)) and not a.due(1, 20.0, LIMIT, at(1000))
    assert not a.due(2, 5.0, LIMIT, at(1000))
    assert a.over == [True, True, False]


def test_deciding_a_burst_allocates_nothing_once_the_limit_is_known():
    a = SupplyAlarm()
    a.due(0, 15.8, 16.5, at(0))                        # a new limit: its re-arm threshold is worked out once
    currents = (15.8, 16.2, 17.0, 5.0)                  # under, near, over and far under a float limit
    if not IS_MICROPYTHON:
        assert [a.due(0, amps, 16.5, at(250)) for amps in currents] == [False, False, True, False]
        return                                          # CPython has no heap lock; the logic ran above
    import micropython

    gc.collect()
    got = [None] * len(currents)
    micropython.heap_lock()
    try:
        for k in range(len(currents)):                  # a float per phase per burst would fail here
            got[k] = a.due(0, currents[k], 16.5, at(250))
    except MemoryError:
        got = "allocated"
    micropython.heap_unlock()
    assert got == [False, False, True, False], got


def test_a_phase_that_sat_under_the_limit_for_a_week_is_alarmed_at_once_when_it_goes_over():
    # Raised, then between the re-arm level and the limit for 7 days (over stays set, no re-arm): the
    # latest alarm's ticks are then past what ticks_diff can tell (6.2 days) and read as negative.
    a = SupplyAlarm()
    now = at(0)
    assert a.due(2, 17.0, LIMIT, now)
    for _ in range(7):                  # a day at a time (ticks_add takes less than 2^29 ms at once)
        now = time.ticks_add(now, 24 * 3600 * 1000)
        assert not a.due(2, 15.8, LIMIT, now)      # 15.8 A: above 0.97 x 16, at most the limit
    assert a.due(2, 16.5, LIMIT, time.ticks_add(now, 250))     # over again: due now, not days later
