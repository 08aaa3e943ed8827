"""The ESP32-like MicroPython runtime for the host: the unix port of the pinned MicroPython release built
as a 32-bit binary with single-precision floats, viper/native code and TLS (mbedTLS), with the firmware
frozen in through the same manifest an ESP32 image uses (boards/manifest.py). It stands for the chip in
the tests: 32-bit objects, small ints to 2^30, ticks wrapping at 2^30 ms, float32, bytecode in flash.

    python tools/esp32like/build.py          # build if missing or stale; prints the binary's path
    python tools/esp32like/build.py --source DIR --version V --out FILE
                                             # an image of another firmware folder (e.g. a release's)

The second form makes what an ESP32 "image" release holds on the esp32-like runtime (tools/release
--image, docs/releases.md): the same binary with the firmware of DIR frozen in, version.py saying V; it
starts from a copy of the main build's objects, so it only re-freezes and relinks (seconds).

Source, first found: $MICROPYTHON_SRC (an unpacked source tree), the archive in ../shared/vendor/
(checked against its pinned sha256), else a shallow git clone of the pinned tag (needs internet).
Output: build/esp32like/micropython. Rebuilt only when the firmware, the board files, the manifests or
this recipe change (the stamp beside the binary holds their hash); a rebuild after a firmware edit only
re-freezes and relinks (seconds), the first build takes about a minute on 2 cores.
"""
import argparse
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VERSION = "v1.28.0"
ARCHIVE = os.path.join(ROOT, "..", "shared", "vendor", "micropython-%s-unix-src.tar.gz" % VERSION)
ARCHIVE_SHA256 = "a6d52a427325e8c46faeabd3f576150327eefba9ce6d541bdca77f6f1e5f6eea"
GIT_URL = "https://github.com/micropython/micropython.git"
SUBMODULES = ("lib/micropython-lib", "lib/mbedtls", "lib/littlefs", "lib/oofatfs", "lib/uzlib",
              "lib/re1.5", "lib/crypto-algorithms", "lib/mbedtls_errors")
OUT = os.path.join(ROOT, "build", "esp32like")
BINARY = os.path.join(OUT, "micropython")
STAMP = os.path.join(OUT, "stamp")
MANIFEST = os.path.join(HERE, "manifest.py")
# The line proven on a 2-core machine (shared/vendor/README.md), plus the frozen firmware.
MAKE_VARS = ["VARIANT=standard", "MICROPY_FORCE_32BIT=1", "MICROPY_PY_BTREE=0", "MICROPY_PY_FFI=0",
             "MICROPY_PY_SSL=1", "MICROPY_SSL_MBEDTLS=1", "CFLAGS_EXTRA=-DMICROPY_FLOAT_IMPL=1",
             "MPY_CROSS_FLAGS=-march=x86"]


def say(msg):
    print("esp32like: " + msg, flush=True)


