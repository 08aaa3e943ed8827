# Freeze manifest of the firmware: what an ESP32 image freezes into flash (`make image`, after the
# ESP32 port's own boards/manifest.py) and what the host's ESP32-like runtime freezes
# (tools/esp32like/manifest.py). Frozen code runs from flash: its bytecode and strings cost no heap.
# main.py stays a file (the boot runs it from the filesystem); every board file is frozen and the
# running one is picked by name (boardcfg.load: /board.py on a device, AMPGUARD_BOARD on the host).
import os

_here = os.getcwd()      # MicroPython's manifest tool runs each manifest from its own folder
_firmware = os.path.join(_here, "..", "firmware")

for _name in sorted(os.listdir(_firmware)):
    if _name.endswith(".py") and _name != "main.py":
        module(_name, base_path=_firmware, opt=3)
for _name in sorted(os.listdir(_here)):
    if _name.endswith(".py") and _name != "manifest.py":
        module(_name, base_path=_here, opt=3)
