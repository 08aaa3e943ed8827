# slots.py (the app folders and their pointer) and the boot loader's logic (boot_loader.py, which
# main.py runs at boot): install, trial, confirm, roll back, outcome, and a power cut at every filesystem
# step leaving a pointer that boots the old or the new one.
import os

import boot_loader
import slots
import store
from fwfiles import CrashingFs, names, read_raw, rmtree, scratch, with_fs, write_raw
from fwtest import raises
from version import VERSION

ALL = (store, slots, boot_loader)      # the firmware's file operations: store, slots, the loader


def install(d, slot, version, opener=open):
    """A slot folder with an app whose text names its version (as an update writes it)."""
    path = d + "app_" + slot
    if not store.exists(path):
        os.mkdir(path)
    with opener(path + "/app.py", "w") as f:
        f.write("VERSION = %r\n" % version)


def booted(d, ld):
    """What the loader boots now (one boot, counted): the version its folder holds, or "factory"."""
    folder, _ = ld.choose(d)
    if folder is None:
        return "factory"
    return read_raw(folder + "/app.py").decode().split("'")[1]


def confirmed_a(d):
    """Slot a runs version 0.2.0, confirmed; b holds an old leftover."""
    install(d, "a", "0.2.0")
    slots.switch(d, "a", "0.2.0")
    slots.confirm(d)
    slots.take_outcome(d)
    install(d, "b", "0.1.5")


def test_a_new_flash_runs_the_factory_install():
    d = scratch()
    ld = boot_loader
    assert slots.running(d) == (None, VERSION)
    assert slots.on_trial(d) is None
    assert ld.choose(d) == (None, False)
    assert slots.take_outcome(d) is None
    assert names(d) == []            # looking writes nothing
    rmtree(d)


def test_an_update_is_switched_to_on_trial_confirmed_and_reported_once():
    d = scratch()
    ld = boot_loader
    write_raw(d + "settings.json", "{}")
    folder = slots.begin(d)
    assert folder == d + "app_a" and names(folder) == []
    install(d, "a", "0.2.0")
    slots.switch(d, folder, "0.2.0", 60)
    assert slots.running(d) == ("a", "0.2.0")
    assert slots.on_trial(d) == 60
    assert ld.choose(d) == (d + "app_a", True)
    assert store.read_json(d + "app.json")[0]["trial"]["boots"] == 1
    assert slots.confirm(d) is True
    assert slots.on_trial(d) is None
    assert slots.confirm(d) is False            # nothing on trial: nothing written
    assert ld.choose(d) == (d + "app_a", False)
    assert slots.take_outcome(d) == {"state": "done", "version": "0.2.0", "reason": None}
    assert slots.take_outcome(d) is None
    assert slots.running(d) == ("a", "0.2.0")
    assert read_raw(d + "settings.json") == b"{}"
    assert names(d) == ["app.json", "app.json.bak", "app_a", "settings.json"]
    rmtree(d)


def test_begin_empties_the_slot_that_does_not_run():
    d = scratch()
    confirmed_a(d)
    os.mkdir(d + "app_b/sub")
    write_raw(d + "app_b/sub/x.mpy", "x")
    assert slots.begin(d) == d + "app_b"
    assert names(d + "app_b") == []
    assert names(d + "app_a") == ["app.py"]       # the running one is never touched
    assert slots.inactive(d) == "b"
    rmtree(d)


def test_begin_is_refused_while_the_running_firmware_is_on_trial():
    d = scratch()
    confirmed_a(d)
    slots.switch(d, "b", "0.3.0")
    raises(ValueError, slots.begin, d)
    assert names(d + "app_a") == ["app.py"]        # its way back is kept
    rmtree(d)


def test_switch_refuses_a_folder_without_app_or_the_running_one():
    d = scratch()
    confirmed_a(d)
    os.remove(d + "app_b/app.py")
    raises(ValueError, slots.switch, d, "b", "0.3.0")
    raises(ValueError, slots.switch, d, "a", "0.3.0")
    assert slots.running(d) == ("a", "0.2.0") and slots.on_trial(d) is None
    rmtree(d)


