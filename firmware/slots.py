# The app folders of an over-the-air install (docs/design.md, "Updates: slots and the boot loader").
#
# The flash holds the factory install (what `make deploy` copied into the flash root, or the firmware
# frozen into the image) and two app folders, app_a/ and app_b/. An update is written into the one that
# is not running; the pointer file app.json then names the folder the boot loader (main.py with
# boot_loader.py) starts:
#   {"active": "a"|"b"|null (factory), "version": str, "previous": "a"|"b"|null, "previous_version": str,
#    "trial": null | {"boots": n, "deadline_s": s, "since": t},
#    "outcome": null | {"state": "done"|"failed", "version": str, "reason": "rolled_back"|null}}
# Every change of the pointer is one store.write_json (atomic, with a last-good copy): a power cut at any
# moment leaves the old or the new pointer, and both name a complete folder (a folder is written whole
# before a pointer names it, and never emptied while one names it as what runs). Settings, identity and
# energy files are never touched here.
#
# Imported only when needed (the update task, the boot's trial check, the confirmation), then dropped
# from sys.modules: its code costs heap while loaded.
import os
import time

import store

POINTER = "app.json"
SLOTS = ("a", "b")
DEFAULT_DEADLINE_S = 300     # a new firmware must come online within this much uptime, each trial boot
APP_FILES = ("app.mpy", "app.py")   # a folder without its app is no firmware (boot_loader.py checks the same)


def folder(flash_dir, slot):
    return store.join(flash_dir, "app_" + slot)


def usable(flash_dir, slot):
    """True when folder `slot` holds an app (as boot_loader.py decides what it can boot)."""
    if slot not in SLOTS:
        return False
    base = folder(flash_dir, slot) + "/"
    for name in APP_FILES:
        if store.exists(base + name):
            return True
    return False


def _check(p):
    if not isinstance(p, dict):
        raise ValueError("not an object")
    for key in ("active", "previous"):
        if p.get(key) not in (None, "a", "b"):
            raise ValueError("%s: not a slot" % key)
    trial = p.get("trial")
    if trial is not None and not (isinstance(trial, dict) and isinstance(trial.get("boots"), int)):
        raise ValueError("trial: bad")


def _factory():
    from version import VERSION  # nothing points at a slot: the factory install runs, this very code

    return {"active": None, "version": VERSION, "previous": None, "previous_version": None,
            "trial": None, "outcome": None}


def read(flash_dir):
    """The pointer as the boot loader sees it: a missing or broken one, or one whose active folder holds
    no app, means the factory install runs."""
    p = store.read_json(store.join(flash_dir, POINTER), _check)[0]
    if p is None:
        return _factory()
    if p["active"] is None or not usable(flash_dir, p["active"]):
        outcome = p.get("outcome")
        p = _factory()
        p["outcome"] = outcome
    return p


def _write(flash_dir, p):
    store.write_json(store.join(flash_dir, POINTER), p, _check)


def running(flash_dir):
    """(slot, version) of the firmware that runs: slot "a", "b" or None (the factory install)."""
    p = read(flash_dir)
    return p["active"], p["version"]


def on_trial(flash_dir):
    """The probation deadline in uptime seconds when the running firmware is on trial, else None."""
    trial = read(flash_dir).get("trial")
    return None if trial is None else trial.get("deadline_s", DEFAULT_DEADLINE_S)


def inactive(flash_dir):
    """The slot an update goes to: the one not running."""
    return "b" if read(flash_dir)["active"] == "a" else "a"


def _rmtree(path):
    for name in os.listdir(path):
        full = path + "/" + name
        if os.stat(full)[0] & 0x4000:
            _rmtree(full)
            os.rmdir(full)
        else:
            os.remove(full)


def begin(flash_dir):
    """The inactive slot's folder, emptied (created when missing), for the update's files. Refused
    (ValueError) while the running firmware is on trial: the other folder is then its way back."""
    p = read(flash_dir)
    if p["trial"] is not None:
        raise ValueError("the running firmware is on trial: no update before it is confirmed")
    path = folder(flash_dir, "b" if p["active"] == "a" else "a")
    if store.exists(path):
        _rmtree(path)
    else:
        os.mkdir(path)
    return path


def switch(flash_dir, slot, version, deadline_s=DEFAULT_DEADLINE_S):
    """Point the boot loader at `slot` (whose folder holds the complete, verified update), on trial:
    it must come online within deadline_s of uptime at each of at most 3 boots, or the loader (crash
    loop) or the app (deadline) goes back to what runs now."""
    slot = slot[-1:]        # "a", "b", or the folder begin() returned
    if not usable(flash_dir, slot):
        raise ValueError("slot %s holds no app" % slot)
    cur = read(flash_dir)
    if cur["active"] == slot:
        raise ValueError("slot %s is running" % slot)
    _write(flash_dir, {"active": slot, "version": version, "previous": cur["active"],
                       "previous_version": cur["version"],
                       "trial": {"boots": 0, "deadline_s": deadline_s, "since": int(time.time())},
                       "outcome": None})


def confirm(flash_dir):
    """The running firmware came online: its trial ends, the outcome is done. True if it was on trial."""
    p = read(flash_dir)
    if p["trial"] is None:
        return False
    p["trial"] = None
    p["outcome"] = {"state": "done", "version": p["version"], "reason": None}
    _write(flash_dir, p)
    return True


def rollback(flash_dir, reason="rolled_back"):
    """Back to the previous firmware (the factory install when its folder holds no app), with the
    outcome failed/reason for the new version. Takes effect at the next boot (the caller resets)."""
    p = read(flash_dir)
    back = p.get("previous")
    if back is not None and not usable(flash_dir, back):
        back = None
    # The factory's version is known once it runs (read()).
    _write(flash_dir, {"active": back, "version": p.get("previous_version") if back is not None else None,
                       "previous": None, "previous_version": None, "trial": None,
                       "outcome": {"state": "failed", "version": p["version"], "reason": reason}})


def take_outcome(flash_dir):
    """The outcome of the latest update (done or failed), once: it is cleared as it is taken, so the
    running firmware reports it on <base>/update a single time. None when there is none."""
    p = store.read_json(store.join(flash_dir, POINTER), _check)[0]
    if p is None or p.get("outcome") is None:
        return None
    outcome = p["outcome"]
    p["outcome"] = None
    _write(flash_dir, p)
    return outcome
