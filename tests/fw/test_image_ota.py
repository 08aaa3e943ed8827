# Frozen-image updates, the parts that run on every runtime: the OTA twin's partition and writer
# (tools/simhw/hal_sim.py, esp32.Partition's block semantics) and image_ota.py's record (what the firmware
# booting after a switch concludes: new image on trial, or rolled back). Whole updates through the twin's
# bootloader: tests/host/test_update_image.py.
import os

import image_ota
import slots
import store
from fwfiles import read_raw, scratch
from fwtest import raises
from hal_sim import FLASH_BLOCK, OTA_SIZE, OtaPartition
from image_ota import BlockWriter


def test_writeblocks_erases_and_writes_whole_sectors_only():
    d = scratch()
    part = OtaPartition(d, "ota_1")
    raises(OSError, part.writeblocks, 0, bytearray(100))             # not a whole 4 KB sector
    raises(OSError, part.writeblocks, OTA_SIZE // FLASH_BLOCK, bytearray(FLASH_BLOCK))   # past the end
    part.writeblocks(2, b"\x01" * FLASH_BLOCK)
    raw = read_raw(d + "ota_1.bin")
    assert raw == b"\xff" * (2 * FLASH_BLOCK) + b"\x01" * FLASH_BLOCK    # the sectors before: erased
    buf = bytearray(8)
    part.readblocks(2, buf, FLASH_BLOCK - 4)
    assert buf == b"\x01" * 4 + b"\xff" * 4                      # never written: reads as erased flash


def test_the_writer_gathers_chunks_into_blocks_and_pads_the_last_with_ff():
    d = scratch()
    data = bytes(range(256)) * 40 + b"end"                        # 10243 bytes: 2 blocks and a bit
    w = BlockWriter(OtaPartition(d, "ota_0"), len(data))
    for i in range(0, len(data), 1000):
        w.write(data[i:i + 1000])
        whole = min(i + 1000, len(data)) // FLASH_BLOCK           # a block is written once it is full
        if whole:
            assert len(read_raw(d + "ota_0.bin")) == whole * FLASH_BLOCK
    raises(OSError, w.write, b"x")                                # more than announced
    w.close()
    raw = read_raw(d + "ota_0.bin")
    assert len(raw) == 3 * FLASH_BLOCK and raw[:len(data)] == data and raw[len(data):] == b"\xff" * (
        3 * FLASH_BLOCK - len(data))


class _Hal:
    def __init__(self):
        self.confirmed = 0

    def ota_confirm(self):
        self.confirmed += 1
        return True


def test_the_new_image_is_on_trial_until_confirmed_then_done():
    d = scratch()
    assert not image_ota.on_trial(d, "0.1.0") and image_ota.take_rollback(d, "0.1.0") == (None, False)
    image_ota.before_switch(d, "0.2.0", "0.1.0")
    assert not store.exists(d + "app.json")                       # no app folder ran: pointer untouched
    assert image_ota.on_trial(d, "0.2.0")                          # the new image booted
    assert image_ota.take_rollback(d, "0.2.0") == (None, False)    # ... and is no rollback
    hal = _Hal()
    assert image_ota.confirm(hal, d) == {"state": "done", "version": "0.2.0", "reason": None}
    assert hal.confirmed == 1 and image_ota.read(d) is None and not image_ota.on_trial(d, "0.2.0")


def test_a_record_of_an_image_that_does_not_run_is_a_rollback_reported_once():
    d = scratch()
    image_ota.before_switch(d, "0.2.0", "0.1.0")
    assert not image_ota.on_trial(d, "0.1.0")                      # the old image runs: rolled back
    outcome, restart = image_ota.take_rollback(d, "0.1.0")
    assert outcome == {"state": "failed", "version": "0.2.0", "reason": "rolled_back"} and not restart
    assert image_ota.take_rollback(d, "0.1.0") == (None, False)    # once
    for suffix in ("", ".bak", ".tmp"):
        assert not store.exists(d + "ota.json" + suffix)


def test_an_image_replaces_an_mpy_update_and_a_rollback_puts_it_back():
    d = scratch()
    os.mkdir(d + "app_a")
    with open(d + "app_a/app.py", "w") as f:
        f.write("")
    slots.switch(d, "a", "0.1.5")
    slots.confirm(d)
    slots.take_outcome(d)
    image_ota.before_switch(d, "0.2.0", "0.1.5")
    assert slots.running(d)[0] is None        # the new image's frozen firmware, not the old .mpy update
    outcome, restart = image_ota.take_rollback(d, "0.1.0")   # rolled back: the old image's frozen 0.1.0
    assert outcome is None and restart                       # restarts into the .mpy update ...
    assert slots.running(d) == ("a", "0.1.5")
    assert slots.take_outcome(d) == {"state": "failed", "version": "0.2.0", "reason": "rolled_back"}
    assert image_ota.read(d) is None


def test_a_switch_the_bootloader_refuses_leaves_everything_as_it_was():
    d = scratch()
    os.mkdir(d + "app_b")
    with open(d + "app_b/app.py", "w") as f:
        f.write("")
    slots.switch(d, "b", "0.1.5")
    slots.confirm(d)
    image_ota.before_switch(d, "0.2.0", "0.1.5")
    image_ota.abandon(d)
    assert slots.running(d) == ("b", "0.1.5") and image_ota.read(d) is None
