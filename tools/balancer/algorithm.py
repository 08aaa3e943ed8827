"""The allocation: from a group's measured phase currents to each charger's current limit (docs/balancer.md,
"The algorithm"). Pure and deterministic: no I/O, no clock (the caller passes `now_s`), all memory in the
`state` dict the caller keeps per group and passes back each time.

One call per reading (and one at once per alarm). Per phase: the chargers' budget is what the supply can
still give (supply max - margin - household load) capped by the group's online maximum, or the offline
maximum when the meter is offline. Charging sessions are admitted at min_a in a fair order (a paused one
waits for its turn), the budget is shared max-min fairly among the admitted, and each limit then moves
towards its share: down at once, up by at most step_up_a per period and only once the room has been
there for hold_up_s.
"""
import math

TUNING = {
    "resolution_a": 0.1,    # OCPP 1.6 charging limits carry one decimal
    "max_limit_a": 32,      # the most one charger is offered per phase (a 22 kW wallbox)
    "step_up_a": 1,         # the most a limit rises per period...
    "up_every_s": 0.9,      # ...a period being one reading (1 s), less a little jitter
    "hold_up_s": 5,         # a rise, or a start, only after the room for it has been there this long
    "up_deadband_a": 0.5,   # a smaller rise is not worth a message and would follow measurement noise
    "min_off_s": 60,        # a charger paused for lack of room stays paused at least this long
    "rotate_s": 900,        # a charger that has run this long yields to one that waits for room
    "settle_s": 10,         # a car has followed a new limit after this long (its ramp is a few seconds)
    "unused_a": 1.0,        # a car drawing this much less than its limit is not using it: offer it no more
}
EPS = 1e-6


def session_phases(group, charger, session):
    """The supply phases (0-based) a session draws on: all three for a 3-phase car on a 3-phase charger,
    else the one its charger's L1 is wired to (a 1-phase car on a 3-phase charger charges on L1)."""
    if charger["phases"] == 3 and session.get("phases", 3) == 3:
        return (0, 1, 2)
    return (charger["phase"] - 1,)


def budget(group, measured_a, sessions):
    """Per phase, the current the group's chargers may draw in total.

    Online: supply_max_a - margin_a - household, where household is the measurement less the chargers'
    own draw when they are included in it (not below 0: a draw reported too high must not raise the
    budget), capped by max_a_online and never below 0. Offline (measured_a None): max_a_offline."""
    if measured_a is None:
        return [float(a) for a in group["max_a_offline"]]
    ours = [0.0, 0.0, 0.0]
    if group["chargers_included"]:
        ids = {c["id"] for c in group["chargers"]}
        for cid, s in sessions.items():
            if cid in ids:
                for p in range(3):
                    ours[p] += s.get("draw_a", (0, 0, 0))[p] or 0.0
    out = []
    for p in range(3):
        household = max(0.0, measured_a[p] - ours[p])
        room = group["supply_max_a"] - group["margin_a"] - household
        out.append(max(0.0, min(float(group["max_a_online"][p]), room)))
    return out


def _fill(room, members, phases_of, caps, phase_rank):
    """Max-min fair shares of `room` (per phase) among `members`, none above its cap: the phase that can
    give its sessions the least each settles them at that share (or a session whose cap is lower still
    settles at its cap); the rest share what is left (progressive filling)."""
    room = list(room)
    share_of = {}
    free = list(members)
    while free:
        best = None
        for p in phase_rank:
            n = sum(1 for s in free if p in phases_of[s])
            if n and (best is None or room[p] / n < best[0] - EPS):
                best = (room[p] / n, p)
        share, p = best
        low = min(free, key=caps.__getitem__)
        settled = [low] if caps[low] <= share + EPS else [s for s in free if p in phases_of[s]]
        for s in settled:
            share_of[s] = min(share, caps[s])
            for q in phases_of[s]:
                room[q] -= share_of[s]
            free.remove(s)
    return share_of


def _floor(x, res):
    return round(math.floor(x / res + EPS) * res, 6)


def _memory(state, cid):
    return state.setdefault("chargers", {}).setdefault(cid, {
        "on_since": None,    # when it last started (limit from 0 to > 0); None while paused
        "off_since": None,   # when we last paused it (charging, limit 0); None when not paused by us
        "last_on": None,     # the last time it had a limit > 0 (fair rotation: least recent first)
        "up_since": None,    # since when its share has been above its limit (damped rise)
        "last_up": None,     # when its limit last rose
        "fits_since": None,  # since when it has been admitted while paused (damped start)
        "set_at": None,      # when its limit last changed
    })


def _cap(m, session, phases, limit, now_s, t, min_a):
    """The most worth offering a running car. A car that uses its limit (draws within unused_a of it) may
    get more; one that does not (still ramping, at its own maximum, or full) keeps its limit, so the rest
    goes to others; once it has had settle_s to follow and still draws clearly less, it is offered its draw
    + unused_a + 0.2 A (a release that the same rule then leaves alone: no up and down)."""
    draw = max((session.get("draw_a") or (0, 0, 0))[p] or 0.0 for p in phases)
    if draw >= limit - t["unused_a"] - EPS:
        return t["max_limit_a"]
    if m["set_at"] is not None and now_s - m["set_at"] < t["settle_s"] - EPS:
        return limit
    release = math.ceil((draw + t["unused_a"] + 0.2) / t["resolution_a"] - EPS) * t["resolution_a"]
    return max(float(min_a), min(limit, release))


