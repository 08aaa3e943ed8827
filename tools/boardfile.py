"""Load a board description from boards/ by file name on CPython (validated by firmware/boardcfg.py)."""
import importlib.util
import os

from mpenv import ROOT, use_firmware_on_cpython

BOARDS_DIR = os.path.join(ROOT, "boards")


def names():
    return sorted(f[:-3] for f in os.listdir(BOARDS_DIR) if f.endswith(".py") and f != "manifest.py")


def load(name):
    """The validated board module `boards/<name>.py`; BoardError (a ValueError) when it is bad."""
    use_firmware_on_cpython()
    import boardcfg

    path = os.path.join(BOARDS_DIR, name + ".py")
    if not os.path.isfile(path):
        raise boardcfg.BoardError("board %s: no such board file (choose from %s)"
                                  % (name, ", ".join(names())))
    spec = importlib.util.spec_from_file_location("board_" + name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return boardcfg.validate(mod), path
