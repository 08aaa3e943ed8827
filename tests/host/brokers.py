"""Real MQTT parts for host tests, on 127.0.0.1 only: mosquitto, a recording paho subscriber, a broker
that never answers, a proxy that can black-hole its connections, and a throw-away PKI made with openssl.

Every wait is bounded and every process, thread and socket ends with close()/stop() or the with block."""
import itertools
import json
import os
import queue
import select
import signal
import socket
import subprocess
import threading
import time

import paho.mqtt.client as paho
from simctl import free_port

HOST = "127.0.0.1"


def _until(condition, timeout, step=0.05):
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= end:
            return False
        time.sleep(step)
    return True


def _accepts(port):
    try:
        socket.create_connection((HOST, port), 0.5).close()
        return True
    except OSError:
        return False


def _bindable(port):
    # Bound the way mosquitto binds (SO_REUSEADDR), so old connections in TIME_WAIT do not count.
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
            return True
        except OSError:
            return False


def _listener():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((HOST, 0))
    s.listen(16)
    return s


# ---------------------------------------------------------------------------------------------- TLS

class TlsFiles(dict):
    """PEM paths by name; both tls["ca"] and tls.ca work."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


# Our own extension sections, so the certificates do not depend on the system's openssl.cnf.
_OPENSSL_CNF = """\
[req]
distinguished_name = dn
[dn]
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
"""


def make_tls_files(folder):
    """A CA, a server certificate it signed (CN and SAN localhost, SAN IP 127.0.0.1) with its key, and an
    unrelated CA: keys ca, server_cert, server_key, wrong_ca (plus the CA keys). EC P-256, valid 2 days."""
    os.makedirs(folder, exist_ok=True)
    p = TlsFiles((k, os.path.join(folder, k + ".pem")) for k in (
        "ca", "ca_key", "server_cert", "server_key", "wrong_ca", "wrong_ca_key"))
    cnf = os.path.join(folder, "openssl.cnf")
    csr = os.path.join(folder, "server.csr")
    with open(cnf, "w") as f:
        f.write(_OPENSSL_CNF)

    def openssl(*args):
        try:
            subprocess.run(("openssl",) + args, check=True, capture_output=True, timeout=30)
        except FileNotFoundError:
            raise AssertionError("openssl is not installed: make test installs it "
                                 "(apt-get install openssl)") from None

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-config", cnf)
    for ca, key, cn in (("ca", "ca_key", "Amp Guard test CA"), ("wrong_ca", "wrong_ca_key", "Other CA")):
        openssl("req", "-x509", *ec, "-extensions", "ca_ext", "-days", "2", "-subj", "/CN=" + cn,
                "-keyout", p[key], "-out", p[ca])
    openssl("req", *ec, "-subj", "/CN=localhost", "-keyout", p["server_key"], "-out", csr)
    openssl("x509", "-req", "-in", csr, "-CA", p["ca"], "-CAkey", p["ca_key"], "-set_serial",
            str(int.from_bytes(os.urandom(8), "big") >> 1), "-days", "2", "-extfile", cnf,
            "-extensions", "server_ext", "-out", p["server_cert"])
    return p


# ----------------------------------------------------------------------------------------- mosquitto

class Mosquitto:
    """mosquitto on 127.0.0.1:port, plain or TLS (make_tls_files' paths); restartable on the same port."""

    def __init__(self, folder, port=None, tls=None):
        os.makedirs(folder, exist_ok=True)
        self.host = HOST
        self.port = port or free_port()
        self.conf = os.path.join(folder, "mosquitto.conf")
        self.log_path = os.path.join(folder, "mosquitto.log")
        self.stderr_path = os.path.join(folder, "mosquitto.stderr")    # config errors come before the log
        lines = ["listener %d %s" % (self.port, HOST), "allow_anonymous true", "persistence false",
                 "log_dest file %s" % self.log_path, "log_type all",
                 "log_timestamp_format %Y-%m-%dT%H:%M:%S"]
        if os.geteuid() == 0:
            # Started as root, mosquitto switches to its own user, which cannot read pytest's 0700 folders.
            lines.append("user root")
        if tls:
            lines += ["cafile %s" % tls["ca"], "certfile %s" % tls["server_cert"],
                      "keyfile %s" % tls["server_key"], "require_certificate false"]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=10):
        if self.running:
            return self
        if not _until(lambda: _bindable(self.port), timeout):
            raise AssertionError("port %d is still taken, mosquitto cannot listen on it" % self.port)
        with open(self.stderr_path, "ab") as err:
            try:
                self.proc = subprocess.Popen(["mosquitto", "-c", self.conf], stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=err)
            except FileNotFoundError:
                raise AssertionError("mosquitto is not installed: make test installs it "
                                     "(apt-get install mosquitto)") from None
        if not _until(lambda: not self.running or _accepts(self.port), timeout) or not self.running:
            code = self.proc.poll()
            self.kill()
            raise AssertionError("mosquitto did not listen on %d (exit code %s):\n%s" % (
                self.port, code, self._tail()))
        return self

    def _tail(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                err = f.read()[-1000:]
        except OSError:
            err = ""
        return err + self.log()[-2000:]

    def _end(self, sig):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def stop(self):
        """Orderly stop (SIGTERM): clients see their connection closed."""
        self._end(signal.SIGTERM)

    def kill(self):
        """Crash (SIGKILL)."""
        self._end(signal.SIGKILL)

    def restart(self):
        self.stop()
        return self.start()

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------------------------------- subscriber

class Message:
    """One received message. seq counts every message the subscriber ever got (clear() does not reset it)."""

    def __init__(self, m, seq):
        self.topic = m.topic
        self.payload = bytes(m.payload)
        self.retain = bool(m.retain)
        self.qos = m.qos
        self.t = time.monotonic()
        self.seq = seq

    def json(self):
        return json.loads(self.payload)

    def __repr__(self):
        return "<#%d %s %r%s>" % (self.seq, self.topic, self.payload[:80], " retained" if self.retain else "")


_client_ids = itertools.count(1)


class Subscriber:
    """A paho client recording every message on `topics` (QoS 1). paho's thread reconnects after a broker
    restart and on_connect subscribes again; `sessions` counts the acknowledged subscriptions."""

    def __init__(self, host, port, topics=("#",), ca=None, timeout=10):
        self.host, self.port = host, port
        self.topics = list(topics)
        self.sessions = 0
        self._cond = threading.Condition()
        self._msgs = []
        self._seq = 0
        self._sub_mid = None
        self._closed = False
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2,
                                  client_id="brokers-%d-%d" % (os.getpid(), next(_client_ids)))
        if ca:
            self.client.tls_set(ca_certs=ca)        # checks the certificate and that it names `host`
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect_timeout = 5
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        try:
            self.wait_subscribed(1, timeout)
        except AssertionError:
            self.close()
            raise

    # paho's thread
    def _on_connect(self, client, userdata, flags, reason, props):
        if not reason.is_failure:
            self._sub_mid = client.subscribe([(t, 1) for t in self.topics])[1]

    def _on_subscribe(self, client, userdata, mid, reasons, props):
        if mid == self._sub_mid:
            with self._cond:
                self.sessions += 1
                self._cond.notify_all()

    def _on_message(self, client, userdata, m):
        with self._cond:
            self._msgs.append(Message(m, self._seq))
            self._seq += 1
            self._cond.notify_all()

    # the test's thread
    def wait_subscribed(self, sessions=1, timeout=10):
        """Wait until subscribed `sessions` times: after a broker restart, pass the old sessions + 1."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.sessions >= sessions, timeout):
                raise AssertionError("subscriber to %s:%d: %d subscribed sessions, not %d, after %s s" % (
                    self.host, self.port, self.sessions, sessions, timeout))

    def mark(self):
        """The count of messages received so far: wait_for(..., after=sub.mark()) means 'the next one'."""
        with self._cond:
            return self._seq

    def messages(self, topic=None):
        with self._cond:
            return [m for m in self._msgs if topic is None or m.topic == topic]

    def clear(self):
        with self._cond:
            self._msgs = []

    def wait_for(self, topic, predicate=None, timeout=10, after=None):
        """The first message on `topic` (None: any) satisfying predicate(m). `after` is None (messages
        already here count too), an int from mark() (only later messages) or a time.monotonic() float
        (only messages that arrived after it). Raises AssertionError with what did arrive."""
        end = time.monotonic() + timeout
        checked = 0                     # seq below which every message has been looked at
        while True:
            with self._cond:
                first = self._msgs[0].seq if self._msgs else self._seq
                fresh = self._msgs[max(0, checked - first):]
                checked = self._seq
            for m in fresh:             # predicate outside the lock: paho's thread keeps recording
                if ((topic is None or m.topic == topic) and self._is_after(m, after)
                        and (predicate is None or predicate(m))):
                    return m
            with self._cond:
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(self._summary(topic, timeout, after))
                if self._seq == checked:
                    self._cond.wait(left)

    @staticmethod
    def _is_after(m, after):
        if after is None:
            return True
        if isinstance(after, float):
            return m.t > after
        return m.seq >= after

    def _summary(self, topic, timeout, after):
        msgs = self.messages()
        on_topic = [m for m in msgs if topic is None or m.topic == topic]
        counts = {}
        for m in msgs:
            counts[m.topic] = counts.get(m.topic, 0) + 1
        return ("no matching message on %s (after=%r) within %s s; %d on that topic, last: %r; all topics: %r"
                % (topic, after, timeout, len(on_topic), on_topic[-5:], counts))

    def publish(self, topic, payload, qos=1, retain=False, timeout=10):
        """Publish and wait until it is sent (QoS 0) or acknowledged (QoS 1, 2)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as e:
            raise AssertionError("publish to %s failed: %s" % (topic, e)) from e
        if not info.is_published():
            raise AssertionError("publish to %s not completed in %s s" % (topic, timeout))

    def close(self):
        if self._closed:
            return
        self._closed = True
        self.client.disconnect()
        self.client.loop_stop()         # paho's thread ends within about a second of disconnect()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------------------ misbehaving network

