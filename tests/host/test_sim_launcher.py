"""tools/sim as a device's power and reset line: boot, orderly shutdown, resets, watchdog, power cut."""
import json
import os
import re
import signal
import subprocess
import time
import urllib.request

import pytest
from simctl import ROOT, Sim

SCENARIO = {"phases": [{"current_a": 5.0}]}


@pytest.fixture
def sim(tmp_path):
    s = Sim(tmp_path, SCENARIO)
    yield s
    s.close()


def test_boots_factory_new_with_identity_and_stops_in_order(sim):
    sim.start()
    sim.wait_for("Amp Guard firmware")
    with open(os.path.join(sim.state, "identity.json")) as f:
        ident = json.load(f)
    assert ident["serial"].endswith("G") and len(ident["pin"]) == 8
    assert ident["pin"] not in sim.log()          # the PIN never reaches a log
    assert sim.stop(signal.SIGTERM) == 0
    assert "orderly shutdown" in sim.log()


def test_serial_and_pin_options_set_a_new_device(tmp_path):
    s = Sim(tmp_path, SCENARIO, args=["--serial", "2401000777G", "--pin", "87654321"]).start()
    try:
        s.wait_for("serial 2401000777G")
    finally:
        s.close()


def test_bad_serial_is_refused_with_a_message(tmp_path):
    s = Sim(tmp_path, SCENARIO, args=["--serial", "12345X", "--pin", "87654321"]).start()
    try:
        assert s.proc.wait(20) != 0
        assert "serial" in s.log().lower()
        assert not os.path.exists(os.path.join(s.state, "identity.json"))
    finally:
        s.close()


def test_starved_watchdog_resets_the_device_which_boots_again(tmp_path):
    s = Sim(tmp_path, SCENARIO, env={"AMPGUARD_WDT_MS": "2000"}).start()
    try:
        s.wait_for("Amp Guard firmware")
        s.write_scenario(dict(SCENARIO, fault={"adc_hang": True}))   # the sampling driver hangs
        s.wait_for("watchdog: not fed", timeout=20)
        s.write_scenario(SCENARIO)                                    # the fault clears after a reset
        s.wait_for("Amp Guard firmware", count=2, timeout=20)
    finally:
        s.close()


def _device_pid(launcher):
    kids = subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True, text=True).stdout.split()
    assert len(kids) == 1, "the launcher should have one device process: %r" % kids
    return int(kids[0])


def test_esp32_like_runtime_runs_the_frozen_firmware_and_serves_the_portal(tmp_path):
    s = Sim(tmp_path, dict(SCENARIO, lan={"link": True}), args=["--runtime", "esp32-like", "--heap", "200K"],
            env={"AMPGUARD_HEAP_PROBE_MS": "500"}).start()
    try:
        s.wait_for("Amp Guard firmware", timeout=120)     # a stale build is re-frozen first
        assert "runtime esp32-like" in s.log()
        pid = _device_pid(s.proc)
        # The device is the 32-bit build ...
        exe = os.readlink("/proc/%d/exe" % pid)
        assert exe == os.path.realpath(os.path.join(ROOT, "build", "esp32like", "micropython"))
        with open(exe, "rb") as f:
            assert f.read(5) == b"\x7fELF\x01"           # ELFCLASS32
        # ... running the firmware frozen in it: the only script is the boot loader (firmware/main.py, never
        # frozen), from a folder holding nothing else; no firmware file where it looks for modules.
        argv = open("/proc/%d/cmdline" % pid, "rb").read().decode().split("\0")
        scripts = [a for a in argv if a.endswith((".py", ".mpy"))]
        assert len(scripts) == 1 and os.path.basename(scripts[0]) == "main.py", argv
        loader_dir = os.path.dirname(scripts[0])
        assert os.listdir(loader_dir) == ["main.py"]
        with open(scripts[0], "rb") as a, open(os.path.join(ROOT, "firmware", "main.py"), "rb") as b:
            assert a.read() == b.read()
        env = dict(kv.split("=", 1) for kv in open("/proc/%d/environ" % pid, "rb").read().decode().split("\0")
                   if "=" in kv)
        path = env["MICROPYPATH"].split(":")
        assert path[0] == ".frozen", path      # after the loader's folder (and an installed update's)
        cwd = os.readlink("/proc/%d/cwd" % pid)
        firmware = {f[:-3] for f in os.listdir(os.path.join(ROOT, "firmware")) if f.endswith(".py")}
        firmware.discard("main")
        for folder in [cwd, loader_dir] + [p for p in path if p != ".frozen"]:
            found = {os.path.splitext(f)[0] for f in os.listdir(folder) if f.endswith((".py", ".mpy"))}
            assert not found & firmware, "%s holds firmware modules %s" % (folder, found & firmware)
        # It serves the portal: the status names the firmware, the page and the live readings work.
        with open(os.path.join(ROOT, "firmware", "version.py")) as f:
            version = re.search(r'VERSION = "([^"]+)"', f.read()).group(1)
        base = "http://%s" % s.http
        deadline = time.monotonic() + 30
        readings = {}
        while not readings.get("seq") and time.monotonic() < deadline:     # the portal, then a window
            time.sleep(0.3)
            try:
                with urllib.request.urlopen(base + "/api/readings", timeout=5) as r:
                    readings = json.loads(r.read())
            except OSError:
                pass
        assert abs(readings["phases"][0]["current_a"] - 5.0) < 0.1, readings
        with urllib.request.urlopen(base + "/api/status", timeout=5) as r:
            status = json.loads(r.read())
        assert status["firmware"] == version
        assert status["serial"] == "2312000042G"
        assert (status["state"], status["network"]) == ("connected", "lan")
        with urllib.request.urlopen(base + "/", timeout=5) as r:
            assert r.status == 200 and b"2312000042G" in r.read()
        # The simulated hardware's heap probe (make faults, make soak): 32-bit GC blocks, the capped heap.
        s.wait_for("max free sz", timeout=10)
        probe = re.search(r"heap probe, blocks of (\d+) bytes\n(?:.*\n)*?GC: total: (\d+), used: (\d+), "
                          r"free: (\d+).*\n.*max free sz: (\d+)", s.log())
        block, total, used, free, largest = (int(x) for x in probe.groups())
        assert block == 16 and 190 * 1024 < total <= 200 * 1024 and used + free == total
        assert 0 < largest * block <= free
        assert s.stop(signal.SIGTERM) == 0
        assert "orderly shutdown" in s.log() and "Traceback" not in s.log()
    finally:
        s.close()


