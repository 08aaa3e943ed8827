# The uplink's session side (firmware/uplink.py) with a stand-in device, on both runtimes: the state
# /api/status shows, config/set answers, the back-off. Its round trips with a real mosquitto and the
# simulated meter are in tests/host/test_uplink*.py.
import asyncio
import json

import uplink
from fwfiles import LogCapture, read_raw, rmtree, scratch
from settings import Settings

SERIAL = "2312000042G"
BASE = "ampguard/" + SERIAL


class Net:
    def __init__(self, network):
        self.network = network

    def status(self):
        return {"network": self.network, "ip": "10.0.0.2" if self.network else None}


class Hal:
    def __init__(self, broker):
        self.broker = broker

    def broker_override(self):
        return self.broker

    def dns_server(self):
        return None


class Device:
    def __init__(self, network="lan", broker=None, settings=None):
        self.flash_dir = scratch()
        self.settings = Settings(self.flash_dir)
        if settings:
            self.settings.update(settings)
        self.serial = SERIAL
        self.net = Net(network)
        self.hal = Hal(broker)
        self.readings = None


def _states_while_running(dev, steps):
    """Run the uplink task; after each (ms, change) step, the state it shows."""
    up = uplink.Uplink(dev)

    async def main():
        task = asyncio.create_task(up.run())
        seen = []
        for ms, change in steps:
            change()
            await asyncio.sleep_ms(ms)
            seen.append(up.state)
        task.cancel()
        await asyncio.sleep_ms(10)
        return seen

    with LogCapture() as logs:
        seen = asyncio.run(main())
    return seen, logs


def _nothing():
    pass


def test_the_uplink_is_disabled_while_there_is_no_network_to_reach_the_broker():
    # Port 1 on loopback: nothing listens there, a try is refused at once.
    dev = Device(network=None, settings={"mqtt": {"host": "127.0.0.1", "port": 1}})

    def network_back():
        dev.net.network = "lan"

    def network_gone():
        dev.net.network = None

    try:
        seen, logs = _states_while_running(dev, [(700, _nothing), (700, network_back), (300, network_gone)])
        assert seen == ["disabled", "connecting", "disabled"], seen
        assert "mqtt: 127.0.0.1:1: " in logs.text()          # it did try while the network was there
    finally:
        rmtree(dev.flash_dir)


def test_the_uplink_is_disabled_without_a_broker_and_connecting_to_one_it_cannot_reach():
    dev = Device(network="lan")
    try:
        seen, _ = _states_while_running(dev, [(300, _nothing)])
        assert seen == ["disabled"]
        dev.hal.broker = ("127.0.0.1", 1)                   # tools/sim --broker
        seen, _ = _states_while_running(dev, [(300, _nothing)])
        assert seen == ["connecting"]
    finally:
        rmtree(dev.flash_dir)


def _config_set(dev, msg):
    up = uplink.Uplink(dev)
    with LogCapture():
        up.incoming(BASE + "/config/set", msg)
    return up


def test_a_valid_config_set_is_stored_and_echoed_retained():
    dev = Device()
    try:
        up = _config_set(dev, b'{"interval_s": 2, "ha_discovery": true}')
        assert dev.settings.current["interval_s"] == 2
        assert json.loads(read_raw(dev.flash_dir + "settings.json"))["interval_s"] == 2
        [(topic, payload, retain, qos)] = up.outbox
        assert (topic, retain, qos) == (BASE + "/config", True, 1)
        assert json.loads(payload)["interval_s"] == 2 and "password" not in json.loads(payload)["mqtt"]
        assert up.republish and not up.reconnect and up.wake.is_set()     # discovery switched on
        up = _config_set(dev, b'{"mqtt": {"port": 8883}}')
        assert up.reconnect                                  # a new broker setting: a new session
    finally:
        rmtree(dev.flash_dir)


def test_an_invalid_config_set_changes_nothing_and_is_answered_on_config_error():
    dev = Device()
    try:
        for msg, field in ((b"{not json", ""), (b"[1, 2]", ""), (b'{"x": "' + b"a" * 3000 + b'"}', ""),
                           (b'{"interval_s": 5, "sensor": "huge"}', "sensor"),
                           (b'{"mqtt": {"port": 70000}}', "mqtt.port")):
            up = _config_set(dev, msg)
            [(topic, payload, retain, qos)] = up.outbox
            assert (topic, retain, qos) == (BASE + "/config/error", False, 1)
            body = json.loads(payload)
            assert body["field"] == field and body["error"], (msg[:20], body)
            assert dev.settings.current["interval_s"] == 1 and not up.reconnect and not up.republish
        assert dev.settings.source == "defaults"            # nothing was stored
    finally:
        rmtree(dev.flash_dir)


def test_home_assistant_coming_online_asks_for_discovery_only_when_it_is_on():
    dev = Device()
    try:
        up = uplink.Uplink(dev)
        up.incoming("homeassistant/status", b"online")
        assert not up.republish
        dev.settings.update({"ha_discovery": True})
        up.incoming("homeassistant/status", b"offline")
        assert not up.republish
        up.incoming("homeassistant/status", b"online")
        assert up.republish and up.wake.is_set()
    finally:
        rmtree(dev.flash_dir)


def test_back_off_doubles_from_one_second_to_at_most_sixty_with_jitter():
    for failures, base in ((0, 1), (1, 2), (2, 4), (5, 32), (6, 60), (7, 60), (100, 60)):
        seen = [uplink.backoff_s(failures) for _ in range(50)]
        assert all(0.8 * base <= d <= base for d in seen), (failures, min(seen), max(seen))
        assert max(seen) - min(seen) > 0.02 * base          # jitter: a fleet does not retry in step
