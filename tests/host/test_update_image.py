"""Frozen-image updates (contract §3.8, issue 12 point 5) on the esp32-like runtime, whose "image" is an
esp32-like MicroPython binary with the firmware frozen in (tools/esp32like/build.py --source): the release
is written into the OTA twin's next partition (tools/simhw/hal_sim.py, esp32.Partition's semantics),
switched with set_boot, and tools/sim, the twin's bootloader, starts it pending verification and rolls it
back at the next reset unless the firmware marked it valid once online. Real mosquitto, a real HTTPS
server, releases made by tools/release --image with a key made here; each image is built once."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from brokers import make_tls_files
from release_server import ReleaseServer, send_update, update_state
from simctl import ROOT
from uplink_rig import BASE, SCENARIO, Rig, api_readings, assert_on_time, online_after

from mpenv import use_firmware_on_cpython

use_firmware_on_cpython()
from version import VERSION  # noqa: E402

NEW = "0.2.0"
BROKEN = "0.3.0"
ESP32LIKE = {"AMPGUARD_RUNTIME": "esp32-like"}


def _run(*args):
    out = subprocess.run([str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _tool(*args):
    return _run(os.path.join(ROOT, "tools", args[0]), *args[1:])


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """A key, a test PKI, two images (a good one, one whose app raises at import) and their releases."""
    d = tmp_path_factory.mktemp("image-kit")
    _tool("release", "--new-key", d / "vendor.pem")
    tls = make_tls_files(str(d / "pki"))
    broken = d / "broken-src"
    shutil.copytree(os.path.join(ROOT, "firmware"), broken)
    with open(broken / "app.py", "a") as f:
        f.write('\nraise RuntimeError("this image cannot start")\n')
    build = os.path.join(ROOT, "tools", "esp32like", "build.py")
    images = {}
    for name, source, version in (("good", os.path.join(ROOT, "firmware"), NEW), ("broken", broken, BROKEN)):
        image = d / (name + ".bin")
        _run(sys.executable, build, "--source", source, "--version", version, "--out", image)
        _tool("release", "--key", d / "vendor.pem", "--version", version, "--board", "sim", "--arch", "x86",
              "--image", image, "--out", d / (name + ".agr"))
        images[name] = image.read_bytes()
    return {"tls": tls, "pub": d / "vendor.pub.json", "images": images,
            "files": {"/%s.agr" % n: (d / (n + ".agr")).read_bytes() for n in images}}


@pytest.fixture
def server(kit):
    s = ReleaseServer(kit["tls"])
    s.files.update(kit["files"])
    yield s
    s.close()


def _rig(tmp_path, kit, scenario=SCENARIO):
    return Rig(tmp_path, scenario=scenario, env=ESP32LIKE,
               files={"ca.pem": kit["tls"]["ca"], "update_key.json": str(kit["pub"])}).start()


def _otadata(rig):
    with open(os.path.join(rig.sim.state, "otadata.json")) as f:
        return json.load(f)


def _firmware_after(rig, t0):
    return rig.sub.wait_for(BASE + "/info", lambda m: m.t > t0, timeout=20).json()["firmware"]


def test_an_image_release_is_written_switched_to_and_confirmed_once_online(tmp_path, kit, server):
    rig = _rig(tmp_path, kit)
    try:
        online_after(rig, 0, 40)
        before_wh = api_readings(rig.sim)["import_wh"]
        t0 = send_update(rig, {"url": server.url("/good.agr"), "version": NEW})
        update_state(rig, "restarting", t0, timeout=120)
        done = update_state(rig, "done", t0, timeout=90)
        assert done == {"state": "done", "percent": 100, "version": NEW, "reason": None}
        seen = [m.json()["state"] for m in rig.sub.messages(BASE + "/update") if m.t > t0]
        order = ["downloading", "verifying", "installing", "restarting", "done"]
        assert [s for s in order if s in seen] == order and "failed" not in seen, seen
        assert _firmware_after(rig, t0) == NEW
        image = kit["images"]["good"]
        with open(os.path.join(rig.sim.state, "ota_1.bin"), "rb") as f:
            written = f.read()
        assert len(written) % 4096 == 0 and written[:len(image)] == image      # whole blocks, padded
        assert set(written[len(image):]) <= {0xFF}
        assert _otadata(rig) == {"boot": "ota_1", "state": "valid", "previous": "ota_0"}   # marked valid
        assert not os.path.exists(os.path.join(rig.sim.state, "ota.json"))
        log = rig.sim.log()
        assert "firmware %s confirmed" % NEW in log and "counters saved" in log
        assert api_readings(rig.sim)["import_wh"] >= before_wh                  # energy kept
        assert_on_time(rig.next_readings(3))
        # Confirmed, it stays: another power-on (the launcher restarted) boots the new image again.
        rig.sim.stop()
        t1 = time.monotonic()
        rig.sim.start()
        online_after(rig, t1, 40)
        assert _firmware_after(rig, t1) == NEW
        assert "rolled back" not in rig.sim.log()
    finally:
        rig.close()


def test_an_image_that_cannot_start_is_rolled_back_by_the_bootloader_and_reported(tmp_path, kit, server):
    rig = _rig(tmp_path, kit)
    try:
        online_after(rig, 0, 40)
        before_wh = api_readings(rig.sim)["import_wh"]
        t0 = send_update(rig, {"url": server.url("/broken.agr")})
        update_state(rig, "restarting", t0, timeout=120)
        failed = update_state(rig, "failed", t0, timeout=90)
        assert failed == {"state": "failed", "percent": 0, "version": VERSION, "reason": "rolled_back"}
        log = rig.sim.log()
        assert log.count("sim: device crashed") == 1, log[-3000:]    # one boot: the next reset goes back
        assert "this image cannot start" in log
        assert "bootloader: ota_1 was not marked valid before this reset: rolled back to ota_0" in log
        assert _otadata(rig) == {"boot": "ota_0", "state": "valid", "previous": None, "aborted": "ota_1"}
        assert not os.path.exists(os.path.join(rig.sim.state, "ota.json"))
        assert _firmware_after(rig, t0) == VERSION
        assert api_readings(rig.sim)["import_wh"] >= before_wh
        assert_on_time(rig.next_readings(3))
    finally:
        rig.close()


def test_a_board_without_ota_partitions_refuses_an_image_release(tmp_path, kit, server):
    rig = _rig(tmp_path, kit, scenario=dict(SCENARIO, flash={"ota": False}))
    try:
        online_after(rig, 0, 40)
        t0 = send_update(rig, {"url": server.url("/good.agr")})
        failed = update_state(rig, "failed", t0, timeout=60)
        assert failed == {"state": "failed", "percent": 0, "version": VERSION, "reason": "wrong_board"}
        for name in ("ota_0.bin", "ota_1.bin", "otadata.json", "ota.json", "app.json"):
            assert not os.path.exists(os.path.join(rig.sim.state, name)), name
        assert_on_time(rig.next_readings(2))
    finally:
        rig.close()
