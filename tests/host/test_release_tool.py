"""tools/release end to end: a new key (0600, never overwritten), a release built from the firmware and read
back with the firmware's own release.py and p256.py, another key's signature refused; tools/provision
--update-key into a state folder and onto a (fake) device, bad keys refused with nothing written."""
import hashlib
import json
import os
import stat
import subprocess
import sys

import pytest
from simctl import ROOT

from mpenv import MICROPYTHON, use_firmware_on_cpython

use_firmware_on_cpython()
import p256  # noqa: E402
import release  # noqa: E402

FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_mpremote.py")
ESP32_ABI = 6 | ((10 << 2) | 3) << 8      # sys.implementation._mpy of MicroPython 1.23+ on an ESP32


def run(tool, *args):
    return subprocess.run([os.path.join(ROOT, "tools", tool)] + [str(a) for a in args], cwd=ROOT,
                          capture_output=True, text=True)


def firmware_modules():
    return sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "firmware"))
                  if f.endswith(".py") and f not in ("main.py", "boot_loader.py"))


def native_modules():
    out = []
    for m in firmware_modules():
        with open(os.path.join(ROOT, "firmware", m + ".py")) as f:
            text = f.read()
        if "@micropython.viper" in text or "@micropython.native" in text:
            out.append(m)
    return out


def unpack(blob):
    """(manifest bytes, signature, {name: bytes}) of a release file, split as the format says."""
    n0 = len(release.HEADER)
    assert blob[:n0] == release.HEADER
    n = int.from_bytes(blob[n0:n0 + 4], "big")
    text = blob[n0 + 4:n0 + 4 + n]
    sig = blob[n0 + 4 + n:n0 + 4 + n + 64]
    at = n0 + 4 + n + 64
    files = {}
    for f in json.loads(text)["files"]:
        files[f["name"]] = blob[at:at + f["size"]]
        at += f["size"]
    assert at == len(blob), "bytes after the last file"
    return text, sig, files


def pub_of(path):
    return bytes.fromhex(json.loads(path.read_text())["p256"])


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    for name in ("vendor", "other"):
        out = run("release", "--new-key", d / (name + ".pem"))
        assert out.returncode == 0, out.stderr
    return d


def test_new_key_is_private_0600_with_a_device_format_public_key_and_never_overwritten(keys, tmp_path):
    pem = keys / "vendor.pem"
    assert stat.S_IMODE(os.stat(pem).st_mode) == 0o600
    assert pem.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    doc = json.loads((keys / "vendor.pub.json").read_text())
    assert list(doc) == ["p256"] and len(doc["p256"]) == 128 and doc["p256"] == doc["p256"].lower()
    assert p256.public_key_ok(bytes.fromhex(doc["p256"]))
    before = pem.read_bytes(), (keys / "vendor.pub.json").read_bytes()
    out = run("release", "--new-key", pem)
    assert out.returncode != 0 and "never overwritten" in out.stderr
    assert (pem.read_bytes(), (keys / "vendor.pub.json").read_bytes()) == before
    # A lone public key file in the way refuses too, and no private key is left behind.
    (tmp_path / "k.pub.json").write_text("{}")
    assert run("release", "--new-key", tmp_path / "k.pem").returncode != 0
    assert not (tmp_path / "k.pem").exists()


