# The portal-side servers' keeper (firmware/app.py serve_while_portal_up) and the captive DNS server's
# Server object (firmware/dnsd.py), on both runtimes with real UDP sockets on loopback: a server that
# ends by itself is started again, a failed start names its address, wait_closed() keeps the caller's
# own cancellation.
import asyncio
import random

import app
import dnsd
from fwfiles import LogCapture

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
