# The update command (firmware/update.py) on every runtime: what update/set accepts and how a bad one is
# answered (naming the field), and that a second one is refused while one runs. Whole updates against a
# real HTTPS server and mosquitto: tests/host/test_update.py.
import asyncio

import update
from fwtest import raises


def test_an_https_url_is_split_into_host_port_and_path():
    assert update.parse_url("https://releases.example.com/ampguard/0.2.0.agr") == (
        "releases.example.com", 443, "/ampguard/0.2.0.agr")
    assert update.parse_url("https://10.0.0.5:8443/r.agr") == ("10.0.0.5", 8443, "/r.agr")
    assert update.parse_url("https://host") == ("host", 443, "/")


def test_urls_that_are_not_https_or_not_sane_are_refused_naming_url():
    for bad in ("http://host/r.agr", "ftp://host/r", "https://", "https:///path", "https://host:99999/r",
                "https://host:x/r", "https://user@host/r", "https://ho st/r", "https://host/\u00e9",
                "https://host/" + "a" * 600, 42, None, ""):
        err = raises(update.CommandError, update.parse_url, bad)
        assert err.field == "url", bad


def test_a_command_names_its_bad_field():
    cases = ((b"not json", ""), (b"[1]", ""), (b'{"version": "1.0.0"}', "url"),
             (b'{"url": "http://h/r"}', "url"), (b'{"url": "https://h/r", "version": 2}', "version"),
             (b'{"url": "https://h/r", "force": true}', "force"))
    for msg, field in cases:
        err = raises(update.CommandError, update.parse_command, msg)
        assert err.field == field, (msg, err.field, str(err))
    assert update.parse_command(b'{"url": "https://h/r.agr"}') == ("https://h/r.agr", None)
    got = update.parse_command(b'{"url": "https://h/r.agr", "version": "0.2.0"}')
    assert got == ("https://h/r.agr", "0.2.0"), got


class _Uplink:
    def __init__(self):
        self.reports = []

    def update_report(self, report):
        self.reports.append(report)


class _Dev:
    def __init__(self):
        self.uplink = _Uplink()


def test_a_bad_command_changes_nothing_and_a_second_one_is_refused_while_one_runs():
    dev = _Dev()
    u = update.Updater(dev)
    gate = asyncio.Event()

    async def held(url, version):          # stands in for the download: runs until the gate opens
        u.publish(update._report("downloading", 0, version))
        await gate.wait()

    u.run = held

    async def main():
        first = u.command(b'{"url": "ftp://h/r"}')
        assert first == {"error": first["error"], "field": "url"} and u.report["state"] == "idle", first
        assert u.command(b'{"url": "https://h/r.agr", "version": "0.2.0"}') is None
        await asyncio.sleep_ms(10)
        second = u.command(b'{"url": "https://h/other.agr"}')
        gate.set()
        await asyncio.sleep_ms(10)
        third = u.command(b'{"url": "https://h/again.agr"}')     # the first one ended: accepted
        await asyncio.sleep_ms(10)
        gate.set()
        return second, third

    second, third = asyncio.run(main())
    assert second["field"] == "url" and "running" in second["error"], second
    assert third is None
    assert [r["state"] for r in dev.uplink.reports] == ["downloading", "downloading"]
