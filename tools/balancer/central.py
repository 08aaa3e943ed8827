"""The balancer's OCPP 1.6J central system: a websockets server, one ocpp.v16 ChargePoint per connection.

Charge points connect to ws://host:port/<id>. The central system keeps, per charger id, whether it is
connected, its transaction and the currents it last reported (MeterValues, Current.Import per phase of
the charger's own L1-L3), and sends limits with `set_limit` as a SetChargingProfile (TxDefaultProfile,
unit A, a fixed stack level and profile id, so that each new limit replaces the previous one). Every
request is bounded: a charger that does not answer within response_timeout_s is reported (its
`problem`, the log, the False result) and never holds up the others (`set_limits` sends concurrently).
A charger that connects again gets its last accepted limit re-sent after its boot.
"""
import asyncio
import datetime
import itertools
import logging
import time
from dataclasses import dataclass, field

import websockets
from ocpp.exceptions import OCPPError
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint as OcppChargePoint
from ocpp.v16 import call, call_result, datatypes
from ocpp.v16.enums import (
    Action,
    AuthorizationStatus,
    ChargingProfileKindType,
    ChargingProfilePurposeType,
    ChargingProfileStatus,
    ChargingRateUnitType,
    Measurand,
    RegistrationStatus,
)
from websockets.asyncio.server import serve

log = logging.getLogger("balancer.central")

SUBPROTOCOL = "ocpp1.6"
PHASE_INDEX = {"L1": 0, "L2": 1, "L3": 2, "L1-N": 0, "L2-N": 1, "L3-N": 2}


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class ChargerState:
    """What the central system knows about one charge point (kept across its reconnections)."""
    id: str
    connected: bool = False
    booted: bool = False
    status: str = None              # the connector's last StatusNotification
    transaction_id: int = None
    currents_a: list = field(default_factory=lambda: [0.0, 0.0, 0.0])     # its own L1-L3, last report
    offered_a: float = None
    reported_at: float = None       # monotonic time of the last MeterValues
    heartbeat_at: float = None      # monotonic time of the last Heartbeat
    limit: tuple = None             # (amps, phases) last accepted
    problem: str = None             # the last failure talking to it, None after a success


class _Link(OcppChargePoint):
    """One charge point's connection: its requests update the central system's ChargerState."""

    def __init__(self, central, charger_id, connection):
        super().__init__(charger_id, connection, response_timeout=central.response_timeout_s)
        self.ws = connection
        self.central = central
        self.state = central.state(charger_id)

    @on(Action.boot_notification)
    def on_boot_notification(self, charge_point_vendor, charge_point_model, **kwargs):
        self.state.booted = True
        return call_result.BootNotification(current_time=utc_now(), interval=self.central.heartbeat_s,
                                            status=RegistrationStatus.accepted)

    @after(Action.boot_notification)
    async def after_boot_notification(self, **kwargs):
        self.central.event(self.id, "boot")
        if self.state.limit is not None:
            amps, phases = self.state.limit
            await self.central.set_limit(self.id, amps, phases)

    @on(Action.heartbeat)
    def on_heartbeat(self, **kwargs):
        self.state.heartbeat_at = time.monotonic()
        return call_result.Heartbeat(current_time=utc_now())

    @on(Action.authorize)
    def on_authorize(self, id_tag, **kwargs):
        return call_result.Authorize(id_tag_info=datatypes.IdTagInfo(status=AuthorizationStatus.accepted))

    @on(Action.status_notification)
    def on_status_notification(self, connector_id, status, **kwargs):
        if connector_id != 0:
            self.state.status = status
            self.central.event(self.id, "status")
        return call_result.StatusNotification()

    @on(Action.start_transaction)
    def on_start_transaction(self, connector_id, id_tag, **kwargs):
        self.state.transaction_id = next(self.central.transaction_ids)
        self.central.event(self.id, "start")
        return call_result.StartTransaction(transaction_id=self.state.transaction_id,
                                            id_tag_info=datatypes.IdTagInfo(status=AuthorizationStatus.accepted))

    @on(Action.stop_transaction)
    def on_stop_transaction(self, transaction_id, **kwargs):
        if self.state.transaction_id == transaction_id:
            self.state.transaction_id = None
            self.state.currents_a = [0.0, 0.0, 0.0]
        self.central.event(self.id, "stop")
        return call_result.StopTransaction()

    @on(Action.meter_values)
    def on_meter_values(self, connector_id, meter_value, transaction_id=None, **kwargs):
        if self.state.transaction_id is None and transaction_id is not None:
            self.state.transaction_id = transaction_id      # begun before we (re)started: adopt it
        currents = None
        for reading in meter_value:
            for sample in reading["sampled_value"]:
                measurand = sample.get("measurand", Measurand.energy_active_import_register)
                if measurand == Measurand.current_import and sample.get("phase") in PHASE_INDEX:
                    currents = currents or [0.0, 0.0, 0.0]
                    currents[PHASE_INDEX[sample["phase"]]] = float(sample["value"])
                elif measurand == Measurand.current_offered:
                    self.state.offered_a = float(sample["value"])
        if currents is not None:
            self.state.currents_a = currents
            self.state.reported_at = time.monotonic()
            self.central.event(self.id, "meter")
        return call_result.MeterValues()