def test_rollback_goes_back_to_the_previous_slot_and_says_why():
    d = scratch()
    ld = boot_loader
    confirmed_a(d)
    install(d, "b", "0.3.0")
    slots.switch(d, "b", "0.3.0")
    slots.rollback(d, "rolled_back")
    assert slots.running(d) == ("a", "0.2.0")
    assert slots.on_trial(d) is None
    assert booted(d, ld) == "0.2.0"
    assert slots.take_outcome(d) == {"state": "failed", "version": "0.3.0", "reason": "rolled_back"}
    assert slots.take_outcome(d) is None
    rmtree(d)


def test_rollback_of_the_first_update_goes_back_to_the_factory_install():
    d = scratch()
    ld = boot_loader
    install(d, "a", "0.2.0")
    slots.switch(d, "a", "0.2.0")
    slots.rollback(d, "rolled_back")
    assert slots.running(d) == (None, VERSION)
    assert booted(d, ld) == "factory"
    assert slots.take_outcome(d)["state"] == "failed"
    rmtree(d)


def test_the_loader_rolls_back_after_three_trial_boots_without_confirm():
    d = scratch()
    ld = boot_loader
    confirmed_a(d)
    install(d, "b", "0.3.0")
    slots.switch(d, "b", "0.3.0")
    for n in (1, 2, 3):
        assert ld.choose(d) == (d + "app_b", True)
        assert store.read_json(d + "app.json")[0]["trial"]["boots"] == n
        assert slots.running(d) == ("b", "0.3.0")
    assert ld.choose(d) == (d + "app_a", False)        # the 4th boot: back to the old one
    assert slots.running(d) == ("a", "0.2.0")
    assert ld.choose(d) == (d + "app_a", False)
    assert slots.take_outcome(d) == {"state": "failed", "version": "0.3.0", "reason": "rolled_back"}
    rmtree(d)


def test_the_loader_rolls_back_to_the_factory_when_the_previous_folder_is_gone():
    d = scratch()
    ld = boot_loader
    confirmed_a(d)
    install(d, "b", "0.3.0")
    slots.switch(d, "b", "0.3.0")
    os.remove(d + "app_a/app.py")
    for _ in range(3):
        assert booted(d, ld) == "0.3.0"
    assert booted(d, ld) == "factory"
    assert slots.running(d) == (None, VERSION)
    rmtree(d)


def test_a_broken_pointer_boots_the_last_good_copy_or_the_factory_install():
    d = scratch()
    ld = boot_loader
    confirmed_a(d)
    write_raw(d + "app.json", "{\"active\": \"a\", ")          # not JSON: the last good copy is used
    assert slots.running(d) == ("a", "0.2.0")
    assert booted(d, ld) == "0.2.0"
    for junk in ("[1]", "{\"active\": \"c\"}", "{\"active\": \"a\", \"trial\": 3}", "null", "\xff"):
        write_raw(d + "app.json", junk)
        write_raw(d + "app.json.bak", junk)
        assert slots.running(d) == (None, VERSION), junk
        assert booted(d, ld) == "factory", junk
    write_raw(d + "app.json", "{\"active\": \"a\", \"pad\": \"%s\"}" % ("x" * 9000))   # too large
    assert booted(d, ld) == "factory"
    write_raw(d + "app.json", "{\"active\": \"b\"}")
    os.remove(d + "app_b/app.py")                                  # a folder without its app
    assert slots.running(d) == (None, VERSION)
    assert booted(d, ld) == "factory"
    rmtree(d)


def _state(d):
    return store.read_json(d + "app.json", slots._check)[0]


def _crash_every_step(setup, operation, allowed, done, fat=False):
    """Run operation(d, fs, ld) with a power cut at step 1, 2, ... until it completes; after each cut
    the loader boots one of `allowed` and boots on (4 more boots) without ever finding nothing to boot;
    done(d) checks the state after the uncut run. Returns the number of steps."""
    at = 1
    while True:
        d = scratch()
        ld = boot_loader
        setup(d)
        write_raw(d + "settings.json", "{\"x\": 1}")
        fs = CrashingFs(at, fat)
        crashed = with_fs(ALL, fs, lambda d=d, fs=fs, ld=ld: operation(d, fs, ld))
        if crashed is None:
            done(d)
        seen = [booted(d, ld) for _ in range(5)]
        for v in seen:
            assert v in allowed, (at, seen, names(d))
        assert read_raw(d + "settings.json") == b"{\"x\": 1}"
        rmtree(d)
        if crashed is None:
            return at
        at += 1


