# The uplink's session side (firmware/uplink.py) with a stand-in device, on both runtimes: the state
# /api/status shows, config/set answers, the back-off, and whole sessions over a scripted connection
# (what is sent in which session: stale alarms, the re-send after CONNACK, a change of broker settings).
# Its round trips with a real mosquitto and the simulated meter are in tests/host/test_uplink*.py.
import asyncio
import json

import mqtt
import update
import uplink
from fwfiles import LogCapture, read_raw, rmtree, scratch
from fwtest import WallClock
from settings import Settings

SERIAL = "2312000042G"
BASE = "ampguard/" + SERIAL


class Net:
    def __init__(self, network):
        self.network = network

    def status(self):
        return {"network": self.network, "ip": "10.0.0.2" if self.network else None}


class Hal:
    system_resolver = False          # as on the ESP32

    def __init__(self, broker):
        self.broker = broker

    def broker_override(self):
        return self.broker

    def dns_server(self):
        return None


class Board:
    NAME = "test-board"


class Device:
    board = Board

    def __init__(self, network="lan", broker=None, settings=None):
        self.flash_dir = scratch()
        self.settings = Settings(self.flash_dir)
        if settings:
            self.settings.update(settings)
        self.serial = SERIAL
        self.net = Net(network)
        self.hal = Hal(broker)
        self.readings = None
        self.updater = update.Updater(self)
        self.clock = WallClock(1763900000)


def _states_while_running(dev, steps):
    """Run the uplink task; after each (ms, change) step, the state it shows."""
    up = uplink.Uplink(dev)

    async def main():
        task = asyncio.create_task(up.run())
        seen = []
        for ms, change in steps:
            change()
            await asyncio.sleep_ms(ms)
            seen.append(up.state)
        task.cancel()
        await asyncio.sleep_ms(10)
        return seen

    with LogCapture() as logs:
        seen = asyncio.run(main())
    return seen, logs


def _nothing():
    pass


def test_the_uplink_is_disabled_while_there_is_no_network_to_reach_the_broker():
    # Port 1 on loopback: nothing listens there, a try is refused at once.
    dev = Device(network=None, settings={"mqtt": {"host": "127.0.0.1", "port": 1}})

    def network_back():
        dev.net.network = "lan"

    def network_gone():
        dev.net.network = None

    try:
        seen, logs = _states_while_running(dev, [(700, _nothing), (700, network_back), (300, network_gone)])
        assert seen == ["disabled", "connecting", "disabled"], seen
        assert "mqtt: 127.0.0.1:1: " in logs.text()          # it did try while the network was there
    finally:
        rmtree(dev.flash_dir)


def test_the_uplink_is_disabled_without_a_broker_and_connecting_to_one_it_cannot_reach():
    dev = Device(network="lan")
    try:
        seen, logs = _states_while_running(dev, [(300, _nothing)])
        assert seen == ["disabled"] and "mqtt: " not in logs.text()     # no try without a broker
        dev.hal.broker = ("127.0.0.1", 1)                   # tools/sim --broker
        seen, logs = _states_while_running(dev, [(300, _nothing)])
        assert seen == ["connecting"]
        assert "mqtt: 127.0.0.1:1: " in logs.text() and "next try in" in logs.text()   # it really tried
    finally:
        rmtree(dev.flash_dir)


def _config_set(dev, msg):
    up = uplink.Uplink(dev)
    with LogCapture():
        up.incoming(BASE + "/config/set", msg)
    return up


def test_tls_is_not_tried_before_the_clock_is_set_and_the_wait_is_logged_once():
    # TLS to 127.0.0.1:1 (nothing listens): a try would log "mqtt: 127.0.0.1:1: ..." at once.
    dev = Device(network="lan", settings={"mqtt": {"host": "127.0.0.1", "port": 1, "tls": True}})
    dev.clock = WallClock(None, failed=True)

    def clock_set():
        dev.clock.now = 1763900000

    try:
        seen, logs = _states_while_running(dev, [(700, _nothing), (300, _nothing)])
        assert seen == ["connecting", "connecting"], seen
        text = logs.text()
        assert "mqtt: 127.0.0.1:1: " not in text, text        # no connection was tried
        assert text.count("TLS waits for the clock (clock failed)") == 1, text
        seen, logs = _states_while_running(dev, [(100, clock_set), (500, _nothing)])
        assert "mqtt: 127.0.0.1:1: " in logs.text(), logs.text()     # tried once the clock is set
    finally:
        rmtree(dev.flash_dir)