class CentralSystem:
    """`await start()` listens (port 0: a free one, see `.port`); `await stop()` closes every connection.

    `on_event(charger_id, kind)`, when given, is called on connected, boot, status, start, stop, meter,
    disconnected and problem."""

    def __init__(self, host="127.0.0.1", port=0, *, response_timeout_s=5.0, heartbeat_s=30,
                 stack_level=1, profile_id=1, ping_interval_s=10.0, on_event=None):
        self.host = host
        self.port = port
        self.response_timeout_s = response_timeout_s
        self.heartbeat_s = heartbeat_s
        self.stack_level = stack_level
        self.profile_id = profile_id
        self.ping_interval_s = ping_interval_s
        self.on_event = on_event
        self.chargers = {}              # id -> ChargerState
        self.transaction_ids = itertools.count(1)
        self._links = {}                # id -> _Link of its open connection
        self._server = None

    @property
    def url(self):
        return "ws://%s:%d" % (self.host, self.port)

    def state(self, charger_id):
        if charger_id not in self.chargers:
            self.chargers[charger_id] = ChargerState(charger_id)
        return self.chargers[charger_id]

    def event(self, charger_id, kind):
        if self.on_event:
            self.on_event(charger_id, kind)

    async def start(self):
        self._server = await serve(self._serve, self.host, self.port, subprotocols=[SUBPROTOCOL],
                                   ping_interval=self.ping_interval_s, ping_timeout=self.ping_interval_s)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("OCPP central system on %s", self.url)

    async def stop(self):
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, ws):
        charger_id = ws.request.path.rstrip("/").rsplit("/", 1)[-1]
        if ws.subprotocol != SUBPROTOCOL or not charger_id:
            await ws.close(1002, "OCPP 1.6J (subprotocol ocpp1.6) at ws://host:port/<charge point id>")
            return
        old = self._links.get(charger_id)
        if old is not None:             # the charger reconnected before we saw the old socket go
            await old.ws.close(1000, "replaced by a new connection")
        link = _Link(self, charger_id, ws)
        self._links[charger_id] = link
        state = self.state(charger_id)
        state.connected, state.booted = True, False
        self.event(charger_id, "connected")
        try:
            await link.start()
        except websockets.ConnectionClosed:
            pass
        finally:
            if self._links.get(charger_id) is link:
                del self._links[charger_id]
                state.connected = state.booted = False
                self.event(charger_id, "disconnected")

    async def set_limit(self, charger_id, amps, phases=None):
        """Send the charger a TxDefaultProfile of `amps` (0.1 A steps) on `phases` (1, 3 or None: as it
        is); True when it answered Accepted, False otherwise (the reason in its state's `problem`)."""
        state = self.state(charger_id)
        link = self._links.get(charger_id)
        if link is None or not state.booted:
            return self._failed(state, "not connected")
        amps = round(max(0.0, float(amps)), 1)
        period = datatypes.ChargingSchedulePeriod(start_period=0, limit=amps, number_phases=phases)
        profile = datatypes.ChargingProfile(
            charging_profile_id=self.profile_id, stack_level=self.stack_level,
            charging_profile_purpose=ChargingProfilePurposeType.tx_default_profile,
            charging_profile_kind=ChargingProfileKindType.absolute,
            charging_schedule=datatypes.ChargingSchedule(charging_rate_unit=ChargingRateUnitType.amps,
                                                         charging_schedule_period=[period],
                                                         start_schedule=utc_now()))
        try:
            # ocpp's own response timeout does not cover the wait for the connection's call lock.
            async with asyncio.timeout(self.response_timeout_s):
                res = await link.call(call.SetChargingProfile(connector_id=0, cs_charging_profiles=profile),
                                      suppress=False)
        except TimeoutError:
            return self._failed(state, "no answer to SetChargingProfile in %s s" % self.response_timeout_s)
        except (OCPPError, websockets.ConnectionClosed) as e:
            return self._failed(state, "SetChargingProfile failed: %r" % e)
        if res.status != ChargingProfileStatus.accepted:
            return self._failed(state, "SetChargingProfile %s" % res.status)
        state.limit = (amps, phases)
        state.problem = None
        return True

    async def set_limits(self, limits):
        """{charger_id: (amps, phases)} sent concurrently -> {charger_id: accepted}."""
        ids = list(limits)
        results = await asyncio.gather(*(self.set_limit(i, *limits[i]) for i in ids))
        return dict(zip(ids, results, strict=True))

    def _failed(self, state, problem):
        state.problem = problem
        log.warning("%s: %s", state.id, problem)
        self.event(state.id, "problem")
        return False
