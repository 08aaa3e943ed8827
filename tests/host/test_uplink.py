"""The MQTT uplink of contract §3: the simulated meter against a real mosquitto, watched by a subscriber."""
import json
import math
import signal
import time

import pytest
from uplink_rig import (
    BASE,
    SCENARIO,
    SERIAL,
    Rig,
    api_readings,
    assert_on_time,
    late_warnings,
    windows_on_time,
)


@pytest.fixture
def rig(tmp_path):
    """A meter of its own, for a test that changes the device's settings, session or power."""
    r = Rig(tmp_path).start()
    yield r
    r.close()


@pytest.fixture(scope="module")
def shared_rig(tmp_path_factory):
    """One meter for the tests that change nothing on it (and check so): started once per module."""
    r = Rig(tmp_path_factory.mktemp("shared-rig")).start()
    yield r
    r.close()


def test_status_info_and_config_are_retained_after_connect(shared_rig):
    shared_rig.sub.wait_for(BASE + "/status", lambda m: m.payload == b"online", timeout=20)
    # info again once the clock is set (a first one may say "unset": plain MQTT does not wait for it)
    info = shared_rig.sub.wait_for(BASE + "/info", lambda m: m.json()["clock"] == "set", timeout=20).json()
    assert info == {"serial": SERIAL, "firmware": info["firmware"], "board": "sim", "sensor": "home",
                    "rated_a": 100, "phases": 3, "network": "lan", "ip": info["ip"], "rssi_dbm": None,
                    "clock": "set"}
    assert info["firmware"] and info["ip"]
    config = shared_rig.sub.wait_for(BASE + "/config", timeout=10).json()
    assert config["interval_s"] == 1 and config["mqtt"]["password_set"] is False
    assert "password" not in config["mqtt"]
    # A subscriber that comes later gets status, info and config from the broker (retained).
    from brokers import Subscriber

    late = Subscriber(shared_rig.broker.host, shared_rig.broker.port, topics=[BASE + "/#"])
    try:
        for topic in ("status", "info", "config"):
            m = late.wait_for(BASE + "/" + topic, timeout=10)
            assert m.retain, topic
    finally:
        late.close()


def test_readings_every_interval_with_seq_growing_by_one_and_the_scenario_values(shared_rig):
    shared_rig.sub.wait_for(BASE + "/status", lambda m: m.payload == b"online", timeout=20)
    got = shared_rig.next_readings(6)
    assert_on_time(got)
    arrivals = [m.t for m in shared_rig.sub.messages(BASE + "/readings")][-6:]
    for a, b in zip(arrivals, arrivals[1:], strict=False):
        assert 0.7 <= b - a <= 1.3, arrivals                 # each one on its own interval
    r = got[-1]
    assert set(r) == {"seq", "uptime_s", "time", "interval_s", "freq_hz", "phases", "power_w",
                      "import_wh", "export_wh"}
    assert r["interval_s"] == 1 and abs(r["freq_hz"] - 50.0) < 0.05
    for ph, spec in zip(r["phases"], SCENARIO["phases"], strict=True):
        v, i = 230.0, spec["current_a"]
        p = v * i * math.cos(math.radians(spec.get("angle_deg", 0.0)))
        assert abs(ph["voltage_v"] - v) < 0.01 * v
        assert abs(ph["current_a"] - i) <= 0.01 * i + 0.01
        assert abs(ph["power_w"] - p) <= 0.01 * p + 1.0
        assert "advice" not in ph                             # the portal's words stay on the portal
    assert abs(r["power_w"] - sum(ph["power_w"] for ph in r["phases"])) < 0.5


def test_sigkill_makes_the_broker_say_offline_and_a_restart_says_online(rig):
    rig.sub.wait_for(BASE + "/status", lambda m: m.payload == b"online", timeout=20)
    t0 = time.monotonic()
    rig.sim.stop(signal.SIGKILL)                              # a power cut: the last will speaks
    rig.sub.wait_for(BASE + "/status", lambda m: m.payload == b"offline" and m.t > t0, timeout=10)
    t1 = time.monotonic()
    rig.sim.start()
    rig.sub.wait_for(BASE + "/status", lambda m: m.payload == b"online" and m.t > t1, timeout=30)
    rig.next_readings(2)


def test_orderly_shutdown_says_offline_itself(rig):
    rig.sub.wait_for(BASE + "/status", lambda m: m.payload == b"online", timeout=20)
    rig.next_readings(1)
    t0 = time.monotonic()
    assert rig.sim.stop(signal.SIGTERM) == 0
    rig.sub.wait_for(BASE + "/status", lambda m: m.payload == b"offline" and m.t > t0, timeout=5)
    assert "no orderly goodbye" not in rig.sim.log()
    assert "disconnected" in rig.sim.log()


def _config_set(rig, payload):
    t0 = time.monotonic()
    rig.sub.publish(BASE + "/config/set", payload if isinstance(payload, bytes) else json.dumps(payload))
    return t0


