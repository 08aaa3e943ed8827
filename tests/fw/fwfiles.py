# File helpers for firmware tests on both runtimes: scratch folders, raw file access, simulated crashes.
import os

import log
from fwtest import tmpdir


def rmtree(path):
    for name in os.listdir(path):
        full = path + "/" + name
        if os.stat(full)[0] & 0x4000:
            rmtree(full)
        else:
            os.remove(full)
    os.rmdir(path)


def scratch():
    """A new empty folder with a trailing '/' (as flash_dir "/" on the device)."""
    return tmpdir() + "/"


def write_raw(path, data):
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def read_raw(path):
    with open(path, "rb") as f:
        return f.read()


def names(folder):
    return sorted(os.listdir(folder))


class Crash(BaseException):
    """A power cut: not an Exception, so the code under test cannot clean up after it."""


class CrashingFs:
    """Stands in for `os` and `open` in a module; the power fails at mutating step number `at`.

    Steps are: opening a file for writing, each write (which first stores half its data), each
    rename and each remove. `steps` counts the steps taken, to know when no crash happened.
    """

    def __init__(self, at, fat=False):
        self.at = at
        self.steps = 0
        self.fat = fat      # rename onto an existing file fails, as on FAT

    def _step(self):
        self.steps += 1
        if self.steps == self.at:
            raise Crash()

    def __getattr__(self, name):
        return getattr(os, name)

    def rename(self, a, b):
        self._step()
        if self.fat:
            try:
                os.stat(b)
                raise OSError(17)   # EEXIST
            except OSError as e:
                if e.args and e.args[0] == 17:
                    raise
        os.rename(a, b)

    def remove(self, path):
        self._step()
        os.remove(path)

    def open(self, path, mode="r"):
        f = open(path, mode)
        if "w" not in mode:
            return f
        self._step()
        return _CrashingFile(self, f)


class _CrashingFile:
    def __init__(self, fs, f):
        self.fs = fs
        self.f = f

    def write(self, data):
        self.fs.steps += 1
        if self.fs.steps == self.fs.at:
            self.f.write(data[:len(data) // 2])
            self.f.close()
            raise Crash()
        return self.f.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def __getattr__(self, name):
        return getattr(self.f, name)


def with_fs(modules, fs, fn):
    """Run fn() with `modules` (one module, or a tuple of them) using the filesystem stand-in `fs`;
    return Crash or None."""
    if not isinstance(modules, tuple):
        modules = (modules,)
    real = [(m, m.os) for m in modules]
    for m in modules:
        m.os = fs
        m.open = fs.open
    try:
        fn()
        return None
    except Crash as e:
        return e
    finally:
        for m, o in real:
            m.os = o
            m.open = open       # the built-in again


class LogCapture:
    """Collects log lines ("LEVEL tag: message") while active."""

    def __init__(self):
        self.lines = []

    def __enter__(self):
        self._real = log._emit
        log._emit = lambda lvl, tag, msg: self.lines.append("%s %s: %s" % (log._LEVELS[lvl], tag, msg))
        return self

    def __exit__(self, *exc):
        log._emit = self._real

    def text(self):
        return "\n".join(self.lines)
