# Broker name look-up without blocking: one A query over UDP to the network's DNS server, awaited on the
# event loop. socket.getaddrinfo would block the whole device for lwIP's DNS timeout when the DNS
# server is gone. Answers are cached for their TTL (bounded), so a reconnect needs no look-up at all.
import random
import socket
import struct

import inet
import uptime

TIMEOUT_MS = 3000          # per try
TRIES = 2
POLL_MS = 20
MIN_TTL_S = 30
MAX_TTL_S = 3600

_cache = {}                # name -> (address, expiry in uptime seconds)


def query(name, qid):
    """A standard recursive query for the A record of `name`."""
    out = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        b = label.encode()
        if not 0 < len(b) <= 63:
            raise ValueError("not a host name: %s" % name)
        out += bytes([len(b)]) + b
    return out + b"\x00\x00\x01\x00\x01"


def _skip_name(packet, i):
    """Index past a (possibly compressed) name at i; -1 when it runs off the packet."""
    n = len(packet)
    while i < n:
        length = packet[i]
        if length == 0:
            return i + 1
        if length & 0xC0 == 0xC0:          # a pointer ends the name
            return i + 2 if i + 2 <= n else -1
        if length > 63:
            return -1
        i += 1 + length
    return -1


def parse_answer(packet, qid):
    """(IPv4 address text, ttl s) of the first A record of a reply to query qid; None for a reply that
    says the name has no A record; raises ValueError for anything that is not a usable reply."""
    if len(packet) < 12:
        raise ValueError("short DNS reply")
    rid, flags, qd, an = struct.unpack("!HHHH", packet[:8])
    if rid != qid or not flags & 0x8000:
        raise ValueError("not a reply to our query")
    rcode = flags & 0x0F
    if rcode == 3:
        return None                          # NXDOMAIN
    if rcode:
        raise ValueError("DNS server error %d" % rcode)
    i = 12
    for _ in range(qd):
        i = _skip_name(packet, i)
        if i < 0 or i + 4 > len(packet):
            raise ValueError("malformed DNS reply")
        i += 4
    for _ in range(an):
        i = _skip_name(packet, i)
        if i < 0 or i + 10 > len(packet):
            raise ValueError("malformed DNS reply")
        rtype, rclass, ttl, rdlen = struct.unpack("!HHIH", packet[i:i + 10])
        i += 10
        if i + rdlen > len(packet):
            raise ValueError("malformed DNS reply")
        if rtype == 1 and rclass == 1 and rdlen == 4:
            return "%d.%d.%d.%d" % tuple(packet[i:i + 4]), ttl
        i += rdlen                           # a CNAME and the like: the A record follows
    return None


async def _ask(name, server):
    qid = random.getrandbits(16)
    return await inet.udp_exchange("DNS server", server, query(name, qid),
                                   lambda packet: parse_answer(packet, qid) or (None, 0), TIMEOUT_MS, POLL_MS)


async def resolve(name, server, system_resolver=False):
    """The IPv4 address of `name` (returned as is when it is one), asking `server` = (ip, port). With
    no server the system's resolver answers, blocking, only where the hardware layer says it may
    (`system_resolver`: the simulator on a host); on the ESP32 it would stall the event loop for lwIP's
    DNS timeout, so there it is an OSError."""
    if inet.ipv4_bytes(name) is not None:
        return name
    if server is None:
        if not system_resolver:
            raise OSError("no DNS server from DHCP")
        ai = socket.getaddrinfo(name, 0, socket.AF_INET, socket.SOCK_STREAM)
        if not ai:
            raise OSError("cannot resolve %s" % name)
        return inet.ip_port(ai[0][-1])[0]
    hit = cached(name)
    if hit is not None:
        return hit
    err = None
    for _ in range(TRIES):
        try:
            addr, ttl = await _ask(name, server)
        except OSError as e:
            err = e
            continue
        if addr is None:
            raise OSError("%s has no address (DNS)" % name)
        ttl = min(MAX_TTL_S, max(MIN_TTL_S, ttl))
        # Expiry in uptime seconds: a ticks stamp could look unexpired again a week after it expired.
        _cache[name] = (addr, uptime.seconds() + ttl)
        return addr
    raise err


def cached(name):
    """The address `name` resolved to, while its TTL runs; else None."""
    hit = _cache.get(name)
    if hit is None:
        return None
    if uptime.seconds() < hit[1]:
        return hit[0]
    del _cache[name]
    return None


def forget(name):
    """Drop the cached address of `name` (its connection failed: the next one asks again)."""
    _cache.pop(name, None)