def test_config_set_valid_changes_are_applied_stored_and_echoed(rig):
    rig.sub.wait_for(BASE + "/config", timeout=20)
    t0 = _config_set(rig, {"interval_s": 2, "generation": True})
    echo = rig.sub.wait_for(BASE + "/config", lambda m: m.t > t0, timeout=10)
    assert echo.json()["interval_s"] == 2 and echo.json()["generation"] is True
    from brokers import Subscriber

    late = Subscriber(rig.broker.host, rig.broker.port, topics=[BASE + "/config"])
    try:
        kept = late.wait_for(BASE + "/config", timeout=10)
        assert kept.retain and kept.json() == echo.json()          # the broker keeps the new one
    finally:
        late.close()
    # The window already running when the change came still closes at the old interval: at most one.
    rig.sub.wait_for(BASE + "/readings", lambda m: m.t > echo.t and m.json()["interval_s"] == 2, timeout=10)
    old = [m for m in rig.sub.messages(BASE + "/readings") if m.t > echo.t and m.json()["interval_s"] == 1]
    assert len(old) <= 1, old
    got = rig.next_readings(3, timeout=15)
    assert [r["interval_s"] for r in got] == [2, 2, 2]
    assert_on_time(got, interval=2.0)
    with open(rig.sim.state + "/settings.json") as f:
        stored = json.load(f)
    assert stored["interval_s"] == 2 and stored["generation"] is True
    assert not rig.sub.messages(BASE + "/config/error")


@pytest.mark.parametrize("payload, field", [
    (b"{not json", ""),
    (b"[1, 2]", ""),
    (b'{"interval_s": 0}', "interval_s"),
    (b'{"interval_s": "5"}', "interval_s"),
    (b'{"colour": "red"}', "colour"),
    (b'{"mqtt": {"port": 70000}}', "mqtt.port"),
    (b'{"invert": [true, false]}', "invert"),
    (b'{"interval_s": 5, "sensor": "huge"}', "sensor"),       # one bad field: nothing at all applied
    (b'{"x": "' + b"a" * 5000 + b'"}', ""),
])
def test_config_set_invalid_changes_nothing_and_says_why(shared_rig, payload, field):
    shared_rig.sub.wait_for(BASE + "/config", timeout=20)
    shared_rig.next_readings(1)
    configs_before = len(shared_rig.sub.messages(BASE + "/config"))
    t0 = _config_set(shared_rig, payload)
    err = shared_rig.sub.wait_for(BASE + "/config/error", lambda m: m.t > t0, timeout=10)
    body = err.json()
    assert set(body) == {"error", "field"} and body["field"] == field and body["error"]
    assert not err.retain
    time.sleep(1.5)
    assert len(shared_rig.sub.messages(BASE + "/config")) == configs_before   # no echo: nothing changed
    assert shared_rig.next_readings(1)[0]["interval_s"] == 1
    import os

    assert not os.path.exists(shared_rig.sim.state + "/settings.json")        # nothing stored


def test_alarm_at_once_when_a_phase_exceeds_the_supply_limit(rig):
    rig.sub.wait_for(BASE + "/config", timeout=20)
    t0 = _config_set(rig, {"supply_max_a": 12})                # L2 carries 16 A, L1 10 A
    alarm = rig.sub.wait_for(BASE + "/alarm", lambda m: m.t > t0, timeout=5)
    body = alarm.json()
    assert set(body) == {"l", "current_a", "limit_a"}
    assert body["l"] == 2 and abs(body["current_a"] - 16.0) < 0.2 and body["limit_a"] == 12
    assert not alarm.retain and alarm.qos == 1
    # At once: from the first burst (~0.27 s) over the limit, not at the next readings interval.
    assert alarm.t - t0 < 0.8
    window = rig.sub.wait_for(BASE + "/readings", lambda m: m.json()["phases"][1]["current_a"] > 12,
                              timeout=5)
    assert alarm.t <= window.t + 0.05
    time.sleep(2)
    assert all(m.json()["l"] == 2 for m in rig.sub.messages(BASE + "/alarm"))


