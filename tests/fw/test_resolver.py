# The uplink's non-blocking DNS look-up (firmware/resolver.py): packets by RFC 1035, and real UDP
# round trips against the firmware's own DNS server (which answers every A query with one address) and
# against a server that never answers, with the event loop running meanwhile.
import asyncio
import socket
import struct

import dnsd
import resolver
from fwtest import raises

PORTAL = "192.168.251.1"


def _reply(qid, answers, rcode=0, question=b"\x06broker\x07example\x00\x00\x01\x00\x01"):
    head = struct.pack("!HHHHHH", qid, 0x8180 | rcode, 1, len(answers), 0, 0)
    return head + question + b"".join(answers)


def _record(rtype, rdata, ttl=300, name=b"\xc0\x0c"):
    return name + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


def test_query_is_a_recursive_a_question():
    q = resolver.query("broker.example", 0x1234)
    assert q[:12] == b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    assert q[12:] == b"\x06broker\x07example\x00\x00\x01\x00\x01"
    raises(ValueError, resolver.query, "a..b", 1)
    raises(ValueError, resolver.query, "x" * 64 + ".com", 1)


def test_answers_are_parsed_through_cnames_and_compression():
    assert resolver.parse_answer(_reply(7, [_record(1, bytes([10, 1, 2, 3]))]), 7) == ("10.1.2.3", 300)
    cname = _record(5, b"\x03cdn\xc0\x13")
    reply = _reply(7, [cname, _record(1, bytes([1, 2, 3, 4]), 60)])
    assert resolver.parse_answer(reply, 7) == ("1.2.3.4", 60)
    assert resolver.parse_answer(_reply(7, [], rcode=3), 7) is None          # no such name
    assert resolver.parse_answer(_reply(7, [cname]), 7) is None                # no A record


def test_replies_that_are_not_ours_or_broken_are_refused():
    good = _reply(7, [_record(1, bytes([10, 1, 2, 3]))])
    raises(ValueError, resolver.parse_answer, good, 8)                         # another query's id
    raises(ValueError, resolver.parse_answer, good[:-3], 7)                    # cut short
    raises(ValueError, resolver.parse_answer, good[:11], 7)
    raises(ValueError, resolver.parse_answer, _reply(7, [], rcode=2), 7)       # server failure
    query = resolver.query("broker.example", 7)
    raises(ValueError, resolver.parse_answer, query, 7)                        # a question, no reply
    for cut in range(len(good)):
        try:
            resolver.parse_answer(good[:cut], 7)
        except ValueError:
            pass


def test_ip_literals_need_no_look_up():
    silent = ("127.0.0.1", 9)        # a server that is never asked: a literal is its own address
    assert asyncio.run(resolver.resolve("10.0.0.1", silent)) == "10.0.0.1"
    assert asyncio.run(resolver.resolve("10.0.0.1", None)) == "10.0.0.1"


def test_without_a_dns_server_only_a_host_may_use_the_systems_resolver():
    # On the ESP32 (no DHCP DNS server) getaddrinfo would block the event loop: refused at once.
    err = raises(OSError, asyncio.run, resolver.resolve("localhost", None))
    assert "no DNS server from DHCP" in str(err)
    # The simulator's hardware layer says a blocking look-up is fine there.
    assert asyncio.run(resolver.resolve("localhost", None, True)) == "127.0.0.1"


async def _with_ticker(coro):
    """Run coro while a task ticks every 10 ms: (coro's result or exception, ticks)."""
    ticks = [0]
    stop = [False]

    async def tick():
        while not stop[0]:
            ticks[0] += 1
            await asyncio.sleep_ms(10)

    t = asyncio.create_task(tick())
    try:
        result = await coro
    except OSError as e:
        result = e
    stop[0] = True
    await t
    return result, ticks[0]


def test_a_real_dns_server_answers_over_udp():
    port = 15300 + (resolver.random.getrandbits(8))

    async def main():
        server = await dnsd.serve("127.0.0.1", port, PORTAL)
        resolver._cache.clear()
        try:
            return await _with_ticker(resolver.resolve("broker.example", ("127.0.0.1", port)))
        finally:
            server.close()
            await server.wait_closed()

    addr, _ = asyncio.run(main())
    assert addr == PORTAL
    assert resolver._cache["broker.example"][0] == PORTAL


def test_the_dns_server_stops_and_starts_again_on_the_same_port():
    port = 15900 + (resolver.random.getrandbits(8))

    async def main():
        answers = []
        for _ in range(2):
            server = await dnsd.serve("127.0.0.1", port, PORTAL)
            resolver._cache.clear()
            answers.append(await resolver.resolve("again.example", ("127.0.0.1", port)))
            server.close()
            await server.wait_closed()
        resolver._cache.clear()
        old = resolver.TIMEOUT_MS
        resolver.TIMEOUT_MS = 200
        try:
            await resolver.resolve("gone.example", ("127.0.0.1", port))
        except OSError as e:           # stopped: nobody answers any more
            answers.append(str(e))
        finally:
            resolver.TIMEOUT_MS = old
        return answers

    answers = asyncio.run(main())
    assert answers[:2] == [PORTAL, PORTAL] and "did not answer" in answers[2], answers


def test_the_dns_server_refuses_what_it_cannot_serve_at_once():
    async def main():
        try:
            await dnsd.serve("127.0.0.1", 15299, "192.168.251")
        except ValueError as e:
            return e

    assert "not an IPv4 address" in str(asyncio.run(main()))


def test_a_dns_server_that_never_answers_costs_the_event_loop_nothing():
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    port = 15600 + (resolver.random.getrandbits(8))
    silent.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
    old = resolver.TIMEOUT_MS
    resolver.TIMEOUT_MS = 300
    try:
        resolver._cache.clear()
        err, ticks = asyncio.run(_with_ticker(resolver.resolve("broker.example", ("127.0.0.1", port))))
    finally:
        resolver.TIMEOUT_MS = old
        silent.close()
    assert isinstance(err, OSError) and "did not answer" in str(err)
    # Two tries of 300 ms: a blocked loop would have ticked once or not at all.
    assert ticks >= 20, ticks
