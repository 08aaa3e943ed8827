# Over-the-air updates (contract §3.8, docs/releases.md): a command on <base>/update/set names a signed
# release's HTTPS URL; the release is streamed, a chunk at a time, through its checks into the app
# folder that is not running (slots.py): the manifest's signature first (p256.py, in slices between
# sampling bursts), each file's size and sha256 as it arrives, then every file read back from flash.
# Nothing of the running firmware changes until all of the new one is there and verified; then the
# pointer switches, the energy is saved and the device restarts into the new firmware on probation.
# A release of kind "image" (one file, firmware.bin: a whole ESP32 image with the firmware frozen in) goes
# instead into the next OTA app partition through the hardware layer (hal.ota_*, esp32.Partition), is
# read back from there, and the switch is the partition's set_boot; image_ota.py keeps the record that
# tells the firmware booting next whether it is the new image or the chip's bootloader rolled it back.
# micropython-lib's `requests` is not used: it sets CERT_NONE (no certificate check) and blocks the
# whole device in getaddrinfo, connect, the TLS handshake and every read; this speaks HTTP/1.0 over the
# same asyncio TLS streams and non-blocking look-up as the MQTT uplink, every step bounded in time.
import asyncio
import json
import sys

import log
import resolver
import store
from version import VERSION

MAX_URL = 512
MAX_RELEASE = 1 << 20          # bytes: two app folders of this size must fit the flash
IMAGE_OVERHEAD = 8192          # an image release's header, manifest and signature beside the image
CONNECT_TIMEOUT_S = 20         # look-up, TCP, TLS handshake and the response head together
READ_TIMEOUT_S = 10            # any single read: a stalled server is `timeout`
CHUNK = 1024                   # read and written at a time: never the whole file in RAM
MAX_HEAD_LINE = 512
MAX_HEAD_LINES = 40
PROBATION_S = 300              # the new firmware must come online within this, or it is rolled back
PERCENT_STEP = 10              # `downloading` reported every this many percent
HASH_READ = 512
FLASH_SPARE = 16384            # left free beside a new firmware: energy and settings must still be writable


class UpdateError(Exception):
    """An update that ends in `failed` with `reason` (contract §3.8)."""

    def __init__(self, reason, message):
        super().__init__("%s: %s" % (reason, message))
        self.reason = reason
        self.message = message


class CommandError(ValueError):
    def __init__(self, field, message):
        super().__init__("%s %s" % (field, message))
        self.field = field


def parse_url(url):
    """(host, port, path) of an https URL; CommandError (field url) for anything else."""
    if not isinstance(url, str) or not 0 < len(url) <= MAX_URL:
        raise CommandError("url", "must be an https:// URL of at most %d characters" % MAX_URL)
    if not url.startswith("https://"):
        raise CommandError("url", "must start with https:// (releases are only fetched over TLS)")
    rest = url[8:]
    slash = rest.find("/")
    hostport, path = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    for c in url:
        if not 32 < ord(c) < 127:
            raise CommandError("url", "must be printable ASCII without spaces")
    host, port = hostport, 443
    if ":" in hostport:
        host, _, p = hostport.rpartition(":")
        if not p.isdigit() or not 0 < int(p) < 65536:
            raise CommandError("url", "has a bad port")
        port = int(p)
    if not host or "@" in host or "[" in host:
        raise CommandError("url", "needs a host name or IPv4 address")
    return host, port, path


def parse_command(msg):
    """(url, version or None) of an update/set message; CommandError naming the bad field."""
    try:
        cmd = json.loads(msg)
    except (ValueError, UnicodeError):
        raise CommandError("", "the message must be a JSON object") from None
    if not isinstance(cmd, dict):
        raise CommandError("", "the message must be a JSON object")
    for key in cmd:
        if key not in ("url", "version"):
            raise CommandError(key, "is not a field of update/set (url, version)")
    if "url" not in cmd:
        raise CommandError("url", "is missing")
    parse_url(cmd["url"])
    version = cmd.get("version")
    if version is not None and (not isinstance(version, str) or not 0 < len(version) <= 32):
        raise CommandError("version", "must be a version text such as \"1.2.3\"")
    return cmd["url"], version


def _report(state, percent=0, version=VERSION, reason=None):
    return {"state": state, "percent": percent, "version": version, "reason": reason}


