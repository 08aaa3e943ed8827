# The SNTP client (firmware/sntp.py): what a reply must be to set the clock, and a real UDP round trip
# with the event loop running meanwhile, against a responder written here that first sends datagrams
# that must be ignored. Against a real NTP server (chronyd): tests/host/test_clock.py.
import asyncio
import socket

import sntp
from fwtest import raises
from ntpfake import NONCE, UNIX_1970_IN_NTP, responder, server_reply


def test_a_request_is_a_version_4_client_packet_carrying_the_nonce():
    r = sntp.request(NONCE)
    assert len(r) == 48 and r[0] == 0x23                # LI 0, VN 4, mode 3
    assert bytes(r[40:48]) == NONCE and bytes(r[1:40]) == bytes(39)


def test_a_good_reply_gives_unix_seconds_and_microseconds():
    assert sntp.parse(server_reply(), NONCE) == (1763900000, 0)
    unix, us = sntp.parse(server_reply(fraction=1 << 31), NONCE)
    assert unix == 1763900000 and us == 500000
    unix, us = sntp.parse(server_reply(fraction=0xFFFFFFFF), NONCE)
    assert 999980 <= us <= 999999, us                  # 16-bit fraction: 15 us steps
    assert sntp.parse(server_reply(first=0x1C), NONCE)[0] == 1763900000     # version 3 servers too


def test_after_2036_the_ntp_era_rolls_over():
    # 2036-02-07 06:28:16 UTC is NTP second 2^32, i.e. 0 again: Unix 2085978496
    assert sntp.parse(server_reply(seconds=5), NONCE) == ((1 << 32) - UNIX_1970_IN_NTP + 5, 0)


def test_replies_that_must_not_set_the_clock_are_refused():
    bad = {
        "short": server_reply(size=47),
        "client mode": server_reply(first=0x23),
        "broadcast mode": server_reply(first=0x25),
        "version 2": server_reply(first=0x14),
        "another request's reply": server_reply(nonce=b"\x09" * 8),
        "unsynchronised (LI 3)": server_reply(first=0xE4),
        "kiss-o'-death (stratum 0)": server_reply(stratum=0),
        "stratum 16": server_reply(stratum=16),
        "no transmit time": server_reply(seconds=0),
    }
    for what, packet in bad.items():
        err = raises(ValueError, sntp.parse, packet, NONCE)
        assert str(err), what


def test_a_query_skips_stray_datagrams_and_takes_the_serversserver_reply():
    port = 16100 + sntp.random.getrandbits(8)
    seen = []

    def answers(request):
        seen.append(bytes(request))
        nonce = bytes(request[40:48])
        return [b"junk", server_reply(nonce=b"\xee" * 8, seconds=3000000000),      # not ours
                server_reply(nonce=nonce, stratum=0),                                # KoD: skipped too
                server_reply(nonce=nonce, fraction=1 << 30)]                         # the answer

    async def main():
        sock, task = responder(port, answers)
        ticks = [0]

        async def ticker():
            while True:
                ticks[0] += 1
                await asyncio.sleep_ms(1)

        t = asyncio.create_task(ticker())
        try:
            return await sntp.query(("127.0.0.1", port), 2000), ticks[0]
        finally:
            task.cancel()
            t.cancel()
            sock.close()

    (unix, us, rtt), ticks = asyncio.run(main())
    assert len(seen) == 1 and seen[0][0] == 0x23
    assert unix == 1763900000 and 0 <= rtt < 1000
    assert us == 250000 + rtt * 500, (us, rtt)         # the reply's time plus half the round trip
    assert ticks >= 1                                  # the event loop ran while it waited


def test_a_silent_server_is_an_oserror_after_the_timeout_without_blocking():
    port = 16400 + sntp.random.getrandbits(8)
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])

    async def main():
        ticks = [0]

        async def ticker():
            while True:
                ticks[0] += 1
                await asyncio.sleep_ms(10)

        t = asyncio.create_task(ticker())
        try:
            await sntp.query(("127.0.0.1", port), 300)
        except OSError as e:
            return e, ticks[0]
        finally:
            t.cancel()

    try:
        err, ticks = asyncio.run(main())
    finally:
        silent.close()
    assert "NTP server 127.0.0.1:%d did not answer in 300 ms" % port in str(err), err
    assert ticks >= 10, ticks
