# The captive DNS server (contract §2): one UDP socket, answers from dnsreply.py; nothing a client sends can
# stop it. serve() and the Server it returns behave as httpd.serve()'s (close, wait_closed; is_serving as
# CPython's), so the application starts and stops both the same way.
import asyncio
import socket

import dnsreply
import inet
import log

POLL_MS = 20                 # idle wait between looks at the socket (non-blocking, no busy loop)
BURST = 128                  # datagrams handled per wake-up (each takes microseconds), then yield
MAX_READ = dnsreply.MAX_PACKET + 1  # one byte over the limit: a longer datagram reads as too long, dropped


class Server:
    def __init__(self, sock, ip4):
        self.task = asyncio.create_task(_answer(sock, ip4))

    def is_serving(self):
        """False once it has ended, closed or by itself (as asyncio.Server's)."""
        return not self.task.done()

    def close(self):
        self.task.cancel()

    async def wait_closed(self):
        """Until it has ended. The task is watched, not awaited: awaiting it would pass the caller's
        own cancellation on to it (both runtimes do) and make it look like the server's end."""
        while not self.task.done():
            await asyncio.sleep_ms(POLL_MS)


async def serve(host, port, ip):
    """Answer every A query on host:port with `ip`; raises OSError at once when it cannot bind."""
    ip4 = inet.ipv4_bytes(ip)
    if ip4 is None:
        raise ValueError("not an IPv4 address: %s" % ip)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(socket.getaddrinfo(host, port)[0][-1])
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    log.info("dns", "serving %s:%d (every name -> %s)" % (host, port, ip))
    return Server(sock, ip4)


async def _answer(sock, ip4):
    try:
        poller = inet.readable_poller(sock)     # an idle server makes no garbage (inet.waiting)
        while True:
            for _ in range(BURST):
                if not inet.waiting(poller):
                    break
                try:
                    packet, client = sock.recvfrom(MAX_READ)
                except OSError:      # EAGAIN after all (another reader, a spurious wake-up)
                    break
                except MemoryError:  # no room for this datagram now: it waits, the heap may free up
                    break
                try:
                    reply = dnsreply.answer(packet, ip4)
                    if reply is not None:
                        sock.sendto(reply, client)
                except Exception:    # one bad packet, a failed send or no heap never stops the server
                    pass
                packet = client = None
            await asyncio.sleep_ms(POLL_MS)
    finally:
        sock.close()
