"""The simulator runs the firmware the way the device does: precompiled to .mpy (make deploy does the same
for the ESP32), so compiling source at import costs no heap that the device would never spend. Built
into build/sim-<arch>/ when a source is newer than its .mpy; where mpy-cross has no native emitter for
this machine, the simulator runs the source instead (same behaviour, more heap)."""
import glob
import os
import platform
import shutil
import subprocess

from mpenv import MPY_CROSS, ROOT

ARCH = {"x86_64": "x64", "AMD64": "x64", "i686": "x86"}.get(platform.machine())
SOURCES = ("firmware/*.py", "boards/*.py", "tools/simhw/*.py")


def build_dir():
    return os.path.join(ROOT, "build", "sim-%s" % ARCH)


def _copy_if_newer(src, dst):
    if not os.path.exists(dst) or os.path.getmtime(dst) < os.path.getmtime(src):
        shutil.copyfile(src, dst + ".%d" % os.getpid())     # several simulators may build at once
        os.replace(dst + ".%d" % os.getpid(), dst)


def loader():
    """A folder holding only the boot loader (firmware/main.py), for the esp32-like runtime, whose
    firmware is frozen: run from there, the script's folder (first on sys.path) shadows no frozen module."""
    out = os.path.join(ROOT, "build", "sim-loader")
    os.makedirs(out, exist_ok=True)
    _copy_if_newer(os.path.join(ROOT, "firmware", "main.py"), os.path.join(out, "main.py"))
    return out


def build():
    """The folder of compiled firmware + board files + simulated hardware (main.py as source), or None
    when this machine's architecture cannot run native code from .mpy files."""
    if ARCH is None or not os.path.exists(MPY_CROSS):
        return None
    out = build_dir()
    os.makedirs(out, exist_ok=True)
    for pattern in SOURCES:
        for src in glob.glob(os.path.join(ROOT, pattern)):
            name = os.path.splitext(os.path.basename(src))[0]
            if name == "main":      # the boot loader: MicroPython runs it as source
                _copy_if_newer(src, os.path.join(out, "main.py"))
                continue
            dst = os.path.join(out, name + ".mpy")
            if os.path.exists(dst) and os.path.getmtime(dst) >= os.path.getmtime(src):
                continue
            tmp = dst + ".%d" % os.getpid()       # several simulators may build at once
            subprocess.run([MPY_CROSS, "-march=" + ARCH, "-o", tmp, "-s", os.path.relpath(src, ROOT), src],
                           check=True, capture_output=True)
            os.replace(tmp, dst)
    return out
