"""Power cuts during settings writes: SIGKILL the MicroPython writer at random moments, many times.

After every kill the stored settings must load as a valid document equal to the last completed write
or to the one in flight (the writer's progress lines say which), never broken, never the defaults
once a write had completed.
"""
import os
import random
import re
import signal
import subprocess
import time

import log
import settings

from mpenv import MICROPYTHON, ROOT, micropython_env

WRITER = os.path.join(ROOT, "tests", "host", "mp_settings_writer.py")
WRITES_PER_RUN = 200
KILLS = 40
_LOG_LINE = re.compile(r"^ *[0-9.]+ (DEBUG|INFO|WARN) [a-z]+: ")   # the writer's own log (fallbacks)


def _port(i):
    return 1 + i            # the writer's recognisable value for write number i


def _run_writer(state, first, delay_s):
    """Start the writer at write number `first`, SIGKILL it after delay_s; return its progress."""
    proc = subprocess.Popen([MICROPYTHON, WRITER, state, str(first), str(WRITES_PER_RUN)],
                            env=micropython_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(delay_s)
    proc.send_signal(signal.SIGKILL)
    out = proc.communicate(timeout=30)[0].decode(errors="replace")
    begun = done = None
    lines = out.splitlines()
    if not out.endswith("\n"):
        lines = lines[:-1]      # cut off by the kill
    for line in lines:
        word, _, arg = line.partition(" ")
        if word == "begin":
            begun = int(arg)
        elif word == "done":
            done = int(arg)
        elif word not in ("loaded", "finished") and not _LOG_LINE.match(line):
            raise AssertionError("writer said: %r\n%s" % (line, out[-2000:]))
    return begun, done, out


def _measure_run_s(tmp_path):
    start = time.monotonic()
    subprocess.run([MICROPYTHON, WRITER, str(tmp_path / "calibrate"), "0", str(WRITES_PER_RUN)],
                   env=micropython_env(), check=True, capture_output=True, timeout=60)
    return time.monotonic() - start


def test_settings_survive_sigkill_at_any_moment(tmp_path):
    seed = int(os.environ.get("AMPGUARD_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    (tmp_path / "calibrate").mkdir()
    run_s = _measure_run_s(tmp_path)
    state = tmp_path / "flash"
    state.mkdir()
    log.level = 3
    last_done = None        # number of the last write known to be complete
    kills_in_writes = 0
    for run in range(KILLS):
        first = 0 if last_done is None else last_done + 1
        # Mostly while writing, sometimes while starting up or after the writer has finished.
        delay = rng.uniform(0.0, run_s * 1.1)
        begun, done, out = _run_writer(str(state), first, delay)
        if done is not None:
            last_done = done
        in_flight = begun if begun is not None and begun != done else None
        kills_in_writes += in_flight is not None
        s = settings.Settings(str(state))
        loaded = s.load()
        where = "seed %d, run %d, delay %.3f s, last done %s, in flight %s, files %s" % (
            seed, run, delay, last_done, in_flight, sorted(os.listdir(state)))
        assert settings.validate(loaded) == loaded, where
        allowed = {_port(i) for i in (last_done, in_flight) if i is not None}
        if last_done is None:
            allowed.add(settings.DEFAULTS["mqtt"]["port"])
        assert s.source != "defaults" or last_done is None, where
        port = loaded["mqtt"]["port"]
        assert port in allowed, "%s: loaded port %d, allowed %s" % (where, port, sorted(allowed))
        i = port - 1
        if port != settings.DEFAULTS["mqtt"]["port"] or last_done is not None:
            assert loaded["interval_s"] == 1 + i % 60 and loaded["mqtt"]["host"] == "h%d.lan" % i, where
        if in_flight is not None and port == _port(in_flight):
            last_done = in_flight       # the write in flight had landed: later writes build on it
    assert kills_in_writes >= KILLS // 4, "too few kills hit a write (seed %d)" % seed
