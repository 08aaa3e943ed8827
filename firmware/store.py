# Atomic JSON files on flash with a last-good copy, so a power cut at any moment leaves a readable file.
#
# Files that belong to one document `P`:
#   P      the current content
#   P.bak  the previous good content (the fallback when P is broken or missing)
#   P.tmp  a new content being written; only renamed onto P once complete and flushed
#
# write_json(P): write P.tmp, flush/sync, rename the good P onto P.bak, rename P.tmp onto P.
# Every step that touches P or P.bak is one atomic rename (littlefs, POSIX), so after a crash the files
# read below hold the old or the new content. On FAT, where rename onto an existing file fails, the target is
# removed first: the fallback order below still finds the old or the new content.
import json
import os

import log

MAX_SIZE = 8192      # bytes: a larger file is refused unread, so garbage cannot exhaust the heap
_ENOENT = 2


def join(folder, name):
    """folder + name with exactly one '/' between ("/" + "x" is "/x")."""
    if not folder:
        return name
    return folder + name if folder[-1] == "/" else folder + "/" + name


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _replace(src, dst):
    # Atomic where the filesystem allows (POSIX, littlefs); FAT refuses an existing target.
    try:
        os.rename(src, dst)
    except OSError:
        if not exists(dst):
            raise
        os.remove(dst)
        os.rename(src, dst)


def _sync(f):
    f.flush()
    if hasattr(os, "fsync"):         # CPython: this file only
        os.fsync(f.fileno())


def _sync_all():
    if hasattr(os, "sync") and not hasattr(os, "fsync"):   # MicroPython on the device
        os.sync()


def _load(path, check, max_size):
    """(obj, None) when the file is usable, else (None, why it is not)."""
    try:
        size = os.stat(path)[6]
    except OSError as e:
        return None, "missing" if e.args and e.args[0] == _ENOENT else "unreadable (%s)" % e
    if size > max_size:
        return None, "too large (%d bytes, limit %d)" % (size, max_size)
    try:
        with open(path, "rb") as f:
            # One byte past what stat saw tells a file that grew since; never max_size at once (a
            # buffer that large is a needless heap peak on the device at every energy save).
            data = f.read(size + 1)
    except OSError as e:
        return None, "unreadable (%s)" % e
    if len(data) > size:
        return None, "changed while being read"
    try:
        obj = json.loads(data.decode())
    except Exception:           # ValueError, UnicodeError, deep nesting, MemoryError: all "not JSON"
        return None, "not valid JSON"
    del data
    if check is not None:
        try:
            check(obj)
        except ValueError as e:
            return None, "rejected: %s" % e
        except Exception as e:  # a checker that trips on odd content must not stop the boot
            return None, "rejected: %s %s" % (type(e).__name__, e)
    return obj, None


def read_json(path, check=None, max_size=MAX_SIZE):
    """Read the newest usable version of a document.

    Tries `path`, then `path.bak` (last good), then a complete `path.tmp` (a write cut short just
    before its rename; used only when it parses and passes `check` and nothing better exists).
    `check(obj)` raises ValueError to reject a content. Returns (obj, "main"|"bak"|"tmp"), or
    (None, "missing") when no file exists at all, or (None, "broken") when none was usable.
    """
    found = False
    for source, name in (("main", path), ("bak", path + ".bak"), ("tmp", path + ".tmp")):
        obj, why = _load(name, check, max_size)
        if why is None:
            if source == "main":
                log.info("store", "%s: loaded" % name)
            else:
                log.warn("store", "%s: using %s" % (path, name))
            return obj, source
        if why != "missing":
            found = True
            log.warn("store", "%s: skipped, %s" % (name, why))
        elif source == "main":
            log.info("store", "%s: missing" % name)
    return None, "broken" if found else "missing"


def write_json(path, obj, check=None, max_size=MAX_SIZE):
    """Store `obj` as `path` atomically; the previous good content becomes `path.bak`.

    `check` is the reader's check: a current file that fails it is not kept as the last good copy.
    Raises ValueError when the encoded document exceeds max_size (it could not be read back) and
    OSError when the flash write fails; a reader then still finds the previous content.
    """
    data = json.dumps(obj).encode()
    if len(data) > max_size:
        raise ValueError("document too large (%d bytes, limit %d)" % (len(data), max_size))
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            _sync(f)
        del data
        _sync_all()
        # Keep the current content as the last good copy, unless it is broken (.bak then stays).
        if _load(path, check, max_size)[1] is None:
            _replace(path, path + ".bak")
        _replace(tmp, path)
        _sync_all()
    except Exception:
        _remove(tmp)    # a failed write must not be picked up later as a complete .tmp
        raise
