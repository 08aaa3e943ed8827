"""tools/balancer/algorithm.py: each allocation checked against numbers worked out by hand in the test
(docs/balancer.md, "The algorithm"), then closed-loop runs with a simple car model and properties."""
import math

from balancer import algorithm, group
from hypothesis import given, settings
from hypothesis import strategies as st

NOW = 1000.0
QUICK = {"hold_up_s": 0}     # hand-worked examples: no start hold (the damping has tests of its own)


def make_group(chargers, **kw):
    doc = {"group": "g1", "meter": "2312000042G", "supply_max_a": 25, "chargers": chargers}
    doc.update(kw)
    return group.validate(doc)


def three_phase(*ids):
    return [{"id": i, "phases": 3} for i in ids]


class Site:
    """A closed loop: a constant household load plus cars that follow their limits (up at `ramp_a` per
    period to min(limit, car max), down at once); the meter measures the household, plus the cars when
    the chargers are included. One `step()` is one reading period (1 s)."""

    def __init__(self, g, household, car_max=None, car_phases=None, ramp_a=32.0, tuning=None):
        self.g, self.household, self.tuning = g, list(household), tuning
        self.ids = [c["id"] for c in g["chargers"]]
        self.car_max = car_max or {}
        self.car_phases = car_phases or {}
        self.ramp_a = ramp_a
        self.draw = {i: 0.0 for i in self.ids}
        self.limits, self.state, self.t = {}, {}, NOW
        self.history = []

    def sessions(self):
        out = {}
        for c in self.g["chargers"]:
            s = {"charging": True, "phases": self.car_phases.get(c["id"], c["phases"])}
            on = algorithm.session_phases(self.g, c, s)
            s["draw_a"] = [self.draw[c["id"]] if p in on else 0.0 for p in range(3)]
            out[c["id"]] = s
        return out

    def chargers_a(self):
        sessions = self.sessions()
        return [sum(s["draw_a"][p] for s in sessions.values()) for p in range(3)]

    def total_a(self):
        """What the supply carries per phase: household plus every car."""
        return [h + d for h, d in zip(self.household, self.chargers_a(), strict=True)]

    def measured(self):
        return self.total_a() if self.g["chargers_included"] else list(self.household)

    def allocate(self, measured="meter"):
        m = self.measured() if measured == "meter" else measured     # None: the meter is offline
        self.limits = algorithm.allocate(self.g, m, self.sessions(), self.limits, self.t, self.state,
                                         self.tuning)
        return self.limits

    def follow(self):
        for i in self.ids:
            want = min(self.limits.get(i, 0), self.car_max.get(i, 32))
            self.draw[i] = want if want <= self.draw[i] else min(want, self.draw[i] + self.ramp_a)

    def step(self, n=1):
        for _ in range(n):
            self.allocate()
            self.follow()
            self.history.append((self.t, dict(self.limits), self.total_a()))
            self.t += 1.0
        return self.limits


# --- the budget ------------------------------------------------------------------------------------

def test_budget_with_chargers_included_takes_their_draw_out_of_the_measurement():
    # supply 25, margin 1; measured [20, 14, 9]; a (3-phase) draws 8 on each phase, b (1-phase on L2) 5.
    # Household = measured - chargers = [20-8, 14-8-5, 9-8] = [12, 1, 1]; budget = 24 - household.
    g = make_group([{"id": "a"}, {"id": "b", "phases": 1, "phase": 2}], chargers_included=True)
    sessions = {"a": {"charging": True, "draw_a": [8, 8, 8], "phases": 3},
                "b": {"charging": True, "draw_a": [0, 5, 0], "phases": 1}}
    assert algorithm.budget(g, [20, 14, 9], sessions) == [12, 23, 23]


