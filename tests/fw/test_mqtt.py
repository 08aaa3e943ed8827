# firmware/mqtt.py: the MQTT 3.1.1 packets byte by byte from the standard (OASIS MQTT 3.1.1, 2.2 and
# 3.x), and the Connection against a scripted broker on loopback (real TCP, both runtimes): CONNACK,
# QoS 1 in flight and sent again after a reconnect, incoming messages and their PUBACK, liveness and
# its timeouts, disconnect. The round trips with a real mosquitto are in tests/host/test_uplink*.py.
import asyncio
import random
import struct
import time

import inet
import mqtt
from fwtest import raises


def _length_back(data):
    n, shift, used = 0, 0, 0
    for b in data:
        used += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, used
        shift += 7
    raise AssertionError("unterminated length")


def test_remaining_length_uses_the_fewest_bytes_of_7_bits():
    # The standard's table 2.4: 1 byte to 127, 2 to 16383, 3 to 2097151, 4 to 268435455.
    for n, size in ((0, 1), (127, 1), (128, 2), (16383, 2), (16384, 3), (2097151, 3), (2097152, 4),
                    (268435455, 4)):
        enc = mqtt.encode_length(n)
        assert len(enc) == size, (n, enc)
        assert _length_back(enc) == (n, size)
    assert mqtt.encode_length(321) == bytes([0xC1, 0x02])


def _connect_fields(body):
    """(flags, keepalive, [payload strings]) of a CONNECT packet's body, checking its fixed parts."""
    assert body[:7] == b"\x00\x04MQTT\x04"
    rest = body[10:]
    fields = []
    while rest:
        k = struct.unpack("!H", rest[:2])[0]
        fields.append(bytes(rest[2:2 + k]))
        rest = rest[2 + k:]
    return body[7], struct.unpack("!H", body[8:10])[0], fields


def _body(pkt, first):
    assert pkt[0] == first
    n, used = _length_back(pkt[1:])
    body = pkt[1 + used:]
    assert len(body) == n
    return body


def test_connect_packet_with_will_user_and_password():
    will = ("ampguard/x/status", b"offline", True, 1)
    pkt = mqtt.connect_packet("2312000042G", 60, "meter", "s3cret", will)
    flags, keepalive, fields = _connect_fields(_body(pkt, 0x10))
    # user name, password, will retain, will QoS 1, will flag, clean session
    assert flags == 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02
    assert keepalive == 60
    assert fields == [b"2312000042G", b"ampguard/x/status", b"offline", b"meter", b"s3cret"]


def test_connect_packet_without_will_or_credentials():
    pkt = mqtt.connect_packet("c", 30)
    assert pkt == b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x1e\x00\x01c"


def test_publish_is_written_in_pieces_and_the_message_is_never_copied():
    msg = b"hello"
    pieces = mqtt.publish_pieces(b"a/b", msg)
    assert b"".join(pieces) == b"\x30\x0a\x00\x03a/bhello"
    assert pieces[-1] is msg
    big = b"x" * 200
    pieces = mqtt.publish_pieces(b"a/b", big, retain=True, qos=1, pid=513)
    assert pieces[-1] is big
    p1 = b"".join(pieces)
    assert p1[0] == 0x33
    n, used = _length_back(p1[1:])
    body = p1[1 + used:]
    assert n == len(body) == 2 + 3 + 2 + 200
    assert mqtt.parse_publish(p1[0], body) == ("a/b", big, 1, 513)
    assert mqtt.parse_publish(0x30, b"\x00\x03a/bhello") == ("a/b", b"hello", 0, 0)


def test_a_publish_sent_again_carries_the_dup_flag():
    # MQTT 3.1.1 3.3.1.1: DUP (bit 3 of the first byte) set on a QoS 1 message sent again.
    assert b"".join(mqtt.publish_pieces(b"t", b"m", True, 1, 7, True)) == b"\x3b\x06\x00\x01t\x00\x07m"
    assert mqtt.publish_pieces(b"t", b"m", False, 1, 7)[0][0] == 0x32       # the first time: no DUP


def test_subscribe_ping_and_disconnect_packets():
    sub = b"".join(mqtt.subscribe_pieces(5, b"a/config/set", 1))
    assert sub == b"\x82\x11\x00\x05\x00\x0ca/config/set\x01"
    assert mqtt.PINGREQ_PACKET == b"\xc0\x00" and mqtt.DISCONNECT_PACKET == b"\xe0\x00"


def test_a_publish_whose_topic_overruns_the_packet_is_refused():
    raises(mqtt.MQTTError, mqtt.parse_publish, 0x30, b"\x00\x09ab")


class _Reader:
    def __init__(self, data):
        self.data = data

    async def read(self, n):
        out, self.data = self.data[:n], self.data[n:]
        return out

    async def readexactly(self, n):
        if len(self.data) < n:
            raise EOFError
        return await self.read(n)


