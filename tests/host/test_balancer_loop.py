"""The closed loop (issue 13, acceptance 1 and 2): meter -> MQTT -> balancer -> OCPP -> chargers -> meter.

A real mosquitto, the real firmware in the simulator (readings every second, its own alarm at the 25 A
fuse), the balancer as its launcher runs it (tools/balance, a process of its own), three simulated
OCPP 1.6J charge points with 16 A 3-phase cars in this test's event loop, and site.py writing their draw
plus a household load into the simulator's scenario: the meter measures what the chargers draw.
"""
import asyncio
import json
import os
import signal
import subprocess
import time

import pytest
from balancer.chargepoint import Car, ChargePointSim
from balancer.site import Site
from simctl import ROOT, free_port
from uplink_rig import BASE, SERIAL, Rig

BALANCE = os.path.join(ROOT, "tools", "balance")
SUPPLY_A = 25.0
MARGIN_A = 0.5
HOUSE_A = 0.5                       # per phase, before the step
OFFLINE_MAX_A = 13.0                # the group's max_a_offline per phase: two cars at 6.5 A
CHARGERS = [{"id": "cp%d" % i, "phases": 3, "phase": 1, "offline_a": a, "offline_phase": i}
            for i, a in ((1, 6), (2, 8), (3, 10))]
GROUP = {"group": "site", "meter": SERIAL, "supply_max_a": SUPPLY_A, "margin_a": MARGIN_A,
         "max_a_offline": [OFFLINE_MAX_A] * 3, "chargers": CHARGERS}
OCPP_TIMEOUT_S = 3.0                # each charger's offline timeout
CHARGER_KW = {"offline_timeout_s": OCPP_TIMEOUT_S, "meter_interval_s": 1.0, "heartbeat_s": 2,
              "response_timeout_s": 2.0, "backoff_s": (0.2, 1.0), "ping_interval_s": 1.0}
SCENARIO = {"mains": {"voltage_v": [230.0, 230.0, 230.0], "freq_hz": 50.0},
            "phases": [{"current_a": HOUSE_A}] * 3, "adc": {"noise_lsb": 1.5}, "lan": {"link": True}}


async def until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("not within %.1f s: %s" % (timeout, what))
        await asyncio.sleep(0.05)
    return time.monotonic()


class Loop:
    """The whole site; `await start()`, then the test; `await close()` stops everything."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.rig = Rig(tmp_path, scenario=SCENARIO, settings={"supply_max_a": SUPPLY_A})
        os.makedirs(tmp_path / "groups")
        with open(tmp_path / "groups" / "site.json", "w") as f:
            json.dump(GROUP, f)
        self.ocpp_port = free_port()
        self.balancer = None
        self.log_path = tmp_path / "balancer.log"
        self.chargers = []
        self.tasks = []

    def start_balancer(self):
        with open(self.log_path, "ab") as log:
            self.balancer = subprocess.Popen(
                [BALANCE, "--broker", "127.0.0.1:%d" % self.rig.broker.port, "--groups",
                 str(self.tmp / "groups"), "--ocpp", "127.0.0.1:%d" % self.ocpp_port,
                 "--ocpp-timeout-s", "2", "--heartbeat-s", "2"], stdout=log, stderr=subprocess.STDOUT)

    def balancer_log(self):
        return self.log_path.read_text(errors="replace")

    async def start(self):
        self.rig.start()
        self.start_balancer()
        url = "ws://127.0.0.1:%d" % self.ocpp_port
        self.chargers = [ChargePointSim(url, c, **CHARGER_KW) for c in CHARGERS]
        self.site = Site(self.rig.sim.scenario_path, SCENARIO, self.chargers)
        self.tasks = [asyncio.create_task(c.run()) for c in self.chargers]
        self.tasks.append(asyncio.create_task(self.site.run(0.1)))
        await until(lambda: all(c.online for c in self.chargers), 20, "chargers online at the balancer")
        for c in self.chargers:
            await c.plug_in(Car(max_a=16, phases=3, ramp_s=3.0))
        await asyncio.to_thread(self.rig.next_readings, 1, 30)

    async def close(self):
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.balancer and self.balancer.poll() is None:
            self.balancer.kill()
            self.balancer.wait()
        self.rig.close()

    def offers(self):
        return [c.offer_a for c in self.chargers]

    def readings_since(self, t):
        return [(m.t, [p["current_a"] for p in m.json()["phases"]])
                for m in self.rig.sub.messages(BASE + "/readings") if m.t > t]

    async def settle(self, expected, timeout, what):
        """Until the chargers' limits are `expected` (sorted; each up to 0.5 A less: the budget rests on
        a measurement, and a limit rises only by at least 0.5 A) and the cars draw them; the time then."""
        def settled():
            return (all(e - 0.5 <= o <= e for o, e in zip(sorted(self.offers()), expected, strict=True))
                    and all(abs(max(c.supply_draw()) - min(c.offer_a, 16)) < 0.05 or c.offer_a < 6
                            for c in self.chargers))
        try:
            return await until(settled, timeout, what)
        except AssertionError as e:
            raise AssertionError("%s; offers %s; balancer log:\n%s" % (e, self.offers(),
                                                                     self.balancer_log()[-3000:])) from None

    async def limits_per_period(self, seconds):
        """The chargers' limits sampled at each readings message for `seconds`."""
        seen, last = [], self.rig.sub.mark()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await asyncio.sleep(0.05)
            if self.rig.sub.mark() != last:
                last = self.rig.sub.mark()
                seen.append(self.offers())
        return seen


