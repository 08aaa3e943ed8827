"""Test harness: one pytest entry point for the three runtimes.

Every module in tests/fw/ is a firmware test written for MicroPython and CPython alike
(plain `test_*` functions, helpers from tests/fw/fwtest.py). Each of its tests is collected
three times: `name[cpython]` (run in this process with the shims of tools/cpython_shims/),
`name[micropython]` (the 64-bit unix port, firmware from its source folders) and
`name[esp32-like]` (the 32-bit, float32 unix port with the firmware frozen in, built by
`make setup`: see tools/mpenv.py). On each MicroPython runtime the whole module runs once, by
tests/fw/mprunner.py, and the results are read back per test; with pytest-xdist's
`--dist loadfile` a module's tests stay on one worker, so that is still one run per module
per runtime. A missing or stale esp32-like binary fails its tests with the reason (it is never
skipped). Everything under tests/host/ is ordinary CPython pytest (hypothesis, real sockets,
real brokers, the browser), some of it driving the MicroPython runtimes as subprocesses.
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

from mpenv import MICROPYTHON_RUNTIMES, runtime_binary, runtime_env, runtime_problem  # noqa: E402

RUNTIMES = ("cpython",) + MICROPYTHON_RUNTIMES
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
                for runtime in RUNTIMES:
                    yield FirmwareTest.from_parent(self, name="%s[%s]" % (name, runtime), fn=fn,
                                                   runtime=runtime)


def run_module_on_micropython(path, runtime):
    """Run one firmware test module on a MicroPython runtime; return ({test: (ok, text)}, raw output).

    If the runtime cannot run the current firmware (binary missing, or esp32-like built from older
    firmware), the results are None and the output says why."""
    key = (path, runtime)
    if key in _mp_results:
        return _mp_results[key]
    problem = runtime_problem(runtime)
    if problem:
        _mp_results[key] = (None, problem)
        return _mp_results[key]
    # tests/fw holds no firmware file, so the runner's own folder (searched first) shadows nothing.
    cmd = [runtime_binary(runtime), "-X", "heapsize=8M", os.path.join(FW_TESTS, "mprunner.py"),
           os.path.splitext(os.path.basename(path))[0]]
    try:
        env = runtime_env(runtime, [FW_TESTS])
        env["AMPGUARD_FW_RUNTIME"] = runtime        # tests/fw/test_harness.py checks it is that runtime
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=MP_TIMEOUT_S, cwd=ROOT)
        output = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        output = "timed out after %ss\n%s" % (MP_TIMEOUT_S, e.stdout or "")
    results = {}
    for line in output.splitlines():
        if line.startswith("@@RESULT "):
            r = json.loads(line[len("@@RESULT "):])
            results[r["name"]] = (r["ok"], r["text"])
    _mp_results[key] = (results, output)
    return _mp_results[key]


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
        results, output = run_module_on_micropython(str(self.path), self.runtime)
        if results is None:
            raise FirmwareTestFailure(output)
        name = self.fn.__name__
        if name not in results:
            raise FirmwareTestFailure("no result from %s for %s; runner output:\n%s"
                                      % (self.runtime, name, output[-4000:]))
        ok, text = results[name]
        if not ok:
            raise FirmwareTestFailure(text)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, FirmwareTestFailure):
            return "[%s] %s" % (self.runtime, excinfo.value)
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
            for runtime in RUNTIMES:
                if rep.nodeid.endswith("[%s]" % runtime):
                    key = (runtime, outcome)
                    counts[key] = counts.get(key, 0) + 1
    if counts:
        for runtime in RUNTIMES:
            terminalreporter.write_line("firmware tests on %s: %d passed, %d failed" % (
                runtime, counts.get((runtime, "passed"), 0), counts.get((runtime, "failed"), 0)))
