# The MQTT uplink (SPEC 3): readings, status, info, settings and alarms to the cloud, settings from it.
# One asyncio task that never blocks the event loop (mqtt.py); losing the broker or the network only
# costs readings messages, never metering, and it reconnects by itself with a bounded back-off.
import asyncio
import json
import random
import sys
import time

import log
import mqtt
import settings as settings_schema
import store
from version import VERSION

KEEPALIVE_S = 60           # told to the broker, which drops a client silent for 1.5 times this
PING_EVERY_MS = 10000      # our own PINGREQ when nothing came in for this long ...
PING_TIMEOUT_MS = 5000     # ... and no answer within this is a dead (half-open) link
BACKOFF_MAX_S = 60
MAX_CONFIG_SET = 2048      # bytes of a config/set message: more is refused unread
ALARM_REPEAT_MS = 10000    # while a phase stays over the limit, the alarm is repeated this often
ALARM_REARM = 0.97         # ... and it is raised anew only after dropping 3 % below it (no chatter)
MAX_OUTBOX = 16            # alarms and settings answers waiting to go out; older ones are dropped
RATED_A = {"home": 100, "public": 400}
HA_STATUS_TOPIC = "homeassistant/status"    # Home Assistant says "online" here when it (re)starts


def backoff_s(failures):
    """Seconds before try number failures+1: 1 s doubling to 60 s, less up to 20 % of jitter (so a
    fleet that lost one broker does not come back all at the same moment)."""
    base = min(BACKOFF_MAX_S, 1 << min(failures, 6))
    return base * (1 - random.getrandbits(8) / 1280)


def _target(settings, override):
    """(host, port, tls) of the broker, or None while no broker is set."""
    m = settings["mqtt"]
    if override:
        return override[0], override[1], m["tls"]
    if not m["host"]:
        return None
    return m["host"], m["port"], m["tls"]


