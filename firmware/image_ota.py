# The frozen-image path of an update (docs/releases.md, docs/design.md "Updates: frozen images"): the
# record that lets the firmware booting after a switch of OTA partitions know what happened.
#
# update.py writes the image into the next OTA partition (hal.ota_open), and before hal.ota_switch() the
# record ota.json: {"version": the image's, "from": the version that runs, "pointer": app.json or null}.
# The chip's bootloader then starts the image in state PENDING_VERIFY and, at the next reset (a crash, the
# watchdog, a missed probation deadline, a power cut) unless hal.ota_confirm() was called, rolls back to the
# old partition by itself. So, at boot:
#   - the record names the version that runs: the new image, on probation until it comes online
#     (confirm() marks it valid and ends the record: outcome done);
#   - it names another version: the image does not run (rolled back, or the switch never happened): the
#     outcome is failed/rolled_back, reported by the firmware that runs.
# An image brings its own frozen firmware: the app folders' pointer (slots.py) goes back to the factory
# install at the switch, so an .mpy update of the old image cannot shadow it; the old pointer is kept in
# the record and put back when the image is rolled back (one more restart).
#
# Imported only when needed and dropped after (app.py, update.py): its code costs heap while loaded.
import asyncio
import os

import store

BLOCK = 4096              # esp32.Partition's block: the flash sector
RECORD = "ota.json"
POINTER = "app.json"      # slots.POINTER


def _check(r):
    if not isinstance(r, dict) or not isinstance(r.get("version"), str):
        raise ValueError("not an image record")


def read(flash_dir):
    path = store.join(flash_dir, RECORD)
    for name in (path, path + ".bak", path + ".tmp"):
        if store.exists(name):       # (read_json logs a missing file: none at most boots)
            return store.read_json(path, _check)[0]
    return None


def _end(flash_dir):
    """Remove the record, its last good copy first: a cut in between leaves the same record."""
    path = store.join(flash_dir, RECORD)
    for name in (path + ".tmp", path + ".bak", path):
        try:
            os.remove(name)
        except OSError:
            pass


def before_switch(flash_dir, version, from_version):
    """The record of the image about to be switched to, and the factory pointer for the app folders."""
    path = store.join(flash_dir, POINTER)
    pointer = store.read_json(path)[0] if store.exists(path) else None
    if not isinstance(pointer, dict) or pointer.get("active") is None:
        pointer = None
    store.write_json(store.join(flash_dir, RECORD),
                     {"version": version, "from": from_version, "pointer": pointer}, _check)
    if pointer is not None:
        store.write_json(path, {"active": None, "version": version, "previous": None,
                                "previous_version": None, "trial": None, "outcome": None})


async def receive(hal, body, f, chunk):
    """The image `f` of the release body streamed into the next OTA partition (hal.ota_open: a 4 KB flash
    block written every few chunks), its sha256 checked as it arrives. UpdateError on failure."""
    import hashlib

    from update import UpdateError, _hex

    size = hal.ota_size()
    if not size:
        raise UpdateError("wrong_board", "an image release, and this device's firmware has no OTA "
                          "partitions (a build without them takes .mpy releases only)")
    if f["size"] > size:
        raise UpdateError("too_big", "an image of %d bytes, the OTA partition holds %d" % (f["size"], size))
    h = hashlib.sha256()
    left = f["size"]
    try:
        out = hal.ota_open(left)
        while left:
            data = await body.read(min(chunk, left))
            h.update(data)
            out.write(data)
            left -= len(data)
        out.close()
    except OSError as e:
        raise UpdateError("no_space", "the OTA partition refused a write: %s" % e) from None
    if _hex(h.digest()) != f["sha256"]:
        raise UpdateError("bad_hash", "%s does not match its sha256" % f["name"])


async def read_back(hal, size, piece_len):
    """sha256 (hex) of the first `size` bytes of the written partition, read back a piece at a time."""
    import hashlib

    from update import _hex

    h = hashlib.sha256()
    buf = memoryview(bytearray(piece_len))
    offset = 0
    while offset < size:
        piece = buf if size - offset >= piece_len else buf[:size - offset]
        hal.ota_readinto(offset, piece)
        h.update(piece)
        offset += len(piece)
        await asyncio.sleep_ms(0)
    return _hex(h.digest())


def abandon(flash_dir):
    """The switch failed (the bootloader refused the image): the old pointer back, no record."""
    r = read(flash_dir)
    if r is not None and r.get("pointer") is not None:
        store.write_json(store.join(flash_dir, POINTER), r["pointer"])
    _end(flash_dir)


def on_trial(flash_dir, running_version):
    """True when the firmware that runs is an image not yet confirmed (the record names its version)."""
    r = read(flash_dir)
    return r is not None and r["version"] == running_version


def confirm(hal, flash_dir):
    """The new image came online: marked valid (the bootloader keeps it), the record ended. The outcome."""
    r = read(flash_dir)
    hal.ota_confirm()
    _end(flash_dir)
    return {"state": "done", "version": r["version"] if r else None, "reason": None}


def take_rollback(flash_dir, running_version):
    """(outcome, restart) for a record of an image that does not run: outcome failed/rolled_back, to be
    reported now, or None when there is none (or the image runs). restart: the old app-folder pointer was
    put back (with the outcome in it, for the firmware it starts to report): restart into it."""
    r = read(flash_dir)
    if r is None or r["version"] == running_version:
        return None, False
    outcome = {"state": "failed", "version": r["version"], "reason": "rolled_back"}
    pointer = r.get("pointer")
    if pointer is not None:
        pointer["outcome"] = outcome
        store.write_json(store.join(flash_dir, POINTER), pointer)
        _end(flash_dir)
        return None, True
    _end(flash_dir)
    return outcome, False


class BlockWriter:
    """An image streamed into an update partition (hal.ota_open: the ESP32's esp32.Partition, or the
    simulated twin's): chunks gathered into one 4 KB block, each block written with
    part.writeblocks(n, block), which on the ESP32 erases that sector and writes it (one flash erase and
    write, ~50 ms, per 4 KB: the only blocking); close() pads the last block with 0xFF (erased flash).
    Nothing else of the partition is touched; the buffer is the only allocation."""

    def __init__(self, part, size):
        self._part = part
        self._buf = bytearray(BLOCK)
        self._n = 0
        self._block = 0
        self._left = size

    def write(self, chunk):
        n = len(chunk)
        if n > self._left:
            raise OSError(28)       # ENOSPC: more than the size announced to ota_open
        self._left -= n
        mv = memoryview(chunk)
        i = 0
        while i < n:
            k = min(BLOCK - self._n, n - i)
            self._buf[self._n:self._n + k] = mv[i:i + k]
            self._n += k
            i += k
            if self._n == BLOCK:
                self._flush()

    def _flush(self):
        self._part.writeblocks(self._block, self._buf)
        self._block += 1
        self._n = 0

    def close(self):
        if self._n:
            for i in range(self._n, BLOCK):
                self._buf[i] = 0xFF
            self._flush()
