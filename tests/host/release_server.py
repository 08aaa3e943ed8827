"""A real HTTPS server for update tests: Python's http.server behind Python's ssl, with a certificate from
a throw-away test CA (brokers.make_tls_files), on 127.0.0.1. It serves files from a dict and can be told
to misbehave on a path: stall after N bytes, drop the connection after N bytes, answer 404, or lie about
the length. Every thread ends with close()."""
import http.server
import json
import socket
import ssl
import threading
import time

from uplink_rig import BASE

HOST = "127.0.0.1"
UPDATE = BASE + "/update"


def send_update(rig, command):
    """Publish an update/set command to the rig's meter; returns the time to look for answers after."""
    t0 = time.monotonic()
    rig.sub.publish(UPDATE + "/set", json.dumps(command))
    return t0


def update_state(rig, state, t0, timeout=40):
    """The first <base>/update report in `state` after t0 (a dict)."""
    return rig.sub.wait_for(UPDATE, lambda m: m.json()["state"] == state, timeout=timeout, after=t0).json()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server.owner
        srv.requests.append(self.path)
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        how = srv.behaviour.get(self.path, {})
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(how.get("length", len(body))))
        self.end_headers()
        limit = how.get("stall_after", how.get("drop_after", len(body)))
        sent = 0
        try:
            while sent < limit:
                piece = body[sent:min(limit, sent + 4096)]
                self.wfile.write(piece)
                sent += len(piece)
                if how.get("slow_s"):
                    time.sleep(how["slow_s"])
            if "stall_after" in how:
                srv.stalled.wait(how.get("stall_s", 60))    # the connection stays open, silent
            elif "drop_after" in how:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class ReleaseServer:
    def __init__(self, tls):
        self.files = {}
        self.behaviour = {}
        self.requests = []
        self.stalled = threading.Event()
        self.httpd = http.server.ThreadingHTTPServer((HOST, 0), _Handler)
        self.httpd.owner = self
        self.httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls["server_cert"], tls["server_key"])
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path, host="localhost"):
        return "https://%s:%d%s" % (host, self.port, path)

    def close(self):
        self.stalled.set()
        self.httpd.shutdown()
        self.httpd.server_close()
