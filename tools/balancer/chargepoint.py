"""A simulated OCPP 1.6J charge point with a car plugged in, for the balancer's closed loop.

The charge point talks to a central system at ws://host:port/<id> (the `ocpp` package's v16 ChargePoint
over `websockets`): BootNotification, Heartbeat, StatusNotification, Start/StopTransaction and MeterValues
(Current.Import per phase). It takes SetChargingProfile (TxDefaultProfile or TxProfile, unit A) and offers
the car that current; the car draws min(offer, its max) on 1 or 3 phases, following a change with a ramp
of a few seconds as a real on-board charger does. When it loses the central system for longer than its
offline timeout it falls back to its own offline limit on its offline phase (the installation guide's
per-charger "offline current" and "offline phase"), and stays there until the central system, once back,
sends it a limit again.

Phases: the charger's own L1-L3 are wired to the supply's phases as in the group config: a 1-phase
charger on supply phase `phase`; a 3-phase charger has its L1 on `phase`, then the rotation.
`supply_draw()` is what it draws per supply phase (what the meter upstream sees).
"""
import asyncio
import datetime
import logging
import random
import time

import websockets
from ocpp.exceptions import OCPPError
from ocpp.routing import on
from ocpp.v16 import ChargePoint as OcppChargePoint
from ocpp.v16 import call, call_result, datatypes
from ocpp.v16.enums import (
    Action,
    AuthorizationStatus,
    ChargePointErrorCode,
    ChargePointStatus,
    ChargingProfileKindType,
    ChargingProfilePurposeType,
    ChargingProfileStatus,
    ChargingRateUnitType,
    ClearChargingProfileStatus,
    Measurand,
    Phase,
    ReadingContext,
    Reason,
    RegistrationStatus,
    UnitOfMeasure,
)
from websockets.asyncio.client import connect

log = logging.getLogger("balancer.chargepoint")

SUBPROTOCOL = "ocpp1.6"
CONNECTOR = 1
VOLTAGE_V = 230.0                   # for the energy register only
IEC_MIN_A = 6.0                     # IEC 61851-1: an offer below 6 A means "do not charge"
CAR_PHASE_LABELS = (Phase.l1, Phase.l2, Phase.l3)


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def supply_phases(charger):
    """The supply phase (1-3) each of the charger's own phases L1.. is wired to, as the group config says."""
    first = charger.get("phase", 1)
    if charger.get("phases", 3) == 1:
        return [first]
    return [(first - 1 + k) % 3 + 1 for k in range(3)]


class Car:
    """An EV on the cable: draws min(offer, max_a) per phase on `phases` phases.

    A change of the offer is followed linearly at max_a/ramp_s amperes per second (ramp_s=0: at once).
    An offer below min_a (IEC 61851's 6 A) stops the charging. `clock` is the monotonic time source."""

    def __init__(self, max_a=16.0, phases=3, ramp_s=3.0, min_a=IEC_MIN_A, clock=time.monotonic):
        if phases not in (1, 3):
            raise ValueError("phases: 1 or 3")
        self.max_a = float(max_a)
        self.phases = phases
        self.ramp_s = float(ramp_s)
        self.min_a = float(min_a)
        self.clock = clock
        self._from_a = 0.0
        self._to_a = 0.0
        self._since = clock()

    def offer(self, amps):
        """The charger's offer (the pilot's PWM) changed: start ramping from where the car is now."""
        now = self.clock()
        self._from_a = self.current_a(now)
        self._since = now
        self._to_a = min(float(amps), self.max_a) if amps >= self.min_a else 0.0

    @property
    def target_a(self):
        return self._to_a

    def current_a(self, now=None):
        """What the car draws on each of its phases now."""
        if now is None:
            now = self.clock()
        delta = self._to_a - self._from_a
        if self.ramp_s <= 0:
            return self._to_a
        step = self.max_a / self.ramp_s * max(0.0, now - self._since)
        if abs(delta) <= step:
            return self._to_a
        return self._from_a + (step if delta > 0 else -step)


class _Link(OcppChargePoint):
    """The OCPP session of one websocket connection; requests from the central system go to the sim."""

    def __init__(self, sim, connection, response_timeout):
        super().__init__(sim.id, connection, response_timeout=response_timeout)
        self.sim = sim

    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, connector_id, cs_charging_profiles, **kwargs):
        status = self.sim.apply_profile(connector_id, cs_charging_profiles)
        return call_result.SetChargingProfile(status=status)

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(self, id=None, stack_level=None, **kwargs):
        found = self.sim.clear_profiles(id, stack_level)
        status = ClearChargingProfileStatus.accepted if found else ClearChargingProfileStatus.unknown
        return call_result.ClearChargingProfile(status=status)