def test_home_assistant_discovery(rig):
    rig.sub.wait_for(BASE + "/config", timeout=20)
    t0 = _config_set(rig, {"ha_discovery": True})
    rig.sub.wait_for(BASE + "/config", lambda m: m.t > t0, timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        configs = [m for m in rig.sub.messages() if m.topic.startswith("homeassistant/sensor/")]
        if len(configs) >= 22:
            break
        time.sleep(0.2)
    by_topic = {m.topic: m for m in configs}
    assert len(by_topic) == 22, sorted(by_topic)      # 6 per phase, total power/import/export, frequency
    classes = {}
    for topic, m in by_topic.items():
        cfg = m.json()
        for key in ("name", "unique_id", "state_topic", "value_template", "availability_topic", "device"):
            assert key in cfg, (topic, key)
        assert cfg["state_topic"] == BASE + "/readings" and cfg["availability_topic"] == BASE + "/status"
        assert cfg["device"]["identifiers"]
        classes.setdefault(cfg.get("device_class"), set()).add((cfg.get("unit_of_measurement"),
                                                                 cfg.get("state_class")))
    assert classes["voltage"] == {("V", "measurement")}
    assert classes["current"] == {("A", "measurement")}
    assert classes["power"] == {("W", "measurement")}
    assert classes["energy"] == {("Wh", "total_increasing")}
    assert classes["frequency"] == {("Hz", "measurement")}
    from brokers import Subscriber

    late = Subscriber(rig.broker.host, rig.broker.port, topics=["homeassistant/sensor/#"])
    try:
        for topic in by_topic:
            assert late.wait_for(topic, timeout=10).retain            # kept for Home Assistant's restarts
    finally:
        late.close()
    # Home Assistant restarting asks for the entities again.
    t1 = time.monotonic()
    rig.sub.publish("homeassistant/status", b"online")
    again = rig.sub.wait_for(next(iter(by_topic)), lambda m: m.t > t1, timeout=10)
    assert again.json() == by_topic[again.topic].json()


@pytest.mark.slow
def test_metering_keeps_its_cadence_while_there_is_no_broker(tmp_path):
    rig = Rig(tmp_path)
    try:
        rig.broker.stop()
        rig.start()
        rig.sim.wait_for("mqtt: next try", timeout=20, count=3)
        first = api_readings(rig.sim)
        time.sleep(5)
        last = api_readings(rig.sim)
        assert windows_on_time(first, last), (first, last)
        assert last["import_wh"] > first["import_wh"]
        assert not late_warnings(rig.sim.log())
    finally:
        rig.close()


class NameServer:
    """A DNS server on loopback (dnspython builds the answers): `names` -> IPv4; silent=True never answers."""

    def __init__(self, names, silent=False):
        import socket
        import threading

        self.names = names
        self.silent = silent
        self.queries = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        import dns.message
        import dns.rrset

        while self.running:
            try:
                data, peer = self.sock.recvfrom(1500)
            except OSError:
                continue
            q = dns.message.from_wire(data)
            name = q.question[0].name.to_text().rstrip(".")
            self.queries.append(name)
            if self.silent:
                continue
            r = dns.message.make_response(q)
            if name in self.names:
                r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", self.names[name]))
            else:
                r.set_rcode(3)
            self.sock.sendto(r.to_wire(), peer)

    def close(self):
        self.running = False
        self.thread.join(2)
        self.sock.close()


def test_a_broker_name_is_resolved_through_the_networks_dns_server(tmp_path):
    ns = NameServer({"broker.test": "127.0.0.1"})
    rig = Rig(tmp_path, broker_arg=False, env={"AMPGUARD_DNS_SERVER": "127.0.0.1:%d" % ns.port})
    seed = {"mqtt": {"host": "broker.test", "port": rig.broker.port}}
    from uplink_rig import seed_state

    seed_state(rig.sim, seed)
    try:
        rig.start()
        rig.sub.wait_for(BASE + "/status", lambda m: m.payload == b"online", timeout=20)
        assert "broker.test" in ns.queries
        assert "connected to broker.test:%d" % rig.broker.port in rig.sim.log()
    finally:
        rig.close()
        ns.close()


@pytest.mark.slow
def test_a_dns_server_that_never_answers_stalls_nothing(tmp_path):
    ns = NameServer({}, silent=True)
    rig = Rig(tmp_path, broker_arg=False, env={"AMPGUARD_DNS_SERVER": "127.0.0.1:%d" % ns.port})
    from uplink_rig import seed_state

    seed_state(rig.sim, {"mqtt": {"host": "broker.test", "port": rig.broker.port}})
    try:
        rig.start()
        rig.sim.wait_for("did not answer", timeout=20)
        first = api_readings(rig.sim)
        time.sleep(4)
        last = api_readings(rig.sim)
        assert windows_on_time(first, last), (first, last)
        assert len(ns.queries) >= 2
        assert not late_warnings(rig.sim.log())
    finally:
        rig.close()
        ns.close()


def test_broker_credentials_from_config_set_reconnect_and_never_leave_the_device(rig):
    rig.sub.wait_for(BASE + "/config", timeout=20)
    secret = "s3cret-broker-pass"
    t0 = _config_set(rig, {"mqtt": {"username": "meter", "password": secret}})
    # A change of the broker settings ends the session in order and connects again with them.
    rig.sub.wait_for(BASE + "/status", lambda m: m.payload == b"offline" and m.t > t0, timeout=10)
    rig.sub.wait_for(BASE + "/status", lambda m: m.payload == b"online" and m.t > t0, timeout=15)
    echo = rig.sub.wait_for(BASE + "/config", lambda m: m.t > t0, timeout=10).json()
    assert echo["mqtt"]["username"] == "meter" and echo["mqtt"]["password_set"] is True
    rig.next_readings(2)
    assert "connected to" in rig.sim.log()
    for m in rig.sub.messages():
        if m.topic != BASE + "/config/set":          # what the test itself sent
            assert secret.encode() not in m.payload and b"12345678" not in m.payload, m.topic
    assert secret not in rig.sim.log() and "12345678" not in rig.sim.log()