def test_budget_with_chargers_not_included_is_the_supply_less_the_measurement():
    # The meter sees the household only: budget = 25 - 1 - [20, 14, 9] = [4, 10, 15].
    g = make_group([{"id": "a"}, {"id": "b", "phases": 1, "phase": 2}], chargers_included=False)
    sessions = {"a": {"charging": True, "draw_a": [8, 8, 8], "phases": 3},
                "b": {"charging": True, "draw_a": [0, 5, 0], "phases": 1}}
    assert algorithm.budget(g, [20, 14, 9], sessions) == [4, 10, 15]


def test_budget_is_capped_by_max_online_and_never_negative():
    # budget = min(max_a_online, 25 - 1 - measured) = [min(10, 24), min(20, 4), max(0, min(20, -6))]
    g = make_group(three_phase("a"), chargers_included=False, max_a_online=[10, 20, 20])
    assert algorithm.budget(g, [0, 20, 30], {}) == [10, 4, 0]


def test_offline_budget_is_the_offline_maximum():
    g = make_group(three_phase("a"), max_a_offline=[10, 12, 8])
    sessions = {"a": {"charging": True, "draw_a": [5, 5, 5], "phases": 3}}
    assert algorithm.budget(g, None, sessions) == [10, 12, 8]


# --- hand-worked allocations --------------------------------------------------------------------------

def test_chargers_included_hand_worked():
    # Household [12, 1, 1] (the meter measures it plus the cars). Budget [12, 23, 23]. a (3-phase) and b
    # (1-phase on L2) share L2: max-min fair 23 / 2 = 11.5 each; a's L1 budget (12) is not binding.
    # Converged: a 11.5, b 11.5; the supply carries [12 + 11.5, 1 + 23, 1 + 11.5] = [23.5, 24, 12.5].
    g = make_group([{"id": "a"}, {"id": "b", "phases": 1, "phase": 2}], chargers_included=True)
    site = Site(g, [12, 1, 1])
    assert site.step(60) == {"a": 11.5, "b": 11.5}
    assert site.total_a() == [23.5, 24, 12.5]
    # The household on L2 steps up by 10: budget [12, 13, 23]; a and b need 12 on L2: both stay, 6.5 each,
    # in the very next call.
    site.household = [12, 11, 1]
    site.allocate()
    assert site.limits == {"a": 6.5, "b": 6.5}


def test_chargers_not_included_hand_worked():
    # Same site, but the meter measures the household [20, 14, 9] only. Budget [4, 10, 15]: a needs 6 on
    # L1 where there are 4 -> paused; b gets all of L2's 10.
    g = make_group([{"id": "a"}, {"id": "b", "phases": 1, "phase": 2}], chargers_included=False)
    site = Site(g, [20, 14, 9])
    assert site.step(60) == {"a": 0, "b": 10}
    assert site.total_a() == [20, 24, 9]


def test_phase_order_decides_who_is_served_first():
    # Household [13, 4, 4], not included: budget [11, 20, 20]. "one" is 1-phase on L1; "three" is 3-phase
    # with its L1 on supply phase 3. Both need 6 on supply L1, which has 11: only one of them can charge.
    # Neither has charged before, so the phase order decides: [1, 2, 3] serves "one" (phase 1) first, it
    # gets all of L1's 11; [3, 2, 1] serves "three" (phase 3) first, it gets 11 (bound by L1).
    chargers = [{"id": "one", "phases": 1, "phase": 1}, {"id": "three", "phases": 3, "phase": 3}]
    site = Site(make_group(chargers, phases_order=[1, 2, 3], chargers_included=False), [13, 4, 4])
    assert site.step(60) == {"one": 11, "three": 0}
    site = Site(make_group(chargers, phases_order=[3, 2, 1], chargers_included=False), [13, 4, 4])
    assert site.step(60) == {"one": 0, "three": 11}