def test_sigkill_of_the_launcher_takes_the_device_down(sim):
    sim.start()
    sim.wait_for("Amp Guard firmware")
    children = subprocess.run(["pgrep", "-P", str(sim.proc.pid)], capture_output=True, text=True)
    kids = [int(p) for p in children.stdout.split()]
    assert kids, "the launcher has no device process"
    sim.proc.kill()
    sim.proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(os.path.exists("/proc/%d" % k) for k in kids):
        time.sleep(0.1)
    assert not any(os.path.exists("/proc/%d" % k) and "zombie" not in open("/proc/%d/status" % k).read()
                   for k in kids)


def test_make_sim_prints_portal_and_broker_and_stops_on_ctrl_c(tmp_path):
    proc = subprocess.Popen(["make", "--no-print-directory", "sim", "STATE=%s" % (tmp_path / "state")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, text=True)
    lines = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "Amp Guard firmware" in line:
                break
        text = "".join(lines)
        assert "portal  http://127.0.0.1:8080/" in text
        assert "1883" in text and "ampguard/#" in text
        os.killpg(proc.pid, signal.SIGINT)       # what Ctrl-C in a terminal does
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # make itself ends by the SIGINT, as on any Ctrl-C; the simulator must have stopped in order.
    assert proc.returncode in (0, -signal.SIGINT), text + rest
    assert "orderly shutdown" in rest and "sim: stopped (exit 0)" in rest, text + rest


def test_embedded_broker_is_a_working_mqtt_broker(tmp_path):
    """Without mosquitto, make sim falls back to the pip-installed broker: it must really relay."""
    import paho.mqtt.client as mqtt
    from simctl import free_port

    port = free_port()
    proc = subprocess.Popen([os.path.join(ROOT, ".venv", "bin", "python"), "tools/run_sim.py",
                             "--state", str(tmp_path / "state"), "--http", "127.0.0.1:%d" % free_port(),
                             "--broker-port", str(port), "--broker-impl", "embedded"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        line = ""
        while "Amp Guard firmware" not in line:
            line = proc.stdout.readline()
            assert line, "run_sim ended early"
        got = []
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        sub.on_message = lambda c, u, m: got.append((m.topic, m.payload))
        sub.connect("127.0.0.1", port)
        sub.subscribe("t/#")
        sub.loop_start()
        time.sleep(0.5)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        pub.connect("127.0.0.1", port)
        pub.publish("t/x", b"hello", qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        sub.loop_stop()
        assert got == [("t/x", b"hello")]
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(30)
    assert proc.returncode == 0
