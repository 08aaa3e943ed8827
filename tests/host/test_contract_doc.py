"""docs/contract.md names everything the firmware really shows: a simulated meter against a real mosquitto
gives real messages (readings, info, config, config/error, alarm, Home Assistant discovery) and real portal
answers (/api/status, /api/readings, /api/scan, /connect, 404); every JSON key in them, every topic with its
QoS and retain flag, every setting, portal route, captive-portal probe, flag and onboarding word must be in
the contract, written as `name` (in backticks), in the section that describes that message or list."""
import json
import os
import re
import urllib.error
import urllib.request

import diagnostics
import portal
import pytest
import settings
from brokers import Subscriber
from simctl import ROOT
from uplink_rig import BASE, SCENARIO, SERIAL, Rig, api_readings

CONTRACT = os.path.join(ROOT, "docs", "contract.md")
NODE_ID = "ampguard_" + SERIAL.lower()
# Online over LAN; one Wi-Fi network in reach so that /api/scan lists an entry with all its keys.
WORLD = dict(SCENARIO, wifi={"networks": [{"ssid": "Home", "password": "secret123", "rssi": -55,
                                           "channel": 6}]})
# The sections of docs/contract.md that describe each message collected below.
SECTIONS = {"readings": ("4",), "api_readings": ("2.3", "4"), "info": ("3.4",), "alarm": ("3.4",),
            "api_status": ("2.3",), "api_scan": ("2.3",), "not_found": ("2.3",), "connect_refused": ("2.3",),
            "connect_accepted": ("2.3",), "config_error": ("3.5",), "config": ("3.5", "5"),
            "discovery": ("3.6",)}
MARKER = "contract-test/after-the-retained"     # published by the late subscriber itself: it comes last


def contract():
    with open(CONTRACT, encoding="utf-8") as f:
        return f.read()


def section(number, doc=None):
    """The text of one section of the contract, "4" (`## 4. ...`) or "3.4" (`### 3.4 ...`), up to the
    next heading of its level or above."""
    doc = contract() if doc is None else doc
    top = "." not in number
    head = "\n## %s. " % number if top else "\n### %s " % number
    start = doc.index(head) + 1
    ends = [doc.find(h, start + len(head)) for h in (("\n## ",) if top else ("\n## ", "\n### "))]
    ends = [e for e in ends if e >= 0]
    return doc[start:min(ends) if ends else len(doc)]


def sections(*numbers, doc=None):
    doc = contract() if doc is None else doc
    return "\n".join(section(n, doc) for n in numbers)


def undocumented(names, doc=None):
    """The names that docs/contract.md (or the part of it given as `doc`) does not show as `name`."""
    doc = contract() if doc is None else doc
    return sorted({n for n in names if "`%s`" % n not in doc})


def keys(obj, dotted=False, path=""):
    """Every key of a JSON value, nested ones included (also inside lists); as dotted paths if asked."""
    out = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            name = "%s.%s" % (path, k) if dotted and path else k
            out.add(name)
            out |= keys(v, dotted, name)
    elif isinstance(obj, list):
        for v in obj:
            out |= keys(v, dotted, path)
    return out


def generic_topic(topic):
    """A real topic in the contract's notation: `<base>/...`, `homeassistant/sensor/<node_id>/...`."""
    if topic.startswith(BASE + "/"):
        return "<base>" + topic[len(BASE):]
    if topic.startswith("homeassistant/sensor/%s/" % NODE_ID) and topic.endswith("/config"):
        return "homeassistant/sensor/<node_id>/<object_id>/config"
    return topic