def _read(data):
    return asyncio.run(mqtt.read_packet(_Reader(data)))


def test_read_packet_splits_a_stream_into_packets():
    first, body = _read(b"\x20\x02\x00\x00\xd0\x00")
    assert (first, body) == (0x20, b"\x00\x00")
    big = b"".join(mqtt.publish_pieces(b"t", b"y" * 300))
    assert _read(big) == (0x30, big[3:])
    assert _read(b"\xd0\x00") == (0xD0, b"")


def test_read_packet_refuses_a_closed_stream_a_bad_length_and_an_oversized_packet():
    raises(OSError, _read, b"")
    raises(mqtt.MQTTError, _read, b"\x30\xff\xff\xff\xff\x01")
    raises(mqtt.MQTTError, _read, b"\x30" + mqtt.encode_length(mqtt.MAX_PACKET + 1))


def test_every_certificate_of_a_pem_bundle_is_turned_into_der():
    import binascii

    def pem_of(der):
        b64 = binascii.b2a_base64(der).strip()
        lines = b"\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
        return b"-----BEGIN CERTIFICATE-----\n" + lines + b"\n-----END CERTIFICATE-----\n"

    first, second = bytes(range(256)) * 2, bytes(range(255, -1, -1)) * 3
    assert mqtt.pem_certificates(b"junk\n" + pem_of(first)) == [first]
    assert mqtt.pem_certificates(pem_of(first) + b"\n# next\n" + pem_of(second)) == [first, second]
    key = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    raises(ValueError, mqtt.pem_certificates, key)


# --- the Connection against a scripted broker ------------------------------------------------------------

class PieceWriter:
    """A stream writer that records each write."""

    def __init__(self):
        self.pieces = []

    def write(self, data):
        self.pieces.append(data)

    async def drain(self):
        pass


def test_the_connection_writes_a_readings_message_as_it_is():
    async def main():
        conn = mqtt.Connection("c")
        conn.writer = PieceWriter()
        conn._lock = asyncio.Lock()
        msg = b'{"seq": 1}' * 100
        await conn.publish("ampguard/x/readings", msg, False, 0)
        return conn.writer.pieces, msg

    pieces, msg = asyncio.run(main())
    assert pieces[-1] is msg                      # its own write, not a copy inside a packet
    assert b"".join(pieces) == bytes([0x30]) + mqtt.encode_length(2 + 19 + 1000) + b"\x00\x13" \
        + b"ampguard/x/readings" + msg


class Broker:
    """A broker on loopback that records the packets it gets and answers as told: CONNACK with
    `connack` (None: never), PUBACK for QoS 1 (`puback`), PINGRESP (`pong`); `hang_up`: close the
    connection right after the CONNACK."""

    def __init__(self, connack=0, puback=True, pong=True, hang_up=False):
        self.connack = connack
        self.puback = puback
        self.pong = pong
        self.hang_up = hang_up
        self.got = []            # (connection number, first byte, body)
        self.conns = 0
        self.ended = 0           # connections that ended (the client closed them, or we hung up)
        self.writers = []
        self.tasks = []

    async def start(self):
        for _ in range(20):
            self.port = 20000 + random.getrandbits(14)
            try:
                self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
                return self
            except OSError:       # taken: another port
                pass
        raise AssertionError("no free port")

    def packets(self, kind, conn=None):
        return [(f, b) for c, f, b in self.got if f & 0xF0 == kind and conn in (None, c)]

    async def _client(self, reader, writer):
        self.conns += 1
        n = self.conns
        self.writers.append(writer)
        self.tasks.append(asyncio.current_task())
        try:
            while True:
                first, body = await mqtt.read_packet(reader)
                self.got.append((n, first, body))
                kind = first & 0xF0
                if kind == 0x10 and self.connack is not None:
                    await self.send(writer, bytes([0x20, 2, 0, self.connack]))
                    if self.hang_up:
                        break
                elif kind == mqtt.PUBLISH and first & 0x06 and self.puback:
                    k = struct.unpack("!H", body[:2])[0]
                    await self.send(writer, b"\x40\x02" + body[2 + k:4 + k])
                elif kind == 0xC0 and self.pong:
                    await self.send(writer, b"\xd0\x00")
        except Exception:         # the client closed (or broke) the connection
            pass
        finally:
            self.ended += 1
            inet.close_stream(writer)

    async def send(self, writer, data):
        writer.write(data)
        await writer.drain()

    def close(self):
        self.server.close()
        for t in self.tasks:      # off the event loop's poller before their sockets close
            t.cancel()


