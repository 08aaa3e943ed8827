"""The balancer process (issue 13, point 1): meters in over MQTT, chargers' limits out over OCPP 1.6J.

`tools/balance --broker HOST:PORT --groups DIR_OR_FILES... --ocpp HOST:PORT [--share NAME]` (docs/balancer.md,
"Running it"). One process serves many groups, one per meter. Per group it keeps the meter's latest currents
(readings `phases[].current_a`, by `l`) and whether the meter is online (its retained `status`, `offline`
being its last will, or no readings for --meter-timeout-s), and runs algorithm.allocate on each readings
message, at once on an alarm, and every second while the meter is offline. The chargers connect to the
process's OCPP central system (central.py); a charger whose accepted limit differs from its allocation is
sent the new one (each charger's request bounded, one at a time per charger), and every --refresh-s all
connected chargers get theirs again. One log line per limit that changes and per meter that comes or goes.

Robust by construction: aiomqtt's session is re-established with a growing delay after any loss; a
message that does not parse, or an allocation that raises, is logged and skipped, never fatal.
"""
import argparse
import asyncio
import json
import logging
import math
import os
import signal
import sys
import time

import aiomqtt

from balancer import algorithm, central
from balancer import group as groups

log = logging.getLogger("balancer")

NOT_CHARGING = ("Available", "Finishing", "Faulted", "Unavailable", None)   # connector states without a car
ONE_PHASE_SEEN_A = 1.0          # a 3-phase charger drawing this on L1 alone carries a 1-phase car
SUBSCRIBE_BATCH = 100           # topic filters per SUBSCRIBE packet
BACKOFF_S = (0.5, 30.0)         # broker reconnect delay: first, most


def host_port(text, what):
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError("%s must be HOST:PORT, not %r" % (what, text))
    return host, int(port)


def group_files(paths):
    """The group files named: a folder stands for its *.json files (sorted)."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            out += sorted(os.path.join(p, n) for n in os.listdir(p) if n.endswith(".json"))
        else:
            out.append(p)
    return out


class Meter:
    """One group and what its meter last said; the allocation's memory (`state`) and last limits."""

    def __init__(self, group, now):
        self.group = group
        self.serial = group["meter"]
        self.measured = None        # [3 floats] of the latest readings, None before the first
        self.last_reading = None    # monotonic time it came
        self.online = None          # None: not known yet (the process just started)
        self.since = now            # the start counts as the last sign of life
        self.state = {}             # the algorithm's memory
        self.limits = {}            # charger id -> the last allocation, for chargers connected meanwhile
        self.bad = 0                # messages refused

    def readings(self, doc, now):
        phases = doc["phases"]
        measured = [0.0, 0.0, 0.0]
        for p in phases:
            amps = p["current_a"]
            if p["l"] not in (1, 2, 3) or not isinstance(amps, (int, float)) or not math.isfinite(amps):
                raise ValueError("phase %r: current_a %r" % (p.get("l"), amps))
            measured[p["l"] - 1] = float(amps)
        self.measured, self.last_reading = measured, now

    def alarm_measured(self, doc):
        """The currents to allocate with at an alarm: the last readings with the alarm's phase raised."""
        phase, amps = doc["l"], doc["current_a"]
        if phase not in (1, 2, 3) or not isinstance(amps, (int, float)) or not math.isfinite(amps):
            raise ValueError("alarm: l %r, current_a %r" % (phase, amps))
        measured = list(self.measured or (0.0, 0.0, 0.0))
        measured[phase - 1] = max(measured[phase - 1], float(amps))
        return measured