class ChargePointSim:
    """One charge point (config: the group's charger entry: id, phases, phase, offline_a, offline_phase).

    `await run()` connects and keeps reconnecting (cancel the task to stop it); `plug_in(car)`/`unplug()`
    start and end a session. Readers: `supply_draw()`, `offer_a`, `online`, `fallback`, `transaction_id`.
    `on_change(sim)`, when given, is called whenever the offer or the car changes."""

    def __init__(self, url, charger, *, rating_a=32.0, offline_timeout_s=30.0, meter_interval_s=5.0,
                 heartbeat_s=None, response_timeout_s=10.0, backoff_s=(0.5, 30.0), ping_interval_s=10.0,
                 clock=time.monotonic, on_change=None):
        self.id = charger["id"]
        self.url = url.rstrip("/") + "/" + self.id
        self.charger = dict(charger)
        self.phases = charger.get("phases", 3)
        self.wiring = supply_phases(charger)
        self.offline_a = float(charger.get("offline_a", 0.0))
        self.offline_phase = charger.get("offline_phase", self.wiring[0])
        if self.offline_phase not in self.wiring:
            # A 1-phase charger cannot move to another conductor: its wiring wins.
            log.warning("%s: offline_phase %s is not wired to this 1-phase charger; it stays on phase %s",
                        self.id, self.offline_phase, self.wiring[0])
            self.offline_phase = self.wiring[0]
        self.rating_a = float(rating_a)
        self.offline_timeout_s = offline_timeout_s
        self.meter_interval_s = meter_interval_s
        self.heartbeat_s = heartbeat_s
        self.response_timeout_s = response_timeout_s
        self.backoff_s = backoff_s
        self.ping_interval_s = ping_interval_s
        self.clock = clock
        self.on_change = on_change
        self.car = None
        self.online = False             # connected and the boot accepted
        self.fallback = False           # on the offline limit and phase
        self.transaction_id = None
        self.energy_wh = 0.0
        self.status = ChargePointStatus.available
        self._profiles = {}             # stack level -> (limit A, phases or None)
        self._profile_ids = {}          # stack level -> chargingProfileId
        self._reached = False           # the last connection got as far as an accepted boot
        self._link = None
        self._fallback_timer = None
        self._energy_at = clock()
        self._reported_status = None

    # -- what the charger offers and the car draws

    @property
    def offer_a(self):
        """The current the charger offers the car now (what the pilot signal says)."""
        if self.fallback:
            return self.offline_a
        if self._profiles:
            return min(self._profiles[max(self._profiles)][0], self.rating_a)
        return self.rating_a

    def _charging_phases(self):
        """The charger's own phase indices (0-2) the car draws on."""
        if self.car is None:
            return []
        if self.fallback:
            return [self.wiring.index(self.offline_phase)]
        n = min(self.car.phases, self.phases)
        if self._profiles:
            limit_phases = self._profiles[max(self._profiles)][1]
            if limit_phases:
                n = min(n, limit_phases)
        return list(range(n))

    def phase_draw(self, now=None):
        """What the car draws on the charger's own L1, L2, L3."""
        out = [0.0, 0.0, 0.0]
        if self.car is not None:
            amps = self.car.current_a(now)
            for k in self._charging_phases():
                out[k] = amps
        return out

    def supply_draw(self, now=None):
        """What this charger draws on supply phases 1, 2, 3 (index 0-2)."""
        out = [0.0, 0.0, 0.0]
        for k, amps in enumerate(self.phase_draw(now)):
            if amps:
                out[self.wiring[k] - 1] += amps
        return out

    def _offer_changed(self):
        self._count_energy()
        if self.car is not None:
            self.car.offer(self.offer_a)
        self._update_status()
        if self.on_change:
            self.on_change(self)

    def _count_energy(self):
        now = self.clock()
        self.energy_wh += sum(self.phase_draw(now)) * VOLTAGE_V * (now - self._energy_at) / 3600.0
        self._energy_at = now

    # -- profiles from the central system

    def apply_profile(self, connector_id, profile):
        """SetChargingProfile.req: Accepted when this charger can apply it, else Rejected (reason logged)."""
        reason = self._profile_problem(connector_id, profile)
        if reason:
            log.warning("%s: SetChargingProfile rejected: %s", self.id, reason)
            return ChargingProfileStatus.rejected
        period = profile["charging_schedule"]["charging_schedule_period"][0]
        limit = float(period["limit"])      # ocpp parses this message's numbers as Decimal
        self._profiles[profile["stack_level"]] = (limit, period.get("number_phases"))
        self._profile_ids[profile["stack_level"]] = profile["charging_profile_id"]
        if self.fallback:
            log.info("%s: a limit from the central system again; leaving the offline fallback", self.id)
            self.fallback = False
        log.info("%s: limit %.1f A on %s phase(s) (stack level %s)", self.id, limit,
                 period.get("number_phases") or self.phases, profile["stack_level"])
        self._offer_changed()
        return ChargingProfileStatus.accepted

    def _profile_problem(self, connector_id, profile):
        purpose = profile["charging_profile_purpose"]
        schedule = profile["charging_schedule"]
        periods = schedule["charging_schedule_period"]
        if connector_id not in (0, CONNECTOR):
            return "no connector %s (this charge point has connector %d)" % (connector_id, CONNECTOR)
        if purpose not in (ChargingProfilePurposeType.tx_default_profile,
                           ChargingProfilePurposeType.tx_profile):
            return "purpose %s is not simulated (TxDefaultProfile, TxProfile)" % purpose
        if profile["charging_profile_kind"] == ChargingProfileKindType.recurring:
            return "recurring schedules are not simulated"
        if schedule["charging_rate_unit"] != ChargingRateUnitType.amps:
            return "rate unit %s: this charger is limited in A" % schedule["charging_rate_unit"]
        if len(periods) != 1 or periods[0]["start_period"] != 0:
            return "only a single period starting at 0 is simulated"
        if not 0 <= float(periods[0]["limit"]) <= 1000:
            return "limit %s A out of range" % periods[0]["limit"]
        if periods[0].get("number_phases") not in (None, 1, 3):
            return "number_phases %s: 1 or 3" % periods[0]["number_phases"]
        return None

    def clear_profiles(self, profile_id=None, stack_level=None):
        levels = [lv for lv in self._profiles
                  if (profile_id is None or self._profile_ids.get(lv) == profile_id)
                  and (stack_level is None or lv == stack_level)]
        for lv in levels:
            del self._profiles[lv]
        if levels:
            self._offer_changed()
        return bool(levels)

    # -- the car

    async def plug_in(self, car):
        """A car is connected: it charges at once (also offline); the transaction starts when online."""
        self._count_energy()
        self.car = car
        car.offer(self.offer_a)
        self._update_status()
        if self.on_change:
            self.on_change(self)
        if self._link is not None and self.online:
            await self._bounded(self._start_transaction())

    async def unplug(self):
        self._count_energy()
        self.car = None
        tx, self.transaction_id = self.transaction_id, None
        self._update_status()
        if self.on_change:
            self.on_change(self)
        if tx is not None and self._link is not None:
            await self._bounded(self._link.call(call.StopTransaction(
                meter_stop=int(self.energy_wh), timestamp=utc_now(), transaction_id=tx,
                reason=Reason.ev_disconnected)))

    async def _bounded(self, coro):
        """A request to the central system that may fail or time out without stopping the caller."""
        try:
            async with asyncio.timeout(self.response_timeout_s):
                return await coro
        except (TimeoutError, websockets.ConnectionClosed, OCPPError) as e:
            log.warning("%s: request to the central system failed: %r", self.id, e)
            return None

    async def _start_transaction(self):
        res = await self._link.call(call.StartTransaction(
            connector_id=CONNECTOR, id_tag="sim-" + self.id, meter_start=int(self.energy_wh),
            timestamp=utc_now()))
        if res is not None and self.car is not None:
            if res.id_tag_info["status"] == AuthorizationStatus.accepted:
                self.transaction_id = res.transaction_id
            else:
                log.warning("%s: transaction not authorised: %s", self.id, res.id_tag_info["status"])
        await self._send_status()

    def _update_status(self):
        if self.car is None:
            self.status = ChargePointStatus.available
        elif self.car.target_a > 0:
            self.status = ChargePointStatus.charging
        else:
            self.status = ChargePointStatus.suspended_evse
        if self.online and self.status != self._reported_status:
            # Not awaited here: this runs inside request handlers, where waiting on a reply would
            # hold up the very receive loop that brings it.
            asyncio.get_running_loop().create_task(self._bounded(self._send_status()))

    async def _send_status(self):
        status = self.status
        self._reported_status = status
        await self._link.call(call.StatusNotification(
            connector_id=CONNECTOR, error_code=ChargePointErrorCode.no_error, status=status,
            timestamp=utc_now()))

    # -- connection

    async def run(self):
        """Connect, and after every loss reconnect with a growing, jittered delay (backoff_s: first, max).

        websockets' own reconnecting iterator is not used: its back-off is process-wide (environment
        variables read at import), and a charger's offline timer has to start at the moment of the loss."""
        delay = self.backoff_s[0]
        try:
            while True:
                self._reached = False
                try:
                    async with connect(self.url, subprotocols=[SUBPROTOCOL],
                                       open_timeout=self.response_timeout_s,
                                       ping_interval=self.ping_interval_s,
                                       ping_timeout=self.ping_interval_s) as ws:
                        await self._session(ws)
                except Exception as e:      # any end of a session: reconnect (the simulator never gives up)
                    log.info("%s: central system unreachable or lost: %r", self.id, e)
                if self._reached:
                    delay = self.backoff_s[0]
                self._lost()
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self.backoff_s[1])
        finally:
            self.online = False
            self._link = None
            if self._fallback_timer:
                self._fallback_timer.cancel()
                self._fallback_timer = None

    async def _session(self, ws):
        """One connection: boot, then heartbeats and meter values until the connection or a request fails.

        ocpp's call() does not see the socket close (it waits for its reply until response_timeout), so
        every step runs beside the receive loop and the first of them to end ends the session."""
        link = _Link(self, ws, self.response_timeout_s)
        self._link = link
        tasks = [asyncio.create_task(link.start()), asyncio.create_task(self._online(link))]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()       # raises the reason the session ended
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._link = None

    async def _online(self, link):
        interval = await self._boot(link)
        self._reached = True
        self.online = True
        if self._fallback_timer:
            self._fallback_timer.cancel()
            self._fallback_timer = None
        log.info("%s: online (heartbeat every %s s)", self.id, interval)
        await self._send_status()
        if self.car is not None and self.transaction_id is None:
            await self._start_transaction()
        await asyncio.gather(self._heartbeats(link, interval), self._meter_values(link))

    async def _heartbeats(self, link, interval):
        while True:
            await asyncio.sleep(interval)
            await link.call(call.Heartbeat())       # no reply within response_timeout_s: the session ends

    async def _boot(self, link):
        """BootNotification until Accepted (Pending/Rejected: again after the interval the answer gives)."""
        while True:
            res = await link.call(call.BootNotification(charge_point_model="SimCharger",
                                                        charge_point_vendor="ampguard-sim"))
            if res is None:
                raise websockets.WebSocketException("BootNotification answered with an error")
            if res.status == RegistrationStatus.accepted:
                return self.heartbeat_s or res.interval or 60
            log.info("%s: boot %s, again in %s s", self.id, res.status, res.interval)
            await asyncio.sleep(max(1, res.interval or 10))

    async def _meter_values(self, link):
        while True:
            await asyncio.sleep(self.meter_interval_s)
            if self.transaction_id is None:
                continue
            self._count_energy()
            sampled = [datatypes.SampledValue(value="%.1f" % amps, measurand=Measurand.current_import,
                                              phase=CAR_PHASE_LABELS[k], unit=UnitOfMeasure.a,
                                              context=ReadingContext.sample_periodic)
                       for k, amps in enumerate(self.phase_draw()[:self.phases])]
            sampled.append(datatypes.SampledValue(value="%.1f" % self.offer_a,
                                                  measurand=Measurand.current_offered, unit=UnitOfMeasure.a,
                                                  context=ReadingContext.sample_periodic))
            sampled.append(datatypes.SampledValue(value="%d" % self.energy_wh, unit=UnitOfMeasure.wh,
                                                  measurand=Measurand.energy_active_import_register,
                                                  context=ReadingContext.sample_periodic))
            await link.call(call.MeterValues(connector_id=CONNECTOR, transaction_id=self.transaction_id,
                                             meter_value=[datatypes.MeterValue(timestamp=utc_now(),
                                                                               sampled_value=sampled)]))

    def _lost(self):
        """The central system is gone: keep the last limit for offline_timeout_s, then fall back."""
        was_online, self.online = self.online, False
        if was_online:
            log.warning("%s: central system lost; offline fallback in %s s", self.id, self.offline_timeout_s)
        if self._fallback_timer is None and not self.fallback:
            self._fallback_timer = asyncio.get_running_loop().call_later(self.offline_timeout_s,
                                                                         self._enter_fallback)

    def _enter_fallback(self):
        self._fallback_timer = None
        if self.online:
            return
        log.warning("%s: offline fallback: %.1f A on phase %d", self.id, self.offline_a, self.offline_phase)
        self._profiles.clear()
        self.fallback = True
        self._offer_changed()