def test_min_current_pauses_rather_than_going_below_it():
    # Household 10 on each phase, not included: budget 25 - 1 - 10 = 14. Three 3-phase cars at min 6:
    # 6 + 6 = 12 fits, a third would need 18 > 14, so it waits at 0; the two share 14: 7 each.
    site = Site(make_group(three_phase("a", "b", "c"), chargers_included=False), [10, 10, 10])
    assert site.step(60) == {"a": 7, "b": 7, "c": 0}
    # With min_a 8 only one car fits (8 + 8 > 14) and it takes all 14.
    site = Site(make_group(three_phase("a", "b", "c"), chargers_included=False, min_a=8), [10, 10, 10])
    assert site.step(60) == {"a": 14, "b": 0, "c": 0}
    # Budget 5.9 (household 18.1): below min for anyone: nobody charges.
    site = Site(make_group(three_phase("a"), chargers_included=False), [18.1, 0, 0])
    assert site.step(30) == {"a": 0}


def test_pause_and_fair_rotation_hand_worked():
    # Budget 14 and min_a 8: one car at a time (8 + 8 > 14), at 14 A. Three 3-phase cars; rotate_s 100,
    # min_off_s 30, no start hold. Worked by hand (least recently charged first; never-charged cars in
    # file order):
    #   t=0    a starts (b, c never charged, a first in the file)
    #   t=100  a has had its turn; b (never charged) before c: b starts, a pauses
    #   t=200  c (never charged) starts, b pauses
    #   t=300  a (last charged at 99) before b (199): a starts, c pauses
    #   t=400  b (199) before c (299): b; t=500 c; t=600 a. Each car 100 s in every 300 s.
    tuning = {"hold_up_s": 0, "rotate_s": 100, "min_off_s": 30}
    site = Site(make_group(three_phase("a", "b", "c"), chargers_included=False, min_a=8), [10, 10, 10],
                tuning=tuning)
    site.step(601)
    running = {}
    for t, limits, _total in site.history:
        running[t - NOW] = [i for i, a in limits.items() if a > 0]
        assert len(running[t - NOW]) == 1 and sum(limits.values()) <= 14
        assert all(a == 0 or a >= 8 for a in limits.values())
    expected = {0: "a", 99: "a", 100: "b", 199: "b", 200: "c", 299: "c", 300: "a", 399: "a", 400: "b",
                500: "c", 600: "a"}
    for t, ids in expected.items():
        assert running[t] == list(ids), t
    changes = [t for t in range(1, 601) if running[t] != running[t - 1]]
    assert changes == [100, 200, 300, 400, 500, 600]
    charged = {i: sum(1 for ids in running.values() if i in ids) for i in "abc"}
    assert charged == {"a": 201, "b": 200, "c": 200}


def test_rotation_takes_turns_while_two_of_three_charge():
    # Budget 14, min 6: two charge at 7, one waits; rotate_s 100, min_off_s 30. Over 1,200 s nobody waits
    # for long and each car charges about two thirds of the time.
    tuning = {"hold_up_s": 0, "rotate_s": 100, "min_off_s": 30}
    site = Site(make_group(three_phase("a", "b", "c"), chargers_included=False), [10, 10, 10], tuning=tuning)
    site.step(1200)
    charged = {i: 0 for i in "abc"}
    waited = {i: 0 for i in "abc"}
    longest_wait = 0
    for _t, limits, _total in site.history:
        assert sorted(limits.values())[0] == 0 and sum(limits.values()) <= 14
        assert all(a == 0 or a >= 6 for a in limits.values())
        for i, a in limits.items():
            charged[i] += a > 0
            waited[i] = 0 if a > 0 else waited[i] + 1
            longest_wait = max(longest_wait, waited[i])
    assert all(700 <= n <= 900 for n in charged.values()), charged
    assert longest_wait <= 130


