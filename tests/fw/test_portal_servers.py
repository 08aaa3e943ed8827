# The portal-side servers' keeper (firmware/app.py serve_while_portal_up) and the captive DNS server's
# Server object (firmware/dnsd.py), on both runtimes with real UDP sockets on loopback: a server that
# ends by itself is started again, a failed start names its address, wait_closed() keeps the caller's
# own cancellation.
import asyncio
import gc
import random
import socket

import app
import dnsd
from fwfiles import LogCapture
from fwtest import IS_MICROPYTHON
from test_dns import query

PORTAL = "192.168.251.1"


class _Ap:
    def active(self):
        return False


class _Hal:
    portal_needs_ap = False          # as the simulator: the portal is wanted all the time
    ap = _Ap()


class _Dev:
    hal = _Hal()


def _port():
    return 16000 + random.getrandbits(12)


def test_a_dns_server_that_ends_by_itself_is_started_again():
    port = _port()
    servers = []

    async def start():
        servers.append(await dnsd.serve("127.0.0.1", port, PORTAL))
        return servers[-1]

    async def main():
        keeper = asyncio.create_task(app.serve_while_portal_up(_Dev(), "dns", "127.0.0.1", port, start))
        try:
            for _ in range(50):
                if servers:
                    break
                await asyncio.sleep_ms(20)
            assert len(servers) == 1 and servers[0].is_serving()
            servers[0].task.cancel()         # it ends without the keeper's close() (as on an error)
            for _ in range(150):
                if len(servers) == 2:
                    break
                await asyncio.sleep_ms(20)
            return len(servers), servers[0].is_serving(), servers[-1].is_serving()
        finally:
            keeper.cancel()
            await asyncio.sleep_ms(10)
            for s in servers:
                s.close()
                await s.wait_closed()

    with LogCapture() as logs:
        started, first_serving, last_serving = asyncio.run(main())
    assert (started, first_serving, last_serving) == (2, False, True), logs.text()
    assert "dns: 127.0.0.1:%d stopped by itself" % port in logs.text()


def test_a_failed_start_names_the_address_and_is_tried_again():
    tries = []

    async def start():
        tries.append(1)
        raise OSError("address in use")

    async def main():
        keeper = asyncio.create_task(app.serve_while_portal_up(_Dev(), "portal", "127.0.0.1", 8080, start))
        await asyncio.sleep_ms(1300)
        keeper.cancel()
        await asyncio.sleep_ms(10)

    with LogCapture() as logs:
        asyncio.run(main())
    assert len(tries) == 2, tries                       # again a second later
    assert "WARN portal: cannot serve on 127.0.0.1:8080: " in logs.text() and "address in use" in logs.text()


def test_wait_closed_keeps_the_callers_own_cancellation_and_the_server():
    port = _port()

    async def main():
        server = await dnsd.serve("127.0.0.1", port, PORTAL)
        said = []

        async def waiter():
            try:
                await server.wait_closed()
                said.append("closed")
            except asyncio.CancelledError:
                said.append("cancelled")
                raise

        t = asyncio.create_task(waiter())
        await asyncio.sleep_ms(50)
        t.cancel()                                      # the waiter is cancelled, not the server
        await asyncio.sleep_ms(50)
        serving = not server.task.done()
        server.close()                                  # and closing it is still seen as its end
        await server.wait_closed()
        return said, serving, not server.task.done()

    assert asyncio.run(main()) == (["cancelled"], True, False)


def _client(port):
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(0) if not hasattr(c, "setblocking") else c.setblocking(False)
    addr = socket.getaddrinfo("127.0.0.1", port)[0][-1]
    return c, addr


async def _answer_to(c):
    """The server's reply on client socket c, waited for up to 50 looks (None if none came)."""
    for _ in range(50):
        await asyncio.sleep_ms(dnsd.POLL_MS)
        try:
            return c.recv(1500)
        except OSError:      # nothing yet
            pass
    return None


def test_an_idle_dns_server_allocates_nothing():
    # 50 looks a second at an empty socket: each recvfrom made a 1.5 KB buffer and an OSError (75 KB
    # of garbage a second, found in a 10-minute soak); a readiness poll makes none.
    port = _port()

    async def main():
        server = await dnsd.serve("127.0.0.1", port, PORTAL)
        try:
            await asyncio.sleep_ms(3 * dnsd.POLL_MS)           # started, its poller made
            c, addr = _client(port)
            c.sendto(query(qid=7), addr)                       # and it answers
            answer = await _answer_to(c)
            c.close()
            grown = None
            if IS_MICROPYTHON:       # CPython cannot count allocations; the answering ran above
                gc.collect()
                gc.disable()
                try:
                    before = gc.mem_alloc()
                    await asyncio.sleep_ms(20 * dnsd.POLL_MS)  # 20 looks at the empty socket
                    grown = gc.mem_alloc() - before
                finally:
                    gc.enable()
            return answer, grown, server.is_serving()
        finally:
            server.close()
            await server.wait_closed()

    answer, grown, serving = asyncio.run(main())
    assert answer is not None and answer[:2] == b"\x00\x07" and answer[-4:] == bytes([192, 168, 251, 1])
    assert serving
    if IS_MICROPYTHON:
        assert grown < 100, grown         # one empty recvfrom alone made 1,536 bytes and an OSError


def test_a_query_met_by_a_full_heap_is_answered_once_there_is_room():
    if not IS_MICROPYTHON:
        return               # CPython has no heap lock (the answering is shown above)
    import micropython

    port = _port()

    async def main():
        server = await dnsd.serve("127.0.0.1", port, PORTAL)
        try:
            await asyncio.sleep_ms(3 * dnsd.POLL_MS)
            c, addr = _client(port)
            c.sendto(query(qid=9), addr)
            micropython.heap_lock()          # no room for the datagram: recvfrom raises MemoryError
            try:
                for _ in range(5):
                    await asyncio.sleep_ms(dnsd.POLL_MS)
            finally:
                micropython.heap_unlock()
            locked_serving = server.is_serving()
            answer = await _answer_to(c)
            c.close()
            return locked_serving, answer, server.is_serving()
        finally:
            server.close()
            await server.wait_closed()

    locked_serving, answer, serving = asyncio.run(main())
    assert locked_serving and serving
    assert answer is not None and answer[:2] == b"\x00\x09"