def test_a_release_reads_back_with_the_firmware_and_verifies_with_the_key(keys, tmp_path):
    agr = tmp_path / "a.agr"
    out = run("release", "--key", keys / "vendor.pem", "--version", "0.2.0", "--board", "esp32_devkitc",
              "--out", agr)
    assert out.returncode == 0, out.stderr
    text, sig, files = unpack(agr.read_bytes())
    manifest = release.parse_manifest(text)
    assert p256.verify(pub_of(keys / "vendor.pub.json"), hashlib.sha256(text).digest(), sig)
    assert not p256.verify(pub_of(keys / "other.pub.json"), hashlib.sha256(text).digest(), sig)
    assert {k: manifest[k] for k in ("format", "version", "board", "micropython", "kind", "arch")} == {
        "format": 1, "version": "0.2.0", "board": "esp32-devkitc", "micropython": "1.22", "kind": "mpy",
        "arch": "xtensawin"}
    # What make deploy installs, main.py (the boot loader) aside; native modules as source for 1.22.
    native = native_modules()
    assert native, "the firmware has viper modules: this test expects some"
    expected = sorted([m + (".py" if m in native else ".mpy") for m in firmware_modules()] + ["board.mpy"])
    assert sorted(files) == expected
    assert not any(n.startswith(("main.", "boot_loader.")) for n in files)
    for f in manifest["files"]:
        data = files[f["name"]]
        assert len(data) == f["size"] and hashlib.sha256(data).hexdigest() == f["sha256"], f["name"]
    for m in native:
        assert files[m + ".py"] == open(os.path.join(ROOT, "firmware", m + ".py"), "rb").read()
    assert files["board.mpy"][:2] == b"M\x06" and b"esp32-devkitc" in files["board.mpy"]
    assert b"0.2.0" in files["version.mpy"]
    release.check(manifest, "esp32-devkitc", "0.1.0", "1.22")
    assert "as source" in out.stdout


def test_a_simulator_release_runs_on_micropython_and_says_its_version(keys, tmp_path):
    agr = tmp_path / "sim.agr"
    out = run("release", "--key", keys / "vendor.pem", "--version", "3.4.5", "--board", "sim",
              "--arch", "x64", "--micropython", "1.23", "--out", agr)
    assert out.returncode == 0, out.stderr
    text, sig, files = unpack(agr.read_bytes())
    manifest = release.parse_manifest(text)
    assert manifest["arch"] == "x64" and manifest["board"] == "sim" and manifest["micropython"] == "1.23"
    assert sorted(files) == sorted([m + ".mpy" for m in firmware_modules()] + ["board.mpy"])   # all .mpy
    app = tmp_path / "app"
    app.mkdir()
    for name, data in files.items():
        (app / name).write_bytes(data)
    code = ("import sys; sys.path[:0] = [%r]\nimport version, board, accum\n"
            "print(version.VERSION, board.NAME)" % str(app))
    proc = subprocess.run([MICROPYTHON, "-c", code], capture_output=True, text=True, env={"MICROPYPATH": ""})
    assert proc.stdout.split() == ["3.4.5", "sim"], proc.stdout + proc.stderr


def test_an_image_release_holds_the_one_image(keys, tmp_path):
    image = tmp_path / "fw.bin"
    image.write_bytes(os.urandom(5000))
    agr = tmp_path / "img.agr"
    out = run("release", "--key", keys / "vendor.pem", "--version", "1.0.0", "--board", "olimex_esp32_poe",
              "--image", image, "--out", agr)
    assert out.returncode == 0, out.stderr
    text, sig, files = unpack(agr.read_bytes())
    assert release.parse_manifest(text)["kind"] == "image"
    assert files == {"firmware.bin": image.read_bytes()}


@pytest.mark.parametrize("args,says", [
    (["--version", "0.2"], "--version"),
    (["--version", "v0.2.0"], "--version"),
    (["--version", "0.2.0", "--board", "no_such_board"], "no such board"),
    (["--version", "0.2.0", "--micropython", "one"], "--micropython"),
    (["--version", "0.2.0", "--key", "/nonexistent.pem"], "cannot read the key"),
])
def test_bad_arguments_write_no_release(keys, tmp_path, args, says):
    base = {"--key": str(keys / "vendor.pem"), "--board": "esp32_devkitc", "--out": str(tmp_path / "x.agr")}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    out = run("release", *[x for kv in base.items() for x in kv])
    assert out.returncode != 0 and says in out.stderr, out.stderr
    assert os.listdir(tmp_path) == []