def test_a_paused_car_stays_paused_for_min_off():
    # One car on budget 14; the household jumps to 20 for 2 s (budget 4: paused at once), then back.
    # The car may start again only min_off_s (60) after its pause, plus the start hold (5 s).
    site = Site(make_group(three_phase("a"), chargers_included=False), [10, 10, 10])
    site.step(30)
    assert site.limits == {"a": 14}
    paused_at = site.t
    site.household = [20, 20, 20]
    site.step(2)
    assert site.limits == {"a": 0}
    site.household = [10, 10, 10]
    while site.limits["a"] == 0:
        site.step()
    assert site.t - 1 - paused_at == 65


def test_single_and_three_phase_cars_share_per_phase():
    # Budget [20, 20, 12] (household [4, 4, 12], not included). "t" is a 3-phase car, "p1" 1-phase on L1,
    # "p3" 1-phase on L3. L3 is the tightest: t and p3 share 12 -> 6 each. L1 then has 20 - 6 = 14 for
    # p1. A 3-phase car's limit holds on each phase; its draw counts on all three.
    chargers = [{"id": "t"}, {"id": "p1", "phases": 1, "phase": 1}, {"id": "p3", "phases": 1, "phase": 3}]
    site = Site(make_group(chargers, chargers_included=False), [4, 4, 12])
    assert site.step(60) == {"t": 6, "p1": 14, "p3": 6}
    assert site.chargers_a() == [20, 6, 12]


def test_a_one_phase_car_on_a_three_phase_charger_uses_the_chargers_l1():
    # A 3-phase charger whose L1 is on supply phase 2 with a 1-phase car: it draws on supply L2 only.
    g = make_group([{"id": "a", "phases": 3, "phase": 2}], chargers_included=False)
    site = Site(g, [0, 14, 0], car_phases={"a": 1})
    assert site.step(60) == {"a": 10}
    assert site.chargers_a() == [0, 10, 0]


def test_a_car_that_cannot_use_its_share_leaves_it_to_the_others():
    # Budget 21 (household 3, included). a's car takes at most 6 A. a rises while it uses its limit:
    # 6 -> 7 (draws 6 >= 7 - 1), 7 -> 8; at 8 it draws 6 < 8 - 1, so it is not offered more; after
    # settle_s it is released to 6 + 1 + 0.2 = 7.2 and b gets the rest, 21 - 7.2 = 13.8.
    site = Site(make_group(three_phase("a", "b")), [3, 3, 3], car_max={"a": 6})
    assert site.step(90) == {"a": 7.2, "b": 13.8}
    used = site.chargers_a()[0]
    assert used / (25 - 3) >= 0.9           # 19.8 A of a 22 A headroom


# --- damping -----------------------------------------------------------------------------------------

def test_a_start_waits_for_the_hold_and_rises_one_amp_per_period():
    # Budget 21 for one 3-phase car. Starts at t=5 (the start hold, 5 s) at min 6; from t=6 on, as a
    # running car, its share 21 is above its limit, so after the rise hold (t=6..10) it rises 1 A per
    # period: 7 at t=11, 8 at t=12, ... 21 at t=25.
    site = Site(make_group(three_phase("a"), chargers_included=False), [3, 3, 3])
    site.step(40)
    limits = [h[1]["a"] for h in site.history]
    assert limits[:5] == [0] * 5
    assert limits[5:11] == [6] * 6
    assert limits[11:26] == list(range(7, 22))
    assert limits[26:] == [21] * 14


def test_household_step_is_answered_in_one_call():
    # Issue acceptance: three cars charge on a 25 A supply, the household steps by +3 x 16 A at once.
    # Before: household 3, three 1-phase cars one per phase -> each gets 25 - 1 - 3 = 21 A.
    # Step: household 19 -> budget 5 < 6: every car is paused by the very next allocation.
    chargers = [{"id": "c%d" % p, "phases": 1, "phase": p} for p in (1, 2, 3)]
    site = Site(make_group(chargers), [3, 3, 3], ramp_a=3)
    site.step(60)
    assert site.limits == {"c1": 21, "c2": 21, "c3": 21}
    site.household = [19, 19, 19]
    assert max(site.measured()) == 40               # the meter sees the step on top of the cars
    site.allocate()
    assert site.limits == {"c1": 0, "c2": 0, "c3": 0}
    site.follow()
    assert max(site.total_a()) <= 25