class Balancer:
    def __init__(self, meters, *, broker, ocpp, share=None, prefix="ampguard", meter_timeout_s=10.0,
                 refresh_s=60.0, tick_s=1.0, ocpp_timeout_s=5.0, heartbeat_s=30, client_id=None,
                 tuning=None):
        self.meters = meters                    # serial -> Meter
        self.broker = broker
        self.share = share
        self.prefix = prefix
        self.meter_timeout_s = meter_timeout_s
        self.refresh_s = refresh_s
        self.tick_s = tick_s
        self.client_id = client_id
        self.tuning = tuning
        self.central = central.CentralSystem(ocpp[0], ocpp[1], response_timeout_s=ocpp_timeout_s,
                                             heartbeat_s=heartbeat_s)
        self.charger_group = {c["id"]: m for m in meters.values() for c in m.group["chargers"]}
        self._sending = {}                      # charger id -> its SetChargingProfile task
        self._refreshed = time.monotonic()

    # -- MQTT

    def topic_filters(self):
        head = "$share/%s/" % self.share if self.share else ""
        return [head + "%s/%s/%s" % (self.prefix, serial, kind)
                for serial in self.meters for kind in ("readings", "status", "alarm")]

    async def mqtt(self):
        """Subscribe and take messages; after any loss of the broker, again after a growing delay."""
        delay = BACKOFF_S[0]
        filters = self.topic_filters()
        while True:
            try:
                async with aiomqtt.Client(self.broker[0], self.broker[1], identifier=self.client_id,
                                          keepalive=30, timeout=10) as client:
                    for i in range(0, len(filters), SUBSCRIBE_BATCH):
                        await client.subscribe([(f, 1) for f in filters[i:i + SUBSCRIBE_BATCH]])
                    log.info("broker %s:%d: subscribed to %d meter(s)%s", *self.broker, len(self.meters),
                             " (shared: %s)" % self.share if self.share else "")
                    delay = BACKOFF_S[0]
                    async for message in client.messages:
                        self.on_message(str(message.topic), message.payload)
            except aiomqtt.MqttError as e:
                log.warning("broker %s:%d: %s; again in %.1f s", *self.broker, e, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_S[1])

    def on_message(self, topic, payload):
        """One message; whatever is wrong with it is logged and it is dropped."""
        parts = topic.split("/")
        meter = self.meters.get(parts[-2]) if len(parts) >= 2 else None
        if meter is None:
            return
        kind = parts[-1]
        now = time.monotonic()
        try:
            if kind == "status":
                if bytes(payload) == b"offline":
                    self.meter_offline(meter, "its status says offline")
                return
            doc = json.loads(payload)
            if kind == "readings":
                meter.readings(doc, now)
                if not meter.online:
                    meter.online = True
                    log.info("%s: meter %s online", meter.group["group"], meter.serial)
                self.allocate(meter, meter.measured, now)
            elif kind == "alarm":
                measured = meter.alarm_measured(doc)
                log.warning("%s: alarm: L%d at %.2f A", meter.group["group"], doc["l"], doc["current_a"])
                self.allocate(meter, measured, now)
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            meter.bad += 1
            if meter.bad <= 3 or meter.bad % 100 == 0:
                log.warning("%s: %s message refused (%d so far): %s", meter.group["group"], kind,
                            meter.bad, e)

    def meter_offline(self, meter, why):
        if meter.online is not False:
            meter.online = False
            log.warning("%s: meter %s offline (%s): the group's offline maximum", meter.group["group"],
                        meter.serial, why)
            self.allocate(meter, None, time.monotonic())

    async def ticks(self):
        """Every tick: meters silent too long go offline, offline groups are allocated again (their
        chargers come and go), and from time to time every connected charger gets its limit again."""
        while True:
            await asyncio.sleep(self.tick_s)
            now = time.monotonic()
            refresh = now - self._refreshed >= self.refresh_s
            if refresh:
                self._refreshed = now
            for meter in self.meters.values():
                if meter.online is not False:
                    last = meter.last_reading if meter.last_reading is not None else meter.since
                    if now - last >= self.meter_timeout_s:
                        self.meter_offline(meter, "no readings for %.0f s" % (now - last))
                        continue
                if meter.online is False:
                    self.allocate(meter, None, now)
                if refresh:
                    self.send(meter, force=True)

    # -- allocation and OCPP

    def sessions(self, meter):
        """The algorithm's sessions from what the chargers told the central system."""
        out = {}
        for c in meter.group["chargers"]:
            st = self.central.chargers.get(c["id"])
            if st is None or not st.connected:
                continue
            draw = [0.0, 0.0, 0.0]
            wiring = groups.supply_phases(meter.group, c)
            for k, supply in enumerate(wiring):
                draw[supply - 1] += st.currents_a[k] or 0.0
            own = st.currents_a
            one = c["phases"] == 1 or (own[0] >= ONE_PHASE_SEEN_A and own[1] < 0.5 and own[2] < 0.5)
            out[c["id"]] = {"charging": st.transaction_id is not None and st.status not in NOT_CHARGING,
                            "draw_a": draw, "phases": 1 if one else 3}
        return out

    def previous(self, meter):
        """Each charger's limit now: our last allocation while it stayed connected, else what it was
        last given (re-sent by the central system at its boot) or, new to us, what it says it offers."""
        prev = {}
        for c in meter.group["chargers"]:
            cid = c["id"]
            st = self.central.chargers.get(cid)
            if st is None or not st.connected:
                meter.limits.pop(cid, None)
                continue
            if cid in meter.limits:
                prev[cid] = meter.limits[cid]
            elif st.limit is not None:
                prev[cid] = st.limit[0]
            elif st.transaction_id is None and st.status in NOT_CHARGING and st.status is not None:
                prev[cid] = 0                   # no car: held at 0 until one comes (then admitted)
            elif st.transaction_id is not None and st.offered_a is not None:
                prev[cid] = st.offered_a
            # else (new to us, a car may charge) nothing is sent before its MeterValues tell its offer
            # and transaction: a balancer's restart must not pause the cars
        return prev

    def allocate(self, meter, measured, now):
        try:
            previous = self.previous(meter)
            limits = algorithm.allocate(meter.group, measured, self.sessions(meter), previous, now,
                                        meter.state, self.tuning)
        except Exception:
            log.exception("%s: allocation failed; limits unchanged", meter.group["group"])
            return
        how = ("measured %s A" % "/".join("%.1f" % a for a in measured)) if measured else "meter offline"
        for cid, amps in limits.items():
            if cid not in previous:
                continue                        # not connected: nothing to send it
            if abs(amps - (previous.get(cid) or 0)) > 1e-6 or cid not in meter.limits:
                log.info("%s: %s %.1f -> %.1f A (%s)", meter.group["group"], cid, previous.get(cid) or 0,
                         amps, how)
            meter.limits[cid] = amps
        self.send(meter)

    def send(self, meter, force=False):
        """SetChargingProfile to each connected charger whose accepted limit is not its allocation (all
        of them with force), one request at a time per charger; a failed one is retried next time."""
        for cid, amps in meter.limits.items():
            st = self.central.chargers.get(cid)
            if st is None or not st.booted:
                continue
            task = self._sending.get(cid)
            if task is not None and not task.done():
                continue
            if force or st.limit is None or abs(st.limit[0] - round(amps, 1)) > 0.05:
                self._sending[cid] = asyncio.get_running_loop().create_task(self.central.set_limit(cid, amps))

    async def run(self):
        await self.central.start()
        try:
            await asyncio.gather(self.mqtt(), self.ticks())
        finally:
            for task in self._sending.values():
                task.cancel()
            await self.central.stop()


