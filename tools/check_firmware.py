"""`make check`: every firmware and board file compiles for the ESP32 (xtensawin), and the linter passes."""
import glob
import os
import subprocess
import sys
import tempfile

from mpenv import MPY_CROSS, ROOT


def compile_all():
    files = sorted(glob.glob(os.path.join(ROOT, "firmware", "*.py")) +
                   glob.glob(os.path.join(ROOT, "boards", "*.py")))
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for path in files:
            out = os.path.join(tmp, "x.mpy")
            proc = subprocess.run([MPY_CROSS, "-march=xtensawin", "-o", out, path],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                failed += 1
                print("FAIL %s\n%s" % (os.path.relpath(path, ROOT), proc.stderr.strip()))
    print("mpy-cross -march=xtensawin: %d files, %d failed" % (len(files), failed))
    return failed == 0


def lint():
    proc = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ruff"), "check", "."], cwd=ROOT)
    return proc.returncode == 0


if __name__ == "__main__":
    ok = compile_all()
    ok = lint() and ok
    sys.exit(0 if ok else 1)
