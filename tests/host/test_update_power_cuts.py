"""Power cuts in the middle of an over-the-air update (issue 12 point 6), with the real parts: the
simulated meter, a real mosquitto, a real HTTPS server and releases signed by tools/release.

The rounds and their checks are `make faults`'s campaign `updates` (tools/faults.py: update_rounds, 50
rounds cut at random moments); here four rounds on one meter, each cut (SIGKILL of the device's
MicroPython process, which tools/sim boots again) at a fixed moment, found on the flash itself: half-way
through the download, as the last byte is on flash (the read-back verification), half a second after
the pointer switched (the old firmware about to restart), and as the new firmware's process starts on
trial. After each the meter must be online again within 90 s, on the old version when cut before the
switch and on the new one after it, app.json naming a folder whose files are the release's, the
settings, the other files on flash and the energy kept (a cut loses at most 60 s, never counts back)."""
import random

import faults
import pytest


@pytest.mark.slow
def test_power_cuts_in_download_verification_and_switch_leave_the_old_or_the_new_firmware(tmp_path):
    said = []
    phases = [("download", 50), ("verification", 0.0), ("switch", 0.5), ("switch", "trial")]
    per, running, rounds = faults.update_rounds(tmp_path, random.Random(12), phases, say=said.append)
    log = "\n".join(said)
    assert [problems for _, _, _, problems in rounds] == [[], [], [], []], log
    assert [where for _, _, where, _ in rounds] == [
        "while downloading", "while verifying", "while switched, not yet restarted",
        "while new firmware on trial"], log
    # before the switch: the old firmware runs on and the same release is sent again; after: the new one
    assert (per["download"]["old"], per["verification"]["old"], per["switch"]["new"]) == (1, 1, 2), log
    assert running == "0.3.0", log
    assert max(per[ph]["recovery"] for ph in faults.UPDATE_PHASES) < faults.UPDATE_BACK_S
    assert sum(per[ph]["crashes"] + per[ph]["stalls"] for ph in faults.UPDATE_PHASES) == 0, log