class Uplink:
    def __init__(self, dev):
        self.dev = dev
        self.state = "disabled"
        self.conn = None
        self.wake = asyncio.Event()
        self.outbox = []            # (topic, payload bytes, retain, qos): alarms, config answers
        self.control = []           # raw packets the receiver wants sent (PUBACKs)
        self.inflight = {}          # pid -> (topic, payload, retain): QoS 1 not yet acknowledged
        self.republish = False      # info, config and discovery again (settings changed, HA restarted)
        self.reconnect = False      # the broker settings changed: end this session
        self.sent_seq = None
        self.over = [False, False, False]
        self.alarm_ms = [0, 0, 0]
        self.failures = 0
        self.last_rx = 0
        self.ping_sent = None
        self.rx_error = None        # why the receiver ended

    # -- topics ------------------------------------------------------------------------------
    def base(self):
        return "%s/%s" % (self.dev.settings.current["mqtt"]["prefix"], self.dev.serial)

    # -- called by the metering task -----------------------------------------------------------
    def currents(self, amps):
        """RMS current per phase of the latest burst (every ~0.27 s), or None while no supply limit is
        set: an alarm goes out at once, not at the next readings window (SPEC 3 `alarm`)."""
        if amps is None:
            for k in range(3):          # re-armed, in place: nothing allocated per burst
                self.over[k] = False
            return
        limit = self.dev.settings.current["supply_max_a"]
        now = time.ticks_ms()
        for k in range(len(amps)):
            if limit is None or amps[k] <= limit * ALARM_REARM:
                self.over[k] = False
            elif amps[k] > limit and (not self.over[k]
                                      or time.ticks_diff(now, self.alarm_ms[k]) >= ALARM_REPEAT_MS):
                self.over[k] = True
                self.alarm_ms[k] = now
                log.warn("alarm", "L%d at %.1f A is over the supply limit of %s A" % (k + 1, amps[k], limit))
                if self.conn is not None:     # a stale alarm after a reconnect would mislead
                    self.queue(self.base() + "/alarm", json.dumps(
                        {"l": k + 1, "current_a": round(amps[k], 2), "limit_a": limit}), False, 1)

    def queue(self, topic, payload, retain, qos):
        if len(self.outbox) >= MAX_OUTBOX:
            self.outbox.pop(0)
        self.outbox.append((topic, payload, retain, qos))
        self.wake.set()

    # -- the task ------------------------------------------------------------------------------
    async def run(self):
        while True:
            target = _target(self.dev.settings.current, self.dev.hal.broker_override())
            if target is None or self.dev.serial is None:
                self.state = "disabled"
            elif self.dev.net.network is None:
                self.state = "connecting"       # waits for the network, not for a back-off
            else:
                self.state = "connecting"
                try:
                    await self.session(*target)
                except Exception as e:     # every failure ends in a retry, never in a dead task
                    log.warn("mqtt", "%s:%d: %s" % (target[0], target[1], _reason(e)))
                # A session that got as far as CONNACK starts the back-off anew: after a broker
                # restart the first try comes within about a second.
                up = self.state == "connected"
                self.close()
                if self.reconnect:
                    self.reconnect = False
                    self.failures = 0
                    continue
                self.failures = 0 if up else self.failures + 1
                delay = backoff_s(self.failures)
                log.info("mqtt", "next try in %.1f s" % delay)
                await self.sleep_unless_changed(delay, target)
                continue
            await asyncio.sleep_ms(500)

    async def sleep_unless_changed(self, delay_s, target):
        """Wait out the back-off; a new broker setting cuts it short."""
        end = time.ticks_add(time.ticks_ms(), int(delay_s * 1000))
        while time.ticks_diff(end, time.ticks_ms()) > 0:
            await asyncio.sleep_ms(200)
            if _target(self.dev.settings.current, self.dev.hal.broker_override()) != target:
                return

    async def session(self, host, port, tls):
        """One connection, from connect to its end (an exception, or a change of broker settings)."""
        dev = self.dev
        s = dev.settings.current
        link = s["mqtt"]           # a change of these needs a new connection
        base = self.base()
        ctx = mqtt.tls_context(store.join(dev.flash_dir, s["mqtt"]["ca_file"])) if tls else None
        addr = await resolve(host, port, dev.hal.dns_server())
        try:
            self.conn = conn = await mqtt.connect(
                addr, port, dev.serial, KEEPALIVE_S, s["mqtt"]["username"], s["mqtt"]["password"],
                will=(base + "/status", b"offline", True, 1), ssl_ctx=ctx, server_hostname=host)
        except ValueError as e:       # MicroPython's TLS layer reports a failed verification so
            if not tls:
                raise
            why = str(e).strip() or "the broker's certificate is not trusted by " + s["mqtt"]["ca_file"]
            raise OSError("TLS handshake failed: " + why) from None
        log.info("mqtt", "connected to %s:%d%s as %s" % (host, port, " (TLS)" if tls else "", dev.serial))
        self.state = "connected"
        self.control = []
        self.last_rx = time.ticks_ms()
        self.ping_sent = None
        leftover = self.inflight           # QoS 1 left unacknowledged by the last session
        self.inflight = {}
        receiver = asyncio.create_task(self.receive(conn))
        try:
            await conn.send(mqtt.subscribe_packet(conn.next_pid(), base + "/config/set", 1))
            # Always: discovery may be switched on later in this session.
            await conn.send(mqtt.subscribe_packet(conn.next_pid(), HA_STATUS_TOPIC, 1))
            await self.publish(base + "/status", b"online", True, 1)
            await self.publish_state(removed=False)
            for topic, payload, retain in leftover.values():
                await self.publish(topic, payload, retain, 1)
            while True:
                if receiver.done():
                    raise self.rx_error or OSError("connection closed")
                if dev.net.network is None:
                    raise OSError("network lost")
                if self.reconnect or dev.settings.current["mqtt"] != link:
                    self.reconnect = True
                    await self.goodbye_async()
                    return
                await self.flush()
                await self.keepalive()
                if not self.wake.is_set():
                    try:
                        await asyncio.wait_for(self.wake.wait(), 1)
                    except asyncio.TimeoutError:
                        pass
                self.wake.clear()
        finally:
            receiver.cancel()

    async def flush(self):
        """Send what is due: the receiver's acknowledgements, alarms and answers, new readings."""
        conn = self.conn
        while self.control:
            await conn.send(self.control.pop(0))
        while self.outbox:
            topic, payload, retain, qos = self.outbox.pop(0)
            await self.publish(topic, payload, retain, qos)
        if self.republish:
            self.republish = False
            await self.publish_state(removed=True)
        r = self.dev.readings
        if r is not None and r["seq"] != self.sent_seq:
            self.sent_seq = r["seq"]
            await self.publish(self.base() + "/readings", json.dumps(r), False, 0)

    async def keepalive(self):
        now = time.ticks_ms()
        if self.ping_sent is not None:
            if time.ticks_diff(now, self.ping_sent) > PING_TIMEOUT_MS:
                raise OSError("no PINGRESP in %d ms: the link is dead" % PING_TIMEOUT_MS)
        elif time.ticks_diff(now, self.last_rx) >= PING_EVERY_MS:
            self.ping_sent = now
            await self.conn.send(mqtt.PINGREQ_PACKET)

    async def publish(self, topic, payload, retain, qos):
        if isinstance(payload, str):
            payload = payload.encode()
        conn = self.conn
        pid = 0
        if qos:
            pid = conn.next_pid()
            self.inflight[pid] = (topic, payload, retain)
            if len(self.inflight) > MAX_OUTBOX:     # a broker that never acknowledges: forget the oldest
                self.inflight.pop(min(self.inflight))
        await conn.send(mqtt.publish_packet(topic, payload, retain, qos, pid))

    async def publish_state(self, removed):
        """info, config and (when on) the Home Assistant discovery; `removed`: also clear entities that
        no longer exist (after a change of phases, or discovery switched off)."""
        dev = self.dev
        s = dev.settings.current
        base = self.base()
        await self.publish(base + "/info", json.dumps(self.info()), True, 1)
        await self.publish(base + "/config", json.dumps(settings_schema.public_view(s)), True, 1)
        if not (s["ha_discovery"] or removed):
            return
        import ha_discovery  # only where it is used: its strings cost heap

        if s["ha_discovery"]:
            for topic, payload in ha_discovery.entities(dev.serial, base, s["phases"], VERSION,
                                                        dev.board.NAME):
                await self.publish(topic, json.dumps(payload), True, 1)
            if removed:
                for topic in ha_discovery.removals(dev.serial, s["phases"]):
                    await self.publish(topic, b"", True, 1)
        elif removed:
            for topic in ha_discovery.removals(dev.serial, 0):
                await self.publish(topic, b"", True, 1)
        del sys.modules["ha_discovery"]       # until the next time: its tables cost heap

    def info(self):
        dev = self.dev
        s = dev.settings.current
        net = dev.net.status()
        rssi = None
        if net["network"] == "wifi":
            try:
                rssi = dev.hal.wifi.rssi()
            except Exception:       # not associated right now
                rssi = None
        return {"serial": dev.serial, "firmware": VERSION, "board": dev.board.NAME, "sensor": s["sensor"],
                "rated_a": RATED_A[s["sensor"]], "phases": s["phases"], "network": net["network"],
                "ip": net["ip"], "rssi_dbm": rssi}

    # -- incoming ------------------------------------------------------------------------------
    async def receive(self, conn):
        """Reads packets until the link fails; the sender finds why in rx_error."""
        self.rx_error = None
        try:
            await self._receive(conn)
        except Exception as e:
            self.rx_error = e

    async def _receive(self, conn):
        while True:
            first, body = await mqtt.read_packet(conn.reader)
            self.last_rx = time.ticks_ms()
            self.ping_sent = None            # any packet proves the link is alive
            kind = first & 0xF0
            if kind == mqtt.PUBLISH:
                topic, msg, qos, pid = mqtt.parse_publish(first, body)
                if qos == 1:
                    self.control.append(mqtt.puback_packet(pid))
                self.incoming(topic, msg)
                self.wake.set()
            elif kind == mqtt.PUBACK and len(body) >= 2:
                self.inflight.pop((body[0] << 8) | body[1], None)
            elif kind == mqtt.SUBACK and body and body[-1] == 0x80:
                log.warn("mqtt", "the broker refused a subscription")

    def incoming(self, topic, msg):
        base = self.base()
        if topic == base + "/config/set":
            self.config_set(msg)
        elif topic == HA_STATUS_TOPIC and msg == b"online" and self.dev.settings.current["ha_discovery"]:
            self.republish = True          # Home Assistant restarted and forgot the entities

    def config_set(self, msg):
        """SPEC 3 config/set: valid changes applied, stored and echoed; anything else changes nothing
        and is answered on config/error."""
        base = self.base()
        dev = self.dev
        old = dev.settings.current
        try:
            if len(msg) > MAX_CONFIG_SET:
                raise settings_schema.SettingsError("", "message too large (at most %d bytes)"
                                                    % MAX_CONFIG_SET)
            try:
                changes = json.loads(msg)
            except (ValueError, UnicodeError):
                raise settings_schema.SettingsError("", "is not valid JSON") from None
            if not isinstance(changes, dict):
                raise settings_schema.SettingsError("", "must be a JSON object of settings")
            new = dev.settings.update(changes)
        except settings_schema.SettingsError as e:
            log.warn("mqtt", "config/set refused: %s" % e)
            self.queue(base + "/config/error", json.dumps({"error": str(e), "field": e.field or ""}),
                       False, 1)
            return
        except OSError as e:           # the flash failed: nothing was applied
            log.error("mqtt", "config/set not stored: %s" % e)
            self.queue(base + "/config/error", json.dumps({"error": "not stored: %s" % e, "field": ""}),
                       False, 1)
            return
        log.info("mqtt", "settings changed from config/set")
        self.queue(base + "/config", json.dumps(settings_schema.public_view(new)), True, 1)
        if new["mqtt"] != old["mqtt"]:
            self.reconnect = True
        elif (new["phases"], new["sensor"], new["ha_discovery"]) != (old["phases"], old["sensor"],
                                                                      old["ha_discovery"]):
            self.republish = True

    # -- the end of a session ------------------------------------------------------------------
    async def goodbye_async(self):
        """Orderly end: `offline` (the last will is not sent on a clean disconnect), DISCONNECT."""
        await self.publish(self.base() + "/status", b"offline", True, 1)
        await self.conn.send(mqtt.DISCONNECT_PACKET)

    def goodbye(self):
        """The same from outside the event loop (orderly shutdown): best effort, never blocking."""
        conn = self.conn
        if conn is None:
            return
        try:
            sock = conn.writer.s
            sock.setblocking(False)
            sock.write(mqtt.publish_packet(self.base() + "/status", b"offline", True, 1, conn.next_pid()))
            sock.write(mqtt.DISCONNECT_PACKET)
        except Exception as e:       # a dead link: the broker sends the last will instead
            log.warn("mqtt", "no orderly goodbye: %s" % _reason(e))
        self.close()

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
            log.info("mqtt", "disconnected")
        if self.state == "connected":
            self.state = "connecting"


def _reason(e):
    if isinstance(e, asyncio.TimeoutError):
        return "timed out"
    return "%s: %s" % (type(e).__name__, e)


async def resolve(host, port, dns_server):
    """The broker's IPv4 address: a literal as is; a name through the network's DNS server without
    blocking (resolver.py); without one (the simulator on a host), by the system's resolver."""
    import resolver

    if resolver.is_ipv4(host) or dns_server is not None:
        return await resolver.resolve(host, dns_server)
    import socket

    ai = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
    if not ai:
        raise OSError("cannot resolve %s" % host)
    a = ai[0][-1]
    if isinstance(a, tuple):          # CPython, ESP32
        return a[0]
    return "%d.%d.%d.%d" % tuple(a[4:8])     # the unix port's raw sockaddr_in
