"""Test harness: one pytest entry point for both runtimes.

Every module in tests/fw/ is a firmware test written for MicroPython and CPython alike
(plain `test_*` functions, helpers from tests/fw/fwtest.py). Each of its tests is collected
twice, as `name[cpython]` (run in this process with the shims of tools/cpython_shims/) and
`name[micropython]` (the whole module run once on the MicroPython unix port by
tests/fw/mprunner.py, results read back per test). A module that only works on CPython
therefore fails its micropython results. Everything under tests/host/ is ordinary
CPython-only pytest (hypothesis, real sockets, real brokers, the browser).
"""
import importlib
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FW_TESTS = os.path.join(HERE, "fw")
sys.path[:0] = [os.path.join(ROOT, p) for p in ("firmware", "boards", "tools/simhw", "tools")] + [
    os.path.join(ROOT, "tools", "cpython_shims"), FW_TESTS, os.path.join(HERE, "host")]

import mp_compat  # noqa: E402

mp_compat.install()

from mpenv import MICROPYTHON, micropython_env  # noqa: E402

MP_TIMEOUT_S = 900
_mp_results = {}


def pytest_pycollect_makemodule(module_path, parent):
    if str(module_path.parent) == FW_TESTS:
        return DualRuntimeModule.from_parent(parent, path=module_path)
    return None


class DualRuntimeModule(pytest.File):
    def collect(self):
        module = importlib.import_module(self.path.stem)
        for name, fn in vars(module).items():
            if name.startswith("test_") and callable(fn):
                yield FirmwareTest.from_parent(self, name=name + "[cpython]", fn=fn, runtime="cpython")
                yield FirmwareTest.from_parent(self, name=name + "[micropython]", fn=fn,
                                               runtime="micropython")


def run_module_on_micropython(path):
    """Run one firmware test module on the unix port; return ({test: (ok, text)}, raw output)."""
    if path in _mp_results:
        return _mp_results[path]
    cmd = [MICROPYTHON, "-X", "heapsize=8M", os.path.join(FW_TESTS, "mprunner.py"),
           os.path.splitext(os.path.basename(path))[0]]
    try:
        proc = subprocess.run(cmd, env=micropython_env([FW_TESTS]), capture_output=True, text=True,
                              timeout=MP_TIMEOUT_S, cwd=ROOT)
        output = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        output = "timed out after %ss\n%s" % (MP_TIMEOUT_S, e.stdout or "")
    results = {}
    for line in output.splitlines():
        if line.startswith("@@RESULT "):
            r = json.loads(line[len("@@RESULT "):])
            results[r["name"]] = (r["ok"], r["text"])
    _mp_results[path] = (results, output)
    return _mp_results[path]


class FirmwareTestFailure(Exception):
    pass


class FirmwareTest(pytest.Item):
    def __init__(self, *, fn, runtime, **kw):
        super().__init__(**kw)
        self.fn = fn
        self.runtime = runtime

    def runtest(self):
        if self.runtime == "cpython":
            self.fn()
            return
        results, output = run_module_on_micropython(str(self.path))
        name = self.fn.__name__
        if name not in results:
            raise FirmwareTestFailure("no result from MicroPython for %s; runner output:\n%s"
                                      % (name, output[-4000:]))
        ok, text = results[name]
        if not ok:
            raise FirmwareTestFailure(text)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, FirmwareTestFailure):
            return "[micropython] " + str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, 0, "%s::%s" % (self.path.name, self.name)


def pytest_collection_modifyitems(config, items):
    """Files with tests marked slow first, the file with the most of them first: make test runs files in
    parallel (pytest-xdist, one file per worker at a time, in this order), so the long ones must not be
    left for last. Within a file the order stays."""
    slow = {}
    for item in items:
        if item.get_closest_marker("slow"):
            slow[item.path] = slow.get(item.path, 0) + 1
    items.sort(key=lambda item: -slow.get(item.path, 0))


def pytest_terminal_summary(terminalreporter):
    """Say how many firmware tests ran, and passed, under each runtime (with pytest-xdist the workers'
    reports reach this process's terminal reporter too)."""
    counts = {}
    for outcome in ("passed", "failed", "error"):
        for rep in terminalreporter.stats.get(outcome, []):
            if rep.when != "call" or "::" not in rep.nodeid or "/fw/" not in rep.nodeid:
                continue
            for runtime in ("cpython", "micropython"):
                if rep.nodeid.endswith("[%s]" % runtime):
                    key = (runtime, outcome)
                    counts[key] = counts.get(key, 0) + 1
    if counts:
        for runtime in ("cpython", "micropython"):
            terminalreporter.write_line("firmware tests on %s: %d passed, %d failed" % (
                runtime, counts.get((runtime, "passed"), 0), counts.get((runtime, "failed"), 0)))
