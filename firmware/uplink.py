# The MQTT uplink (contract §3): readings, status, info, settings and alarms to the cloud, settings from it.
# One asyncio task that keeps the session (connect, back-off, reconnect) and knows the topics; the
# protocol is mqtt.py's, the alarm's decision alarm.py's. Losing the broker or the network only costs
# readings messages, never metering, and it reconnects by itself with a bounded back-off.
import asyncio
import json
import random
import sys
import time

import log
import mqtt
import readings_json
import resolver
import settings as settings_schema
import store
from alarm import SupplyAlarm
from version import VERSION

KEEPALIVE_S = 60           # told to the broker, which drops a client silent for 1.5 times this
BACKOFF_MAX_S = 60
MAX_OUTBOX = 16            # alarms and settings answers waiting to go out; older ones are dropped
HA_STATUS_TOPIC = "homeassistant/status"    # Home Assistant says "online" here when it (re)starts
ALARM = "/alarm"           # <base>/alarm: never sent late (contract §3.4)
UPDATE = "/update"         # <base>/update: the update's state (contract §3.8), retained


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
        self.conn = None            # mqtt.Connection, kept across sessions (it re-sends unacknowledged QoS 1)
        self.wake = asyncio.Event()
        self.outbox = []            # (topic, payload, retain, qos): alarms, config answers
        self.message = None         # the buffer readings and discovery are written into (buffer()), kept
        self.republish = False      # info, config and discovery again (settings changed, HA restarted)
        self.info_due = False       # info alone again (the clock's state changed)
        self.reconnect = False      # the broker settings changed: end this session
        self.sent_seq = None
        self.alarm = SupplyAlarm()
        self.failures = 0
        self.session_up = False     # the latest session got as far as CONNACK
        self.clock_wait_logged = False
        # Called once, after the next readings message published (so after a CONNACK): app.py's firmware
        # on trial has come online and confirms itself. Set again by whoever wants the next one.
        self.on_online = None

    def clock_changed(self):
        """The clock was set (or failed): `info` says so again."""
        self.info_due = True
        self.wake.set()

    def waits_for_clock(self, tls):
        """True while TLS cannot start: without the time no certificate can be checked (an ESP32 boots
        at 2000-01-01, before every certificate's start), so trying would only fail as `tls`."""
        if not tls or self.dev.clock.unix_time() is not None:
            self.clock_wait_logged = False
            return False
        if not self.clock_wait_logged:
            self.clock_wait_logged = True
            log.info("mqtt", "TLS waits for the clock (clock %s): certificates cannot be checked without "
                     "the time" % self.dev.clock.state)
        return True

    @property
    def state(self):
        """disabled | connecting | connected (contract §2 /api/status). disabled: no broker configured, or
        no network to reach it with."""
        if self.conn is not None and self.conn.connected:
            return "connected"
        if self.target() is None or self.dev.serial is None or self.dev.net.network is None:
            return "disabled"
        return "connecting"

    def target(self):
        return _target(self.dev.settings.current, self.dev.hal.broker_override())

    # -- topics ------------------------------------------------------------------------------
    def base(self):
        return "%s/%s" % (self.dev.settings.current["mqtt"]["prefix"], self.dev.serial)

    # -- called by the metering task -----------------------------------------------------------
    def currents(self, amps):
        """RMS current per phase of the latest burst (every ~0.27 s), or None while no supply limit is
        set: an alarm goes out at once, not at the next readings window (contract §3 `alarm`)."""
        if amps is None:
            self.alarm.rearm()
            return
        limit = self.dev.settings.current["supply_max_a"]
        now = time.ticks_ms()
        for k in range(len(amps)):
            if self.alarm.due(k, amps[k], limit, now):
                log.warn("alarm", "L%d at %.1f A is over the supply limit of %s A" % (k + 1, amps[k], limit))
                if self.conn is not None and self.conn.connected:   # a stale alarm would mislead
                    self.queue(self.base() + ALARM, '{"l": %d, "current_a": %s, "limit_a": %s}' % (
                        k + 1, readings_json.number(amps[k], 2), json.dumps(limit)), False, 1)

    def update_report(self, report):
        """The update's new state (update.py) on <base>/update, retained. Every state goes out; of the
        `downloading` progress only the latest one still waiting (a slow link must not queue them up)."""
        topic = self.base() + UPDATE
        if report["state"] == "downloading":
            self.outbox = [m for m in self.outbox if m[0] != topic or '"downloading"' not in m[1]]
        self.queue(topic, json.dumps(report), True, 1)

    def queue(self, topic, payload, retain, qos):
        if len(self.outbox) >= MAX_OUTBOX:
            self.outbox.pop(0)
        self.outbox.append((topic, payload, retain, qos))
        self.wake.set()

    # -- the task ------------------------------------------------------------------------------
    async def run(self):
        while True:
            target = self.target()
            if self.state == "disabled" or self.waits_for_clock(target[2]):
                await asyncio.sleep_ms(500)   # waits for a broker, the network, the clock: no back-off
                continue
            self.session_up = False
            try:
                await self.session(*target)
            except Exception as e:     # every failure ends in a retry, never in a dead task
                log.warn("mqtt", "%s:%d: %s" % (target[0], target[1], _reason(e)))
            up = self.session_up
            self.close()
            if self.reconnect:
                self.reconnect = False
                self.failures = 0
                continue
            # A session that got as far as CONNACK starts the back-off anew: after a broker restart
            # the first try comes within about a second.
            self.failures = 0 if up else self.failures + 1
            delay = backoff_s(self.failures)
            log.info("mqtt", "next try in %.1f s" % delay)
            await self.sleep_unless_changed(delay, target)

    async def sleep_unless_changed(self, delay_s, target):
        """Wait out the back-off; a new broker setting cuts it short."""
        end = time.ticks_add(time.ticks_ms(), int(delay_s * 1000))
        while time.ticks_diff(end, time.ticks_ms()) > 0:
            await asyncio.sleep_ms(200)
            if self.target() != target:
                return

    async def session(self, host, port, tls):
        """One connection, from connect to its end (an exception, or a change of broker settings)."""
        dev = self.dev
        link = dev.settings.current["mqtt"]        # a change of these needs a new connection
        base = self.base()
        ctx = mqtt.tls_context(store.join(dev.flash_dir, link["ca_file"])) if tls else None
        addr = await resolver.resolve(host, dev.hal.dns_server(), dev.hal.system_resolver)
        if self.conn is None:
            self.conn = mqtt.Connection(dev.serial, self.incoming, KEEPALIVE_S)
        conn = self.conn
        try:
            await conn.connect(addr, port, link["username"], link["password"],
                               will=(base + "/status", b"offline", True, 1), ssl=ctx, server_hostname=host)
        except BaseException:
            resolver.forget(host)     # the broker may have moved: the next try asks the DNS again
            raise
        log.info("mqtt", "connected to %s:%d%s as %s" % (host, port, " (TLS)" if tls else "", dev.serial))
        self.session_up = True        # from here on a failure does not grow the back-off
        await conn.resend()
        await conn.subscribe(base + "/config/set", 1)
        await conn.subscribe(base + UPDATE + "/set", 1)
        await conn.subscribe(HA_STATUS_TOPIC, 1)    # always: discovery may be switched on later
        await conn.publish(base + "/status", b"online", True, 1)
        await self.publish_state(removed=False)
        await conn.publish(base + UPDATE, json.dumps(dev.updater.report), True, 1)     # after a connect only
        while True:
            await conn.check()
            if dev.net.network is None:
                raise OSError("network lost")
            if self.reconnect or dev.settings.current["mqtt"] != link:
                # Orderly end: first the answers (the `config` echo of this very change goes where the
                # change came from), then `offline` (the last will is not sent on a clean disconnect).
                self.reconnect = True
                await self.send_outbox()
                await conn.publish(base + "/status", b"offline", True, 1)
                await conn.disconnect()
                return
            await self.flush()
            if not self.wake.is_set():
                try:
                    await asyncio.wait_for(self.wake.wait(), 1)
                except asyncio.TimeoutError:
                    pass
            self.wake.clear()

    async def flush(self):
        """Send what is due: alarms and answers, info and discovery again, new readings."""
        conn = self.conn
        await self.send_outbox()
        if self.republish:
            self.republish = False
            await self.publish_state(removed=True)
        if self.info_due:
            self.info_due = False
            await conn.publish(self.base() + "/info", json.dumps(self.info()), True, 1)
        r = self.dev.readings
        if r is not None and r["seq"] != self.sent_seq:
            self.sent_seq = r["seq"]
            # QoS 0: sent at once, so the buffer is free again for the next window's message.
            await conn.publish(self.base() + "/readings", readings_json.write(r, self.buffer()), False, 0)
            if self.on_online is not None:
                hook, self.on_online = self.on_online, None
                hook()

    def buffer(self):
        """The kept message buffer (readings_json.Message), made at first use: readings and discovery
        are written into it, one message at a time, each sent before the next is written."""
        if self.message is None:
            self.message = readings_json.Message()
        return self.message

    async def send_outbox(self):
        """Alarms and answers, in the order they were queued, to the topics they were queued for."""
        while self.outbox:
            topic, payload, retain, qos = self.outbox.pop(0)
            await self.conn.publish(topic, payload, retain, qos)

    async def publish_state(self, removed):
        """info, config and (when on) the Home Assistant discovery; `removed`: also clear entities that
        no longer exist (after a change of phases, or discovery switched off)."""
        dev = self.dev
        conn = self.conn
        s = dev.settings.current
        base = self.base()
        self.info_due = False
        await conn.publish(base + "/info", json.dumps(self.info()), True, 1)
        await conn.publish(base + "/config", json.dumps(settings_schema.public_view(s)), True, 1)
        if not (s["ha_discovery"] or removed):
            return
        import ha_discovery  # only where it is used: the module costs heap while loaded

        if s["ha_discovery"]:
            # Not kept in flight (keep=False): every session publishes them anew after its CONNACK, so a
            # reconnect loses none, and each payload may be a view of the kept buffer, which the next
            # entity overwrites. The removals (an empty message) are kept: nothing sends them again.
            for topic, payload in ha_discovery.entities(dev.serial, base, s["phases"], VERSION,
                                                        dev.board.NAME, self.buffer()):
                await conn.publish(topic, payload, True, 1, keep=False)
            if removed:
                for topic in ha_discovery.removals(dev.serial, s["phases"]):
                    await conn.publish(topic, b"", True, 1)
        elif removed:
            for topic in ha_discovery.removals(dev.serial, 0):
                await conn.publish(topic, b"", True, 1)
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
                "rated_a": settings_schema.RATED_A[s["sensor"]], "phases": s["phases"],
                "network": net["network"], "ip": net["ip"], "rssi_dbm": rssi, "clock": dev.clock.state}

    # -- incoming (the connection's callback, in its reader task) ------------------------------
    def incoming(self, topic, msg):
        if topic == self.base() + "/config/set":
            self.config_set(msg)
        elif topic == self.base() + UPDATE + "/set":
            error = self.dev.updater.command(msg)
            if error is not None:
                log.warn("update", "update/set refused: %s" % error["error"])
                self.queue(self.base() + UPDATE + "/error", json.dumps(error), False, 1)
        elif topic == HA_STATUS_TOPIC and msg == b"online" and self.dev.settings.current["ha_discovery"]:
            self.republish = True          # Home Assistant restarted and forgot the entities
            self.wake.set()

    def config_set(self, msg):
        """contract §3 config/set: valid changes applied, stored and echoed; anything else changes nothing
        and is answered on config/error."""
        base = self.base()
        dev = self.dev
        old = dev.settings.current
        try:
            new = dev.settings.update(settings_schema.parse_changes(msg))
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
    def goodbye(self):
        """Orderly shutdown from outside the event loop: `offline` and DISCONNECT written at once,
        never blocking (best effort: on a dead link the broker sends the last will instead)."""
        conn = self.conn
        if conn is None or not conn.connected:
            return
        try:
            conn.publish_now(self.base() + "/status", b"offline", True, 1)
            conn.disconnect_now()
        except Exception as e:
            log.warn("mqtt", "no orderly goodbye: %s" % _reason(e))
        self.close()

    def close(self):
        """The end of a session: its connection closed if still open, the alarms it did not deliver
        dropped (in the outbox or in flight: a stale alarm would mislead, contract §3.4), and said once."""
        if self.conn is not None:
            self.conn.close()
            self.conn.forget(ALARM)
        if self.outbox:
            self.outbox = [m for m in self.outbox if not m[0].endswith(ALARM)]
        if self.session_up:
            self.session_up = False
            log.info("mqtt", "disconnected")


def _reason(e):
    if isinstance(e, asyncio.TimeoutError):
        return "timed out"
    return "%s: %s" % (type(e).__name__, e)
