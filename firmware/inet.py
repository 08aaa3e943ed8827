# Small network helpers shared by the servers (httpd, dnsd) and the uplink (mqtt, resolver), written
# once because MicroPython's unix port and its asyncio streams differ from CPython's in these places.


def ipv4_bytes(text):
    """The 4 bytes of a dotted-quad IPv4 address ("192.168.251.1"), or None for anything else (a host
    name, "1.2.3", "1.2.3.256", signs or spaces)."""
    parts = text.split(".")
    if len(parts) != 4:
        return None
    out = bytearray(4)
    for i in range(4):
        p = parts[i]
        if not 0 < len(p) <= 3 or not p.isdigit():
            return None
        n = int(p)
        if n > 255:
            return None
        out[i] = n
    return bytes(out)


def ip_port(addr):
    """(IPv4 text, port) of a socket address: CPython and the ESP32 give a tuple, the unix port its raw
    sockaddr_in bytes (family in host byte order, then port and address in network byte order)."""
    if isinstance(addr, tuple):
        return addr[0], addr[1]
    if len(addr) >= 8 and addr[0] + addr[1] == 2:       # AF_INET = 2, either byte order
        return "%d.%d.%d.%d" % (addr[4], addr[5], addr[6], addr[7]), addr[2] << 8 | addr[3]
    raise ValueError("not an IPv4 socket address")


def close_stream(stream, abort=False):
    """Close an asyncio stream's connection now, without awaiting; never raises.

    MicroPython's Stream.close() does nothing (only wait_closed() closes its socket): a socket left
    open kept a dead MQTT session, and its last will, alive at the broker. CPython's closes the
    transport; `abort` drops what it still buffers for a client that stopped reading."""
    try:
        sock = getattr(stream, "s", None)          # MicroPython: the socket under the stream
        if sock is not None:
            sock.close()
            return
        if abort and hasattr(stream, "transport"):
            stream.transport.abort()
        stream.close()
    except Exception:       # already closed or broken: nothing left to release
        pass


def readable_poller(sock):
    """A select.poll() watching `sock` for something to read (see waiting)."""
    import select

    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return poller


def waiting(poller):
    """True when the polled socket has something to read. ipoll(0) allocates nothing once made (it
    reuses its result tuple), where recv/recvfrom on an empty non-blocking socket first allocate their
    buffer and then an OSError (the unix port and the ESP32 port alike): a socket looked at 50 times a
    second must make no garbage while nothing comes."""
    for _ in poller.ipoll(0):
        return True
    return False



async def udp_exchange(what, server, request, accept, timeout_ms, poll_ms=20):
    """Send one datagram to server = (ip, port) and wait, without blocking the event loop, up to
    timeout_ms for a reply that accept(packet) takes: what accept returns is the answer; a datagram it
    refuses with ValueError (stray, spoofed, broken) is skipped. OSError, naming `what` ("DNS server"),
    when no reply came in time."""
    import asyncio
    import socket
    import time

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        dest = socket.getaddrinfo(server[0], server[1])[0][-1]    # an IP literal: no look-up
        sock.sendto(request, dest)
        poller = readable_poller(sock)
        end = time.ticks_add(time.ticks_ms(), timeout_ms)
        while time.ticks_diff(end, time.ticks_ms()) > 0:
            if not waiting(poller):          # nothing yet: no empty recv (its garbage, see waiting)
                await asyncio.sleep_ms(poll_ms)
                continue
            try:
                packet = sock.recv(1500)
            except OSError:                  # EAGAIN after all
                await asyncio.sleep_ms(poll_ms)
                continue
            try:
                return accept(packet)
            except ValueError:               # not our answer: keep waiting for it
                continue
        raise OSError("%s %s:%d did not answer in %d ms" % (what, server[0], server[1], timeout_ms))
    finally:
        sock.close()
