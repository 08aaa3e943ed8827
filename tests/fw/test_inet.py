# The shared network helpers (firmware/inet.py) on both runtimes: IPv4 parsing, socket addresses as each
# runtime gives them, and closing a stream so that the peer really sees the connection end.
import asyncio
import gc
import random
import socket
import time

import inet
from fwtest import IS_MICROPYTHON


def test_ipv4_bytes_takes_dotted_quads_only():
    assert inet.ipv4_bytes("192.168.251.1") == bytes([192, 168, 251, 1])
    assert inet.ipv4_bytes("0.0.0.0") == bytes(4) and inet.ipv4_bytes("255.255.255.255") == b"\xff" * 4
    for bad in ("", "1.2.3", "1.2.3.4.5", "1.2.3.256", "a.b.c.d", "broker.example", "1..2.3",
                "1.2.3.-4", "1.2.3.+4", " 1.2.3.4", "1.2.3.4 ", "1.2.3.0004", "1.2.3.4."):
        assert inet.ipv4_bytes(bad) is None, bad


def test_ip_port_of_a_tuple_and_of_the_unix_ports_raw_sockaddr():
    assert inet.ip_port(("10.0.0.7", 50123)) == ("10.0.0.7", 50123)
    raw = bytes([2, 0, 0xC3, 0xCB, 10, 0, 0, 7]) + bytes(8)       # family in host order (little end)
    assert inet.ip_port(raw) == ("10.0.0.7", 50123)
    assert inet.ip_port(bytes([0, 2]) + raw[2:]) == ("10.0.0.7", 50123)       # ... or big end
    for bad in (bytes([10, 0]) + raw[2:], raw[:6]):                          # AF_INET6, cut short
        try:
            inet.ip_port(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


class _Sock:
    def __init__(self, fail=False):
        self.closed = 0
        self.fail = fail

    def close(self):
        self.closed += 1
        if self.fail:
            raise OSError(9)


class _CPythonLike:
    def __init__(self):
        self.closed = False
        self.transport = self
        self.aborted = False

    def abort(self):
        self.aborted = True

    def close(self):
        self.closed = True


def test_close_stream_closes_the_socket_under_a_micropython_stream_and_never_raises():
    class MpStream:                  # MicroPython's Stream: close() does nothing, .s is the socket
        def __init__(self, sock):
            self.s = sock

        def close(self):
            pass

    sock = _Sock()
    inet.close_stream(MpStream(sock))
    assert sock.closed == 1
    inet.close_stream(MpStream(_Sock(fail=True)))          # already broken: no exception
    s = _CPythonLike()
    inet.close_stream(s)
    assert s.closed and not s.aborted
    s = _CPythonLike()
    inet.close_stream(s, abort=True)
    assert s.closed and s.aborted


def test_close_stream_ends_a_real_connection_for_the_peer():
    seen = []

    async def peer(reader, writer):
        seen.append(await reader.read(10))        # b"" once the client's socket is really closed
        inet.close_stream(writer)

    async def main():
        for _ in range(20):
            port = 20000 + random.getrandbits(14)
            try:
                server = await asyncio.start_server(peer, "127.0.0.1", port)
                break
            except OSError:
                pass
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep_ms(50)
        inet.close_stream(writer)                # no await, no wait_closed(): closed all the same
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep_ms(10)
        server.close()
        await asyncio.sleep_ms(20)

    asyncio.run(main())
    assert seen == [b""]


def test_waiting_tells_a_datagram_is_there_and_allocates_nothing_while_none_is():
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        port = 17000 + random.getrandbits(12)
        rx.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
        rx.setblocking(False)
        poller = inet.readable_poller(rx)
        empty = inet.waiting(poller)
        grown = None
        if IS_MICROPYTHON:       # CPython cannot count allocations
            gc.collect()
            gc.disable()
            try:
                before = gc.mem_alloc()
                for _ in range(100):
                    inet.waiting(poller)
                grown = gc.mem_alloc() - before
            finally:
                gc.enable()
        tx.sendto(b"x", socket.getaddrinfo("127.0.0.1", port)[0][-1])
        seen = False
        for _ in range(100):
            if inet.waiting(poller):
                seen = True
                break
            time.sleep(0.01)
        assert not empty and seen and rx.recv(16) == b"x"
        assert not inet.waiting(poller)                 # read: nothing waits any more
        if IS_MICROPYTHON:
            assert grown == 0, grown
    finally:
        rx.close()
        tx.close()