def inputs_hash():
    """What the binary is made of: the frozen sources, the manifests, this recipe and the release."""
    h = hashlib.sha256(("%s %s" % (VERSION, " ".join(MAKE_VARS))).encode())
    files = sorted(glob.glob(os.path.join(ROOT, "firmware", "*.py"))
                   + glob.glob(os.path.join(ROOT, "boards", "*.py"))
                   + [MANIFEST, os.path.abspath(__file__)])
    for path in files:
        h.update(os.path.relpath(path, ROOT).encode())
        with open(path, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def source_tree():
    """An unpacked MicroPython source tree of the pinned release."""
    given = os.environ.get("MICROPYTHON_SRC")
    if given:
        if not os.path.isdir(os.path.join(given, "ports", "unix")):
            raise SystemExit("esp32like: MICROPYTHON_SRC=%s is not a MicroPython source tree" % given)
        return os.path.abspath(given)
    tree = os.path.join(ROOT, "build", "micropython-%s" % VERSION)
    if os.path.isdir(os.path.join(tree, "ports", "unix")):
        return tree
    os.makedirs(os.path.dirname(tree), exist_ok=True)
    if os.path.exists(ARCHIVE):
        with open(ARCHIVE, "rb") as f:
            got = hashlib.sha256(f.read()).hexdigest()
        if got != ARCHIVE_SHA256:
            raise SystemExit("esp32like: %s has sha256 %s, expected %s" % (ARCHIVE, got, ARCHIVE_SHA256))
        say("unpacking %s" % os.path.basename(ARCHIVE))
        tmp = tree + ".part"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        with tarfile.open(ARCHIVE) as tar:
            tar.extractall(tmp, filter="data")
        os.replace(os.path.join(tmp, "micropython-%s" % VERSION), tree)
        shutil.rmtree(tmp)
        return tree
    say("no source archive at %s: cloning MicroPython %s" % (ARCHIVE, VERSION))
    tmp = tree + ".part"
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--branch", VERSION, GIT_URL, tmp], check=True)
    subprocess.run(["git", "-C", tmp, "submodule", "update", "--quiet", "--init", "--depth", "1",
                    *SUBMODULES], check=True)
    os.replace(tmp, tree)
    return tree


def build():
    """The binary, built or re-frozen when its inputs changed: one build at a time (several simulators,
    tests or people may ask at once; a second waits for the first and then finds it done)."""
    import fcntl

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build()


def _build():
    want = inputs_hash()
    if os.path.exists(BINARY) and os.path.exists(STAMP):
        with open(STAMP) as f:
            if f.read().strip() == want:
                return BINARY
    src = source_tree()
    os.makedirs(OUT, exist_ok=True)
    jobs = "-j%d" % max(1, os.cpu_count() or 1)
    started = time.monotonic()
    say("building MicroPython %s, 32-bit, float32, firmware frozen in (about a minute the first time)"
        % VERSION)
    log_path = os.path.join(OUT, "build.log")
    with open(log_path, "w") as log:
        for cmd in (["make", jobs, "-C", os.path.join(src, "mpy-cross")],
                    ["make", jobs, "-C", os.path.join(src, "ports", "unix"), *MAKE_VARS,
                     "BUILD=" + os.path.join(OUT, "obj"), "FROZEN_MANIFEST=" + MANIFEST]):
            if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
                with open(log_path) as f:
                    tail = f.read()[-3000:]
                raise SystemExit("esp32like: build failed (%s):\n%s" % (log_path, tail))
    shutil.copyfile(os.path.join(OUT, "obj", "micropython"), BINARY + ".part")
    os.chmod(BINARY + ".part", 0o755)
    os.replace(BINARY + ".part", BINARY)
    with open(STAMP, "w") as f:
        f.write(want + "\n")
    say("built %s in %.0f s" % (os.path.relpath(BINARY, ROOT), time.monotonic() - started))
    return BINARY


def build_image(source, version, out):
    """`out`: the binary with the firmware of folder `source` frozen in instead of this checkout's, its
    version.py saying `version` (None: as it is), and this checkout's board files. Built in a folder of
    its own from a copy of the main build's objects (the main build is made first if needed)."""
    import fcntl
    import tempfile

    build()
    with tempfile.TemporaryDirectory(prefix="esp32like-image-") as work:
        shutil.copytree(source, os.path.join(work, "firmware"),
                        ignore=shutil.ignore_patterns("__pycache__", "*.mpy"))
        shutil.copytree(os.path.join(ROOT, "boards"), os.path.join(work, "boards"),
                        ignore=shutil.ignore_patterns("__pycache__", "*.mpy"))
        if version is not None:
            path = os.path.join(work, "firmware", "version.py")
            with open(path) as f:
                text, n = re.subn(r'(?m)^VERSION = "[^"]*"', 'VERSION = "%s"' % version, f.read())
            if n != 1:
                raise SystemExit("esp32like: %s/version.py has no line VERSION = \"...\"" % source)
            with open(path, "w") as f:
                f.write(text)
        manifest = os.path.join(work, "manifest.py")
        with open(manifest, "w") as f:
            f.write('include("$(PORT_DIR)/variants/standard/manifest.py")\n'
                    'include("%s")\n' % os.path.join(work, "boards", "manifest.py"))
        obj = os.path.join(work, "obj")
        with open(OUT + ".lock", "w") as lock:       # the main build's objects, not while it is rebuilt
            fcntl.flock(lock, fcntl.LOCK_EX)
            shutil.copytree(os.path.join(OUT, "obj"), obj, symlinks=True)
        src = source_tree()
        log_path = os.path.join(work, "build.log")
        with open(log_path, "w") as log:
            cmd = ["make", "-j%d" % max(1, os.cpu_count() or 1), "-C", os.path.join(src, "ports", "unix"),
                   *MAKE_VARS, "BUILD=" + obj, "FROZEN_MANIFEST=" + manifest]
            if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
                with open(log_path) as f:
                    raise SystemExit("esp32like: image build failed:\n%s" % f.read()[-3000:])
        shutil.copyfile(os.path.join(obj, "micropython"), out + ".part")
        os.chmod(out + ".part", 0o755)
        os.replace(out + ".part", out)
    say("image %s: firmware of %s%s" % (out, source, ", version %s" % version if version else ""))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="tools/esp32like/build.py", description=__doc__.splitlines()[0])
    p.add_argument("--source", help="build an image of this firmware folder (with --out)")
    p.add_argument("--version", help="with --source: the image's version.py says this version")
    p.add_argument("--out", help="with --source: the image file to write")
    args = p.parse_args(argv)
    if args.source or args.out or args.version:
        if not (args.source and args.out):
            p.error("an image needs --source DIR and --out FILE")
        print(build_image(os.path.abspath(args.source), args.version, os.path.abspath(args.out)))
    else:
        print(build())
    return 0


if __name__ == "__main__":
    sys.exit(main())