def test_provision_update_key_into_a_state_folder(keys, tmp_path):
    state = tmp_path / "state"
    out = run("provision", "--update-key", keys / "vendor.pub.json", "--state", state)
    assert out.returncode == 0, out.stderr
    written = json.loads((state / "update_key.json").read_text())
    assert written == json.loads((keys / "vendor.pub.json").read_text())
    assert release.read_key(str(state)) == pub_of(keys / "vendor.pub.json")
    # Another key needs --force; the same one again is fine.
    out = run("provision", "--update-key", keys / "other.pub.json", "--state", state)
    assert out.returncode != 0 and "--force" in out.stderr and "nothing written" in out.stderr
    assert release.read_key(str(state)) == pub_of(keys / "vendor.pub.json")
    assert run("provision", "--update-key", keys / "vendor.pub.json", "--state", state).returncode == 0
    out = run("provision", "--update-key", keys / "other.pub.json", "--state", state, "--force")
    assert out.returncode == 0, out.stderr
    assert release.read_key(str(state)) == pub_of(keys / "other.pub.json")


def test_provision_refuses_a_bad_key_and_writes_nothing(keys, tmp_path):
    good = json.loads((keys / "vendor.pub.json").read_text())["p256"]
    off = good[:-1] + ("1" if good[-1] == "0" else "0")
    bad = {"not_json": "{", "list": json.dumps([good]), "short": json.dumps({"p256": good[:126]}),
           "not_hex": json.dumps({"p256": "z" * 128}), "off_curve": json.dumps({"p256": off}),
           "zero": json.dumps({"p256": "0" * 128}), "other_field": json.dumps({"ed25519": good})}
    for name, text in bad.items():
        path = tmp_path / (name + ".json")
        path.write_text(text)
        state = tmp_path / ("state-" + name)
        out = run("provision", "--update-key", path, "--state", state)
        assert out.returncode != 0 and "nothing written" in out.stderr, (name, out.stderr)
        assert not state.exists(), name
    out = run("provision", "--update-key", tmp_path / "missing.json", "--state", tmp_path / "s")
    assert out.returncode != 0 and not (tmp_path / "s").exists()
    # Upper-case hex is the same key: written in the devices' lower-case form.
    upper = tmp_path / "upper.json"
    upper.write_text(json.dumps({"p256": good.upper()}))
    assert run("provision", "--update-key", upper, "--state", tmp_path / "u").returncode == 0
    assert json.loads((tmp_path / "u" / "update_key.json").read_text()) == {"p256": good}


def test_provision_update_key_onto_a_device(keys, tmp_path, monkeypatch):
    flash = tmp_path / "flash"
    flash.mkdir()
    wrapper = tmp_path / "mpremote"
    wrapper.write_text('#!/bin/sh\nexec "%s" "%s" "$@"\n' % (sys.executable, FAKE))
    wrapper.chmod(0o755)
    monkeypatch.setenv("AMPGUARD_MPREMOTE", str(wrapper))
    monkeypatch.setenv("FAKE_DEVICE_DIR", str(flash))
    monkeypatch.setenv("FAKE_MPREMOTE_LOG", str(tmp_path / "mpremote.log"))
    monkeypatch.setenv("FAKE_MPY_ABI", str(ESP32_ABI))
    out = run("provision", "--update-key", keys / "vendor.pub.json", "--port", "/dev/fake")
    assert out.returncode == 0, out.stdout + out.stderr
    assert release.read_key(str(flash)) == pub_of(keys / "vendor.pub.json")
    assert not (flash / "update_key.new").exists()
    out = run("provision", "--update-key", keys / "other.pub.json", "--port", "/dev/fake")
    assert out.returncode != 0 and "--force" in out.stderr
    assert release.read_key(str(flash)) == pub_of(keys / "vendor.pub.json")
    out = run("provision", "--update-key", keys / "other.pub.json", "--port", "/dev/fake", "--force")
    assert out.returncode == 0, out.stdout + out.stderr
    assert release.read_key(str(flash)) == pub_of(keys / "other.pub.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"p256": "0" * 128}))
    before = sorted(os.listdir(flash))
    out = run("provision", "--update-key", bad, "--port", "/dev/fake")
    assert out.returncode != 0 and "nothing written" in out.stderr
    assert sorted(os.listdir(flash)) == before
