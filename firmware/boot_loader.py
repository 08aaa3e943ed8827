# The boot loader's logic (main.py runs it at boot, then drops it). It belongs to the factory install and is
# never taken from an update's folder, so it imports no other firmware module and must not raise: it picks
# what to start from the pointer file app.json (firmware/slots.py writes it; docs/design.md, "Updates:
# slots and the boot loader"), counts the boots of a firmware on trial, and goes back to the previous one
# after 3 trial boots that did not come online. A missing or broken pointer, or a folder without an app,
# starts the factory install (the flash root, or the firmware frozen into the image).
import os
import sys

POINTER = "app.json"
TRIAL_BOOTS = 3
MAX_POINTER = 8192      # bytes, as store.MAX_SIZE


def _join(folder, name):
    return folder + name if folder[-1:] in ("", "/") else folder + "/" + name


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _usable(flash_dir, slot):
    """Slot "a" or "b" holds an app (the same rule as slots.usable)."""
    if slot not in ("a", "b"):
        return False
    base = _join(flash_dir, "app_" + slot) + "/"
    return _exists(base + "app.mpy") or _exists(base + "app.py")


def _read(name):
    import json

    try:
        if os.stat(name)[6] > MAX_POINTER:
            return None
        with open(name) as f:
            p = json.loads(f.read())
        # The same check as slots._check.
        if p.get("active") not in (None, "a", "b") or p.get("previous") not in (None, "a", "b"):
            return None
        t = p.get("trial")
        if t is not None and not isinstance(t.get("boots"), int):
            return None
        return p
    except Exception:       # missing, unreadable, not JSON, not an object: not a pointer
        return None


def read_pointer(flash_dir):
    """The pointer as store.read_json finds it: app.json, else its last good copy, else a complete .tmp."""
    path = _join(flash_dir, POINTER)
    for name in (path, path + ".bak", path + ".tmp"):
        p = _read(name)
        if p is not None:
            return p
    return None


def _write(flash_dir, p):
    """store.write_json's steps: .tmp written and synced, the good app.json kept as .bak, .tmp renamed."""
    import json

    path = _join(flash_dir, POINTER)
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            f.write(json.dumps(p))
            f.flush()
            if hasattr(os, "fsync"):
                os.fsync(f.fileno())
        if _read(path) is not None:
            _rename(path, path + ".bak")
        _rename(tmp, path)
        if hasattr(os, "sync") and not hasattr(os, "fsync"):
            os.sync()
        return True
    except Exception as e:
        print("boot: cannot write %s: %r" % (path, e))
        try:
            os.remove(tmp)
        except Exception:
            pass
        return False


def _rename(src, dst):
    try:
        os.rename(src, dst)
    except OSError:         # FAT refuses an existing target
        if not _exists(dst):
            raise
        os.remove(dst)
        os.rename(src, dst)


def choose(flash_dir):
    """(folder to boot or None for the factory install, True when it is a trial boot), with the boot
    counted: a trial's boots go up before its app starts; a trial that already had TRIAL_BOOTS boots
    without being confirmed is rolled back to the previous firmware, outcome failed/rolled_back."""
    p = read_pointer(flash_dir)
    active = None if p is None else p.get("active")
    if active is None or not _usable(flash_dir, active):
        return None, False
    trial = p.get("trial")
    if trial is not None:
        if trial["boots"] >= TRIAL_BOOTS:
            back = p.get("previous")
            if not _usable(flash_dir, back):
                back = None
            print("boot: %s did not come online in %d trial boots: back to %s"
                  % (p.get("version"), trial["boots"], back or "factory"))
            _write(flash_dir, {"active": back, "version": p.get("previous_version") if back else None,
                               "previous": None, "previous_version": None, "trial": None,
                               "outcome": {"state": "failed", "version": p.get("version"),
                                           "reason": "rolled_back"}})
            active, trial = back, None
        else:
            trial["boots"] += 1
            # Not counted (the flash refuses the write): started all the same, its deadline still holds.
            _write(flash_dir, p)
            print("boot: %s trial boot %d of %d" % (p.get("version"), trial["boots"], TRIAL_BOOTS))
    if active is None:
        return None, False
    return _join(flash_dir, "app_" + active), trial is not None


def flash_dir():
    getenv = getattr(os, "getenv", None)       # the unix port's (the simulator): its state folder
    if getenv is None:
        return "/"
    return getenv("AMPGUARD_STATE") or ".sim-state"


def boot():
    """Put the chosen folder first on sys.path (before the factory files and .frozen); True on trial."""
    try:
        folder, trial = choose(flash_dir())
    except Exception as e:      # never: the factory install starts
        print("boot: %r" % (e,))
        folder, trial = None, False
    if folder is not None:
        sys.path.insert(0, folder)
        print("boot: starting " + folder)
    # A frozen image just switched to (image_ota.py's record) is on trial too: a crash must reset, so
    # the chip's bootloader rolls it back, rather than stop at the REPL.
    return trial or _exists(_join(flash_dir(), "ota.json"))