def test_plain_mqtt_does_not_wait_for_the_clock():
    dev = Device(network="lan", settings={"mqtt": {"host": "127.0.0.1", "port": 1, "tls": False}})
    dev.clock = WallClock(None)
    try:
        seen, logs = _states_while_running(dev, [(500, _nothing)])
        assert "mqtt: 127.0.0.1:1: " in logs.text() and "TLS waits" not in logs.text(), logs.text()
    finally:
        rmtree(dev.flash_dir)


def test_a_valid_config_set_is_stored_and_echoed_retained():
    dev = Device()
    try:
        up = _config_set(dev, b'{"interval_s": 2, "ha_discovery": true}')
        assert dev.settings.current["interval_s"] == 2
        assert json.loads(read_raw(dev.flash_dir + "settings.json"))["interval_s"] == 2
        [(topic, payload, retain, qos)] = up.outbox
        assert (topic, retain, qos) == (BASE + "/config", True, 1)
        assert json.loads(payload)["interval_s"] == 2 and "password" not in json.loads(payload)["mqtt"]
        assert up.republish and not up.reconnect and up.wake.is_set()     # discovery switched on
        up = _config_set(dev, b'{"mqtt": {"port": 8883}}')
        assert up.reconnect                                  # a new broker setting: a new session
    finally:
        rmtree(dev.flash_dir)


def test_an_invalid_config_set_changes_nothing_and_is_answered_on_config_error():
    dev = Device()
    try:
        for msg, field in ((b"{not json", ""), (b"[1, 2]", ""), (b'{"x": "' + b"a" * 3000 + b'"}', ""),
                           (b'{"interval_s": 5, "sensor": "huge"}', "sensor"),
                           (b'{"mqtt": {"port": 70000}}', "mqtt.port")):
            up = _config_set(dev, msg)
            [(topic, payload, retain, qos)] = up.outbox
            assert (topic, retain, qos) == (BASE + "/config/error", False, 1)
            body = json.loads(payload)
            assert body["field"] == field and body["error"], (msg[:20], body)
            assert dev.settings.current["interval_s"] == 1 and not up.reconnect and not up.republish
        assert dev.settings.source == "defaults"            # nothing was stored
    finally:
        rmtree(dev.flash_dir)


def test_home_assistant_coming_online_asks_for_discovery_only_when_it_is_on():
    dev = Device()
    try:
        up = uplink.Uplink(dev)
        up.incoming("homeassistant/status", b"online")
        assert not up.republish
        dev.settings.update({"ha_discovery": True})
        up.incoming("homeassistant/status", b"offline")
        assert not up.republish
        up.incoming("homeassistant/status", b"online")
        assert up.republish and up.wake.is_set()
    finally:
        rmtree(dev.flash_dir)


def test_back_off_doubles_from_one_second_to_at_most_sixty_with_jitter():
    for failures, base in ((0, 1), (1, 2), (2, 4), (5, 32), (6, 60), (7, 60), (100, 60)):
        seen = [uplink.backoff_s(failures) for _ in range(50)]
        assert all(0.8 * base <= d <= base for d in seen), (failures, min(seen), max(seen))
        assert max(seen) - min(seen) > 0.02 * base          # jitter: a fleet does not retry in step


# --- whole sessions over a scripted connection ------------------------------------------------------------

class ScriptedConnection(mqtt.Connection):
    """mqtt.Connection with the network replaced (its packet ids, in-flight set, resend() and forget()
    are the real ones): every connect() succeeds and opens a new list in `sessions` of the messages
    written on it, (topic, message, retain, dup). `acks`: QoS 1 is acknowledged at once; `broken`: the
    link has died (check() says so); `fail_dup`: writing a message sent again fails."""

    def __init__(self):
        super().__init__(SERIAL)
        self.sessions = []
        self.up = False
        self.acks = True
        self.broken = False
        self.fail_dup = False

    @property
    def connected(self):
        return self.up

    async def connect(self, addr, port, user=None, password=None, will=None, ssl=None,
                      server_hostname=None):
        self.up = True
        self.broken = False
        self.sessions.append([])

    async def check(self):
        if self.broken:
            raise OSError("link lost")

    def close(self):
        self.up = False

    async def _send(self, *pieces):
        if not self.up:
            raise OSError("not connected")
        packet = bytearray()
        for piece in pieces:
            packet += piece
        first = packet[0]
        if first & 0xF0 != mqtt.PUBLISH:
            return
        at = 1
        while packet[at] & 0x80:          # the remaining length's bytes
            at += 1
        topic, msg, qos, pid = mqtt.parse_publish(first, packet[at + 1:])
        dup = bool(first & 0x08)
        if dup and self.fail_dup:
            raise OSError("link lost while sending again")
        self.sessions[-1].append((topic, msg, bool(first & 1), dup))
        if qos and self.acks:
            self.inflight.pop(pid, None)

    def topics(self, n):
        return [m[0] for m in self.sessions[n]]