def _install_b(d, fs, ld):
    folder = slots.begin(d)
    install(d, folder[-1], "0.3.0", fs.open)
    slots.switch(d, folder, "0.3.0")


def _on_trial_b(d):
    confirmed_a(d)
    install(d, "b", "0.3.0")
    slots.switch(d, "b", "0.3.0")


def _confirmed_b(d):
    _on_trial_b(d)
    slots.confirm(d)


def test_a_power_cut_at_any_step_of_an_install_boots_the_old_or_the_new_firmware():
    def done(d):
        assert slots.running(d) == ("b", "0.3.0") and slots.on_trial(d) == slots.DEFAULT_DEADLINE_S

    for fat in (False, True):
        steps = _crash_every_step(confirmed_a, _install_b, ("0.2.0", "0.3.0"), done, fat)
        assert steps >= (9 if fat else 7), steps   # remove, open, write, then the pointer's 4 (6 on FAT)


def test_a_power_cut_at_any_step_of_confirm_rollback_or_take_outcome_boots_old_or_new():
    def confirmed(d):
        assert slots.on_trial(d) is None and _state(d)["outcome"]["state"] == "done"

    def rolled_back(d):
        assert slots.running(d) == ("a", "0.2.0") and _state(d)["outcome"]["state"] == "failed"

    def taken(d):
        assert _state(d)["outcome"] is None

    for fat in (False, True):
        # after a cut before the confirmation, 3 trial boots then the old one: firmware, never nothing
        assert _crash_every_step(_on_trial_b, lambda d, fs, ld: slots.confirm(d), ("0.2.0", "0.3.0"),
                                 confirmed, fat) >= 4
        assert _crash_every_step(_on_trial_b, lambda d, fs, ld: slots.rollback(d, "rolled_back"),
                                 ("0.2.0", "0.3.0"), rolled_back, fat) >= 4
        assert _crash_every_step(_confirmed_b, lambda d, fs, ld: slots.take_outcome(d), ("0.3.0",), taken,
                                 fat) >= 4


def test_a_power_cut_while_the_loader_counts_or_rolls_back_boots_old_or_new():
    def counted(d):
        assert _state(d)["trial"]["boots"] == 1

    def rolled_back(d):
        assert slots.running(d) == ("a", "0.2.0")
        assert _state(d)["outcome"] == {"state": "failed", "version": "0.3.0", "reason": "rolled_back"}

    def third_boot(d):
        _on_trial_b(d)
        ld = boot_loader
        for _ in range(3):
            ld.choose(d)

    for fat in (False, True):
        assert _crash_every_step(_on_trial_b, lambda d, fs, ld: ld.choose(d), ("0.2.0", "0.3.0"), counted,
                                 fat) >= 4
        assert _crash_every_step(third_boot, lambda d, fs, ld: ld.choose(d), ("0.2.0", "0.3.0"),
                                 rolled_back, fat) >= 4


def test_the_loader_starts_a_trial_it_cannot_count_and_never_raises():
    d = scratch()
    ld = boot_loader
    _on_trial_b(d)

    class FullFs(CrashingFs):
        def open(self, path, mode="r"):
            if "w" in mode:
                raise OSError(28)     # ENOSPC
            return open(path, mode)

    got = []
    with_fs(ld, FullFs(0), lambda: got.append(ld.choose(d)))
    assert got == [(d + "app_b", True)]
    assert _state(d)["trial"]["boots"] == 0 and "app.json.tmp" not in names(d)
    choose = ld.choose
    ld.choose = None          # anything at all going wrong: the factory install, no exception
    try:
        assert ld.boot() is False
    finally:
        ld.choose = choose
    rmtree(d)
