# The network supervisor: LAN first, else Wi-Fi with the stored credentials, and the access point
# with its portal whenever the device has no working network (contract §2). Polled by a task every
# TICK_MS; never blocks (a Wi-Fi scan is the one slow call, and only the installer asks for it).
import time

import identity
import log
import store

TICK_MS = 250
JOIN_TIMEOUT_MS = 30000       # a join that has neither succeeded nor failed by then: "timeout"
BACKOFF_MIN_MS = 1000         # reconnecting with stored credentials: 1 s doubling ...
BACKOFF_MAX_MS = 60000        # ... to at most 60 s between tries
OFFLINE_GRACE_MS = 60000      # offline this long (with credentials or LAN) and the AP comes up
AP_LINGER_MS = 300000         # online: the AP stays while the installer used the portal recently
FAILED_HOLD_MS = 60000        # after a failed join from the portal, old credentials wait this long
LONG_PRESS_MS = 5000          # holding the button this long opens the access point
SCAN_MAX_AGE_MS = 20000
WIFI_FILE = "wifi.json"
SSID_MAX_BYTES = 32
PASSWORD_MIN = 8
PASSWORD_MAX = 30             # the product's limit (installation guide)


class CredentialError(ValueError):
    def __init__(self, field, message):
        super().__init__("%s: %s" % (field, message))
        self.field = field
        self.message = message


def validate_credentials(ssid, password):
    """Raise CredentialError naming the field; never echo the password."""
    if not isinstance(ssid, str):
        raise CredentialError("ssid", "the network name is required")
    n = len(ssid.encode())
    if n < 1 or n > SSID_MAX_BYTES:
        raise CredentialError("ssid", "the network name must be 1 to 32 bytes long")
    if password is None:
        password = ""
    if not isinstance(password, str):
        raise CredentialError("password", "the password must be text")
    if password:
        if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
            raise CredentialError("password",
                                  "the password must be empty (open network) or 8 to 30 characters")
        for ch in password:
            if not " " <= ch <= "~":
                raise CredentialError("password",
                                      "the password may only contain printable ASCII characters")
    return ssid, password


def _check_stored(doc):
    if not isinstance(doc, dict):
        raise ValueError("wifi: not an object")
    validate_credentials(doc.get("ssid"), doc.get("password"))


def _at_most(now, since, limit_ms):
    """`since`, or the stamp just past limit_ms ago when it is older: "longer than the limit" stays true
    and the stamp never ages past what ticks_diff can measure."""
    if time.ticks_diff(now, since) > limit_ms:
        return time.ticks_add(now, -limit_ms - 1)
    return since


