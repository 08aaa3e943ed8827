"""The balancer's OCPP side: simulated charge points and the central system over real websockets on loopback.

Real OCPP 1.6J messages (the ocpp package validates every one against the specification's schemas), real
sockets; timeouts shortened so that each test takes seconds. Also the site's scenario file, checked with
the meter simulator's own scenario parser.
"""
import asyncio
import json
import logging
import os
import time

import pytest
from balancer.central import CentralSystem
from balancer.chargepoint import Car, ChargePointSim
from balancer.site import Site
from ocpp.routing import on
from ocpp.v16 import ChargePoint as OcppChargePoint
from ocpp.v16 import call
from ocpp.v16.enums import Action
from scenario import normalize
from websockets.asyncio.client import connect

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAST = {"offline_timeout_s": 1.0, "meter_interval_s": 0.2, "heartbeat_s": 0.5, "response_timeout_s": 1.0,
        "backoff_s": (0.1, 0.4), "ping_interval_s": 1.0}


def charger(cid, phases=3, phase=1, offline_a=6.0, offline_phase=1):
    return {"id": cid, "phases": phases, "phase": phase, "offline_a": offline_a,
            "offline_phase": offline_phase}


async def until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("not within %.1f s: %s" % (timeout, what))
        await asyncio.sleep(0.02)
    return time.monotonic()


def draws(sim, expected):
    return lambda: sim.supply_draw() == pytest.approx(expected, abs=0.01)


def run(test, *args):
    asyncio.run(asyncio.wait_for(test(*args), 30))


class Rig:
    """A central system and charge points running in the test's event loop; everything stopped at exit."""

    def __init__(self, **central_kw):
        self.central = CentralSystem(heartbeat_s=1, response_timeout_s=1.0, **central_kw)
        self.tasks = []

    async def __aenter__(self):
        await self.central.start()
        return self

    async def charge_point(self, config, **kw):
        sim = ChargePointSim(self.central.url, config, **{**FAST, **kw})
        self.tasks.append(asyncio.create_task(sim.run()))
        await until(lambda: sim.online and self.central.chargers[sim.id].booted, 5, sim.id + " online")
        return sim

    async def __aexit__(self, *exc):
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.central.stop()


def test_charge_point_boots_and_a_car_charges_at_its_max_without_a_limit():
    async def body():
        async with Rig() as rig:
            sim = await rig.charge_point(charger("cp1"))
            state = rig.central.chargers["cp1"]
            assert state.connected and state.status == "Available"
            assert sim.supply_draw() == [0.0, 0.0, 0.0]
            await sim.plug_in(Car(max_a=16, phases=3, ramp_s=0.5))
            await until(lambda: state.transaction_id is not None, 2, "StartTransaction at the central system")
            assert sim.transaction_id == state.transaction_id
            await until(draws(sim, [16, 16, 16]), 2, "the car at its 16 A max on three phases")
            await until(lambda: state.currents_a == [16.0, 16.0, 16.0], 2, "MeterValues: Current.Import")
            assert state.status == "Charging" and state.offered_a == 32.0       # no limit: the rating
            await until(lambda: state.heartbeat_at is not None, 2, "a Heartbeat")
            await sim.unplug()
            await until(lambda: state.transaction_id is None, 2, "StopTransaction")
            await until(lambda: state.status == "Available", 2, "StatusNotification Available")
            assert sim.supply_draw() == [0.0, 0.0, 0.0]
    run(body)


def test_set_limit_is_accepted_and_the_car_ramps_down_to_it():
    async def body():
        async with Rig() as rig:
            sim = await rig.charge_point(charger("cp1"))
            await sim.plug_in(Car(max_a=32, phases=3, ramp_s=1.0))     # 32 A/s
            await until(draws(sim, [32, 32, 32]), 2, "the car at 32 A")
            assert await rig.central.set_limit("cp1", 16, 3) is True
            # A ramp, not a step: 32 -> 16 A takes 0.5 s.
            assert sim.supply_draw()[0] > 20
            t0 = time.monotonic()
            t1 = await until(draws(sim, [16, 16, 16]), 2, "the car down to 16 A")
            assert 0.2 < t1 - t0 < 1.0
            state = rig.central.chargers["cp1"]
            assert state.limit == (16.0, 3) and state.problem is None
            # 0 A pauses the car (SuspendedEVSE); below IEC 61851's 6 A a car does not charge either.
            assert await rig.central.set_limit("cp1", 0, 3) is True
            await until(draws(sim, [0, 0, 0]), 2, "paused")
            await until(lambda: rig.central.chargers["cp1"].status == "SuspendedEVSE", 2, "SuspendedEVSE")
            assert await rig.central.set_limit("cp1", 5, 3) is True
            await asyncio.sleep(0.2)
            assert sim.supply_draw() == [0.0, 0.0, 0.0]
            assert await rig.central.set_limit("cp1", 10.04, 3) is True
            await until(draws(sim, [10, 10, 10]), 2, "the car at 10 A (0.1 A steps)")
            await until(lambda: rig.central.chargers["cp1"].status == "Charging", 2, "Charging again")
    run(body)


