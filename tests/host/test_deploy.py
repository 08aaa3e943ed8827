"""Deployment and provisioning, as far as they go without a board: file set, compilation, validation."""
import json
import os
import subprocess

import pytest
from simctl import ROOT

PY = os.path.join(ROOT, ".venv", "bin", "python")
NATIVE_MODULES = ("accum.mpy", "hal_esp32.mpy")
XTENSAWIN = 10  # mpy header arch field (bits 2-7 of byte 2): MP_NATIVE_ARCH_XTENSAWIN, the ESP32


def deploy(*args):
    return subprocess.run([PY, os.path.join(ROOT, "tools", "deploy.py")] + list(args), cwd=ROOT,
                          capture_output=True, text=True)


@pytest.mark.parametrize("board", ["esp32_devkitc", "olimex_esp32_poe", "wt32_eth01"])
def test_dry_run_builds_every_firmware_file_for_the_esp32(tmp_path, board):
    out = deploy("--board", board, "--dry-run", "--build-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    sources = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "firmware")) if f.endswith(".py"))
    built = sorted(os.listdir(tmp_path))
    expected = sorted(["main.py", "board.mpy"] + [s + ".mpy" for s in sources if s != "main"])
    assert built == expected
    for name in built:
        assert ":" + name in out.stdout
        if name.endswith(".mpy"):
            head = (tmp_path / name).read_bytes()[:4]
            assert head[0:1] == b"M" and head[1] == 6, name          # mpy version 6
            # Modules with viper/native code carry the ESP32 arch; plain bytecode carries none.
            arch = head[2] >> 2
            assert arch == (XTENSAWIN if name in NATIVE_MODULES else 0), name


def test_bad_board_fails_before_anything_is_built(tmp_path):
    build = tmp_path / "build"
    for bad in ("no_such_board", "sim"):
        out = deploy("--board", bad, "--dry-run", "--build-dir", str(build))
        assert out.returncode != 0
        assert "deploy:" in out.stderr
        assert not build.exists()


def provision(*args):
    return subprocess.run([os.path.join(ROOT, "tools", "provision")] + list(args), cwd=ROOT,
                          capture_output=True, text=True)


def test_provision_writes_a_valid_identity_and_never_prints_the_pin(tmp_path):
    out = provision("--state", str(tmp_path), "--serial", "2312000042G", "--pin", "40123456")
    assert out.returncode == 0, out.stderr
    stored = json.loads((tmp_path / "identity.json").read_text())
    assert stored == {"serial": "2312000042G", "pin": "40123456"}
    assert "Amp Guard_0042G" in out.stdout
    assert "40123456" not in out.stdout + out.stderr


@pytest.mark.parametrize("serial,pin", [("2312000042X", "12345678"), ("23", "12345678"),
                                        ("2312000042G", "1234567"), ("2312000042G", "12345a78"),
                                        ("2312000042g", "12345678")])
def test_provision_refuses_bad_values_and_writes_nothing(tmp_path, serial, pin):
    out = provision("--state", str(tmp_path / "s"), "--serial", serial, "--pin", pin)
    assert out.returncode != 0 and "provision:" in out.stderr
    assert not (tmp_path / "s").exists()


def test_provision_will_not_silently_replace_another_identity(tmp_path):
    assert provision("--state", str(tmp_path), "--serial", "2312000042G", "--pin", "12345678").returncode == 0
    out = provision("--state", str(tmp_path), "--serial", "2312000043G", "--pin", "12345678")
    assert out.returncode != 0 and "--force" in out.stderr
    assert json.loads((tmp_path / "identity.json").read_text())["serial"] == "2312000042G"