class Updater:
    """One update at a time; its state goes out on <base>/update (retained) through the uplink."""

    def __init__(self, dev):
        self.dev = dev
        self.task = None
        self.trial = False
        self.image = False            # the running firmware is an image on probation (image_ota.py)
        self.report = _report("idle")

    @property
    def running(self):
        return self.task is not None and not self.task.done()

    def publish(self, report):
        self.report = report
        self.dev.uplink.update_report(report)

    def outcome_after_boot(self):
        """What the latest update came to, said once (slots.take_outcome): the new firmware confirmed
        (done), or rolled back (failed, reported by the firmware that runs again)."""
        import slots

        try:
            outcome = slots.take_outcome(self.dev.flash_dir)
        finally:
            sys.modules.pop("slots", None)
        if not outcome:       # an image the chip's bootloader rolled back (or that was never switched to)
            outcome, restart = _image("take_rollback", self.dev.flash_dir, VERSION)
            if restart:
                self.dev.restart("back to the .mpy update that ran before the image")
        if outcome:
            done = outcome["state"] == "done"
            reason = outcome.get("reason")
            said = "done" if done else "failed (%s), %s runs" % (reason, VERSION)
            log.info("update", "the update to %s: %s" % (outcome["version"], said))
            version = outcome["version"] if done else VERSION     # failed: the version that runs
            self.report = _report(outcome["state"], 100 if done else 0, version, reason)
        return outcome

    def on_trial(self):
        """This firmware was just installed and is on probation (app.start_probation)."""
        self.trial = True
        self.report = _report("restarting", 100, VERSION)

    def image_trial(self):
        """PROBATION_S when the firmware that runs is an image not yet confirmed, else None."""
        if not _image("on_trial", self.dev.flash_dir, VERSION):
            return None
        self.image = True
        return PROBATION_S

    def confirm_image(self):
        """An image on probation came online: marked valid (hal.ota_confirm), outcome done. True if it was."""
        if not self.image:
            return False
        outcome = _image("confirm", self.dev.hal, self.dev.flash_dir)
        self.image = False
        log.info("update", "the update to %s: done" % VERSION)
        self.report = _report(outcome["state"], 100, VERSION, None)
        return True

    def command(self, msg):
        """An update/set message: None when an update starts, else the error to answer with
        ({"error": str, "field": str})."""
        try:
            url, version = parse_command(msg)
        except CommandError as e:
            return {"error": str(e), "field": e.field}
        if self.running:
            return {"error": "an update is running already (%s)" % self.report["state"], "field": "url"}
        if self.trial and getattr(self.dev, "on_trial", False):
            return {"error": "the firmware is on probation until it has come online", "field": "url"}
        self.task = asyncio.create_task(self.run(url, version))
        return None

    async def run(self, url, expected):
        host = parse_url(url)[0]
        log.info("update", "from %s%s" % (url, " (version %s)" % expected if expected else ""))
        self.publish(_report("downloading", 0, expected or VERSION))
        try:
            await self._update(url, expected)
        except UpdateError as e:
            log.warn("update", "failed: %s" % e)
            self.publish(_report("failed", 0, VERSION, e.reason))
        except MemoryError:
            log.error("update", "failed: out of memory")
            self.publish(_report("failed", 0, VERSION, "no_space"))
        except Exception as e:     # a bug must not leave the state `downloading` forever
            log.error("update", "failed: %r" % e)
            self.publish(_report("failed", 0, VERSION, "unreachable"))
        finally:
            resolver.forget(host)
            for name in ("p256", "release", "slots", "image_ota"):
                sys.modules.pop(name, None)

    async def _update(self, url, expected):
        import release
        import slots

        dev = self.dev
        key = release.read_key(dev.flash_dir)
        if key is None:
            raise UpdateError("bad_signature", "no update key on this device (tools/provision --update-key)")
        reader, writer, length = await self._open(url)
        image = None
        try:
            limit = max(MAX_RELEASE, dev.hal.ota_size() + IMAGE_OVERHEAD)
            if length > limit:
                raise UpdateError("too_big", "%d bytes, at most %d" % (length, limit))
            body = _Body(reader, length, self._progress(expected))
            manifest, version = await self._manifest(body, key, expected, release)
            need = sum(f["size"] for f in manifest["files"])
            if body.offset + need != length:
                raise UpdateError("bad_hash", "the file is %d bytes, its manifest says %d"
                                  % (length, body.offset + need))
            if manifest["kind"] == "image":     # one file: into the next OTA partition
                import image_ota

                image = manifest["files"][0]
                await image_ota.receive(dev.hal, body, image, CHUNK)
            else:
                if length > MAX_RELEASE:
                    raise UpdateError("too_big", "%d bytes, at most %d" % (length, MAX_RELEASE))
                try:
                    folder = slots.begin(dev.flash_dir)       # the other app folder, emptied
                except ValueError as e:                       # it holds the firmware to go back to
                    raise UpdateError("no_space", str(e)) from None
                free = dev.hal.flash_free_bytes()
                if need + FLASH_SPARE > free:
                    raise UpdateError("no_space", "%d bytes needed, %d free" % (need, free))
                for f in manifest["files"]:
                    await self._receive(body, folder, f)
        finally:
            _close(writer)
        if image is not None:
            await self._install_image(image, version)
            return
        self.publish(_report("verifying", 100, version))
        for f in manifest["files"]:       # what is on flash, read back: a write error is caught here
            if await _file_sha256(store.join(folder, f["name"])) != f["sha256"]:
                raise UpdateError("bad_hash", "%s differs on flash" % f["name"])
        self.publish(_report("installing", 100, version))
        slots.switch(dev.flash_dir, folder.rstrip("/")[-1], version, PROBATION_S)    # app_a -> "a"
        await self._restart(version)

    async def _restart(self, version):
        log.info("update", "version %s installed: restarting into it" % version)
        self.publish(_report("restarting", 100, version))
        await asyncio.sleep_ms(1500)      # the uplink sends the state (QoS 1) before the reset
        self.dev.restart("update to %s" % version)

    async def _install_image(self, f, version):
        """Read back from the partition, recorded (image_ota.py), switched with set_boot, restarted."""
        import image_ota

        dev = self.dev
        self.publish(_report("verifying", 100, version))
        if await image_ota.read_back(dev.hal, f["size"], HASH_READ) != f["sha256"]:
            raise UpdateError("bad_hash", "%s differs in the OTA partition" % f["name"])
        self.publish(_report("installing", 100, version))
        image_ota.before_switch(dev.flash_dir, version, VERSION)
        try:
            dev.hal.ota_switch()
        except OSError as e:              # esp_ota_set_boot_partition checks the image: not one for this chip
            image_ota.abandon(dev.flash_dir)
            raise UpdateError("wrong_board", "the bootloader refuses the image: %s" % e) from None
        await self._restart(version)

    def _progress(self, expected):
        last = [-PERCENT_STEP]

        def progress(done, total):
            percent = done * 100 // total if total else 100
            if percent >= last[0] + PERCENT_STEP:
                last[0] = percent - percent % PERCENT_STEP
                self.publish(_report("downloading", last[0], expected or VERSION))
        return progress

    async def _manifest(self, body, key, expected, release):
        """The signed manifest, checked: signature, board, version."""
        import p256

        head = await body.exactly(len(release.HEADER) + 4)
        if head[:len(release.HEADER)] != release.HEADER:
            raise UpdateError("bad_signature", "not a release file")
        n = int.from_bytes(head[len(release.HEADER):], "big")
        if not 0 < n <= release.MAX_MANIFEST:
            raise UpdateError("bad_signature", "manifest of %d bytes" % n)
        text = await body.exactly(n)
        sig = await body.exactly(release.SIG_LEN)
        import hashlib

        digest = hashlib.sha256(text).digest()
        for done in p256.verify_steps(key, digest, sig):
            if done is None:
                await asyncio.sleep_ms(0)     # a slice at a time: the metering runs in between
                continue
            if not done:
                raise UpdateError("bad_signature", "the manifest is not signed with this device's key")
            break
        try:
            manifest = release.parse_manifest(text)
            release.check(manifest, self.dev.board.NAME, VERSION,
                          ".".join(str(v) for v in sys.implementation.version[:2]), expected)
        except release.ReleaseError as e:
            raise UpdateError(e.reason, e.message) from None
        if expected and manifest["version"] != expected:
            raise UpdateError("bad_url", "the URL serves version %s, not %s"
                              % (manifest["version"], expected))
        return manifest, manifest["version"]

    async def _receive(self, body, folder, f):
        import hashlib

        h = hashlib.sha256()
        left = f["size"]
        with open(store.join(folder, f["name"]), "wb") as out:
            while left:
                chunk = await body.read(min(CHUNK, left))
                h.update(chunk)
                out.write(chunk)
                left -= len(chunk)
        if _hex(h.digest()) != f["sha256"]:
            raise UpdateError("bad_hash", "%s does not match its sha256" % f["name"])

    async def _open(self, url):
        """Connect, send the request, read the response head: (reader, writer, content length)."""
        host, port, path = parse_url(url)
        dev = self.dev
        try:
            addr = await resolver.resolve(host, dev.hal.dns_server(), dev.hal.system_resolver)
        except OSError as e:
            raise UpdateError("unreachable", "%s: %s" % (host, e)) from None
        import mqtt  # the uplink's TLS context: the same CA file, certificate and name checked

        try:
            ctx = mqtt.tls_context(store.join(dev.flash_dir, dev.settings.current["mqtt"]["ca_file"]))
        except (OSError, ValueError) as e:
            raise UpdateError("tls", "no usable CA file: %s" % e) from None
        try:
            return await asyncio.wait_for(self._request(addr, port, host, path, ctx), CONNECT_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise UpdateError("timeout", "no answer from %s in %d s" % (host, CONNECT_TIMEOUT_S)) from None
        except ValueError as e:           # MicroPython's TLS layer reports a failed verification so
            raise UpdateError("tls", "%s: %s" % (host, str(e) or "certificate not trusted")) from None
        except OSError as e:
            if "TLS" in str(e) or "SSL" in str(e) or "certificate" in str(e).lower():
                raise UpdateError("tls", "%s: %s" % (host, e)) from None
            raise UpdateError("unreachable", "%s: %s" % (host, e)) from None

    async def _request(self, addr, port, host, path, ctx):
        reader, writer = await asyncio.open_connection(addr, port, ssl=ctx, server_hostname=host)
        try:
            writer.write(b"GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: ampguard/%s\r\n\r\n"
                         % (path.encode(), host.encode(), VERSION.encode()))
            await writer.drain()
            status = await reader.readline()
            parts = status.split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
                raise UpdateError("bad_url", "not an HTTP answer")
            length = None
            for _ in range(MAX_HEAD_LINES):
                line = await reader.readline()
                if len(line) > MAX_HEAD_LINE:
                    raise UpdateError("bad_url", "response head line too long")
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length" and value.strip().isdigit():
                    length = int(value.strip())
            else:
                raise UpdateError("bad_url", "response head too long")
            code = int(parts[1])
            if code != 200:
                raise UpdateError("bad_url", "HTTP %d from %s" % (code, host))
            if length is None:
                raise UpdateError("bad_url", "no Content-Length from %s" % host)
            return reader, writer, length
        except BaseException:
            _close(writer)
            raise


class _Body:
    """The response body, read in bounded chunks, each read bounded in time; `offset` bytes so far."""

    def __init__(self, reader, length, progress):
        self.reader = reader
        self.length = length
        self.offset = 0
        self.progress = progress

    async def read(self, n):
        n = min(n, self.length - self.offset)
        if n <= 0:
            raise UpdateError("bad_hash", "the release is longer than the server's file")
        try:
            chunk = await asyncio.wait_for(self.reader.read(n), READ_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise UpdateError("timeout", "no data for %d s at byte %d"
                              % (READ_TIMEOUT_S, self.offset)) from None
        except OSError as e:
            raise UpdateError("unreachable", "the download broke at byte %d: %s" % (self.offset, e)) from None
        if not chunk:
            raise UpdateError("unreachable", "the server closed the connection at byte %d of %d"
                              % (self.offset, self.length))
        self.offset += len(chunk)
        self.progress(self.offset, self.length)
        return chunk

    async def exactly(self, n):
        out = b""
        while len(out) < n:
            out += await self.read(n - len(out))
        return out


async def _file_sha256(path):
    import hashlib

    h = hashlib.sha256()
    buf = bytearray(HASH_READ)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(memoryview(buf)[:n])
            await asyncio.sleep_ms(0)
    return _hex(h.digest())


def _image(call, *args):
    """image_ota.<call>(...) with the module loaded for the call only: its code costs heap."""
    import image_ota

    try:
        return getattr(image_ota, call)(*args)
    finally:
        sys.modules.pop("image_ota", None)


def _hex(digest):
    import binascii

    return binascii.hexlify(digest).decode()


def _close(writer):
    import inet

    inet.close_stream(writer, abort=True)
