# release.py: the release header's constants, the manifest's strict parsing (messages naming the field),
# the install checks and their reasons, versions, and the device's update key file.
import json

import release
from fwfiles import LogCapture, rmtree, scratch, write_raw
from fwtest import raises
from p256_vectors import VECTORS

SHA = "0123456789abcdef" * 4
KEY_HEX = VECTORS[0][1]         # a public key on the curve (made with cryptography)


def _manifest(**changes):
    doc = {"format": 1, "version": "0.2.0", "board": "esp32-devkitc", "micropython": "1.22", "kind": "mpy",
           "arch": "xtensawin", "files": [{"name": "app.mpy", "size": 1234, "sha256": SHA},
                                          {"name": "board.mpy", "size": 0, "sha256": SHA}]}
    for k, v in changes.items():
        if v is None:
            del doc[k]
        else:
            doc[k] = v
    return doc


def _data(doc):
    return json.dumps(doc).encode()


def _refused(data):
    e = raises(release.ReleaseError, release.parse_manifest, data)
    assert e.reason == "bad_signature", e.reason
    assert e.message.startswith("manifest: "), e.message
    return e.message


def test_constants_of_the_format():
    assert release.HEADER == b"AGREL1\n"
    assert release.MAX_MANIFEST == 8192
    assert release.SIG_LEN == 64


def test_release_error_carries_reason_and_message():
    e = release.ReleaseError("bad_hash", "app.mpy differs")
    assert e.reason == "bad_hash" and e.message == "app.mpy differs"
    assert isinstance(e, Exception)


def test_a_good_manifest_parses_to_its_dict():
    doc = _manifest()
    assert release.parse_manifest(_data(doc)) == doc
    assert release.parse_manifest(bytearray(_data(doc))) == doc
    image = _manifest(kind="image", files=[{"name": "firmware.bin", "size": 1500000, "sha256": SHA}])
    assert release.parse_manifest(_data(image))["kind"] == "image"
    assert release.parse_manifest(_data(_manifest(micropython="1.23.0", arch="x64")))["arch"] == "x64"
    # Names at the edges of the rule.
    names = ["a", "x" * 32, "A-Z_a.z-09", "..a", ".hidden"]
    files = [{"name": n, "size": 1, "sha256": SHA} for n in names]
    assert [f["name"] for f in release.parse_manifest(_data(_manifest(files=files)))["files"]] == names


def test_not_a_manifest_is_bad_signature():
    assert "not valid JSON" in _refused(b"{\"format\": 1,")
    assert "not valid JSON" in _refused(b"\xff\xfe{}")
    assert "not valid JSON" in _refused(b"")
    assert "JSON object" in _refused(b"[1, 2]")
    assert "JSON object" in _refused(b"null")
    long = _data(_manifest(pad="x" * 8192))
    assert "at most 8192" in _refused(long)


def test_each_bad_field_is_named():
    cases = (
        ({"format": None}, "format"), ({"format": 2}, "format"), ({"format": "1"}, "format"),
        ({"format": True}, "format"), ({"format": 1.0}, "format"),
        ({"version": None}, "version"), ({"version": "1.2"}, "version"), ({"version": "1.2.3.4"}, "version"),
        ({"version": "v1.2.3"}, "version"), ({"version": "1.2.x"}, "version"),
        ({"version": "1..3"}, "version"), ({"version": "01.2.3"}, "version"), ({"version": 123}, "version"),
        ({"version": "1.2.-3"}, "version"),
        ({"version": "123456.0.0"}, "version"),
        ({"board": None}, "board"), ({"board": ""}, "board"), ({"board": "a/b"}, "board"),
        ({"board": "x" * 33}, "board"), ({"board": 7}, "board"),
        ({"micropython": None}, "micropython"), ({"micropython": "1"}, "micropython"),
        ({"micropython": "1.22.0.1"}, "micropython"), ({"micropython": 1.22}, "micropython"),
        ({"kind": None}, "kind"), ({"kind": "zip"}, "kind"), ({"kind": "MPY"}, "kind"),
        ({"arch": None}, "arch"), ({"arch": "armv7m"}, "arch"),
        ({"files": None}, "files"), ({"files": []}, "files"), ({"files": {}}, "files"),
        ({"files": ["a.mpy"]}, "files[0] must be an object"),
        ({"kind": "image"}, "files: an image release holds exactly one file"),
    )
    for changes, field in cases:
        message = _refused(_data(_manifest(**changes)))
        assert message.startswith("manifest: " + field), (changes, message)