def http(sim, method, path, body=None, ctype=None):
    """(status, content type, body bytes) of one request to the simulated portal."""
    req = urllib.request.Request("http://%s%s" % (sim.http, path), data=body, method=method)
    if ctype:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """One simulated meter with Home Assistant discovery on, and what it said."""
    rig = Rig(tmp_path_factory.mktemp("contract"), scenario=WORLD, settings={"ha_discovery": True}).start()
    try:
        sub = rig.sub
        sub.wait_for(BASE + "/status", lambda m: m.payload == b"online", timeout=30)
        got = {"readings": rig.next_readings(1)[0],
               "info": sub.wait_for(BASE + "/info", timeout=10).json(),
               "config": sub.wait_for(BASE + "/config", timeout=10).json()}
        sub.wait_for("homeassistant/sensor/%s/frequency/config" % NODE_ID, timeout=10)
        got["discovery"] = [m.json() for m in sub.messages() if m.topic.startswith("homeassistant/sensor/")]
        sub.publish(BASE + "/config/set", json.dumps({"interval_s": 0}))
        got["config_error"] = sub.wait_for(BASE + "/config/error", timeout=10).json()
        sub.publish(BASE + "/config/set", json.dumps({"supply_max_a": 12}))     # L2 carries 16 A
        got["alarm"] = sub.wait_for(BASE + "/alarm", timeout=10).json()
        got["api_readings"] = api_readings(rig.sim)
        for name, method, path, body, ctype in (
                ("api_status", "GET", "/api/status", None, None),
                ("api_scan", "GET", "/api/scan", None, None),
                ("not_found", "GET", "/no/such/page", None, None),
                ("connect_refused", "POST", "/connect", b'{"ssid": "Home", "password": "short"}',
                 "application/json"),
                ("connect_accepted", "POST", "/connect", b'{"ssid": "Home", "password": "secret123"}',
                 "application/json")):
            status, _, answer = http(rig.sim, method, path, body, ctype)
            got[name] = json.loads(answer)
            got[name + "_status"] = status
        # What a subscriber arriving now gets from the broker: the retained messages, which the broker
        # queues for it when it subscribes, so ahead of a message it publishes once subscribed.
        late = Subscriber(rig.broker.host, rig.broker.port, topics=[BASE + "/#", "homeassistant/#", MARKER])
        try:
            late.publish(MARKER, b"end")
            late.wait_for(MARKER, timeout=10)
            got["retained"] = {m.topic for m in late.messages() if m.retain}
        finally:
            late.close()
        sub.wait_for(BASE + "/readings", lambda m: m.json()["seq"] >= 3, timeout=10)    # a few to check
        got["messages"] = sub.messages()
        got["rig"] = rig
        yield got
    finally:
        rig.close()


def test_the_helpers_see_a_missing_name():
    doc = contract()
    assert undocumented(["voltage_v"], doc) == []
    assert undocumented(["voltage_v"], doc.replace("`voltage_v`", "voltage_v")) == ["voltage_v"]
    # ... and a name documented only in another section
    assert undocumented(["voltage_v", "rssi_dbm"], section("4")) == ["rssi_dbm"]
    assert undocumented(["voltage_v", "rssi_dbm"], section("3.4")) == ["voltage_v"]
    assert section("3.4").startswith("### 3.4 Info and alarm payloads\n") and "### 3.5" not in section("3.4")
    assert section("4").startswith("## 4. Readings\n") and "## 5." not in section("4")
    assert "### 2.3 " in sections("2.3", "4") and "## 4. " in sections("2.3", "4")
    assert keys({"a": [{"b": 1}], "c": {"d": None}}) == {"a", "b", "c", "d"}
    assert keys({"a": [{"b": 1}], "c": {"d": None}}, dotted=True) == {"a", "a.b", "c", "c.d"}


def test_the_messages_hold_what_the_test_expects(real):
    # The collection itself worked: otherwise the key checks below would pass on too little.
    assert len(real["readings"]["phases"]) == 3 and "flags" in real["readings"]["phases"][0]
    assert "advice" in real["api_readings"]["phases"][0]
    assert real["api_scan"]["networks"] and real["discovery"]
    assert real["config_error"]["field"] == "interval_s" and real["alarm"]["l"] == 2
    assert real["not_found_status"] == 404 and real["connect_refused_status"] == 400
    assert real["connect_accepted_status"] == 202


