# firmware/uptime.py and what reads it (log lines, the resolver's cache) across ticks_ms wraps: ticks wrap
# every 2^30 ms (12.4 days) and ticks_diff reaches 6.2 days, on every MicroPython port (the ESP32-like
# runtime included); uptime must keep counting, exact, for weeks.
import log
import resolver
import uptime
from fwtest import TICKS_PERIOD, FakeClock

DAY_MS = 24 * 3600 * 1000


class _OnClock:
    """uptime read from a fake clock that starts 2.5 s before ticks_ms wraps; restored after."""

    def __enter__(self):
        self.clock = FakeClock(TICKS_PERIOD - 2500)
        self.saved = uptime.time, uptime._last, uptime._s, uptime._ms
        uptime.time = self.clock
        uptime._last, uptime._s, uptime._ms = self.clock.now, 0, 0
        return self.clock

    def __exit__(self, *exc):
        uptime.time, uptime._last, uptime._s, uptime._ms = self.saved


def test_uptime_counts_exact_seconds_across_ticks_wraps_for_four_weeks():
    with _OnClock() as clock:
        seen = []
        for _ in range(28 * 4):                 # read every 6 hours for 4 weeks (ticks wrap twice)
            clock.advance(6 * 3600 * 1000 + 7)
            seen.append((uptime.seconds(), uptime.millis()))
        assert seen[-1] == (clock.total // 1000, clock.total % 1000)
        assert all(seen[i] < seen[i + 1] for i in range(len(seen) - 1))
        assert clock.total > 2 * TICKS_PERIOD and isinstance(seen[-1][0], int)


def test_log_lines_say_the_uptime_past_a_week():
    with _OnClock() as clock:
        for _ in range(8):
            clock.advance(DAY_MS)
            uptime.seconds()                    # read at least daily (as the tasks' logging does)
        clock.advance(1234)
        printed = []
        log.print = printed.append          # the module's print, as the console would get it
        try:
            log.info("test", "hello")
        finally:
            del log.print
        assert printed == ["691201.234 INFO test: hello"], printed


def test_a_cached_broker_address_expires_and_stays_expired_after_a_week():
    with _OnClock() as clock:
        resolver.forget("broker.example")
        resolver._cache["broker.example"] = ("192.0.2.7", uptime.seconds() + 300)   # a 5-minute TTL
        assert resolver.cached("broker.example") == "192.0.2.7"
        clock.advance(299 * 1000)
        assert resolver.cached("broker.example") == "192.0.2.7"
        clock.advance(2 * 1000)
        assert resolver.cached("broker.example") is None
        resolver._cache["broker.example"] = ("192.0.2.7", uptime.seconds() + 300)
        for _ in range(7):                      # a week later, past ticks_diff's reach: still expired
            clock.advance(DAY_MS)
            uptime.seconds()
        assert resolver.cached("broker.example") is None


def test_forget_drops_a_cached_address():
    resolver._cache["broker.example"] = ("192.0.2.7", uptime.seconds() + 300)
    resolver.forget("broker.example")
    assert resolver.cached("broker.example") is None