def test_each_bad_file_entry_is_named():
    def files(*entries):
        return _data(_manifest(files=[{"name": "ok.mpy", "size": 5, "sha256": SHA}] + list(entries)))

    good = {"name": "x.mpy", "size": 1, "sha256": SHA}
    cases = []
    for name in ("", ".", "..", "a/b", "../x", "/x", "a\\b", "x" * 33, "a b", "é.mpy", None, 5):
        cases.append((dict(good, name=name), "files[1].name"))
    cases.append((dict(good, name="ok.mpy"), "files[1].name ok.mpy appears twice"))
    cases.append((dict(good, name="main.py"), "files[1].name main.py"))
    cases.append((dict(good, name="main.mpy"), "files[1].name main.mpy"))
    for size in (-1, 1.5, "10", None, True):
        cases.append((dict(good, size=size), "files[1].size"))
    for sha in (SHA.upper(), SHA[:63], SHA + "0", "g" * 64, None, 0):
        cases.append((dict(good, sha256=sha), "files[1].sha256"))
    cases.append(("app.mpy", "files[1] must be an object"))
    for entry, field in cases:
        message = _refused(files(entry))
        assert message.startswith("manifest: " + field), (entry, message)
    bad_name = _refused(files(dict(good, name="a/b")))
    assert "'a/b'" in bad_name


def _check_reason(manifest, *args, **kw):
    return raises(release.ReleaseError, release.check, manifest, *args, **kw)


def test_check_accepts_a_newer_release_for_this_board():
    m = _manifest(version="0.10.0")
    release.check(m, "esp32-devkitc", "0.9.9", "1.22")
    release.check(m, "esp32-devkitc", "0.9.9", "1.28", expected_version="0.10.0", arch="xtensawin")
    release.check(m, "esp32-devkitc", "0.9.9", (1, 22, 0))
    release.check(m, "esp32-devkitc", "0.9.9", "1.22.1")


def test_check_refuses_with_the_reason():
    m = _manifest(version="0.2.0", micropython="1.23")
    e = _check_reason(m, "olimex-esp32-poe", "0.1.0", "1.28")
    assert e.reason == "wrong_board" and "esp32-devkitc" in e.message and "olimex-esp32-poe" in e.message
    e = _check_reason(m, "esp32-devkitc", "0.1.0", "1.28", arch="x64")
    assert e.reason == "wrong_board" and "xtensawin" in e.message
    for old_mp in ("1.22", "1.22.2", (1, 22, 0), "0.99"):
        e = _check_reason(m, "esp32-devkitc", "0.1.0", old_mp)
        assert e.reason == "wrong_board" and "MicroPython 1.23" in e.message, (old_mp, e.message)
    e = _check_reason(m, "esp32-devkitc", "0.1.0", "1.28", expected_version="0.3.0")
    assert e.reason == "bad_url" and "0.3.0" in e.message and "0.2.0" in e.message
    for running in ("0.2.0", "0.2.1", "0.10.0", "1.0.0"):
        e = _check_reason(m, "esp32-devkitc", running, "1.28")
        assert e.reason == "older_version" and running in e.message, running
    unknown = dict(m, format=2)
    assert _check_reason(unknown, "esp32-devkitc", "0.1.0", "1.28").reason == "bad_signature"


def test_version_key_orders_numerically():
    assert release.version_key("0.10.0") > release.version_key("0.9.9")
    assert release.version_key("1.0.0") > release.version_key("0.99.99")
    assert release.version_key("2.3.4") == (2, 3, 4)
    for bad in ("1.2", "1.2.3.4", "a.b.c", "", None, "1.02.3", "1.2.3 "):
        raises(ValueError, release.version_key, bad)


def test_read_key_returns_the_key_or_none_and_logs_why():
    d = scratch()
    with LogCapture() as logs:
        assert release.read_key(d) is None
    assert "no update key" in logs.text()
    write_raw(d + "update_key.json", json.dumps({"p256": KEY_HEX}))
    assert release.read_key(d) == bytes.fromhex(KEY_HEX)
    assert len(release.read_key(d)) == 64
    off = KEY_HEX[:-1] + ("0" if KEY_HEX[-1] != "0" else "1")
    for broken in ("{", json.dumps({"p256": KEY_HEX[:-2]}), json.dumps({"p256": KEY_HEX.upper()}),
                   json.dumps({"p256": off}), json.dumps({"ed25519": KEY_HEX}), json.dumps([KEY_HEX])):
        write_raw(d + "update_key.json", broken)
        with LogCapture() as logs:
            assert release.read_key(d) is None, broken
        assert "update key" in logs.text() and "unusable" in logs.text(), logs.text()
    rmtree(d)
