# The firmware release file (`.agr`, made by tools/release; docs/releases.md): its header, its signed
# manifest and the checks that decide whether this device may install it. The download, the signature
# check (p256.py) and the install are the update's (update.py, slots.py).
#
#   b"AGREL1\n" | manifest length N, 4 bytes big-endian (N <= MAX_MANIFEST) | N bytes manifest (JSON)
#   | 64 bytes signature: ECDSA P-256 r||s over SHA-256(manifest) | the files, in the manifest's order
import json

import log
import store

HEADER = b"AGREL1\n"
MAX_MANIFEST = 8192     # ~110 bytes a file: 4096 was full at 36 files (the firmware has 37 with the board)
SIG_LEN = 64
FORMAT = 1
KEY_FILE = "update_key.json"        # {"p256": "<128 hex: x||y>"}, written by tools/provision --update-key
KEY_MAX = 1024                      # bytes of KEY_FILE read at most
KINDS = ("mpy", "image")
ARCHS = ("x64", "x86", "xtensawin")
NAME_MAX = 32
_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"
_HEX = "0123456789abcdef"


class ReleaseError(Exception):
    """Why a release is refused: `reason` is one of the update's failure reasons, `message` says why."""

    def __init__(self, reason, message):
        super().__init__(reason, message)
        self.reason = reason
        self.message = message


def _bad(message):
    # A manifest this firmware cannot read is as good as an unsigned file: it is not a release for it.
    raise ReleaseError("bad_signature", "manifest: " + message)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_hex(text, length):
    if not isinstance(text, str) or len(text) != length:
        return False
    for c in text:
        if c not in _HEX:
            return False
    return True


def _numbers(text, parts):
    """The tuple of ints of a dotted version with `parts` parts (a tuple of them allowed), digits only, no
    leading zeros, at most 5 digits each; None when `text` is not one."""
    if not isinstance(text, str):
        return None
    fields = text.split(".")
    if len(fields) not in parts:
        return None
    out = []
    for f in fields:
        if not 1 <= len(f) <= 5 or (len(f) > 1 and f[0] == "0"):
            return None
        for c in f:
            if not "0" <= c <= "9":
                return None
        out.append(int(f))
    return tuple(out)


def version_key(version):
    """(major, minor, patch) of "N.N.N", to compare versions; ValueError when it is not one."""
    key = _numbers(version, (3,))
    if key is None:
        raise ValueError("version must be N.N.N (digits, no leading zeros), not %r" % (version,))
    return key


def _mp_key(version):
    # A MicroPython version: "1.22", "1.22.0" or sys.implementation.version's tuple; padded to 3 numbers.
    if isinstance(version, tuple):
        key = tuple(version[:3])
    else:
        key = _numbers(version, (2, 3))
        if key is None:
            raise ValueError("MicroPython version must be N.N or N.N.N, not %r" % (version,))
    return key + (0,) * (3 - len(key))


def valid_name(name):
    """A file name of a release: 1-32 of [A-Za-z0-9_.-], not "." or ".." (so never a path)."""
    if not isinstance(name, str) or not 1 <= len(name) <= NAME_MAX or name in (".", ".."):
        return False
    for c in name:
        if c not in _NAME_CHARS:
            return False
    return True


def _check_file(i, f, seen):
    where = "files[%d]" % i
    if not isinstance(f, dict):
        _bad("%s must be an object" % where)
    name = f.get("name")
    if not valid_name(name):
        _bad("%s.name must be 1-%d of A-Z a-z 0-9 _ . - (not . or ..), not %r" % (where, NAME_MAX, name))
    if name in seen:
        _bad("%s.name %s appears twice" % (where, name))
    if name in ("main.py", "main.mpy"):
        _bad("%s.name %s: main.py is the boot loader, never part of a release" % (where, name))
    seen.append(name)
    if not _is_int(f.get("size")) or f["size"] < 0:
        _bad("%s.size must be an integer >= 0" % where)
    if not _is_hex(f.get("sha256"), 64):
        _bad("%s.sha256 must be 64 lowercase hex digits" % where)


