"""The boot loader (firmware/main.py) in tools/sim on both runtimes: an update installed by hand in the state
folder's app_a (the firmware compiled with mpy-cross for the runtime's architecture, another version) is
what boots; one that crashes at import is rolled back after 3 boots; one that never comes online is rolled
back by itself at its deadline; one that comes online confirms itself."""
import glob
import json
import os
import subprocess
import time
import urllib.request

import pytest
import simbuild
import slots
from brokers import Mosquitto
from simctl import ROOT, Sim

from mpenv import MPY_CROSS

SCENARIO = {"phases": [{"current_a": 5.0}], "lan": {"link": True}}
ARCH = {"micropython": simbuild.ARCH, "esp32-like": "x86"}     # the runtimes' native code
NEW = "9.9.9"


def factory_version():
    with open(os.path.join(ROOT, "firmware", "version.py")) as f:
        return f.read().split('"')[1]


def install(state, slot, runtime, version=NEW, app_source=None):
    """Compile the firmware (main.py aside: the loader is never in a slot) into state/app_<slot> for the
    runtime, with version.py saying `version` and, if given, app.py replaced by app_source."""
    folder = os.path.join(state, "app_" + slot)
    os.makedirs(folder, exist_ok=True)
    work = os.path.join(state, "..", "src-" + slot)
    os.makedirs(work, exist_ok=True)
    replaced = {"version": 'VERSION = "%s"\n' % version}
    if app_source is not None:
        replaced["app"] = app_source
    for src in glob.glob(os.path.join(ROOT, "firmware", "*.py")):
        name = os.path.basename(src)[:-3]
        if name == "main":
            continue
        if name in replaced:
            src = os.path.join(work, name + ".py")
            with open(src, "w") as f:
                f.write(replaced[name])
        subprocess.run([MPY_CROSS, "-march=" + ARCH[runtime], "-o", os.path.join(folder, name + ".mpy"),
                        "-s", name + ".py", src], check=True, capture_output=True)
    return folder


def pointer(state):
    with open(os.path.join(state, "app.json")) as f:
        return json.load(f)


def status(sim):
    with urllib.request.urlopen("http://%s/api/status" % sim.http, timeout=5) as r:
        return json.loads(r.read())


def wait_status(sim, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return status(sim)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.fixture(params=("micropython", "esp32-like"))
def runtime(request):
    return request.param


def new_sim(tmp_path, runtime, args=()):
    s = Sim(tmp_path, SCENARIO, args=["--runtime", runtime] + list(args))
    os.makedirs(s.state, exist_ok=True)
    return s


def test_an_installed_update_boots_and_a_broken_pointer_boots_the_factory_install(tmp_path, runtime):
    s = new_sim(tmp_path, runtime)
    install(s.state, "a", runtime)
    slots.switch(s.state + "/", "a", NEW)
    slots.confirm(s.state + "/")                      # as if it had come online once already
    try:
        s.start()
        s.wait_for("Amp Guard firmware %s" % NEW, timeout=120)
        assert "boot: starting %s/app_a" % s.state in s.log()
        assert wait_status(s)["firmware"] == NEW
        assert s.stop() == 0
        # The pointer broken beyond its last good copy: the factory install, never nothing.
        for name in ("app.json", "app.json.bak"):
            with open(os.path.join(s.state, name), "w") as f:
                f.write("{")
        s.start()
        s.wait_for("Amp Guard firmware %s" % factory_version(), timeout=60)
        assert wait_status(s)["firmware"] == factory_version()
        assert "Traceback" not in s.log()
    finally:
        s.close()


def test_an_update_that_crashes_at_import_is_rolled_back_after_three_boots(tmp_path, runtime):
    s = new_sim(tmp_path, runtime)
    install(s.state, "a", runtime, "0.5.0")                      # the firmware that ran before
    slots.switch(s.state + "/", "a", "0.5.0")
    slots.confirm(s.state + "/")
    slots.take_outcome(s.state + "/")
    install(s.state, "b", runtime, app_source='raise RuntimeError("broken update")\n')
    slots.switch(s.state + "/", "b", NEW)
    try:
        s.start()
        s.wait_for("Amp Guard firmware 0.5.0", timeout=120)
        log = s.log()
        for n in (1, 2, 3):
            assert "%s trial boot %d of 3" % (NEW, n) in log
        assert log.count("broken update") >= 3 and "back to a" in log
        assert log.index("back to a") > log.index("trial boot 3 of 3")
        assert wait_status(s)["firmware"] == "0.5.0"
        p = pointer(s.state)
        assert (p["active"], p["trial"]) == ("a", None)
        # the outcome is the running firmware's to report, once (on <base>/update: tests/host/test_update.py)
        s.wait_for("update: the update to %s: failed (rolled_back), 0.5.0 runs" % NEW, timeout=30)
        assert pointer(s.state)["outcome"] is None
        assert os.path.exists(os.path.join(s.state, "identity.json"))
    finally:
        s.close()


def test_an_update_that_never_comes_online_rolls_back_at_its_deadline(tmp_path, runtime):
    s = new_sim(tmp_path, runtime)                 # no broker: it cannot come online
    install(s.state, "a", runtime)
    slots.switch(s.state + "/", "a", NEW, 4)
    try:
        s.start()
        s.wait_for("Amp Guard firmware %s" % NEW, timeout=120)
        s.wait_for("Amp Guard firmware %s" % factory_version(), timeout=60)
        log = s.log()
        assert "trial boot 1 of 3" in log and "trial boot 2 of 3" not in log   # the app itself, not a crash
        assert "not online within 4 s" in log
        assert "device reset, booting again" in log
        p = pointer(s.state)
        assert (p["active"], p["trial"]) == (None, None)
        s.wait_for("update: the update to %s: failed (rolled_back), %s runs" % (NEW, factory_version()),
                   timeout=30)
        assert pointer(s.state)["outcome"] is None
        assert wait_status(s)["firmware"] == factory_version()
    finally:
        s.close()


def test_an_update_that_comes_online_confirms_itself(tmp_path, runtime):
    broker = Mosquitto(str(tmp_path / "broker")).start()
    s = new_sim(tmp_path, runtime, ["--broker", "%s:%d" % (broker.host, broker.port)])
    install(s.state, "a", runtime)
    slots.switch(s.state + "/", "a", NEW, 60)
    try:
        s.start()
        s.wait_for("firmware %s confirmed" % NEW, timeout=120)
        p = pointer(s.state)
        assert (p["active"], p["trial"]) == ("a", None)
        assert p["trial"] is None and p["version"] == NEW
        assert s.stop() == 0
        s.start()                                   # confirmed: no more trial boots
        s.wait_for("Amp Guard firmware %s" % NEW, count=2, timeout=60)
        assert "trial boot 2" not in s.log()
    finally:
        s.close()
        broker.stop()