def run(body, tmp_path, timeout=55):
    async def main():
        loop = Loop(tmp_path)
        try:
            await loop.start()
            await body(loop)
        finally:
            await loop.close()
    asyncio.run(asyncio.wait_for(main(), timeout))


@pytest.mark.slow
def test_a_killed_meter_puts_the_group_on_its_offline_maximum_and_a_restarted_one_is_used_again(tmp_path):
    async def body(loop):
        await loop.settle([8.0, 8.0, 8.0], 30, "three cars at 8 A")
        t_kill = time.monotonic()
        loop.rig.sim.proc.send_signal(signal.SIGKILL)       # a power cut: the broker sends its last will
        await loop.settle([0.0, OFFLINE_MAX_A / 2, OFFLINE_MAX_A / 2], 10, "the offline maximum")
        assert time.monotonic() - t_kill <= 10
        assert "meter %s offline" % SERIAL in loop.balancer_log()

        # Back: readings again, and the two running cars share the online budget (24 A) again.
        loop.rig.sim.start()
        await until(lambda: sum(loop.offers()) > OFFLINE_MAX_A + 1, 30, "limits above the offline maximum")
        assert "meter %s online" % SERIAL in loop.balancer_log()
    run(body, tmp_path)


@pytest.mark.slow
def test_a_killed_balancer_leaves_each_charger_on_its_offline_limit_and_a_restarted_one_takes_over(tmp_path):
    async def body(loop):
        await loop.settle([8.0, 8.0, 8.0], 30, "three cars at 8 A")
        loop.balancer.send_signal(signal.SIGKILL)
        loop.balancer.wait()
        t_kill = time.monotonic()
        await until(lambda: all(c.fallback for c in loop.chargers), OCPP_TIMEOUT_S + 1, "offline fallback")
        assert time.monotonic() - t_kill <= OCPP_TIMEOUT_S + 1
        for c, cfg in zip(loop.chargers, CHARGERS, strict=True):
            assert c.offer_a == cfg["offline_a"]
            assert c.car.target_a == cfg["offline_a"]
            assert c._charging_phases() == [cfg["offline_phase"] - 1]      # its L1-L3 are supply 1-3
        await until(lambda: all(c.supply_draw()[cfg["offline_phase"] - 1] == cfg["offline_a"]
                                and sum(c.supply_draw()) == cfg["offline_a"]
                                for c, cfg in zip(loop.chargers, CHARGERS, strict=True)), 5,
                    "each car on its offline phase at its offline limit")

        # A new balancer: the chargers find it, leave the fallback and take its limits.
        mark = len(loop.balancer_log())
        loop.start_balancer()
        await until(lambda: not any(c.fallback for c in loop.chargers), 15, "limits from the balancer")
        await loop.settle([8.0, 8.0, 8.0], 25, "three cars at 8 A again")
        assert " -> " in loop.balancer_log()[mark:]
        assert " -> 0.0 A" not in loop.balancer_log()[mark:]        # the restart paused no car
    run(body, tmp_path)