def parse_args(argv):
    p = argparse.ArgumentParser(prog="tools/balance", description="The reference load balancer: meters' "
                                "readings over MQTT in, chargers' current limits over OCPP 1.6J out.")
    p.add_argument("--broker", required=True, type=lambda t: host_port(t, "--broker"),
                   help="the MQTT broker, HOST:PORT")
    p.add_argument("--groups", required=True, nargs="+", metavar="DIR_OR_FILE",
                   help="group files (JSON), or folders of them (*.json)")
    p.add_argument("--ocpp", required=True, type=lambda t: host_port(t, "--ocpp"),
                   help="where the OCPP 1.6J central system listens, HOST:PORT; chargers connect to "
                   "ws://HOST:PORT/<charger id>")
    p.add_argument("--share", metavar="NAME", help="subscribe through the shared subscription "
                   "$share/NAME/...: the broker splits the messages among the processes that share NAME")
    p.add_argument("--prefix", default="ampguard", help="the meters' topic prefix (their mqtt.prefix)")
    p.add_argument("--meter-timeout-s", type=float, default=10.0,
                   help="no readings for this long: the meter is offline (default 10)")
    p.add_argument("--refresh-s", type=float, default=60.0,
                   help="every connected charger gets its limit again this often (default 60)")
    p.add_argument("--ocpp-timeout-s", type=float, default=5.0,
                   help="the longest wait for a charger's answer (default 5)")
    p.add_argument("--heartbeat-s", type=int, default=30,
                   help="the chargers' heartbeat interval (default 30)")
    p.add_argument("--client-id", help="the MQTT client id (default: one the broker picks)")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_level != "DEBUG":
        logging.getLogger("ocpp").setLevel(logging.WARNING)     # it logs every message at INFO
    try:
        by_meter = groups.load_all(group_files(args.groups))
    except groups.GroupError as e:
        print("tools/balance: %s" % e, file=sys.stderr)
        return 2
    if not by_meter:
        print("tools/balance: no group files in %s" % " ".join(args.groups), file=sys.stderr)
        return 2
    now = time.monotonic()
    b = Balancer({serial: Meter(g, now) for serial, g in by_meter.items()}, broker=args.broker,
                 ocpp=args.ocpp, share=args.share, prefix=args.prefix, meter_timeout_s=args.meter_timeout_s,
                 refresh_s=args.refresh_s, ocpp_timeout_s=args.ocpp_timeout_s, heartbeat_s=args.heartbeat_s,
                 client_id=args.client_id)
    log.info("%d group(s), %d charger(s); OCPP on ws://%s:%d", len(by_meter), len(b.charger_group),
             *args.ocpp)

    async def run():
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await b.run()
        except asyncio.CancelledError:
            log.info("stopped")

    try:
        asyncio.run(run())
    except OSError as e:                # e.g. the OCPP port is taken
        print("tools/balance: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