def test_one_phase_and_three_phase_cars_on_their_supply_phases(caplog):
    async def body():
        async with Rig() as rig:
            # A 3-phase charger with its L1 on supply phase 2 (then 3, 1), a 1-phase car: only supply L2.
            a = await rig.charge_point(charger("a", phases=3, phase=2))
            await a.plug_in(Car(max_a=16, phases=1, ramp_s=0))
            await until(draws(a, [0, 16, 0]), 2, "1-phase car on supply phase 2")
            await until(lambda: rig.central.chargers["a"].currents_a == [16.0, 0.0, 0.0], 2,
                        "reported on the charger's own L1")
            # A 1-phase charger on supply phase 3: a 3-phase car draws on that phase alone.
            b = await rig.charge_point(charger("b", phases=1, phase=3, offline_phase=3))
            await b.plug_in(Car(max_a=16, phases=3, ramp_s=0))
            await until(draws(b, [0, 0, 16]), 2, "3-phase car on a 1-phase charger")
            # A 3-phase car told to use one phase, then three again.
            c = await rig.charge_point(charger("c", phases=3, phase=1))
            await c.plug_in(Car(max_a=16, phases=3, ramp_s=0))
            await until(draws(c, [16, 16, 16]), 2, "3-phase car on three phases")
            assert await rig.central.set_limit("c", 10, 1) is True
            await until(draws(c, [10, 0, 0]), 2, "numberPhases 1")
            assert await rig.central.set_limit("c", 10, 3) is True
            await until(draws(c, [10, 10, 10]), 2, "numberPhases 3")
            # A profile the charger cannot apply is rejected, with its reason in the charger's log.
            with caplog.at_level(logging.WARNING, logger="balancer"):
                assert await rig.central.set_limit("c", 10, 2) is False
            assert "SetChargingProfile Rejected" in rig.central.chargers["c"].problem
            assert "number_phases 2" in caplog.text
            assert c.supply_draw() == [10.0, 10.0, 10.0]                # the previous limit stays
    run(body)


def test_lost_central_system_offline_fallback_and_return():
    async def body():
        async with Rig() as rig:
            sim = await rig.charge_point(charger("cp1", offline_a=8, offline_phase=3))
            await sim.plug_in(Car(max_a=16, phases=3, ramp_s=0.2))
            assert await rig.central.set_limit("cp1", 12, 3) is True
            await until(draws(sim, [12, 12, 12]), 2, "12 A from the central system")
            port = rig.central.port
            t0 = time.monotonic()
            await rig.central.stop()
            await until(lambda: not sim.online, 1, "the charger sees the loss")
            # Within its offline timeout (1 s) the charger keeps the central system's last limit...
            await asyncio.sleep(0.5)
            assert not sim.fallback and sim.supply_draw() == [12.0, 12.0, 12.0]
            # ...then its own offline limit on its offline phase (ramp 0.2 s).
            t1 = await until(draws(sim, [0, 0, 8]), 3, "8 A on supply phase 3")
            assert sim.fallback and 1.0 <= t1 - t0 < 1.0 + 0.2 + 0.6
            # The central system returns on the same port: the charger reconnects (back-off <= 0.4 s) and
            # is given its last accepted limit again.
            await rig.central.start()
            assert rig.central.port == port
            await until(lambda: sim.online, 3, "reconnected")
            await until(draws(sim, [12, 12, 12]), 2, "back on the central system's 12 A")
            assert not sim.fallback
            assert await rig.central.set_limit("cp1", 10, 3) is True
            await until(draws(sim, [10, 10, 10]), 2, "a new limit")
            # A central system that restarted without memory: the charger stays on its offline limit
            # until it is given one.
            await rig.central.stop()
            await until(draws(sim, [0, 0, 8]), 3, "offline fallback again")
            fresh = CentralSystem(port=port, heartbeat_s=1, response_timeout_s=1.0)
            await fresh.start()
            try:
                await until(lambda: sim.online and fresh.chargers["cp1"].booted, 3, "on the new one")
                await asyncio.sleep(0.3)
                assert sim.fallback and sim.supply_draw() == [0.0, 0.0, 8.0]
                # The transaction began before this central system: it learns it from MeterValues.
                await until(lambda: fresh.chargers["cp1"].transaction_id == sim.transaction_id, 2,
                            "the running transaction adopted")
                assert await fresh.set_limit("cp1", 14, 3) is True
                await until(draws(sim, [14, 14, 14]), 2, "the new central system's limit")
            finally:
                await fresh.stop()
    run(body)


