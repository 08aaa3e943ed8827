"""tools/release: make the vendor's update key, and signed firmware releases (.agr) for the devices.

    tools/release --new-key KEY.pem
    tools/release --key KEY.pem --version V --board BOARD [--arch xtensawin|x64|x86] [--micropython 1.22]
                  [--image FIRMWARE.bin] --out FILE.agr

--new-key writes a new ECDSA P-256 private key (PEM, PKCS#8, mode 0600; an existing file is never
overwritten) and beside it KEY.pub.json, the public key in the devices' format ({"p256": "<x||y hex>"}),
for `tools/provision --update-key KEY.pub.json`. Keep KEY.pem offline and out of the repository
(docs/releases.md).

A release (kind "mpy") holds what `make deploy` puts on a device: every firmware module but main.py and
boot_loader.py (the boot loader, never updated over the air) compiled with mpy-cross -march=ARCH,
version.py saying version V, and the board file boards/BOARD.py as board.mpy. Modules with native code
need the device's mpy sub-version: when --micropython is older than 1.23 (sub-version 3, what mpy-cross
makes) they go as source, as make deploy does for such a device. With --image, the release holds that one
firmware image instead (kind "image"). The manifest (format 1, version, board NAME, least MicroPython,
kind, arch, and each file's name, size and sha256) is signed with the key; the file is
    b"AGREL1\\n" | manifest length (4 bytes, big-endian) | manifest | signature r||s (64 bytes) | files.
Before writing, the release is read back with the firmware's own release.py and p256.py.
"""
import argparse
import getpass
import glob
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

import boardfile

from mpenv import MPY_CROSS, ROOT, use_firmware_on_cpython

use_firmware_on_cpython()
import p256  # noqa: E402
import release  # noqa: E402

ARCHS = release.ARCHS
NATIVE_SINCE = (1, 23)       # the first MicroPython reading mpy sub-version 3 (native code from mpy-cross)
IMAGE_NAME = "firmware.bin"
BOOT_LOADER = ("main.py", "boot_loader.py")      # the factory install's boot loader (firmware/main.py)


def crypto():
    """The cryptography modules used here (imported late: `make setup` installs the package)."""
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    except ImportError:
        raise SystemExit("release: the cryptography package is missing: run make setup") from None
    return hashes, serialization, ec, decode_dss_signature


def pub_path(key_path):
    return (key_path[:-4] if key_path.endswith(".pem") else key_path) + ".pub.json"


def public_hex(public_key):
    n = public_key.public_numbers()
    return (n.x.to_bytes(32, "big") + n.y.to_bytes(32, "big")).hex()


def new_key(path):
    hashes, serialization, ec, _ = crypto()
    pub = pub_path(path)
    for p in (path, pub):
        if os.path.exists(p):
            raise SystemExit("release: %s exists; it is never overwritten (choose another name)" % p)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(path, 0o600)       # whatever the umask
    with open(pub, "x") as f:
        json.dump({"p256": public_hex(key.public_key())}, f)
        f.write("\n")
    print("release: private key %s (keep it offline, mode 0600), public key %s (tools/provision"
          " --update-key %s)" % (path, pub, pub))
    return 0


def load_key(path):
    _, serialization, ec, _ = crypto()
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SystemExit("release: cannot read the key: %s" % e) from None
    try:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except TypeError:           # encrypted: ask for its passphrase
            key = serialization.load_pem_private_key(
                data, password=getpass.getpass("passphrase of %s: " % path).encode())
    except ValueError as e:
        raise SystemExit("release: %s is not a usable PEM private key (%s)" % (path, e)) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise SystemExit("release: %s is not an ECDSA P-256 key (make one with --new-key)" % path)
    return key


def mpy_arch(path):
    """The native arch code in an .mpy header (0: bytecode only)."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head[2] >> 2


def compile_mpy(src, out, arch, name):
    proc = subprocess.run([MPY_CROSS, "-march=" + arch, "-o", out, "-s", name, src],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit("release: %s does not compile for %s:\n%s" % (src, arch, proc.stderr.strip()))


def version_source(version, source):
    """source/version.py saying `version`: the device reports what it runs from this module."""
    with open(os.path.join(source, "version.py")) as f:
        text = f.read()
    new, count = re.subn(r'(?m)^VERSION = "[^"]*"', 'VERSION = "%s"' % version, text)
    if count != 1:
        raise SystemExit("release: firmware/version.py has no line VERSION = \"...\" to set")
    return new


def build_mpy(board_path, version, arch, least_mp, work, source):
    """[(name, path)] of the release's files (the firmware modules in `source`), compiled into `work`."""
    sources = []
    for src in sorted(glob.glob(os.path.join(source, "*.py"))):
        name = os.path.basename(src)
        if name in BOOT_LOADER:
            continue                # installed by make deploy only, never taken from an update
        if name == "version.py":
            src = os.path.join(work, "src-version.py")
            with open(src, "w") as f:
                f.write(version_source(version, source))
        sources.append((src, name))
    sources.append((board_path, "board.py"))
    files = []
    as_source = []
    for src, name in sources:
        out = os.path.join(work, name[:-3] + ".mpy")
        compile_mpy(src, out, arch, name)
        if mpy_arch(out) and least_mp < NATIVE_SINCE:
            as_source.append(name)
            files.append((name, src))
        else:
            files.append((name[:-3] + ".mpy", out))
    if as_source:
        print("release: native code needs MicroPython >= %d.%d for .mpy; for %d.%d these go as source: %s"
              % (NATIVE_SINCE + least_mp[:2] + (", ".join(as_source),)))
    return files