def test_partial_household_step_is_answered_in_one_call():
    # Three 3-phase cars at 7 A (household 3, budget 21). Household +10 A on each phase: budget
    # 25 - 1 - 13 = 11: only one car fits at min 6; the others pause in that one call. The one left keeps
    # its 7 (a rise is damped) and then rises 1 A per period to all 11.
    site = Site(make_group(three_phase("a", "b", "c")), [3, 3, 3], ramp_a=3)
    site.step(60)
    assert site.limits == {"a": 7, "b": 7, "c": 7}
    site.household = [13, 13, 13]
    site.allocate()
    assert sorted(site.limits.values()) == [0, 0, 7]
    site.follow()
    assert site.total_a() == [20, 20, 20]
    site.step(30)
    assert sorted(site.limits.values()) == [0, 0, 11]
    assert site.total_a() == [24, 24, 24]


def test_steady_state_uses_at_least_90_percent_of_the_headroom():
    # Headroom = supply - household; what is lost is the 1 A margin and the 0.1 A rounding per car.
    for household in (0, 3, 5.5, 8.3, 12):
        site = Site(make_group(three_phase("a", "b", "c")), [household] * 3, ramp_a=3)
        site.step(120)
        headroom = 25 - household
        assert min(site.chargers_a()) >= 0.9 * headroom, (household, site.limits)
        assert max(site.total_a()) <= 24 + 1e-9


def test_limits_move_at_most_one_amp_per_period_under_a_constant_load():
    # Several hundred periods, cars with a few seconds' ramp (3 A/s), one that cannot take its share.
    chargers = [{"id": "a"}, {"id": "b"}, {"id": "p2", "phases": 1, "phase": 2}]
    site = Site(make_group(chargers), [4, 2, 6], car_max={"a": 10}, ramp_a=3)
    site.step(400)
    series = {i: [h[1][i] for h in site.history] for i in site.ids}
    for i, s in series.items():
        started = next(k for k, a in enumerate(s) if a > 0)
        assert s[started] == 6
        rises = [b - a for a, b in zip(s[started:-1], s[started + 1:], strict=True)]
        assert max(rises) <= 1 + 1e-9, i
        # and no oscillation: once settled, nothing moves at all
        assert len(set(s[100:])) == 1, i
    assert max(max(h[2]) for h in site.history) <= 24 + 1e-9


# --- meter offline, alarm ----------------------------------------------------------------------------

def test_meter_offline_falls_back_to_the_offline_maximum():
    # Offline maxima [13, 13, 20]: two 3-phase cars share L1/L2's 13 -> 6.5 each, whatever was measured.
    site = Site(make_group(three_phase("a", "b"), max_a_offline=[13, 13, 20]), [3, 3, 3], tuning=QUICK)
    site.step(60)
    assert site.limits == {"a": 10.5, "b": 10.5}          # online: budget 21
    site.allocate(measured=None)
    assert site.limits == {"a": 6.5, "b": 6.5}             # at once (a decrease)
    # an offline maximum below min for two: one charges alone with all of it
    site = Site(make_group(three_phase("a", "b"), max_a_offline=[10, 10, 10]), [3, 3, 3])
    site.step(60)
    site.allocate(measured=None)
    assert site.limits == {"a": 10, "b": 0}


def test_an_alarm_passed_as_a_measurement_cuts_at_once():
    # The caller passes the alarm's current on its phase (docs/balancer.md): alarm {"l": 2,
    # "current_a": 31} on top of the last reading [17, 17, 17] (two cars at 7 + household 3).
    site = Site(make_group(three_phase("a", "b")), [3, 3, 3])
    site.step(60)
    assert site.limits == {"a": 10.5, "b": 10.5}
    reading = site.measured()
    reading[1] = 31          # household on L2 = 31 - 21 = 10 -> budget 14 -> 7 each
    site.allocate(measured=reading)
    assert site.limits == {"a": 7, "b": 7}