class SilentBroker:
    """Accepts TCP connections on 127.0.0.1 and never reads or says a word; they stay open until close()."""

    def __init__(self):
        self.accepted = 0
        self._held = []
        self._sock = _listener()
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="SilentBroker", daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            if select.select([self._sock], [], [], 0.2)[0]:
                self._held.append(self._sock.accept()[0])
                self.accepted += 1

    def close(self):
        self._stop.set()
        self._thread.join(5)
        for s in self._held + [self._sock]:
            s.close()
        self._held = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class StallProxy:
    """A TCP proxy 127.0.0.1:port -> 127.0.0.1:target_port. stall() stops all forwarding with every
    connection left open (a black-holed link, from both ends; new connections are accepted and held);
    resume() closes the stalled connections and forwards new ones again.

    One thread owns every socket; stall(), resume() and close() run in it and return once done."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.connections = 0
        self._stalled = False
        self._running = True
        self._pairs = []                # [client side, broker side]
        self._held = []                 # accepted while stalled: never connected onwards
        self._calls = queue.Queue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sock = _listener()
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name="StallProxy", daemon=True)
        self._thread.start()

    def stall(self):
        self._call(lambda: setattr(self, "_stalled", True))

    def resume(self):
        self._call(self._resume)

    def close(self):
        if self._thread.is_alive():
            self._call(lambda: setattr(self, "_running", False))
            self._thread.join(5)
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, fn, timeout=5):
        done = threading.Event()
        self._calls.put((fn, done))
        self._wake_w.send(b"!")
        if not done.wait(timeout):
            raise AssertionError("StallProxy thread did not answer in %s s" % timeout)

    # the proxy's thread
    def _resume(self):
        self._drop_all()
        self._stalled = False

    def _drop_all(self):
        for s in [s for pair in self._pairs for s in pair] + self._held:
            s.close()
        self._pairs, self._held = [], []

    def _run(self):
        try:
            while self._running:
                socks = [self._wake_r, self._sock]
                if not self._stalled:
                    socks += [s for pair in self._pairs for s in pair]
                for s in select.select(socks, [], [], 1.0)[0]:
                    if s is self._wake_r:
                        self._run_calls()
                    elif s is self._sock:
                        self._accept()
                    elif not self._stalled:     # a call handled in this same round may have stalled
                        self._forward(s)
        finally:
            self._drop_all()
            self._sock.close()
            self._run_calls()                   # nobody waits forever on a call after the end

    def _run_calls(self):
        try:
            self._wake_r.recv(4096)
        except BlockingIOError:
            pass
        while not self._calls.empty():
            fn, done = self._calls.get()
            fn()
            done.set()

    def _accept(self):
        conn, _ = self._sock.accept()
        self.connections += 1
        if self._stalled:
            self._held.append(conn)
            return
        try:
            up = socket.create_connection((HOST, self.target_port), 2)
        except OSError:
            conn.close()
            return
        for s in (conn, up):
            s.settimeout(5)                     # a peer that stops reading cannot hang the proxy
        self._pairs.append([conn, up])

    def _forward(self, s):
        pair = next((p for p in self._pairs if s in p), None)
        if pair is None:                        # closed by resume() in this same round
            return
        other = pair[1] if s is pair[0] else pair[0]
        try:
            data = s.recv(65536)
            if data:
                other.sendall(data)
                return
        except OSError:
            pass
        # one side ended: end the other too
        for x in pair:
            x.close()
        self._pairs.remove(pair)
