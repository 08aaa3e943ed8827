# The clock task (firmware/clock.py) on every runtime, with a stand-in hardware layer whose RTC starts at
# 2000-01-01 like an ESP32's, and a stand-in NTP server on loopback (tests/fw/ntpfake.py). Unix times
# are past 2^30 here: on the 32-bit runtime they are big ints, as on the chip.
import asyncio

import clock
from fwfiles import LogCapture
from ntpfake import UNIX_1970_IN_NTP, responder, server_reply

UNIX_2000 = 946684800
NOW = 1763900000


class Hal:
    system_resolver = False

    def __init__(self, port):
        self.rtc = UNIX_2000 + 5            # five seconds after power-on
        self.port = port
        self.set_calls = []

    def ntp_override(self):
        return ("127.0.0.1", self.port)

    def dns_server(self):
        return None

    def unix_time(self):
        return self.rtc

    def set_time(self, unix_s, us):
        self.set_calls.append((unix_s, us))
        self.rtc = unix_s


class Net:
    network = None


class Device:
    def __init__(self, port):
        self.hal = Hal(port)
        self.net = Net()


def _run(dev, steps, answer_with):
    """Run the clock task with the responder on dev's port; after each (ms, change) step, the state."""
    c = clock.Clock(dev)
    changes = []
    c.on_change = lambda: changes.append(c.state)

    async def main():
        sock, server = responder(dev.hal.port, answer_with)
        task = asyncio.create_task(c.run())
        seen = []
        try:
            for ms, change in steps:
                change()
                await asyncio.sleep_ms(ms)
                seen.append(c.state)
        finally:
            task.cancel()
            server.cancel()
            await asyncio.sleep_ms(10)
            sock.close()
        return seen

    with LogCapture() as logs:
        seen = asyncio.run(main())
    return c, seen, changes, logs.text()


def _answer(request):
    return [server_reply(nonce=bytes(request[40:48]), seconds=NOW + UNIX_1970_IN_NTP)]


def test_the_clock_is_set_once_a_network_is_up_and_not_before():
    dev = Device(16700 + clock.random.getrandbits(8))

    def online():
        dev.net.network = "lan"

    c, seen, changes, log = _run(dev, [(600, lambda: None), (600, online)], _answer)
    assert seen == ["unset", "set"], (seen, log)
    assert len(dev.hal.set_calls) == 1 and dev.hal.set_calls[0][0] == NOW, dev.hal.set_calls
    assert c.unix_time() == NOW and changes == ["set"]
    assert "clock: set from 127.0.0.1 (127.0.0.1)" in log, log


def test_an_rtc_at_2000_is_not_a_time_and_a_refused_reply_does_not_set_it():
    dev = Device(16960 + clock.random.getrandbits(6))
    dev.net.network = "wifi"

    def kiss_of_death(request):
        return [server_reply(nonce=bytes(request[40:48]), stratum=0)]

    old = clock.TIMEOUT_MS
    clock.TIMEOUT_MS = 300
    try:
        c, seen, changes, log = _run(dev, [(700, lambda: None)], kiss_of_death)
    finally:
        clock.TIMEOUT_MS = old
    assert c.unix_time() is None and dev.hal.set_calls == []
    assert seen == ["failed"] and changes == ["failed"], (seen, changes)
    expected = ("clock: not set: NTP server 127.0.0.1:%d did not answer in 300 ms; next try in 2 s"
                % dev.hal.port)
    assert expected in log, log


def test_a_failed_try_is_repeated_and_a_later_answer_sets_the_clock():
    dev = Device(17230 + clock.random.getrandbits(8))
    dev.net.network = "lan"
    asked = []

    def silent_first(request):
        asked.append(1)
        return [] if len(asked) == 1 else _answer(request)

    old = clock.TIMEOUT_MS, clock.RETRY_FIRST_S
    clock.TIMEOUT_MS, clock.RETRY_FIRST_S = 300, 1
    try:
        c, seen, changes, log = _run(dev, [(200, lambda: None), (2500, lambda: None)], silent_first)
    finally:
        clock.TIMEOUT_MS, clock.RETRY_FIRST_S = old
    assert seen == ["unset", "set"], (seen, log)
    assert len(asked) == 2 and changes == ["failed", "set"] and c.error is None, (asked, changes)
