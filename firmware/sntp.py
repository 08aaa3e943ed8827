# SNTP (RFC 4330) client: the wall-clock time from one NTP server, over UDP, without blocking the event
# loop (inet.udp_exchange, as the broker look-up). Only the protocol is here; when and from where the
# clock is set is clock.py's. micropython-lib's ntptime blocks for its socket timeout and trusts any
# datagram, so it is not used.
import random
import struct

import inet

NTP_TO_UNIX = 2208988800       # seconds from 1900 (NTP's era 0) to 1970
PACKET = 48
MODE_CLIENT = 3
MODE_SERVER = 4


def request(nonce):
    """A client request (LI 0, version 4, mode 3) whose transmit timestamp is the 8-byte `nonce`: the
    server echoes it as its originate timestamp, so an answer to somebody else's question (or a forged
    one that did not see ours) is told apart. Our own time is not sent (RFC 5905 allows it; ours is
    unset anyway)."""
    out = bytearray(PACKET)
    out[0] = 4 << 3 | MODE_CLIENT
    out[40:48] = nonce
    return out


def parse(packet, nonce):
    """(Unix seconds, microseconds) of the server's transmit time in a reply to the request made with
    `nonce`; ValueError for anything else (not a server reply, not ours, an unsynchronised server, a
    kiss-o'-death)."""
    if len(packet) < PACKET:
        raise ValueError("short NTP reply")
    first = packet[0]
    if first & 7 != MODE_SERVER or not 3 <= first >> 3 & 7 <= 4:
        raise ValueError("not an NTP server reply")
    if packet[24:32] != nonce:
        raise ValueError("not a reply to our request")
    if first >> 6 == 3:
        raise ValueError("NTP server not synchronised")
    if not 1 <= packet[1] <= 15:
        raise ValueError("NTP server stratum %d (0: refused)" % packet[1])
    seconds, fraction = struct.unpack("!II", packet[40:48])
    if seconds == 0:
        raise ValueError("NTP reply without a time")
    unix = seconds - NTP_TO_UNIX
    if unix < 0:                   # NTP era 1: from 2036-02-07 the 32-bit seconds start again
        unix += 1 << 32
    # 2^32 fractions to microseconds: 10^6 / 2^32 = 15625 / 2^26, in small ints (2^16 * 15625 < 2^30)
    return unix, (fraction >> 16) * 15625 >> 10


async def query(server, timeout_ms):
    """(Unix seconds, microseconds, round trip ms) from server = (ip, port); the time is the server's at
    its reply plus half the round trip. OSError when no valid reply came within timeout_ms."""
    import time

    nonce = bytes(random.getrandbits(8) for _ in range(8))
    sent = time.ticks_ms()
    unix, us = await inet.udp_exchange("NTP server", server, request(nonce), lambda p: parse(p, nonce),
                                       timeout_ms)
    rtt = time.ticks_diff(time.ticks_ms(), sent)
    us += rtt * 500
    return unix + us // 1000000, us % 1000000, rtt
