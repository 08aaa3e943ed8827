# MQTT 3.1.1 client on asyncio streams: the packets of micropython-lib's umqtt.simple, without its
# blocking socket calls. umqtt.simple's connect, TLS handshake, publish and wait_msg block the only
# thread, so a black-holed broker would freeze the metering for as long as a timeout; here every step
# yields to the event loop and every wait has a deadline (docs/uplink.md).
import asyncio
import struct

CONNECT_TIMEOUT_S = 10     # TCP connect, TLS handshake and CONNACK together
WRITE_TIMEOUT_S = 5        # a packet the broker does not take in this long means a dead link

CONNACK_REFUSED = {1: "unacceptable protocol version", 2: "client id rejected", 3: "server unavailable",
                   4: "bad user name or password", 5: "not authorised"}

# Packet types (high nibble of the first byte).
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
SUBACK = 0x90
PINGRESP = 0xD0
MAX_PACKET = 8192          # larger incoming packets are refused: the heap is small


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


def encode_str(s):
    b = s.encode() if isinstance(s, str) else bytes(s)
    return struct.pack("!H", len(b)) + b


def packet(first, body):
    return bytes([first]) + encode_length(len(body)) + body


def connect_packet(client_id, keepalive_s, user=None, password=None, will=None, clean=True):
    """CONNECT; will = (topic, message, retain, qos) or None."""
    flags = 0x02 if clean else 0
    payload = encode_str(client_id)
    if will:
        topic, msg, retain, qos = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += encode_str(topic) + encode_str(msg)
    if user is not None:
        flags |= 0x80
        payload += encode_str(user)
        if password is not None:
            flags |= 0x40
            payload += encode_str(password)
    return packet(0x10, b"\x00\x04MQTT\x04" + bytes([flags]) + struct.pack("!H", keepalive_s) + payload)


def publish_packet(topic, msg, retain=False, qos=0, pid=0, dup=False):
    first = PUBLISH | (qos << 1) | (1 if retain else 0) | (0x08 if dup else 0)
    body = encode_str(topic) + (struct.pack("!H", pid) if qos else b"") + msg
    return packet(first, body)


def subscribe_packet(pid, topic, qos):
    return packet(0x82, struct.pack("!H", pid) + encode_str(topic) + bytes([qos]))


def puback_packet(pid):
    return packet(PUBACK, struct.pack("!H", pid))


PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"


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


def pem_to_der(pem):
    """The first certificate of a PEM file as DER (MicroPython's SSLContext takes DER only)."""
    import binascii

    begin = pem.find(b"-----BEGIN CERTIFICATE-----")
    end = pem.find(b"-----END CERTIFICATE-----", begin)
    if begin < 0 or end < 0:
        raise ValueError("no certificate in the CA file")
    body = pem[begin + 27:end]
    return binascii.a2b_base64(b"".join(body.split()))


def tls_context(cafile):
    """A client context that verifies the broker's certificate against `cafile` (one CA certificate,
    PEM or DER)."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    with open(cafile, "rb") as f:
        ca = f.read()
    if b"-----BEGIN" in ca:
        ca = pem_to_der(ca)
    try:
        ctx.load_verify_locations(cadata=ca)
    except TypeError:            # MicroPython 1.22's SSLContext takes it positionally
        ctx.load_verify_locations(ca)
    if hasattr(ctx, "check_hostname"):
        ctx.check_hostname = True
    return ctx


class Connection:
    """One MQTT session over one TCP (or TLS) connection. Not reused after it fails."""

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.pid = 0

    def next_pid(self):
        self.pid = self.pid % 65535 + 1
        return self.pid

    async def send(self, data):
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), WRITE_TIMEOUT_S)

    def close(self):
        try:
            sock = getattr(self.writer, "s", None)
            if sock is not None:
                # MicroPython's Stream.close() does nothing (only wait_closed() closes): without this
                # the socket stayed open, and the broker kept the dead session and its last will.
                sock.close()
            else:
                self.writer.close()
        except Exception:       # already broken: nothing left to release
            pass


async def connect(addr, port, client_id, keepalive_s, user=None, password=None, will=None,
                  ssl_ctx=None, server_hostname=None):
    """A Connection after a CONNACK that accepted the session; raises OSError, MQTTError or
    asyncio.TimeoutError (no exception leaves anything open)."""
    async def attempt():
        if ssl_ctx is None:
            reader, writer = await asyncio.open_connection(addr, port)
        else:
            reader, writer = await asyncio.open_connection(addr, port, ssl=ssl_ctx,
                                                           server_hostname=server_hostname)
        conn = Connection(reader, writer)
        try:
            await conn.send(connect_packet(client_id, keepalive_s, user, password, will))
            first, body = await read_packet(reader)
            if first != CONNACK or len(body) != 2:
                raise MQTTError("no CONNACK from the broker")
            if body[1]:
                raise MQTTError("broker refused the connection: %s"
                                % CONNACK_REFUSED.get(body[1], "code %d" % body[1]))
        except BaseException:
            conn.close()
            raise
        return conn

    return await asyncio.wait_for(attempt(), CONNECT_TIMEOUT_S)