async def _until(cond, ms=2000):
    for _ in range(ms // 10):
        if cond():
            return True
        await asyncio.sleep_ms(10)
    return cond()


def _with_broker(test, **kw):
    async def main():
        broker = await Broker(**kw).start()
        try:
            return await test(broker)
        finally:
            broker.close()
            await asyncio.sleep_ms(20)

    return asyncio.run(main())


def _connected(test, callback=None, **kw):
    """Run test(broker, conn) with a Connection connected to a new Broker(**kw)."""
    async def run(broker):
        conn = mqtt.Connection("c", callback=callback)
        await conn.connect("127.0.0.1", broker.port)
        try:
            return await test(broker, conn)
        finally:
            conn.close()

    return _with_broker(run, **kw)


def test_connect_sends_the_will_and_credentials_and_waits_for_the_connack():
    async def test(broker):
        conn = mqtt.Connection("2312000042G", keepalive_s=60)
        await conn.connect("127.0.0.1", broker.port, "meter", "pw", will=("b/status", b"offline", True, 1))
        assert conn.connected
        flags, keepalive, fields = _connect_fields(broker.packets(0x10)[0][1])
        assert flags == 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02
        assert fields == [b"2312000042G", b"b/status", b"offline", b"meter", b"pw"] and keepalive == 60
        conn.close()
        assert not conn.connected
        assert await _until(lambda: broker.ended == 1)        # really closed: the broker saw it end

    _with_broker(test)


def test_a_refused_connect_names_the_reason_and_leaves_nothing_open():
    async def test(broker):
        conn = mqtt.Connection("c")
        try:
            await conn.connect("127.0.0.1", broker.port)
        except mqtt.MQTTError as e:
            err = e
        assert "not authorised" in str(err)
        assert not conn.connected and conn.writer is None
        assert await _until(lambda: broker.ended == 1)

    _with_broker(test, connack=5)


def test_a_broker_that_never_sends_connack_times_out_without_stalling_the_loop():
    old = mqtt.CONNECT_TIMEOUT_S
    mqtt.CONNECT_TIMEOUT_S = 0.3
    ticks = [0]

    async def tick():
        while True:
            ticks[0] += 1
            await asyncio.sleep_ms(10)

    async def test(broker):
        t = asyncio.create_task(tick())
        conn = mqtt.Connection("c")
        started = time.ticks_ms()
        try:
            await conn.connect("127.0.0.1", broker.port)
        except asyncio.TimeoutError:
            took = time.ticks_diff(time.ticks_ms(), started)
        t.cancel()
        assert 250 <= took < 1500, took
        assert ticks[0] >= 15, ticks[0]
        assert await _until(lambda: broker.ended == 1)

    try:
        _with_broker(test, connack=None)
    finally:
        mqtt.CONNECT_TIMEOUT_S = old


def test_qos1_stays_in_flight_until_its_puback_and_qos0_is_not_kept():
    async def test(broker, conn):
        broker.puback = False
        await conn.publish("t/a", b"one", True, 1)
        await conn.publish("t/b", "two", False, 0)
        assert await _until(lambda: len(broker.packets(mqtt.PUBLISH)) == 2)
        assert list(conn.inflight.values()) == [(b"t/a", b"one", True)]
        broker.puback = True
        await conn.publish("t/c", b"three", False, 1)
        assert await _until(lambda: len(conn.inflight) == 1)     # t/c acknowledged, t/a never was
        assert list(conn.inflight.values()) == [(b"t/a", b"one", True)]

    _connected(test)


def test_unacknowledged_qos1_is_sent_again_with_dup_by_resend_after_a_reconnect():
    async def test(broker, conn):
        broker.puback = False
        conn.pid = 65533                              # ids 65534, 65535, 1: in order across the wrap
        for topic in ("t/one", "t/two", "t/three"):
            await conn.publish(topic, b"A", True, 1)
        assert await _until(lambda: len(broker.packets(mqtt.PUBLISH)) == 3)
        conn.close()                                  # the link died before the PUBACKs
        broker.puback = True
        await conn.connect("127.0.0.1", broker.port)
        await asyncio.sleep_ms(50)
        assert not broker.packets(mqtt.PUBLISH, 2) and len(conn.inflight) == 3   # connect() only connects
        await conn.resend()                           # the session is up: now they go again
        await conn.publish("t/status", b"online", True, 1)
        assert await _until(lambda: len(broker.packets(mqtt.PUBLISH, 2)) == 4)
        again = [mqtt.parse_publish(f, b)[:3] + (bool(f & 0x08),) for f, b in broker.packets(mqtt.PUBLISH, 2)]
        assert again == [("t/one", b"A", 1, True), ("t/two", b"A", 1, True), ("t/three", b"A", 1, True),
                         ("t/status", b"online", 1, False)]
        assert await _until(lambda: not conn.inflight)

    _connected(test)


def test_forgotten_messages_are_not_sent_again():
    async def test(broker, conn):
        broker.puback = False
        await conn.publish("b/alarm", b"{}", False, 1)
        await conn.publish("b/config", "{}", True, 1)
        await conn.publish("b2/alarm", b"{}", False, 1)
        assert await _until(lambda: len(broker.packets(mqtt.PUBLISH)) == 3)
        conn.close()
        conn.forget("/alarm")
        assert list(conn.inflight.values()) == [(b"b/config", b"{}", True)]
        await conn.connect("127.0.0.1", broker.port)
        await conn.resend()
        assert await _until(lambda: broker.packets(mqtt.PUBLISH, 2))
        await asyncio.sleep_ms(50)
        assert [mqtt.parse_publish(f, b)[0] for f, b in broker.packets(mqtt.PUBLISH, 2)] == ["b/config"]

    _connected(test)


def test_in_flight_is_bounded_dropping_the_oldest():
    async def test(broker, conn):
        broker.puback = False
        conn.pid = 65530                              # the oldest is found across the wrap of ids
        for i in range(mqtt.MAX_INFLIGHT + 3):
            await conn.publish("t", str(i), False, 1)
        kept = sorted(int(m.decode()) for _, m, _ in conn.inflight.values())
        assert kept == list(range(3, mqtt.MAX_INFLIGHT + 3))

    _connected(test)


def test_incoming_messages_reach_the_callback_and_qos1_is_acknowledged():
    got = []

    async def test(broker, conn):
        await conn.subscribe("b/config/set", 1)
        assert await _until(lambda: broker.packets(0x80))
        assert broker.packets(0x80)[0] == (0x82, b"\x00\x01\x00\x0cb/config/set\x01")
        w = broker.writers[0]
        await broker.send(w, b"\x32\x0b\x00\x05b/set\x12\x34{}")       # QoS 1, pid 0x1234
        await broker.send(w, b"\x30\x08\x00\x03b/x\x6f\x6b\x21")         # QoS 0
        assert await _until(lambda: len(got) == 2)
        assert got == [("b/set", b"{}"), ("b/x", b"ok!")]
        assert await _until(lambda: broker.packets(mqtt.PUBACK))
        assert broker.packets(mqtt.PUBACK) == [(0x40, b"\x12\x34")]
        await conn.check()                            # all is well

    _connected(test, lambda topic, msg: got.append((topic, msg)))


def test_silence_brings_a_ping_and_an_unanswered_ping_a_dead_link():
    old = mqtt.PING_EVERY_MS, mqtt.PING_TIMEOUT_MS
    mqtt.PING_EVERY_MS, mqtt.PING_TIMEOUT_MS = 150, 150

    async def test(broker, conn):
        await conn.check()
        assert not broker.packets(0xC0)                # no ping while the broker was just heard
        await asyncio.sleep_ms(200)
        await conn.check()                            # silent for 200 ms: PINGREQ, answered
        assert await _until(lambda: broker.packets(0xC0) and conn.ping_sent is None)
        broker.pong = False
        await asyncio.sleep_ms(200)
        await conn.check()                            # PINGREQ, never answered ...
        assert await _until(lambda: len(broker.packets(0xC0)) == 2)
        await asyncio.sleep_ms(200)
        try:
            await conn.check()                        # ... is a dead link
        except OSError as e:
            err = e
        assert "link is dead" in str(err)

    try:
        _connected(test)
    finally:
        mqtt.PING_EVERY_MS, mqtt.PING_TIMEOUT_MS = old


def test_check_reports_a_connection_the_broker_closed():
    async def test(broker, conn):
        assert await _until(lambda: not conn.connected)
        try:
            await conn.check()
        except OSError as e:
            err = e
        assert "closed" in str(err)

    _connected(test, hang_up=True)


def test_disconnect_says_so_forgets_what_is_in_flight_and_closes():
    async def test(broker, conn):
        broker.puback = False
        await conn.publish("b/status", b"offline", True, 1)
        await conn.disconnect()
        assert not conn.inflight and not conn.connected
        assert await _until(lambda: broker.ended == 1)
        assert [f for _, f, _ in broker.got] == [0x10, 0x33, 0xE0]

    _connected(test)


def test_publish_now_and_disconnect_now_write_without_waiting():
    async def test(broker, conn):
        conn.publish_now("b/status", b"offline", True, 1)       # no await: as at a shutdown
        conn.disconnect_now()
        assert not conn.connected and conn.writer is None
        assert await _until(lambda: broker.ended == 1)
        got = [(f, b) for _, f, b in broker.got]
        assert got[1][0] == 0x33 and mqtt.parse_publish(*got[1])[:3] == ("b/status", b"offline", 1)
        assert got[2] == (0xE0, b"")

    _connected(test)
