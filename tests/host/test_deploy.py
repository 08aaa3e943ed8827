"""Deployment and provisioning without a board: the file plan, ESP32 .mpy files, validation before
anything is written, and the device side played by tests/host/fake_mpremote.py (a folder as flash,
exec code run on the MicroPython unix port)."""
import json
import os
import subprocess
import sys

import pytest
from simctl import ROOT

PY = os.path.join(ROOT, ".venv", "bin", "python")
FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_mpremote.py")
XTENSAWIN = 10                       # mpy arch field (bits 2-7 of byte 2): MP_NATIVE_ARCH_XTENSAWIN
ESP32_ABI = 6 | ((XTENSAWIN << 2) | 3) << 8      # sys.implementation._mpy of MicroPython 1.23+ on an ESP32
ESP32_122_ABI = 6 | ((XTENSAWIN << 2) | 2) << 8  # MicroPython 1.22: mpy 6.2
DEVICE_BOARDS = ["esp32_devkitc", "olimex_esp32_poe", "wt32_eth01"]


def firmware_modules():
    return sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "firmware")) if f.endswith(".py"))


def has_native_code(module):
    with open(os.path.join(ROOT, "firmware", module + ".py")) as f:
        text = f.read()
    return any("@micropython." + e in text for e in ("viper", "native", "asm_xtensa"))


def expected_files():
    return sorted(["main.py", "board.mpy"] + [m + ".mpy" for m in firmware_modules() if m != "main"])


def listing(folder):
    return sorted(f for f in os.listdir(folder) if not f.startswith("."))


@pytest.fixture
def fake_device(tmp_path, monkeypatch):
    """A fake mpremote on PATH-less AMPGUARD_MPREMOTE; returns (flash folder, log reader)."""
    flash = tmp_path / "flash"
    flash.mkdir()
    log = tmp_path / "mpremote.log"
    wrapper = tmp_path / "mpremote"
    wrapper.write_text('#!/bin/sh\nexec "%s" "%s" "$@"\n' % (sys.executable, FAKE))
    wrapper.chmod(0o755)
    monkeypatch.setenv("AMPGUARD_MPREMOTE", str(wrapper))
    monkeypatch.setenv("FAKE_DEVICE_DIR", str(flash))
    monkeypatch.setenv("FAKE_MPREMOTE_LOG", str(log))
    monkeypatch.setenv("FAKE_MPY_ABI", str(ESP32_ABI))

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return flash, calls


def deploy(*args):
    return subprocess.run([PY, os.path.join(ROOT, "tools", "deploy.py")] + list(args), cwd=ROOT,
                          capture_output=True, text=True)


def read_identity(folder):
    return json.loads((folder / "identity.json").read_text())


def provision(*args, stdin=None):
    return subprocess.run([os.path.join(ROOT, "tools", "provision")] + list(args), cwd=ROOT,
                          capture_output=True, text=True, input=stdin)


