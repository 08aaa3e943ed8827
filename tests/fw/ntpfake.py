# A stand-in NTP server for firmware tests: replies built field by field (RFC 4330 layout) and a UDP
# responder on loopback run on the test's event loop. The real one (chronyd) is in tests/host.
import asyncio
import socket
import struct

import inet

NONCE = b"\x01\x02\x03\x04\x05\x06\x07\x08"
UNIX_1970_IN_NTP = 2208988800          # 70 years incl. 17 leap days, in seconds


def server_reply(nonce=NONCE, seconds=1763900000 + UNIX_1970_IN_NTP, fraction=0, first=0x24, stratum=2,
                 size=48):
    p = bytearray(max(size, 48))
    p[0] = first                       # 0x24: LI 0, version 4, mode 4 (server)
    p[1] = stratum
    p[24:32] = nonce
    struct.pack_into("!II", p, 40, seconds, fraction)
    return bytes(p[:size])


def responder(port, answer_with):
    """A UDP server on 127.0.0.1:port that answers each request with answer_with(request) (a list of
    datagrams, sent in order); returns (socket, task)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
    sock.setblocking(False)
    poller = inet.readable_poller(sock)

    async def serve():
        while True:
            if inet.waiting(poller):
                request, peer = sock.recvfrom(100)
                for datagram in answer_with(request):
                    sock.sendto(datagram, peer)
            await asyncio.sleep_ms(5)

    return sock, asyncio.create_task(serve())
