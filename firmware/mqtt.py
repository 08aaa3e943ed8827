# MQTT 3.1.1 client on asyncio streams, shaped like micropython-lib's umqtt.simple MQTTClient (connect,
# publish, subscribe, a callback for incoming messages, ping, disconnect) and owning all of the
# protocol: packets, packet ids, QoS 1 in-flight bookkeeping, liveness. umqtt.simple's connect, TLS
# handshake, publish and wait_msg block the only thread, so a black-holed broker would freeze the
# metering for as long as a timeout; here every step yields to the event loop and every wait has a
# deadline (docs/uplink.md).
import asyncio
import struct
import time

import inet
import log

CONNECT_TIMEOUT_S = 10     # TCP connect, TLS handshake and CONNACK together
WRITE_TIMEOUT_S = 5        # a packet the broker does not take in this long means a dead link
PING_EVERY_MS = 10000      # our own PINGREQ when nothing came in for this long ...
PING_TIMEOUT_MS = 5000     # ... and no answer within this is a dead (half-open) link
MAX_INFLIGHT = 16          # unacknowledged QoS 1 messages kept; a broker that never acknowledges
                           # costs the oldest, not the heap
MAX_PACKET = 8192          # larger incoming packets are refused: the heap is small

CONNACK_REFUSED = {1: "unacceptable protocol version", 2: "client id rejected", 3: "server unavailable",
                   4: "bad user name or password", 5: "not authorised"}

# Packet types (high nibble of the first byte).
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
SUBSCRIBE = 0x82           # with its required flags
SUBACK = 0x90
PINGRESP = 0xD0
PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"


class MQTTError(Exception):
    pass


def encode_length(n):
    """MQTT's variable-length 'remaining length' (1-4 bytes)."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _head(first, remaining, tail):
    """Fixed header (type byte, remaining length) followed by `tail` (a short id or length field)."""
    out = bytearray((first,))
    out += encode_length(remaining)
    out += tail
    return out


def _u16(n):
    return struct.pack("!H", n)


def _bytes(s):
    return s.encode() if isinstance(s, str) else s


def _encode_str(s):
    b = _bytes(s)
    return _u16(len(b)) + b


def connect_packet(client_id, keepalive_s, user=None, password=None, will=None):
    """CONNECT with a clean session (a few hundred bytes at most, built whole); will = (topic, message,
    retain, qos) or None."""
    flags = 0x02
    payload = _encode_str(client_id)
    if will:
        topic, msg, retain, qos = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += _encode_str(topic) + _encode_str(msg)
    if user is not None:
        flags |= 0x80
        payload += _encode_str(user)
        if password is not None:
            flags |= 0x40
            payload += _encode_str(password)
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + _u16(keepalive_s) + payload
    return bytes(_head(0x10, len(body), body))


def publish_pieces(topic, msg, retain=False, qos=0, pid=0, dup=False):
    """PUBLISH as the two pieces it is written in: the head (fixed header, topic with its length, packet
    id for QoS 1) made in one small buffer of its exact size, then the message as it is, never copied
    into a packet (a readings message is about 1 KB on a ~112 KB heap). dup: a QoS 1 message sent again
    (MQTT 3.1.1 3.3.1.1)."""
    first = PUBLISH | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    n = 2 + len(topic) + (2 if qos else 0) + len(msg)
    size = 1                        # of the remaining length n: 7 bits a byte
    while n >> (7 * size):
        size += 1
    head = bytearray(1 + size + n - len(msg))       # the whole packet but the message
    head[0] = first
    for i in range(size):           # as encode_length(n), low 7 bits first, written in place
        head[1 + i] = (n >> (7 * i)) & 0x7F | (0x80 if i < size - 1 else 0)
    at = 1 + size
    head[at] = len(topic) >> 8
    head[at + 1] = len(topic) & 0xFF
    head[at + 2:at + 2 + len(topic)] = topic
    if qos:
        head[-2] = pid >> 8
        head[-1] = pid & 0xFF
    return head, msg


def subscribe_pieces(pid, topic, qos):
    return _head(SUBSCRIBE, 2 + 2 + len(topic) + 1, _u16(pid) + _u16(len(topic))), topic, bytes((qos,))


def parse_publish(first, body):
    """(topic str, message bytes, qos, pid) of an incoming PUBLISH's body."""
    n = struct.unpack("!H", body[:2])[0]
    if 2 + n > len(body):
        raise MQTTError("malformed PUBLISH")
    topic = bytes(body[2:2 + n]).decode()
    qos = (first >> 1) & 3
    pos = 2 + n
    pid = 0
    if qos:
        pid = struct.unpack("!H", body[pos:pos + 2])[0]
        pos += 2
    return topic, bytes(body[pos:]), qos, pid