def manifest_for(files, version, board_name, least_mp, kind, arch):
    entries = []
    for name, path in files:
        with open(path, "rb") as f:
            data = f.read()
        entries.append({"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    return {"format": release.FORMAT, "version": version, "board": board_name, "micropython": least_mp,
            "kind": kind, "arch": arch, "files": entries}


def sign(key, manifest_bytes):
    hashes, _, ec, decode_dss_signature = crypto()
    r, s = decode_dss_signature(key.sign(manifest_bytes, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def pack(manifest_bytes, signature, files):
    out = [release.HEADER, len(manifest_bytes).to_bytes(4, "big"), manifest_bytes, signature]
    for _, path in files:
        with open(path, "rb") as f:
            out.append(f.read())
    return b"".join(out)


def read_back(blob, pub64):
    """The manifest of a packed release, checked the way a device checks it; SystemExit when not."""
    n0 = len(release.HEADER)
    n = int.from_bytes(blob[n0:n0 + 4], "big")
    text = blob[n0 + 4:n0 + 4 + n]
    sig = blob[n0 + 4 + n:n0 + 4 + n + release.SIG_LEN]
    if blob[:n0] != release.HEADER or not p256.verify(pub64, hashlib.sha256(text).digest(), sig):
        raise SystemExit("release: the release does not verify (a bug of this tool)")
    return release.parse_manifest(text)


def build(args):
    try:
        release.version_key(args.version)
    except ValueError as e:
        raise SystemExit("release: --version: %s" % e) from None
    least = release._numbers(args.micropython, (2, 3))
    if least is None:
        raise SystemExit("release: --micropython must be N.N or N.N.N, e.g. 1.22")
    try:
        board, board_path = boardfile.load(args.board)
    except ValueError as e:
        raise SystemExit("release: %s" % e) from None
    key = load_key(args.key)
    pub64 = bytes.fromhex(public_hex(key.public_key()))
    with tempfile.TemporaryDirectory(prefix="release-") as work:
        if args.image:
            if not os.path.isfile(args.image):
                raise SystemExit("release: --image %s: no such file" % args.image)
            files, kind = [(IMAGE_NAME, args.image)], "image"
        else:
            files, kind = build_mpy(board_path, args.version, args.arch, least, work, args.source), "mpy"
        doc = manifest_for(files, args.version, board.NAME, args.micropython, kind, args.arch)
        manifest_bytes = json.dumps(doc, separators=(",", ":")).encode()
        if len(manifest_bytes) > release.MAX_MANIFEST:
            raise SystemExit("release: the manifest is %d bytes, a device reads at most %d"
                             % (len(manifest_bytes), release.MAX_MANIFEST))
        blob = pack(manifest_bytes, sign(key, manifest_bytes), files)
    try:
        if read_back(blob, pub64) != doc:
            raise SystemExit("release: the manifest does not read back as written (a bug of this tool)")
    except release.ReleaseError as e:
        raise SystemExit("release: %s (a bug of this tool)" % e.message) from None
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(blob)
    os.replace(tmp, args.out)
    print("release: %s: version %s for board %s (%s, %s, MicroPython >= %s), %d files, %d bytes"
          % (args.out, args.version, board.NAME, kind, args.arch, args.micropython, len(files), len(blob)))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="tools/release", description=__doc__.splitlines()[0])
    p.add_argument("--new-key", metavar="KEY.pem", help="write a new P-256 private key and KEY.pub.json")
    p.add_argument("--key", metavar="KEY.pem", help="the private key that signs the release")
    p.add_argument("--version", help="the release's version, N.N.N")
    p.add_argument("--board", help="board file in boards/, e.g. olimex_esp32_poe")
    p.add_argument("--arch", default="xtensawin", choices=ARCHS,
                   help="mpy-cross -march: xtensawin for the ESP32, x64 or x86 for the simulator")
    p.add_argument("--micropython", default="1.22", help="the least MicroPython version it runs on")
    p.add_argument("--image", help="a firmware image: the release installs it instead of .mpy files")
    p.add_argument("--out", help="the release file to write, e.g. ampguard-0.2.0.agr")
    p.add_argument("--source", default=os.path.join(ROOT, "firmware"),
                   help="the firmware folder to build from (default: this checkout's firmware/)")
    args = p.parse_args(argv)
    if args.new_key:
        if args.key or args.version or args.out:
            p.error("--new-key makes a key only")
        return new_key(args.new_key)
    missing = [o for o in ("key", "version", "board", "out") if not getattr(args, o)]
    if missing:
        p.error("a release needs %s (or --new-key KEY.pem)" % ", ".join("--" + m for m in missing))
    return build(args)


if __name__ == "__main__":
    sys.exit(main())
