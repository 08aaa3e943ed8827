# What publishing info, config and the Home Assistant discovery again costs the heap (issue 10): the
# uplink's publish_state through the real mqtt.Connection, onto a stream that takes every packet at once.
# On MicroPython the garbage of a whole republish and of each discovery message is bounded (gc.mem_alloc
# with the collector off; the old code made about 61 KB, 2.5 KB per entity, on esp32-like); on every
# runtime the messages are checked: the right topics and payloads (each payload is written into a buffer
# the next one reuses), discovery not kept in flight, info and config kept.
import asyncio
import gc
import json
import sys

import ha_discovery
import mqtt
import readings_json
import settings
import update
import uplink
from fwfiles import rmtree, scratch
from fwtest import IS_MICROPYTHON, RUNTIME, WallClock

SERIAL = "2312000042G"
BASE = "ampguard/" + SERIAL
# Bounds, esp32-like (32-bit, as the ESP32) and micropython (64-bit: objects are larger). Measured: a
# republish of 24 messages 11.7 and 20.4 KB; a discovery message 400 and 736 bytes, of which about 300
# on esp32-like are the MQTT packet's own (its head, _send's coroutine, the lock's acquire).
TOTAL_MAX = {"esp32-like": 13000, "micropython": 22000}
MESSAGE_MAX = {"esp32-like": 480, "micropython": 820}


class Net:
    network = "lan"

    def status(self):
        return {"network": "lan", "ip": "10.0.0.2"}


class Board:
    NAME = "test-board"


class Device:
    board = Board
    hal = None

    def __init__(self, changes):
        self.flash_dir = scratch()
        self.settings = settings.Settings(self.flash_dir)
        self.settings.update(changes)
        self.serial = SERIAL
        self.net = Net()
        self.readings = None
        self.clock = WallClock(1763900000)
        self.updater = update.Updater(self)


class Writer:
    """A stream writer with room for everything: each write is taken at once and nothing is kept
    (MicroPython's stream then has an empty out_buf). It follows the packets in what is written, however
    they are cut into pieces: `marks` (a list made beforehand, filled without allocating) gets
    gc.mem_alloc() as each packet starts; with `stream` a bytearray, everything written is kept there."""

    out_buf = b""

    def __init__(self):
        self.stream = None
        self.marks = None
        self.packets = 0
        self.left = 0              # bytes of the current packet still to come

    def write(self, piece):
        if self.stream is not None:
            self.stream += piece
        if self.left == 0 and len(piece):     # a packet starts: its fixed header is in this piece
            if self.marks is not None and self.packets < len(self.marks):
                self.marks[self.packets] = gc.mem_alloc()
            self.packets += 1
            self.left = _packet_size(piece)
        self.left -= len(piece)

    async def drain(self):
        pass


def _packet_size(data, at=0):
    """The size of the packet starting at data[at], from its fixed header."""
    n = 0
    shift = 0
    i = at + 1
    while True:
        b = data[i]
        n |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return i - at + n
        shift += 7


def _connection():
    conn = mqtt.Connection(SERIAL)
    conn.writer = Writer()
    conn._lock = asyncio.Lock()
    return conn


def _packets(stream):
    """(topic, message, retain) of each packet in `stream`: all of them QoS 1 PUBLISH."""
    out = []
    at = 0
    while at < len(stream):
        size = _packet_size(stream, at)
        first = stream[at]
        assert first & 0xF0 == mqtt.PUBLISH
        body_at = at + 1
        while stream[body_at] & 0x80:
            body_at += 1
        topic, msg, qos, _ = mqtt.parse_publish(first, bytes(stream[body_at + 1:at + size]))
        assert qos == 1
        out.append((topic, msg, bool(first & 1)))
        at += size
    return out


def _republish(up, removed):
    """The messages of one publish_state(removed), as published."""
    up.conn.writer.stream = bytearray()
    asyncio.run(up.publish_state(removed))
    stream, up.conn.writer.stream = up.conn.writer.stream, None
    return _packets(stream)


def _expected_discovery(dev, nphases):
    message = readings_json.Message()
    return [(bytes(t).decode(), bytes(p)) for t, p in ha_discovery.entities(
        SERIAL, BASE, nphases, uplink.VERSION, Board.NAME, message)]


def test_a_republish_sends_each_entity_as_written_and_keeps_only_info_config_and_removals_in_flight():
    dev = Device({"ha_discovery": True})
    try:
        up = uplink.Uplink(dev)
        up.conn = _connection()
        sent = _republish(up, removed=False)
        assert [t for t, _, _ in sent[:2]] == [BASE + "/info", BASE + "/config"]
        assert json.loads(sent[0][1]) == up.info() and sent[0][1] == json.dumps(up.info()).encode()
        public = settings.public_view(dev.settings.current)
        assert json.loads(sent[1][1]) == public and sent[1][1] == json.dumps(public).encode()
        assert all(retain for _, _, retain in sent)
        # Each entity's own payload, though all are written into the one buffer, one after the other.
        assert [(t, m) for t, m, _ in sent[2:]] == _expected_discovery(dev, 3)
        assert len(set(m for _, m, _ in sent[2:])) == 22
        kept = sorted(t.decode() for t, _, _ in up.conn.inflight.values())
        assert kept == [BASE + "/config", BASE + "/info"], kept     # discovery is sent anew each session

        dev.settings.update({"phases": 1})
        up.conn.inflight = {}
        sent = _republish(up, removed=True)
        gone = ["homeassistant/sensor/ampguard_%s/l%d_%s/config" % (SERIAL.lower(), line, oid)
                for line in (2, 3) for oid in ("voltage", "current", "power", "power_factor",
                                               "import_energy", "export_energy")]
        assert [(t, m) for t, m, _ in sent[2:12]] == _expected_discovery(dev, 1)
        assert [(t, m) for t, m, _ in sent[12:]] == [(t, b"") for t in gone]
        kept = sorted(t.decode() for t, _, _ in up.conn.inflight.values())
        assert kept == sorted([BASE + "/config", BASE + "/info"] + gone), kept
    finally:
        rmtree(dev.flash_dir)


def test_a_republish_allocates_little_and_in_small_pieces():
    dev = Device({"ha_discovery": True})
    try:
        up = uplink.Uplink(dev)
        up.conn = _connection()
        writer = up.conn.writer
        sent = _republish(up, removed=False)    # the first: the kept message buffer is made
        assert len(sent) == 24
        if not IS_MICROPYTHON:                  # CPython cannot count allocations: the messages only
            return
        if RUNTIME != "esp32-like":
            # Here the firmware is compiled from source at import; on the device (and esp32-like) it is
            # frozen, and importing it again is part of what is measured.
            sys.modules["ha_discovery"] = ha_discovery
        writer.marks = [0] * 30
        writer.packets = 0
        up.conn.inflight = {}
        gc.collect()
        gc.disable()
        try:
            before = gc.mem_alloc()
            asyncio.run(up.publish_state(False))
            total = gc.mem_alloc() - before
        finally:
            gc.enable()
        assert writer.packets == 24, writer.packets
        # Between the heads of two discovery messages: all that one message cost (entity and packet).
        steps = [writer.marks[i + 1] - writer.marks[i] for i in range(2, 23)]
        assert total <= TOTAL_MAX[RUNTIME], (total, steps)
        assert max(steps) <= MESSAGE_MAX[RUNTIME], (total, steps)
    finally:
        rmtree(dev.flash_dir)