def _session_device(**changes):
    settings = {"mqtt": {"host": "127.0.0.1"}}
    settings.update(changes)
    return Device(settings=settings)


async def _until(cond, ms=3000):
    for _ in range(ms // 10):
        if cond():
            return True
        await asyncio.sleep_ms(10)
    return cond()


def _sessions(dev, conn, script):
    """Run the uplink (with `conn`) and `await script(up)`; the log lines."""
    up = uplink.Uplink(dev)
    up.conn = conn

    async def main():
        task = asyncio.create_task(up.run())
        try:
            await script(up)
        finally:
            task.cancel()
            await asyncio.sleep_ms(10)

    with LogCapture() as logs:
        asyncio.run(main())
    return logs


def test_an_alarm_the_link_did_not_deliver_is_not_sent_after_the_reconnect():
    dev = _session_device(supply_max_a=16)
    conn = ScriptedConnection()
    conn.acks = False                    # nothing acknowledged: every QoS 1 message stays in flight

    async def script(up):
        assert await _until(lambda: conn.sessions and BASE + "/config" in conn.topics(0))
        up.currents([20.0, 0.0, 0.0])    # L1 over the limit: the alarm goes out, unacknowledged
        assert await _until(lambda: BASE + "/alarm" in conn.topics(0))
        conn.broken = True               # the link dies ...
        up.currents([0.0, 20.0, 0.0])    # ... and L2's alarm is queued before the uplink notices
        assert await _until(lambda: len(conn.sessions) == 2 and BASE + "/config" in conn.topics(1))
        await asyncio.sleep_ms(300)      # the second session's flushes are done

    try:
        logs = _sessions(dev, conn, script)
        first, again = conn.sessions
        assert [json.loads(m)["l"] for t, m, _, _ in first if t == BASE + "/alarm"] == [1], first
        assert BASE + "/alarm" not in conn.topics(1), again         # neither L1's nor L2's, late
        # ... while the other unacknowledged QoS 1 messages are sent again, marked DUP, before `online`.
        resent = [(t, m) for t, m, _, dup in again if dup]
        assert resent == [(t, m) for t, m, _, _ in first if t != BASE + "/alarm"], (first, again)
        assert again[len(resent)][:2] == (BASE + "/status", b"online"), again
        assert all(not t.endswith(b"/alarm") for t, _, _ in conn.inflight.values())
        assert "L2 at 20.0 A is over" in logs.text()      # the alarm was raised, only not sent late
    finally:
        rmtree(dev.flash_dir)


def test_a_session_that_got_its_connack_counts_as_up_even_when_the_re_send_fails():
    dev = _session_device()
    conn = ScriptedConnection()
    conn.inflight[7] = (BASE.encode() + b"/config", b"{}", True)      # left by an earlier connection
    conn.pid = 7
    conn.fail_dup = True

    async def script(up):
        assert await _until(lambda: conn.sessions and not conn.up)
        await asyncio.sleep_ms(100)
        assert up.failures == 0          # the back-off starts anew: the next try within a second

    try:
        logs = _sessions(dev, conn, script)
        assert len(conn.sessions) == 1 and conn.sessions[0] == [], conn.sessions
        text = logs.text()
        assert "link lost while sending again" in text and "disconnected" in text, text
        delay = float(text.split("next try in ")[1].split(" s")[0])
        assert delay <= 1.0, text
    finally:
        rmtree(dev.flash_dir)


def test_a_new_prefix_is_echoed_on_the_old_session_before_offline_then_used():
    dev = _session_device()
    conn = ScriptedConnection()
    new_base = "site7/" + SERIAL

    async def script(up):
        assert await _until(lambda: conn.sessions and BASE + "/config" in conn.topics(0))
        up.incoming(BASE + "/config/set", b'{"mqtt": {"prefix": "site7"}}')
        assert await _until(lambda: len(conn.sessions) == 2 and new_base + "/config" in conn.topics(1))
        await asyncio.sleep_ms(300)

    try:
        _sessions(dev, conn, script)
        first, second = conn.sessions
        echo, offline = first[-2:]
        assert echo[:1] == (BASE + "/config",) and echo[2], first        # retained, on the old topic ...
        assert json.loads(echo[1])["mqtt"]["prefix"] == "site7"          # ... saying the new prefix
        assert offline[:3] == (BASE + "/status", b"offline", True), first
        assert [t for t, _, _, _ in second if t.startswith(BASE)] == [], second     # nothing on the old one
        assert second[0][:2] == (new_base + "/status", b"online"), second
    finally:
        rmtree(dev.flash_dir)
