"""tools/replay on broken capture files: a message naming what is wrong and a non-zero exit, never a
traceback (contract: bad input gets a clear error). The first case is the bug make faults found: a capture
without the channels the settings need crashed inside the meter."""
import json
import os
import random
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEADER = {"rate_hz": 2000, "bits": 12, "channels": ["v1", "i1", "i2", "i3"],
          "v_per_count": {"v1": 0.3}, "a_per_count": {"i1": 0.09, "i2": 0.09, "i3": 0.09},
          "skew_us": {"v1": 0, "i1": 35, "i2": 70, "i3": 105}}


def capture(header=HEADER, rows=4000, width=4):
    head = "# ampguard-capture v1 " + json.dumps(header) + "\n"
    return head + "".join(",".join(str(2048 + (k * (37 + c)) % 900) for c in range(width)) + "\n"
                          for k in range(rows))


def replay(tmp_path, text, name="c.txt"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return subprocess.run([os.path.join(ROOT, "tools", "replay"), str(path)], capture_output=True, text=True,
                          timeout=120)


def test_a_good_capture_replays(tmp_path):
    p = replay(tmp_path, capture())
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.splitlines()) == 2          # 4000 sets at 2000/s: two 1 s windows


CASES = [
    ("missing channel", capture(dict(HEADER, channels=["v1", "i1"],
                                     a_per_count={"i1": 0.09}, skew_us={"v1": 0, "i1": 35}), width=2),
     "capture has no i2 channel"),
    ("not a capture", "hello\n1,2\n", "not an ampguard capture"),
    ("header not json", "# ampguard-capture v1 {rate_hz: 1}\n", "not valid JSON"),
    ("row too short", capture(rows=3) + "1,2\n", "line 5: 2 values"),
    ("code out of range", capture(rows=3) + "5000,1,1,1\n", "outside"),
    ("not a number", capture(rows=3) + "1,x,1,1\n", "integer"),
    ("too short a capture", capture(rows=10), "less than one window"),
]


@pytest.mark.parametrize("what, text, message", CASES, ids=[c[0] for c in CASES])
def test_broken_captures_are_refused_with_a_message(tmp_path, what, text, message):
    p = replay(tmp_path, text)
    assert p.returncode != 0
    assert "Traceback" not in p.stderr + p.stdout
    assert message in p.stderr, p.stderr


def test_random_corruption_never_ends_in_a_traceback(tmp_path):
    good = capture(rows=2500).encode()
    rng = random.Random(11)
    for k in range(30):
        text = bytearray(good)
        for _ in range(rng.randint(1, 12)):
            pos = rng.randrange(len(text) if k % 2 else 300)
            text[pos] = rng.choice(b'{}[]",:0123456789-x\n \xff')
        p = replay(tmp_path, bytes(text), "c%d.txt" % k)
        assert "Traceback" not in p.stderr + p.stdout, (k, p.stderr[-500:])
        assert p.returncode == 0 or p.stderr.strip(), k