@pytest.mark.parametrize("board", DEVICE_BOARDS)
def test_dry_run_builds_every_firmware_file_for_the_esp32(tmp_path, board):
    out = deploy("--board", board, "--dry-run", "--build-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert listing(tmp_path) == expected_files()
    for name in expected_files():
        assert ":" + name in out.stdout, name
        if not name.endswith(".mpy"):
            continue
        head = (tmp_path / name).read_bytes()[:4]
        assert head[0:1] == b"M" and head[1] == 6, name          # mpy version 6
        # Modules with viper/native code carry the ESP32's arch; plain bytecode carries none.
        native = name != "board.mpy" and has_native_code(name[:-4])
        assert head[2] >> 2 == (XTENSAWIN if native else 0), name
    assert "main.py" in out.stdout and (tmp_path / "main.py").read_bytes() == (
        open(os.path.join(ROOT, "firmware", "main.py"), "rb").read())


def test_the_board_file_is_installed_as_board(tmp_path):
    out = deploy("--board", "wt32_eth01", "--dry-run", "--build-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "boards/wt32_eth01.py" not in out.stdout and ":board.mpy" in out.stdout
    mpy = (tmp_path / "board.mpy").read_bytes()
    assert b"wt32-eth01" in mpy


def test_a_rebuild_replaces_the_previous_build(tmp_path):
    assert deploy("--board", "esp32_devkitc", "--dry-run", "--build-dir", str(tmp_path)).returncode == 0
    (tmp_path / "gone_module.mpy").write_bytes(b"M\x06\x00\x1f")
    assert deploy("--board", "esp32_devkitc", "--dry-run", "--build-dir", str(tmp_path)).returncode == 0
    assert listing(tmp_path) == expected_files()


def test_a_foreign_build_folder_is_never_emptied(tmp_path):
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    out = deploy("--board", "esp32_devkitc", "--dry-run", "--build-dir", str(tmp_path))
    assert out.returncode != 0 and "not empty" in out.stderr
    assert listing(tmp_path) == ["notes.txt"]


@pytest.mark.parametrize("bad", ["no_such_board", "sim"])
def test_bad_board_fails_before_anything_is_built(tmp_path, fake_device, bad):
    build = tmp_path / "build"
    for extra in (["--dry-run"], ["--port", "/dev/fake"]):
        out = deploy("--board", bad, "--build-dir", str(build), *extra)
        assert out.returncode != 0 and "deploy:" in out.stderr, out.stderr
        assert not build.exists()
    assert fake_device[1]() == []                                   # the device was never touched


def test_an_invalid_board_file_fails_naming_the_field(tmp_path, monkeypatch):
    # A broken board file among the shipped ones, through the same loader deploy uses.
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        import boardcfg
        import boardfile
    finally:
        sys.path.pop(0)
    bad = tmp_path / "bad_board.py"
    src = open(os.path.join(ROOT, "boards", "esp32_devkitc.py")).read()
    bad.write_text(src.replace('"i2": 32', '"i2": 25'))
    monkeypatch.setattr(boardfile, "BOARDS_DIR", str(tmp_path))
    with pytest.raises(boardcfg.BoardError) as e:
        boardfile.load("bad_board")
    assert "board esp32-devkitc: ADC_PINS['i2'] = GPIO 25 is on ADC2" in str(e.value)


def test_a_port_is_required_without_dry_run(tmp_path):
    out = deploy("--board", "esp32_devkitc", "--build-dir", str(tmp_path / "b"))
    assert out.returncode != 0 and "--port" in out.stderr
    assert not (tmp_path / "b").exists()


def test_deploy_copies_everything_and_clears_leftovers(tmp_path, fake_device):
    flash, calls = fake_device
    for name, text in (("identity.json", '{"serial": "x"}'), ("settings.json", "{}"), ("app.py", "old"),
                       ("main.mpy", "old")):
        (flash / name).write_text(text)
    (flash / "app_b").mkdir()                                             # an update over the air
    (flash / "app_b" / "app.mpy").write_text("old update")
    (flash / "app.json").write_text('{"active": "b"}')
    out = deploy("--board", "olimex_esp32_poe", "--port", "/dev/fake", "--build-dir", str(tmp_path / "b"))
    assert out.returncode == 0, out.stdout + out.stderr
    installed = set(os.listdir(flash))
    assert set(expected_files()) <= installed
    assert "app.py" not in installed and "main.mpy" not in installed       # would shadow the new files
    assert "app_b" not in installed and "app.json" not in installed     # the loader starts this install
    assert (flash / "identity.json").read_text() == '{"serial": "x"}'      # device data untouched
    assert (flash / "settings.json").exists()
    probe, copy = calls()
    assert probe[:2] == ["connect", "/dev/fake"] and "mpy-abi" in probe[-1]
    assert "machine.WDT(timeout=600000)" in copy[3]          # the watchdog is held first ...
    assert copy[-1] == "reset"                                # ... and the session ends with a reset


def test_an_older_micropython_gets_native_modules_as_source(tmp_path, fake_device, monkeypatch):
    flash, _ = fake_device
    monkeypatch.setenv("FAKE_MPY_ABI", str(ESP32_122_ABI))
    out = deploy("--board", "esp32_devkitc", "--port", "/dev/fake", "--build-dir", str(tmp_path / "b"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "as source" in out.stdout
    natives = [m for m in firmware_modules() if m != "main" and has_native_code(m)]
    assert natives
    for m in natives:
        assert (flash / (m + ".py")).exists() and not (flash / (m + ".mpy")).exists(), m
    assert (flash / "app.mpy").exists()


@pytest.mark.parametrize("abi,why", [(ESP32_ABI & ~0xFF | 5, "version 5"),
                                     (6 | ((2 << 2) | 3) << 8, "not an ESP32")])
def test_an_incompatible_device_is_refused_and_restarted(tmp_path, fake_device, monkeypatch, abi, why):
    flash, calls = fake_device
    monkeypatch.setenv("FAKE_MPY_ABI", str(abi))
    out = deploy("--board", "esp32_devkitc", "--port", "/dev/fake", "--build-dir", str(tmp_path / "b"))
    assert out.returncode != 0 and why in out.stderr, out.stderr
    assert os.listdir(flash) == []
    assert calls()[-1][2:] == ["reset"]


def test_an_unreachable_device_is_a_clear_error(tmp_path, fake_device, monkeypatch):
    monkeypatch.setenv("FAKE_MPREMOTE_FAIL", "1")
    out = deploy("--board", "esp32_devkitc", "--port", "/dev/fake", "--build-dir", str(tmp_path / "b"))
    assert out.returncode != 0 and "mpremote failed on /dev/fake" in out.stderr


def test_provision_writes_a_valid_identity_and_never_prints_the_pin(tmp_path):
    out = provision("--state", str(tmp_path), "--serial", "2312000042G", "--pin", "40123456")
    assert out.returncode == 0, out.stderr
    assert read_identity(tmp_path) == {"serial": "2312000042G", "pin": "40123456"}
    assert "Amp Guard_0042G" in out.stdout
    assert "40123456" not in out.stdout + out.stderr


def test_provision_reads_the_pin_from_stdin(tmp_path):
    out = provision("--state", str(tmp_path), "--serial", "2312000042G", "--pin", "-", stdin="40123456\n")
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "identity.json").read_text())["pin"] == "40123456"


@pytest.mark.parametrize("serial,pin", [("2312000042X", "12345678"), ("23", "12345678"),
                                        ("2312000042G", "1234567"), ("2312000042G", "12345a78"),
                                        ("2312000042g", "12345678"), ("2312000042G", "123456789")])
def test_provision_refuses_bad_values_and_writes_nothing(tmp_path, serial, pin):
    out = provision("--state", str(tmp_path / "s"), "--serial", serial, "--pin", pin)
    assert out.returncode != 0 and "provision:" in out.stderr and "nothing written" in out.stderr
    assert not (tmp_path / "s").exists()
    assert pin not in out.stdout + out.stderr


def test_provision_will_not_silently_replace_another_identity(tmp_path):
    assert provision("--state", str(tmp_path), "--serial", "2312000042G", "--pin", "12345678").returncode == 0
    out = provision("--state", str(tmp_path), "--serial", "2312000043G", "--pin", "87654321")
    assert out.returncode != 0 and "--force" in out.stderr and "87654321" not in out.stderr
    assert json.loads((tmp_path / "identity.json").read_text())["serial"] == "2312000042G"
    out = provision("--state", str(tmp_path), "--serial", "2312000043G", "--pin", "87654321", "--force")
    assert out.returncode == 0, out.stderr
    assert read_identity(tmp_path) == {"serial": "2312000043G", "pin": "87654321"}


def test_provision_onto_a_device_uses_its_own_identity_module(tmp_path, fake_device):
    flash, calls = fake_device
    out = provision("--port", "/dev/fake", "--serial", "2312000042G", "--pin", "40123456")
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads((flash / "identity.json").read_text()) == {"serial": "2312000042G", "pin": "40123456"}
    assert not (flash / "identity.new").exists()
    assert "40123456" not in out.stdout + out.stderr
    (session,) = calls()
    assert "40123456" not in " ".join(session)               # the PIN travels in a file, not in argv
    assert "machine.WDT" in session[3] and session[-1] == "reset"
    out = provision("--port", "/dev/fake", "--serial", "2312000043G", "--pin", "12345678")
    assert out.returncode != 0 and "already holds serial 2312000042G" in out.stderr
    assert json.loads((flash / "identity.json").read_text())["serial"] == "2312000042G"
    out = provision("--port", "/dev/fake", "--serial", "2312000043G", "--pin", "12345678", "--force")
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads((flash / "identity.json").read_text())["serial"] == "2312000043G"