async def read_packet(reader):
    """(first byte, body) of the next packet; raises OSError when the connection ends."""
    head = await reader.read(1)
    if not head:
        raise OSError("connection closed by the broker")
    n = 0
    shift = 0
    while True:
        b = (await reader.readexactly(1))[0]
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift > 21:
            raise MQTTError("malformed packet length")
    if n > MAX_PACKET:
        raise MQTTError("incoming packet of %d bytes is too large" % n)
    body = await reader.readexactly(n) if n else b""
    return head[0], body


def pem_certificates(pem):
    """Each certificate of a PEM file (a chain or a bundle), as DER, in order."""
    import binascii

    certs = []
    at = 0
    while True:
        begin = pem.find(b"-----BEGIN CERTIFICATE-----", at)
        end = pem.find(b"-----END CERTIFICATE-----", begin)
        if begin < 0 or end < 0:
            break
        certs.append(binascii.a2b_base64(b"".join(pem[begin + 27:end].split())))
        at = end + 25
    if not certs:
        raise ValueError("no certificate in the CA file")
    return certs


def _trust(ctx, ca):
    try:
        ctx.load_verify_locations(cadata=ca)
    except TypeError:            # MicroPython 1.22's SSLContext takes it positionally (as cadata)
        ctx.load_verify_locations(ca)


