"""Real MQTT parts for tests, on loopback only: mosquitto, a paho subscriber, a broker that never
answers, a proxy that can go silent, and a throw-away PKI made with openssl."""
import json
import os
import select
import signal
import socket
import subprocess
import threading
import time

import paho.mqtt.client as paho
from simctl import free_port

HOST = "127.0.0.1"


def _wait_port(port, up, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection((HOST, port), 0.2).close()
            if up:
                return True
        except OSError:
            if not up:
                return True
        time.sleep(0.05)
    return False


def make_tls_files(folder):
    """A CA, a server certificate it signed (localhost, 127.0.0.1) and an unrelated CA, as PEM paths."""
    os.makedirs(folder, exist_ok=True)
    p = {k: os.path.join(folder, k + ".pem") for k in ("ca", "ca_key", "server_cert", "server_key",
                                                        "wrong_ca", "wrong_ca_key")}

    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True, timeout=60)

    for ca, key, cn in (("ca", "ca_key", "Test CA"), ("wrong_ca", "wrong_ca_key", "Other CA")):
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-subj", "/CN=" + cn, "-keyout", p[key], "-out", p[ca])
    csr = os.path.join(folder, "server.csr")
    ext = os.path.join(folder, "server.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
        "-keyout", p["server_key"], "-out", csr)
    run("x509", "-req", "-in", csr, "-CA", p["ca"], "-CAkey", p["ca_key"], "-CAcreateserial", "-days", "2",
        "-extfile", ext, "-out", p["server_cert"])
    return p


class Mosquitto:
    """mosquitto on 127.0.0.1:port (plain, or TLS with make_tls_files' paths); restartable on its port."""

    def __init__(self, folder, port=None, tls=None):
        os.makedirs(folder, exist_ok=True)
        self.host = HOST
        self.port = port or free_port()
        self.log_path = os.path.join(folder, "mosquitto.log")
        self.conf = os.path.join(folder, "mosquitto.conf")
        lines = ["listener %d %s" % (self.port, HOST), "allow_anonymous true", "persistence false",
                 "log_dest file %s" % self.log_path, "log_type all"]
        if os.geteuid() == 0:
            # As root mosquitto drops to its own user, which cannot read the test's private folders.
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

    def start(self):
        if not _wait_port(self.port, False, 10):
            raise AssertionError("port %d still taken" % self.port)
        self.proc = subprocess.Popen(["mosquitto", "-c", self.conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        if not _wait_port(self.port, True, 10):
            raise AssertionError("mosquitto did not start:\n" + self.log()[-2000:])
        return self

    def _end(self, sig):
        if self.running:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop(self):
        self._end(signal.SIGTERM)

    def kill(self):
        self._end(signal.SIGKILL)

    def restart(self):
        self.stop()
        self.start()

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


class Message:
    def __init__(self, m):
        self.topic = m.topic
        self.payload = bytes(m.payload)
        self.retain = bool(m.retain)
        self.qos = m.qos
        self.t = time.monotonic()

    def json(self):
        return json.loads(self.payload)

    def __repr__(self):
        return "<%s %r%s>" % (self.topic, self.payload[:80], " retained" if self.retain else "")


class Subscriber:
    """A paho client that records every message on `topics`; resubscribes after a broker restart."""

    def __init__(self, host, port, topics=("#",), ca=None):
        self.topics = list(topics)
        self._lock = threading.Lock()
        self._msgs = []
        self._connected = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="test-%d" % os.getpid()
                                  + "-%d" % free_port())
        if ca:
            self.client.tls_set(ca_certs=ca)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise AssertionError("subscriber could not connect to %s:%d" % (host, port))

    def _on_connect(self, client, userdata, flags, reason, props):
        for t in self.topics:
            client.subscribe(t, 1)
        self._connected.set()

    def _on_message(self, client, userdata, m):
        with self._lock:
            self._msgs.append(Message(m))

    def messages(self, topic=None):
        with self._lock:
            return [m for m in self._msgs if topic is None or m.topic == topic]

    def wait_for(self, topic, predicate=None, timeout=10):
        end = time.monotonic() + timeout
        while True:
            for m in self.messages(topic):
                if predicate is None or predicate(m):
                    return m
            if time.monotonic() > end:
                raise AssertionError("no matching message on %s in %s s; got: %r" % (
                    topic, timeout, self.messages(topic)[-5:] or self.messages()[-10:]))
            time.sleep(0.02)

    def clear(self):
        with self._lock:
            self._msgs = []

    def publish(self, topic, payload, qos=1, retain=False):
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(10)
        if not info.is_published():
            raise AssertionError("publish to %s not acknowledged" % topic)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


class _Server:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def close(self):
        self._stop.set()
        self.thread.join(5)
        self.sock.close()


class SilentBroker(_Server):
    """Accepts TCP connections and never says a word (a black-holed broker)."""

    def __init__(self):
        self.accepted = 0
        self._held = []
        super().__init__()

    def _run(self):
        while not self._stop.is_set():
            if select.select([self.sock], [], [], 0.1)[0]:
                conn, _ = self.sock.accept()
                self._held.append(conn)
                self.accepted += 1
        for c in self._held:
            c.close()


class StallProxy(_Server):
    """Forwards to 127.0.0.1:target_port; stall() stops all forwarding with the connections left open."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.connections = 0
        self._stalled = threading.Event()
        self._pairs = []
        super().__init__()

    def stall(self):
        self._stalled.set()

    def resume(self):
        # Connections that were stalled are dropped (their data is lost anyway); new ones flow again.
        for a, b in self._pairs:
            a.close()
            b.close()
        self._pairs = []
        self._stalled.clear()

    def _run(self):
        while not self._stop.is_set():
            socks = [self.sock] + ([] if self._stalled.is_set() else [s for p in self._pairs for s in p])
            try:
                ready = select.select(socks, [], [], 0.1)[0]
            except (OSError, ValueError):       # a pair closed by resume() meanwhile
                continue
            for s in ready:
                if s is self.sock:
                    conn, _ = self.sock.accept()
                    self.connections += 1
                    try:
                        up = socket.create_connection((HOST, self.target_port), 2)
                    except OSError:
                        conn.close()
                        continue
                    self._pairs.append((conn, up))
                    continue
                for a, b in self._pairs:
                    if s is a or s is b:
                        other = b if s is a else a
                        try:
                            data = s.recv(65536)
                            if data:
                                other.sendall(data)
                                continue
                        except OSError:
                            pass
                        a.close()
                        b.close()
                        self._pairs.remove((a, b))
                        break
        for a, b in self._pairs:
            a.close()
            b.close()