def parse_manifest(data):
    """The manifest (bytes, the signed JSON) as a dict, every field checked; ReleaseError
    (bad_signature, a message naming the field) when it is not a manifest this firmware reads."""
    if len(data) > MAX_MANIFEST:
        _bad("%d bytes, at most %d" % (len(data), MAX_MANIFEST))
    try:
        doc = json.loads(bytes(data).decode())
    except Exception:       # ValueError, UnicodeError, deep nesting: all "not JSON"
        _bad("not valid JSON")
    if not isinstance(doc, dict):
        _bad("must be a JSON object")
    if not _is_int(doc.get("format")) or doc["format"] != FORMAT:
        _bad("format %r is not supported (this firmware reads format %d)" % (doc.get("format"), FORMAT))
    if _numbers(doc.get("version"), (3,)) is None:
        _bad("version must be N.N.N (digits), not %r" % (doc.get("version"),))
    if not valid_name(doc.get("board")):
        _bad("board must be a board name (1-%d of A-Z a-z 0-9 _ . -), not %r" % (NAME_MAX, doc.get("board")))
    if _numbers(doc.get("micropython"), (2, 3)) is None:
        _bad("micropython must be N.N or N.N.N, not %r" % (doc.get("micropython"),))
    if doc.get("kind") not in KINDS:
        _bad("kind must be one of %s, not %r" % (", ".join(KINDS), doc.get("kind")))
    if doc.get("arch") not in ARCHS:
        _bad("arch must be one of %s, not %r" % (", ".join(ARCHS), doc.get("arch")))
    files = doc.get("files")
    if not isinstance(files, list) or not files:       # how many: MAX_MANIFEST bounds that
        _bad("files must be a list of one file or more")
    if doc["kind"] == "image" and len(files) != 1:
        _bad("files: an image release holds exactly one file, not %d" % len(files))
    seen = []
    for i, f in enumerate(files):
        _check_file(i, f, seen)
    return doc


def check(manifest, board_name, running_version, micropython_version, expected_version=None, arch=None):
    """Whether this device may install the release of a parsed manifest; ReleaseError when not:
    - bad_signature: a format this firmware does not read;
    - wrong_board: built for another board, another MicroPython architecture (`arch`, when given) or a
      newer MicroPython than the device's (`micropython_version`: "1.22", "1.22.0" or a version tuple);
    - bad_url: not the version the update command expected (`expected_version`, when given);
    - older_version: not newer than the running firmware (the same version included)."""
    if manifest.get("format") != FORMAT:
        _bad("format %r is not supported" % (manifest.get("format"),))
    if manifest["board"] != board_name:
        raise ReleaseError("wrong_board", "the release is for board %s, this is %s"
                           % (manifest["board"], board_name))
    if arch is not None and manifest["arch"] != arch:
        raise ReleaseError("wrong_board", "the release is built for %s, this device runs %s"
                           % (manifest["arch"], arch))
    if _mp_key(manifest["micropython"]) > _mp_key(micropython_version):
        have = micropython_version
        if isinstance(have, tuple):
            have = ".".join(str(v) for v in have[:3])
        raise ReleaseError("wrong_board", "the release needs MicroPython %s or newer, this device runs %s"
                           % (manifest["micropython"], have))
    if expected_version is not None and manifest["version"] != expected_version:
        raise ReleaseError("bad_url", "the URL serves version %s, not %s"
                           % (manifest["version"], expected_version))
    if version_key(manifest["version"]) <= version_key(running_version):
        raise ReleaseError("older_version", "version %s is not newer than the running %s"
                           % (manifest["version"], running_version))


def check_key(doc):
    """ValueError unless `doc` is an update key document: {"p256": 128 lowercase hex, a curve point}."""
    import p256

    if not isinstance(doc, dict) or not _is_hex(doc.get("p256"), 128):
        raise ValueError("p256 must be 128 lowercase hex digits (x||y)")
    if not p256.public_key_ok(bytes.fromhex(doc["p256"])):
        raise ValueError("p256 is not a point of the P-256 curve")


def read_key(flash_dir):
    """The device's update key (64 bytes, x||y of the P-256 public key) from update_key.json, or None
    when there is none or it is unusable (logged: every update then fails bad_signature)."""
    path = store.join(flash_dir, KEY_FILE)
    doc, source = store.read_json(path, check_key, KEY_MAX)
    if doc is None:
        if source == "missing":
            log.warn("release", "no update key (%s): updates are refused until one is provisioned" % path)
        else:
            log.error("release", "update key %s unusable (see above): updates are refused" % path)
        return None
    return bytes.fromhex(doc["p256"])