def tls_context(cafile):
    """A client context that verifies the broker's certificate against the CA certificates in `cafile`
    (PEM, one or several, or one DER)."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    with open(cafile, "rb") as f:
        ca = f.read()
    try:
        _trust(ctx, ca)          # as it is: the ESP32's mbedTLS (ESP-IDF's) parses PEM, chains included
    except ValueError:
        if b"-----BEGIN" not in ca:
            raise
        # This runtime's mbedTLS has no PEM parser (the unix port's): each certificate as DER, every
        # one trusted (each load appends to the context's CA chain, as a PEM bundle would).
        for der in pem_certificates(ca):
            _trust(ctx, der)
    if hasattr(ctx, "check_hostname"):
        ctx.check_hostname = True
    return ctx


class Connection:
    """An MQTT client as umqtt.simple's MQTTClient, on asyncio streams.

    connect() opens a new TCP (or TLS) connection each time and may be called again after a failure:
    QoS 1 messages the broker never acknowledged are kept (at most MAX_INFLIGHT) and resend() sends
    them again after the next CONNACK; forget() drops those that must not arrive late. A reader task
    receives packets: PUBLISH goes to callback(topic, message) (and is acknowledged when QoS 1),
    PUBACK ends a message's wait. The owner calls check() at least every second for liveness. Writes
    are serialised by a lock (MicroPython's stream allows one waiting writer), each bounded by
    WRITE_TIMEOUT_S."""

    def __init__(self, client_id, callback=None, keepalive_s=60):
        self.client_id = client_id
        self.callback = callback
        self.keepalive_s = keepalive_s   # told to the broker: it publishes the will after 1.5 times this
        self.pid = 0
        self.inflight = {}          # pid -> (topic, message, retain): QoS 1 not acknowledged yet
        self.reader = self.writer = None
        self.error = None           # why the reader ended
        self._rx = None
        self._lock = None
        self.last_rx = 0
        self.ping_sent = None

    @property
    def connected(self):
        """From CONNACK until the connection fails or is closed."""
        return self._rx is not None and not self._rx.done()

    # -- the session -------------------------------------------------------------------------
    async def connect(self, addr, port, user=None, password=None, will=None, ssl=None,
                      server_hostname=None):
        """Connect to `addr` (an IP address: no look-up here) and wait for a CONNACK that accepts the
        session, all within CONNECT_TIMEOUT_S. will = (topic, message, retain, qos). Raises OSError,
        MQTTError or asyncio.TimeoutError, and leaves nothing open when it does. What the last
        connection left unacknowledged is sent by resend(), not here: the session is up already."""
        self.close()
        self._lock = asyncio.Lock()
        try:
            await asyncio.wait_for(self._handshake(addr, port, user, password, will, ssl,
                                                   server_hostname), CONNECT_TIMEOUT_S)
        except ValueError as e:     # MicroPython's TLS layer reports a failed verification so
            self.close()
            if ssl is None:
                raise
            raise OSError("TLS handshake failed: " + (str(e).strip() or "the broker's certificate is "
                                                       "not trusted")) from None
        except BaseException:
            self.close()
            raise
        self.error = None
        self.last_rx = time.ticks_ms()
        self.ping_sent = None
        self._rx = asyncio.create_task(self._receive())

    async def resend(self):
        """Send again, with DUP set, the QoS 1 messages earlier connections left unacknowledged:
        oldest first (a newer retained message must stay the last word), under their ids, staying in
        flight until acknowledged."""
        for pid in sorted(self.inflight, key=self._age, reverse=True):
            kept = self.inflight.get(pid)
            if kept is not None:       # not acknowledged meanwhile
                await self._send(*publish_pieces(kept[0], kept[1], kept[2], 1, pid, True))

    def forget(self, topic_end):
        """Drop the in-flight messages whose topic ends with `topic_end`: never sent again."""
        topic_end = _bytes(topic_end)
        for pid in [p for p, kept in self.inflight.items() if kept[0].endswith(topic_end)]:
            del self.inflight[pid]

    async def _handshake(self, addr, port, user, password, will, ssl, server_hostname):
        if ssl is None:
            self.reader, self.writer = await asyncio.open_connection(addr, port)
        else:
            self.reader, self.writer = await asyncio.open_connection(addr, port, ssl=ssl,
                                                                     server_hostname=server_hostname)
        await self._send(connect_packet(self.client_id, self.keepalive_s, user, password, will))
        first, body = await read_packet(self.reader)
        if first != CONNACK or len(body) != 2:
            raise MQTTError("no CONNACK from the broker")
        if body[1]:
            raise MQTTError("broker refused the connection: %s"
                            % CONNACK_REFUSED.get(body[1], "code %d" % body[1]))

    def publish(self, topic, msg, retain=False, qos=0, keep=True):
        """Send one message (str or bytes, written as it is): to be awaited. QoS 1 stays in flight until
        its PUBACK; keep=False: a QoS 1 message the caller sends again itself after a reconnect is not
        kept for resend(), so `msg` may be a buffer it reuses once this is done. Not a coroutine itself
        but _send()'s: one coroutine less per message on a small heap."""
        topic = _bytes(topic)
        msg = _bytes(msg)
        pid = 0
        if qos:
            pid = self._next_pid()
        if qos and keep:
            self.inflight[pid] = (topic, msg, retain)
            if len(self.inflight) > MAX_INFLIGHT:
                self.inflight.pop(self._oldest())
        return self._send(*publish_pieces(topic, msg, retain, qos, pid))

    async def subscribe(self, topic, qos=1):
        """Subscribe; the SUBACK is not awaited (a refusal is logged when it comes)."""
        await self._send(*subscribe_pieces(self._next_pid(), _bytes(topic), qos))

    async def check(self):
        """Raise when the link has failed: the reader ended, or a PINGREQ went unanswered for
        PING_TIMEOUT_MS. Sends the PINGREQ after PING_EVERY_MS without a packet from the broker."""
        if self._rx is None or self._rx.done():
            raise self.error or OSError("connection closed")
        now = time.ticks_ms()
        if self.ping_sent is not None:
            if time.ticks_diff(now, self.ping_sent) > PING_TIMEOUT_MS:
                raise OSError("no PINGRESP in %d ms: the link is dead" % PING_TIMEOUT_MS)
        elif time.ticks_diff(now, self.last_rx) >= PING_EVERY_MS:
            self.ping_sent = now
            await self._send(PINGREQ_PACKET)

    async def disconnect(self):
        """Orderly end: DISCONNECT (the broker then drops the last will), and close. What was sent
        before it reached the broker ahead of it, so nothing is kept to send again."""
        await self._send(DISCONNECT_PACKET)
        self.inflight = {}
        self.close()

    def publish_now(self, topic, msg, retain=False, qos=0):
        """publish() from outside the event loop (an orderly shutdown): written to the non-blocking
        socket at once, never waiting; not kept in flight (the connection is about to end)."""
        pid = self._next_pid() if qos else 0
        for piece in publish_pieces(_bytes(topic), _bytes(msg), retain, qos, pid):
            self.writer.write(piece)

    def disconnect_now(self):
        """disconnect() from outside the event loop: DISCONNECT written at once, then close."""
        self.writer.write(DISCONNECT_PACKET)
        self.inflight = {}
        self.close()

    def close(self):
        """End the connection without a word (the broker publishes the last will); never raises."""
        rx, self._rx = self._rx, None
        if rx is not None and not rx.done():
            try:
                rx.cancel()      # first: the socket must leave the event loop's poller before closing
            except RuntimeError:     # CPython after its loop is gone: nothing is scheduled anyway
                pass
        if self.writer is not None:
            inet.close_stream(self.writer)
            self.reader = self.writer = None

    # -- inside ------------------------------------------------------------------------------
    def _next_pid(self):
        self.pid = self.pid % 65535 + 1
        return self.pid

    def _age(self, pid):
        """How many packet ids were given out after `pid` (ids wrap after 65535)."""
        return (self.pid - pid) % 65535

    def _oldest(self):
        return max(self.inflight, key=self._age)

    async def _send(self, *pieces):
        """Write a packet piece by piece and wait until the stream took it (at most WRITE_TIMEOUT_S)."""
        # acquire/release rather than `async with`: two coroutines fewer per packet on MicroPython.
        await self._lock.acquire()
        try:
            writer = self.writer
            if writer is None:
                raise OSError("not connected")
            for piece in pieces:
                writer.write(piece)
            # MicroPython's stream writes at once and keeps only what the socket did not take (out_buf):
            # with nothing kept there is nothing to wait for, and wait_for's task and timer (about 1 KB
            # of garbage per packet) are spared. Then only yield to the other tasks, as drain() would
            # (sleep_ms(0) allocates nothing; drain() makes a generator to call it).
            if getattr(writer, "out_buf", True):
                await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)
            else:
                await asyncio.sleep_ms(0)
        finally:
            self._lock.release()

    async def _receive(self):
        """Reads packets until the link fails; check() finds why in .error."""
        try:
            while True:
                first, body = await read_packet(self.reader)
                self.last_rx = time.ticks_ms()
                self.ping_sent = None            # any packet proves the link is alive
                kind = first & 0xF0
                if kind == PUBLISH:
                    topic, msg, qos, pid = parse_publish(first, body)
                    if self.callback is not None:
                        self.callback(topic, msg)
                    if qos == 1:
                        await self._send(_head(PUBACK, 2, _u16(pid)))
                elif kind == PUBACK and len(body) >= 2:
                    self.inflight.pop((body[0] << 8) | body[1], None)
                elif kind == SUBACK and body and body[-1] == 0x80:
                    log.warn("mqtt", "the broker refused a subscription")
        except Exception as e:
            self.error = e