def allocate(group, measured_a, sessions, previous, now_s, state, tuning=None):
    """Each charger's current limit in A per phase ({id: limit}, 0 = paused) for one period.

    group: a validated group (tools/balancer/group.py). measured_a: the meter's current per phase, or
    None when the meter is offline. sessions: {charger_id: {"charging": bool (a car is connected and
    wants energy, also while we hold it at 0 A), "draw_a": [3 floats, per supply phase], "phases": 1|3}}.
    previous: {charger_id: the limit last sent}. now_s: a monotonic time in s. state: this group's
    memory, {} at first, kept by the caller. tuning: overrides of TUNING (tests, slower sites)."""
    t = dict(TUNING, **(tuning or {}))
    min_a, res = group["min_a"], t["resolution_a"]
    phase_rank = [p - 1 for p in group["phases_order"]]
    room = budget(group, measured_a, sessions)

    chargers = group["chargers"]
    active, phases_of, key = [], {}, {}
    for idx, c in enumerate(chargers):
        cid = c["id"]
        s = sessions.get(cid)
        m = _memory(state, cid)
        if not (s and s.get("charging")):
            m["on_since"] = m["off_since"] = m["up_since"] = m["fits_since"] = None
            continue
        phases_of[cid] = session_phases(group, c, s)
        prev = previous.get(cid) or 0
        tie = (phase_rank.index(c["phase"] - 1), idx)     # phase order, then the file's order
        if prev > 0:
            if m["on_since"] is None:      # running before this memory began (a restart): a fresh turn
                m["on_since"] = now_s
            protected = now_s - m["on_since"] < t["rotate_s"]
            key[cid] = (0 if protected else 1, now_s, -m["on_since"]) + tie
        elif m["off_since"] is not None and now_s - m["off_since"] < t["min_off_s"]:
            m["fits_since"] = None
            continue                       # paused a moment ago: not yet again
        else:
            last = m["last_on"] if m["last_on"] is not None else -math.inf
            key[cid] = (1, last, 0) + tie
        active.append(cid)

    # Admission: in fair order, each session that still finds min_a on every phase it uses.
    admitted, left = [], list(room)
    for cid in sorted(active, key=key.__getitem__):
        if all(left[p] >= min_a - EPS for p in phases_of[cid]):
            admitted.append(cid)
            for p in phases_of[cid]:
                left[p] -= min_a

    # Sessions not running yet hold min_a in reserve until their start hold is over.
    starting, pending, running = [], [], []
    for cid in admitted:
        m = state["chargers"][cid]
        if (previous.get(cid) or 0) > 0:
            running.append(cid)
            continue
        if m["fits_since"] is None:
            m["fits_since"] = now_s
        (starting if now_s - m["fits_since"] >= t["hold_up_s"] - EPS else pending).append(cid)
    fill_room = list(room)
    for cid in starting + pending:
        for p in phases_of[cid]:
            fill_room[p] -= min_a
    caps = {cid: _cap(state["chargers"][cid], sessions[cid], phases_of[cid], previous[cid], now_s, t, min_a)
            for cid in running}
    share = _fill(fill_room, running, phases_of, caps, phase_rank)

    limits = {}
    for cid in running:
        m = state["chargers"][cid]
        prev = previous[cid]
        target = max(min_a, _floor(share[cid], res))
        if target < prev - EPS:                       # fast decrease: at once
            new, m["up_since"] = target, None
        elif target >= prev + t["up_deadband_a"] - EPS:
            if m["up_since"] is None:
                m["up_since"] = now_s
            new = prev
            if now_s - m["up_since"] >= t["hold_up_s"] - EPS and (
                    m["last_up"] is None or now_s - m["last_up"] >= t["up_every_s"] - EPS):
                new, m["last_up"] = min(target, prev + t["step_up_a"]), now_s
        else:
            new, m["up_since"] = prev, None
        limits[cid] = max(min_a, new)
    for cid in starting:
        limits[cid] = min_a

    for c in chargers:
        cid = c["id"]
        m = state["chargers"][cid]
        new = limits.get(cid, 0)
        limits[cid] = round(float(new), 6)
        prev = previous.get(cid) or 0
        if abs(new - prev) > EPS:
            m["set_at"] = now_s
        if cid not in admitted:
            m["fits_since"] = None
        if new > 0:
            m["last_on"], m["off_since"], m["fits_since"] = now_s, None, None
            if prev <= 0:
                m["on_since"], m["up_since"], m["last_up"] = now_s, None, None
        elif prev > 0:
            m["on_since"], m["up_since"] = None, None
            if cid in phases_of:           # paused for lack of room (not a car gone)
                m["off_since"] = now_s
    return limits
