# The DNS server task: one UDP socket, answers from dns.py; nothing a client sends can stop it.
import asyncio
import socket

import dnsreply
import log

POLL_MS = 20                 # idle wait between empty reads (non-blocking socket, no busy loop)
BURST = 128                  # datagrams handled per wake-up (each takes microseconds), then yield

stats = {"answered": 0, "dropped": 0, "errors": 0}


async def serve(host, port, ip="192.168.251.1"):
    ip4 = dnsreply.ip_bytes(ip)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(socket.getaddrinfo(host, port)[0][-1])
    sock.setblocking(False)
    log.info("dns", "serving %s:%d (every name -> %s)" % (host, port, ip))
    try:
        while True:
            for _ in range(BURST):
                try:
                    packet, client = sock.recvfrom(1536)
                except OSError:      # EAGAIN: nothing waiting
                    break
                try:
                    reply = dnsreply.answer(packet, ip4)
                    if reply is None:
                        stats["dropped"] += 1
                    else:
                        sock.sendto(reply, client)
                        stats["answered"] += 1
                except Exception:    # one bad packet or a failed send never stops the server
                    stats["errors"] += 1
            await asyncio.sleep_ms(POLL_MS)
    finally:
        sock.close()
