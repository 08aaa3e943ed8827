# The MQTT 3.1.1 packets of firmware/mqtt.py, byte by byte from the standard (OASIS MQTT 3.1.1, 2.2 and
# 3.x), and the uplink's back-off; the broker round trips are in tests/host/test_uplink*.py.
import asyncio
import struct

import mqtt
import uplink
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


def test_connect_packet_with_will_user_and_password():
    will = ("ampguard/x/status", b"offline", True, 1)
    pkt = mqtt.connect_packet("2312000042G", 60, "meter", "s3cret", will)
    assert pkt[0] == 0x10
    n, used = _length_back(pkt[1:])
    body = pkt[1 + used:]
    assert len(body) == n
    assert body[:7] == b"\x00\x04MQTT\x04"
    # user name, password, will retain, will QoS 1, will flag, clean session
    assert body[7] == 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02
    assert struct.unpack("!H", body[8:10])[0] == 60
    rest = body[10:]
    fields = []
    while rest:
        k = struct.unpack("!H", rest[:2])[0]
        fields.append(bytes(rest[2:2 + k]))
        rest = rest[2 + k:]
    assert fields == [b"2312000042G", b"ampguard/x/status", b"offline", b"meter", b"s3cret"]


def test_connect_packet_without_will_or_credentials():
    pkt = mqtt.connect_packet("c", 30)
    assert pkt == b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x1e\x00\x01c"


def test_publish_qos0_and_qos1_and_their_parse():
    p0 = mqtt.publish_packet("a/b", b"hello")
    assert p0 == b"\x30\x0a\x00\x03a/bhello"
    p1 = mqtt.publish_packet("a/b", b"x" * 200, retain=True, qos=1, pid=513)
    assert p1[0] == 0x33
    n, used = _length_back(p1[1:])
    body = p1[1 + used:]
    assert n == len(body) == 2 + 3 + 2 + 200
    assert mqtt.parse_publish(p1[0], body) == ("a/b", b"x" * 200, 1, 513)
    assert mqtt.parse_publish(p0[0], p0[2:]) == ("a/b", b"hello", 0, 0)
    assert mqtt.publish_packet("t", b"", qos=1, pid=7, dup=True)[0] == 0x3A


def test_subscribe_puback_ping_disconnect():
    assert mqtt.subscribe_packet(5, "a/config/set", 1) == b"\x82\x11\x00\x05\x00\x0ca/config/set\x01"
    assert mqtt.puback_packet(0x1234) == b"\x40\x02\x12\x34"
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
    big = mqtt.publish_packet("t", b"y" * 300)
    assert _read(big) == (0x30, big[3:])
    assert _read(b"\xd0\x00") == (0xD0, b"")


def test_read_packet_refuses_a_closed_stream_a_bad_length_and_an_oversized_packet():
    raises(OSError, _read, b"")
    raises(mqtt.MQTTError, _read, b"\x30\xff\xff\xff\xff\x01")
    raises(mqtt.MQTTError, _read, b"\x30" + mqtt.encode_length(mqtt.MAX_PACKET + 1))


def test_back_off_doubles_from_one_second_to_at_most_sixty_with_jitter():
    for failures, base in ((0, 1), (1, 2), (2, 4), (5, 32), (6, 60), (7, 60), (100, 60)):
        seen = [uplink.backoff_s(failures) for _ in range(50)]
        assert all(0.8 * base <= d <= base for d in seen), (failures, min(seen), max(seen))
        assert max(seen) - min(seen) > 0.02 * base          # jitter: a fleet does not retry in step


def test_pem_is_turned_into_der_for_the_tls_context():
    import binascii

    der = bytes(range(256)) * 2
    b64 = binascii.b2a_base64(der).strip()
    lines = b"\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    pem = b"junk\n-----BEGIN CERTIFICATE-----\n" + lines + b"\n-----END CERTIFICATE-----\n"
    assert mqtt.pem_to_der(pem) == der
    assert mqtt.pem_to_der(pem + pem.replace(b"junk", b"")) == der        # the first of a chain
    raises(ValueError, mqtt.pem_to_der, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