class MuteChargePoint(OcppChargePoint):
    """A charge point that boots, then never answers SetChargingProfile (its firmware hangs)."""

    @on(Action.set_charging_profile)
    async def on_set_charging_profile(self, **kwargs):
        await asyncio.sleep(60)


def test_a_charger_that_does_not_answer_is_reported_and_blocks_no_other():
    async def body():
        async with Rig() as rig:
            good = await rig.charge_point(charger("good"))
            await good.plug_in(Car(max_a=16, phases=3, ramp_s=0))
            async with connect(rig.central.url + "/mute", subprotocols=["ocpp1.6"]) as ws:
                mute = MuteChargePoint("mute", ws)
                receiver = asyncio.create_task(mute.start())
                await mute.call(call.BootNotification(charge_point_model="Mute", charge_point_vendor="test"))
                t0 = time.monotonic()
                pending = asyncio.create_task(rig.central.set_limit("mute", 10, 3))
                await asyncio.sleep(0.05)
                assert await rig.central.set_limit("good", 10, 3) is True
                assert time.monotonic() - t0 < 0.5                      # not held up by the mute one
                assert good.supply_draw() == [10.0, 10.0, 10.0]
                assert await pending is False
                assert 1.0 <= time.monotonic() - t0 < 1.6               # bounded by response_timeout_s
                assert "no answer" in rig.central.chargers["mute"].problem
                # Both at once: the good one accepted, the mute one reported, within the bound.
                t0 = time.monotonic()
                results = await rig.central.set_limits({"mute": (8, 3), "good": (8, 3)})
                assert results == {"mute": False, "good": True}
                assert time.monotonic() - t0 < 1.6
                assert good.supply_draw() == [8.0, 8.0, 8.0]
                receiver.cancel()
            # Not connected at all: refused at once.
            assert await rig.central.set_limit("nobody", 10, 3) is False
            assert rig.central.chargers["nobody"].problem == "not connected"
    run(body)


def test_site_writes_the_chargers_draw_plus_household_into_the_scenario(tmp_path):
    async def body():
        with open(os.path.join(ROOT, "tools", "scenarios", "default.json")) as f:
            base = json.load(f)         # household: L1 10 A at 0 deg, L2 16 A at 25 deg, L3 0 A
        offline = "ws://127.0.0.1:9"    # never connected: the cars charge at their max
        a = ChargePointSim(offline, charger("a", phases=1, phase=2, offline_phase=2))
        b = ChargePointSim(offline, charger("b", phases=3, phase=1))
        await a.plug_in(Car(max_a=16, phases=1, ramp_s=0))
        await b.plug_in(Car(max_a=10, phases=3, ramp_s=0))
        path = str(tmp_path / "scenario.json")
        site = Site(path, base, [a, b])
        assert site.update() is True
        with open(path) as f:
            data = normalize(json.load(f))          # what the meter simulator accepts
        got = [(p["current_a"], p["angle_deg"]) for p in data["phases"]]
        # By hand: L1 10 + 10 = 20 A at 0 deg. L2 16 A at 25 deg (14.50 + 6.76j) + 16 + 10 at 0 deg:
        # 40.50 + 6.76j = 41.06 A at 9.5 deg. L3 0 + 10 = 10 A at 0 deg.
        assert got == [(20.0, 0.0), (41.06, 9.5), (10.0, 0.0)]
        assert data["wifi"] == normalize(base)["wifi"] and data["mains"] == normalize(base)["mains"]
        assert data["phases"][0]["harmonics"] == {"3": 0.1}         # the household's own keys stay
        assert site.update() is False                              # unchanged: not rewritten
        site.household_a[2] = 5.0
        await b.unplug()
        assert site.update() is True
        with open(path) as f:
            data = normalize(json.load(f))
        assert [p["current_a"] for p in data["phases"]] == [10.0, 31.24, 5.0]
        assert os.listdir(tmp_path) == ["scenario.json"]           # written through a temporary file
    run(body)