class NetworkSupervisor:
    def __init__(self, hal, flash_dir, serial, pin):
        self.hal = hal
        self.path = store.join(flash_dir, WIFI_FILE)
        self.serial = serial
        self._pin = pin
        doc, _ = store.read_json(self.path, _check_stored)
        self.creds = (doc["ssid"], doc.get("password") or "") if doc else None
        now = time.ticks_ms()
        self.state = "connecting" if self.creds else "unprovisioned"
        self.network = None
        self.ip = None
        self.error = None
        self.ssid = self.creds[0] if self.creds else None
        self._attempt = None          # (ssid, password, from_portal, started_ms)
        self._next_try = now
        self._backoff = BACKOFF_MIN_MS
        self._offline_since = now
        self._failed_at = None
        self._button_since = None
        self._portal_seen = now
        self._scan = []
        self._scan_at = None
        if hal.lan is not None:
            hal.lan.active(True)

    # --- what the portal uses -------------------------------------------------------------
    def status(self):
        return {"state": self.state, "network": self.network, "ssid": self.ssid, "ip": self.ip,
                "error": self.error}

    def portal_used(self):
        self._portal_seen = time.ticks_ms()

    def networks(self):
        """Scanned networks, strongest first, one entry per SSID (hidden ones left out). Not while a join
        runs (between retries it does): the ESP32's scan then answers [] without an error (the last list
        stays); and an empty scan is not kept, so the next look scans again."""
        now = time.ticks_ms()
        stale = self._scan_at is None or time.ticks_diff(now, self._scan_at) > SCAN_MAX_AGE_MS
        if stale and self._attempt is None:
            try:
                self.hal.wifi.active(True)
                found = self.hal.wifi.scan()
            except OSError as e:
                log.warn("net", "scan failed: %s" % e)
                found = []
            best = {}
            for ssid, rssi, secure, channel in found:
                if ssid and (ssid not in best or rssi > best[ssid]["rssi"]):
                    best[ssid] = {"ssid": ssid, "rssi": rssi, "secure": secure, "channel": channel}
            self._scan = sorted(best.values(), key=lambda n: -n["rssi"])
            self._scan_at = now if self._scan else None
        return self._scan

    def join(self, ssid, password):
        """Try the installer's network; credentials are stored only once it gives an address."""
        ssid, password = validate_credentials(ssid, password)
        self._start_join(ssid, password, True)

    # --- the loop -------------------------------------------------------------------------
    def _start_join(self, ssid, password, from_portal):
        wifi = self.hal.wifi
        wifi.active(True)
        try:
            wifi.connect(ssid, password)
        except OSError as e:
            log.warn("net", "join of '%s' could not start: %s" % (ssid, e))
        self._attempt = (ssid, password, from_portal, time.ticks_ms())
        self.state = "connecting"
        self.ssid = ssid
        self.error = None
        log.info("net", "joining '%s'" % ssid)

    def _online(self, network, ip, ssid):
        if self.network != network or self.ip != ip:
            log.info("net", "online over %s, address %s" % (network, ip))
        self.state = "connected"
        self.network = network
        self.ip = ip
        self.ssid = ssid
        self.error = None
        self._backoff = BACKOFF_MIN_MS

    def _offline(self, now):
        if self.network is not None:
            log.warn("net", "network lost (%s)" % self.network)
            self._offline_since = now
        self.network = None
        self.ip = None

    def tick(self):
        now = time.ticks_ms()
        self._age_out(now)
        self._tick_lan_or_wifi(now)
        self._tick_access_point(now)

    def _age_out(self, now):
        """ticks_diff reaches only 6.2 days (ticks wrap every 12.4): each stamp past its limit is dropped
        or kept just past it, every tick, so none ever grows old enough to look recent again."""
        if self._failed_at is not None and time.ticks_diff(now, self._failed_at) > FAILED_HOLD_MS:
            self._failed_at = None
        if self._scan_at is not None and time.ticks_diff(now, self._scan_at) > SCAN_MAX_AGE_MS:
            self._scan_at = None
        if time.ticks_diff(now, self._next_try) > 0:
            self._next_try = now                 # due: stays due
        self._offline_since = _at_most(now, self._offline_since, OFFLINE_GRACE_MS)
        self._portal_seen = _at_most(now, self._portal_seen, AP_LINGER_MS)
        if self._button_since is not None:
            self._button_since = _at_most(now, self._button_since, LONG_PRESS_MS)

    def _tick_lan_or_wifi(self, now):
        lan = self.hal.lan
        lan_ip = lan.ip() if lan is not None else None
        if lan_ip:
            if self.network == "wifi" or self._attempt:
                # On the ESP32 Wi-Fi would otherwise win the default route: LAN alone.
                self.hal.wifi.disconnect()
                self.hal.wifi.active(False)
                self._attempt = None
            self._online("lan", lan_ip, None)
            return
        if self.network == "lan":
            self._offline(now)
        if self._attempt:
            self._tick_join(now)
            return
        if self.network == "wifi":
            st = self.hal.wifi.status()
            if st == "got_ip":
                self.ip = self.hal.wifi.ip()
                return
            self._offline(now)
            self.state = "connecting"
            self._next_try = time.ticks_add(now, self._backoff)
            return
        if self.creds and time.ticks_diff(now, self._next_try) >= 0:
            if self._failed_at is None or time.ticks_diff(now, self._failed_at) > FAILED_HOLD_MS:
                self._start_join(self.creds[0], self.creds[1], False)

    def _tick_join(self, now):
        ssid, password, from_portal, started = self._attempt
        st = self.hal.wifi.status()
        if st == "got_ip":
            self._attempt = None
            if from_portal and self.creds != (ssid, password):
                store.write_json(self.path, {"ssid": ssid, "password": password}, _check_stored)
                self.creds = (ssid, password)
                log.info("net", "credentials for '%s' stored" % ssid)
            self._failed_at = None
            self._online("wifi", self.hal.wifi.ip(), ssid)
            return
        error = None
        if st in ("wrong_password", "no_ap_found", "no_ip"):
            error = st
        elif time.ticks_diff(now, started) > JOIN_TIMEOUT_MS:
            error = "timeout"
        if error is None:
            return
        self._attempt = None
        self.hal.wifi.disconnect()
        log.warn("net", "joining '%s' failed: %s" % (ssid, error))
        if from_portal:
            self.state = "failed"
            self.error = error
            self._failed_at = now
            self._next_try = time.ticks_add(now, FAILED_HOLD_MS)
        else:
            self.state = "connecting"
            self._next_try = time.ticks_add(now, self._backoff)
            self._backoff = min(self._backoff * 2, BACKOFF_MAX_MS)

    def _tick_access_point(self, now):
        ap = self.hal.ap
        pressed = self.hal.button_pressed()
        if pressed and self._button_since is None:
            self._button_since = now
        elif not pressed:
            self._button_since = None
        long_press = pressed and time.ticks_diff(now, self._button_since) >= LONG_PRESS_MS
        online = self.network is not None
        want = False
        if long_press:
            want = True
            self._portal_seen = now
        elif not online:
            # Once up it stays up while offline: the installer's phone is on it, maybe mid-join.
            # Factory-new (nothing to join) it comes up at once, otherwise after a grace period.
            want = ap.active() or self.state in ("unprovisioned", "failed") or \
                time.ticks_diff(now, self._offline_since) > OFFLINE_GRACE_MS
        else:
            want = ap.active() and time.ticks_diff(now, self._portal_seen) < AP_LINGER_MS
        if want and not ap.active() and self.serial:
            ap.start(identity.ap_ssid(self.serial), self._pin)
            self._portal_seen = now
            log.info("net", "access point %s up" % identity.ap_ssid(self.serial))
        elif not want and ap.active():
            ap.stop()
            log.info("net", "access point down (online, installer done)")
