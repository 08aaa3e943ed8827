"""The site's wiring: the chargers' draw plus the household load, written into the meter simulator's scenario.

The meter sits upstream of everything, so what each of its CTs carries is the household's current on that
phase plus every charger's draw on it. Currents are added as phasors: the household's at the scenario's
angle, a car's on-board charger at unity power factor (0 degrees). The scenario (contract §6.3) is
written whole to a temporary file and moved into place with os.replace, so the simulator, which re-reads
it when its bytes change, never sees half a file; identical contents are not rewritten.
"""
import asyncio
import copy
import json
import math
import os


class Site:
    """`Site(scenario_path, base_scenario, chargers)`: base_scenario is the household's world (a dict, or
    the path of a scenario file); chargers have `supply_draw()` (amps on supply phases 1-3).
    `household_a` / `household_deg` may be changed at any time (a load step); `update()` writes."""

    def __init__(self, scenario_path, base_scenario, chargers):
        if isinstance(base_scenario, str):
            with open(base_scenario) as f:
                base_scenario = json.load(f)
        self.path = scenario_path
        self.base = copy.deepcopy(base_scenario)
        phases = self.base.get("phases", [])
        phases += [{} for _ in range(3 - len(phases))]
        self.base["phases"] = phases
        self.household_a = [float(p.get("current_a", 0.0)) for p in phases]
        self.household_deg = [float(p.get("angle_deg", 0.0)) for p in phases]
        self.chargers = list(chargers)
        self._written = None

    def currents(self):
        """[(current_a, angle_deg)] per CT: the household's phasor plus the chargers' draw at 0 degrees."""
        draw = [0.0, 0.0, 0.0]
        for charger in self.chargers:
            for k, amps in enumerate(charger.supply_draw()):
                draw[k] += amps
        out = []
        for k in range(3):
            rad = math.radians(self.household_deg[k])
            re = self.household_a[k] * math.cos(rad) + draw[k]
            im = self.household_a[k] * math.sin(rad)
            amps = math.hypot(re, im)
            out.append((round(amps, 2), round(math.degrees(math.atan2(im, re)), 1) if amps else 0.0))
        return out

    def scenario(self):
        data = copy.deepcopy(self.base)
        for phase, (amps, deg) in zip(data["phases"], self.currents(), strict=True):
            phase["current_a"] = amps
            phase["angle_deg"] = deg
        return data

    def update(self):
        """Write the scenario when it changed; returns True when it wrote."""
        text = json.dumps(self.scenario(), indent=1, sort_keys=True) + "\n"
        if text == self._written:
            return False
        tmp = "%s.%d.tmp" % (self.path, os.getpid())
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.path)
        self._written = text
        return True

    async def run(self, period_s=0.5):
        while True:
            self.update()
            await asyncio.sleep(period_s)