def test_cars_not_charging_get_zero_and_free_their_share():
    g = make_group(three_phase("a", "b"), chargers_included=False)
    state, prev = {}, {}
    sessions = {"a": {"charging": True, "draw_a": [0, 0, 0], "phases": 3},
                "b": {"charging": False, "draw_a": [0, 0, 0], "phases": 3}}
    prev = algorithm.allocate(g, [3, 3, 3], sessions, prev, NOW, state, QUICK)
    assert prev == {"a": 6, "b": 0}
    assert algorithm.allocate(g, [3, 3, 3], {}, prev, NOW + 1, state, QUICK) == {"a": 0, "b": 0}


# --- properties --------------------------------------------------------------------------------------

charger_st = st.fixed_dictionaries({"phases": st.sampled_from([1, 3]), "phase": st.integers(1, 3)})


@settings(max_examples=200, deadline=None)
@given(chargers=st.lists(charger_st, min_size=1, max_size=6),
       order=st.permutations([1, 2, 3]),
       min_a=st.sampled_from([6, 8, 10]),
       included=st.booleans(),
       offline=st.booleans(),
       household=st.lists(st.floats(0, 40), min_size=3, max_size=3),
       rounds=st.lists(st.tuples(st.lists(st.booleans(), min_size=6, max_size=6),
                                 st.lists(st.floats(0, 40), min_size=3, max_size=3)), min_size=1, max_size=8))
def test_properties_sum_within_budget_min_or_paused(chargers, order, min_a, included, offline, household,
                                                     rounds):
    g = make_group([dict(c, id="c%d" % k) for k, c in enumerate(chargers)], phases_order=list(order),
                   min_a=min_a, chargers_included=included, max_a_offline=[12, 15, 18])
    state, limits, now = {}, {}, NOW
    for charging, draw in rounds:
        sessions = {}
        for k, c in enumerate(g["chargers"]):
            on = algorithm.session_phases(g, c, {"phases": c["phases"]})
            sessions[c["id"]] = {"charging": charging[k], "phases": c["phases"],
                                 "draw_a": [min(draw[p], limits.get(c["id"], 0)) if p in on else 0
                                            for p in range(3)]}
        measured = None if offline else [household[p] + (sum(s["draw_a"][p] for s in sessions.values())
                                                         if included else 0) for p in range(3)]
        room = algorithm.budget(g, measured, sessions)
        limits = algorithm.allocate(g, measured, sessions, limits, now, state)
        per_phase = [0.0, 0.0, 0.0]
        for c in g["chargers"]:
            a = limits[c["id"]]
            assert a == 0 or a >= min_a, "below min and not paused"
            assert a == 0 or sessions[c["id"]]["charging"], "a limit for a charger without a car"
            for p in algorithm.session_phases(g, c, sessions[c["id"]]):
                per_phase[p] += a
        for p in range(3):
            assert per_phase[p] <= room[p] + 1e-6, "over the phase's budget"
            if offline:
                assert per_phase[p] <= g["max_a_offline"][p] + 1e-6
            else:
                assert per_phase[p] <= g["max_a_online"][p] + 1e-6
        now += 1.0


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 5), centiamps=st.integers(0, 3000), ramp=st.sampled_from([1.0, 3.0, 32.0]))
def test_property_never_above_supply_after_convergence(n, centiamps, ramp):
    household = centiamps / 100
    site = Site(make_group(three_phase(*("c%d" % k for k in range(n)))), [household] * 3, ramp_a=ramp)
    site.step(90)
    assert max(site.total_a()) <= max(24, household) + 1e-6
    running = [a for a in site.limits.values() if a > 0]
    assert len(running) == min(n, max(0, math.floor((24 - household) / 6 + 1e-6)))