@pytest.mark.parametrize("name", ["readings", "api_readings", "info", "api_status", "api_scan", "alarm",
                                  "config_error", "not_found", "connect_refused", "connect_accepted"])
def test_every_key_of_a_real_message_is_in_the_contract(real, name):
    missing = undocumented(keys(real[name]), sections(*SECTIONS[name]))
    assert not missing, "docs/contract.md §%s lacks the %s keys %s" % (SECTIONS[name], name, missing)


def test_every_key_of_the_real_config_message_is_in_the_contract_as_its_dotted_path(real):
    paths = keys(real["config"], dotted=True)
    assert {"mqtt.host", "mqtt.password_set", "calibration.v_gain"} <= paths
    missing = undocumented(paths, sections(*SECTIONS["config"]))
    assert not missing, "docs/contract.md lacks the settings %s" % missing


def test_every_key_of_the_real_discovery_payloads_is_in_the_contract(real):
    found = set().union(*(keys(p) for p in real["discovery"]))
    missing = undocumented(found, sections(*SECTIONS["discovery"]))
    assert not missing, "docs/contract.md lacks the discovery keys %s" % missing


def test_every_discovery_entity_is_in_the_contract(real):
    prefix = "homeassistant/sensor/%s/" % NODE_ID
    ids = {m.topic[len(prefix):-len("/config")] for m in real["messages"] if m.topic.startswith(prefix)}
    assert len(ids) == 22, ids           # 6 per phase and 4 totals
    missing = undocumented({re.sub(r"^l\d_", "l<n>_", i) for i in ids}, section("3.6"))
    assert not missing, "docs/contract.md lacks the entities %s" % missing


def test_every_value_of_an_enumerated_field_seen_is_in_the_contract(real):
    st, info = real["api_status"], real["info"]
    missing = undocumented({st["state"], st["network"], st["uplink"], st["clock"]}, section("2.3"))
    missing += undocumented({info["sensor"], info["network"], info["clock"]}, section("3.4"))
    missing += undocumented({info["board"]}, section("1"))
    missing += undocumented({f for p in real["readings"]["phases"] for f in p["flags"]}, section("4"))
    assert not missing, "docs/contract.md lacks the values %s" % missing


