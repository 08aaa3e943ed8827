"""A real NTP server for host tests: Debian's chronyd serving its host's clock on a loopback UDP port
(`local stratum 8`: it answers as a synchronised server without any source of its own), never touching
the system clock (-x). One shared per test process (`shared()`), or one per test (`Chrony`)."""
import atexit
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time

from simctl import free_port

HOST = "127.0.0.1"
NTP_TO_UNIX = 2208988800


def ask(port, timeout=1.0):
    """The Unix time an NTP server on HOST:port gives (a plain SNTP client of the test's own), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        request = bytearray(48)
        request[0] = 0x23
        request[40:48] = os.urandom(8)
        s.sendto(request, (HOST, port))
        try:
            reply = s.recv(100)
        except OSError:
            return None
    if reply[24:32] != request[40:48]:
        return None
    seconds, fraction = struct.unpack("!II", reply[40:48])
    return seconds - NTP_TO_UNIX + fraction / 2 ** 32


class Chrony:
    def __init__(self, port=None):
        self.port = port or free_port(socket.SOCK_DGRAM)
        self.dir = tempfile.mkdtemp(prefix="chrony-")
        self.proc = None

    @property
    def address(self):
        return "%s:%d" % (HOST, self.port)

    def start(self, timeout=10.0):
        conf = os.path.join(self.dir, "chrony.conf")
        with open(conf, "w") as f:
            f.write("port %d\nbindaddress %s\nlocal stratum 8\nallow %s\ncmdport 0\npidfile %s\n"
                    "driftfile %s\n" % (self.port, HOST, HOST, os.path.join(self.dir, "chronyd.pid"),
                                        os.path.join(self.dir, "drift")))
        self.proc = subprocess.Popen([shutil.which("chronyd") or "/usr/sbin/chronyd", "-x", "-d", "-f", conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if ask(self.port, 0.2) is not None:
                return self
            if self.proc.poll() is not None:
                break
        self.stop()
        raise AssertionError("chronyd did not answer on %s" % self.address)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class Silent:
    """A UDP port that takes NTP requests and never answers (a firewalled or dead server)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.address = "%s:%d" % (HOST, self.sock.getsockname()[1])

    def close(self):
        self.sock.close()


_shared = []


def shared():
    """HOST:port of this test process's own chronyd, started at first use (every simulator a test
    starts gets a clock from it, as a device on a site with Internet access would)."""
    if not _shared:
        server = Chrony().start()
        atexit.register(server.stop)
        _shared.append(server)
    return _shared[0].address