def _topic_table(doc):
    """{topic: (qos, retained)} of the device's own topics in the contract's topic table (section 3.2)."""
    section = doc.split("### 3.2 Topics", 1)[1].split("\n### ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[1] == "device ->" and cells[2] in ("0", "1"):
            rows[cells[0].strip("`")] = (int(cells[2]), cells[3] == "yes")
    return rows


def test_every_topic_the_device_published_is_in_the_contract_with_its_qos(real):
    table = _topic_table(contract())
    assert "<base>/readings" in table and "<base>/status" in table
    seen = {}
    for m in real["messages"]:
        if m.topic != BASE + "/config/set":         # the test's own messages
            seen.setdefault(generic_topic(m.topic), set()).add(m.qos)
    assert {"<base>/readings", "<base>/alarm", "<base>/config/error"} <= set(seen)
    missing = undocumented(seen, section("3.2"))
    assert not missing, "docs/contract.md lacks the topics %s" % missing
    # The subscriber asked for QoS 1, so it gets each message at the QoS the device sent it with.
    wrong = {t: (qos, table.get(t)) for t, qos in seen.items() if t not in table or qos != {table[t][0]}}
    assert not wrong, "topics whose QoS differs from the contract's table (seen, table): %s" % wrong


def test_the_retained_topics_are_exactly_those_the_contract_says(real):
    table = _topic_table(contract())
    retained = {generic_topic(t) for t in real["retained"]}
    said = {t for t, (_, keep) in table.items() if keep}
    assert retained == said, "retained by the broker: %s; retained in the contract: %s" % (retained, said)


def _decimals_table(doc):
    """{key: allowed decimals} from the readings tables of section 4 ("integer" is 0)."""
    section = doc.split("## 4. Readings", 1)[1].split("\n## ", 1)[0]
    out = {}
    for line in section.splitlines():
        m = re.match(r"\| `(\w+)` \| [^|]+ \| ([^|]+) \|", line)
        if not m or m.group(2).strip() == "-":
            continue
        cell = m.group(2).strip()
        allowed = ({0} if cell == "integer" else {1, 2, 3} if cell.startswith("1 to 3") else {int(cell)})
        assert out.setdefault(m.group(1), allowed) == allowed, "two decimals for %s" % m.group(1)
    return out


def test_every_readings_figure_has_the_decimals_the_contract_gives(real):
    table = _decimals_table(contract())
    assert {"uptime_s", "interval_s", "voltage_v", "pf", "import_wh"} <= set(table)
    raw = [m.payload.decode() for m in real["messages"] if m.topic == BASE + "/readings"]
    assert len(raw) >= 2
    wrong = set()
    for text in raw:
        for key, number in re.findall(r'"(\w+)": (-?[0-9][0-9.eE+-]*)', text):
            places = len(number.split(".")[1]) if "." in number else 0
            if key not in table or "e" in number.lower() or places not in table[key]:
                wrong.add((key, number))
    assert not wrong, "figures not written as the contract says: %s" % sorted(wrong)[:20]


def test_the_alarm_current_has_the_decimals_the_contract_gives(real):
    raw = [m.payload.decode() for m in real["messages"] if m.topic == BASE + "/alarm"]
    assert raw
    for text in raw:
        current = re.search(r'"current_a": (-?[0-9][0-9.eE+-]*)', text).group(1)
        assert re.fullmatch(r"[0-9]+\.[0-9]{2}", current), text     # contract 3.4: 2 decimals


def test_every_setting_is_in_the_contract():
    paths = keys(settings.DEFAULTS, dotted=True)
    assert {"interval_s", "mqtt.password", "calibration.i_phase_deg"} <= paths
    missing = undocumented(paths, section("5"))
    assert not missing, "docs/contract.md lacks the settings %s" % missing


def _portal_routes():
    """("METHOD", "/path") of every route firmware/portal.py answers."""
    with open(os.path.join(ROOT, "firmware", "portal.py"), encoding="utf-8") as f:
        source = f.read()
    return set(re.findall(r'\(\s*"(GET|POST)"\s*,\s*"(/[^"]*)"\s*\)', source))


def test_every_portal_route_and_probe_is_in_the_contract():
    routes = _portal_routes()
    assert ("GET", "/api/status") in routes and ("POST", "/connect") in routes, routes
    missing = undocumented({"%s %s" % r for r in routes} | set(portal.PROBES), section("2.3"))
    assert not missing, "docs/contract.md lacks the portal routes or probes %s" % missing


def test_every_route_in_the_contract_is_answered_by_the_portal(real):
    doc = contract()
    after = doc.split("**Routes**", 1)[1].splitlines()
    start = next(k for k, line in enumerate(after) if line.startswith("|"))
    table = []
    for line in after[start:]:
        if not line.startswith("|"):
            break
        table.append(line)
    documented = set(re.findall(r"^\| `(GET|POST) (/[^`]*)` \|", "\n".join(table), re.M))
    assert documented == _portal_routes()
    for method, path in documented:
        body = b"{}" if method == "POST" else None
        status, _, _ = http(real["rig"].sim, method, path, body, "application/json" if body else None)
        assert status != 404, (method, path, status)


def test_every_flag_and_onboarding_word_is_in_the_contract():
    flags, words = set(diagnostics.ADVICE), set(portal.STATE_WORDS) | set(portal.ERROR_WORDS)
    assert "reversed" in flags and {"failed", "no_ip"} <= words
    missing = undocumented(flags, section("4")) + undocumented(words, section("2.3"))
    assert not missing, "docs/contract.md lacks %s" % missing
