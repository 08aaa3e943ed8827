# The ESP32's socket budget for the simulated device (docs/design.md, "The simulator's limits").
#
# ESP-IDF's lwIP has room for CONFIG_LWIP_MAX_SOCKETS sockets, 10 by default, and MicroPython's ESP32 port
# keeps the default (ports/esp32/boards/sdkconfig.base does not set it). Past it, socket() fails with
# OSError(ENFILE) after one garbage collection and a second try (ports/esp32/modsocket.c), and accept()
# fails with OSError(ENFILE), lwIP dropping the new connection. tools/sim puts this folder first on the
# device's search path, so `import socket` anywhere on the device (firmware, asyncio) finds this module,
# which extends the built-in one (MicroPython 1.21+: a socket.py on the path comes before the extensible
# built-in, which stays reachable as `usocket`).
#
# What counts is what is open: the socket descriptors of this process but the simulator's own
# (outside_budget), read from /proc/self/fd when a socket is made or a connection accepted. So the
# connections a listener accepts count, and close() gives the slot back at once. A socket the firmware
# forgets gives it back when a collection frees it, as on the ESP32, whose sockets have a finaliser:
# the unix port's have none, so each socket here also holds a file object on its descriptor, whose
# finaliser closes it.
import gc
import io
import os

import usocket as _native
from usocket import *  # noqa: F401,F403 (constants, getaddrinfo, ...: the built-in's own)

MAX_SOCKETS = 10        # ESP-IDF's CONFIG_LWIP_MAX_SOCKETS default
ENFILE = 23             # "too many open files in system": lwIP's socket table is full
EBADF = 9
_S_IFMT = 0o170000
_S_IFSOCK = 0o140000
_own = set()            # descriptors of the simulator's own sockets (its watchdog line): not the device's
refused = [0]           # sockets and connections refused for the budget so far

_CLOSED = _native.socket(_native.AF_INET, _native.SOCK_DGRAM)
_CLOSED.close()         # what a closed socket's calls go to: EBADF, as the built-in's after close()


def open_sockets():
    """The device's sockets open now."""
    n = 0
    for entry in os.ilistdir("/proc/self/fd"):
        fd = entry[0]
        if int(fd) in _own:
            continue
        try:
            if os.stat("/proc/self/fd/" + fd)[0] & _S_IFMT == _S_IFSOCK:
                n += 1
        except OSError:     # the listing's own descriptor, gone by now
            pass
    return n


def _refuse(what):
    refused[0] += 1
    print("lwip: %s refused, all %d sockets in use (ENFILE)" % (what, MAX_SOCKETS))
    raise OSError(ENFILE)


def socket(af=_native.AF_INET, type=_native.SOCK_STREAM, proto=0):
    if open_sockets() >= MAX_SOCKETS:
        gc.collect()        # as the ESP32 port does: a forgotten socket's finaliser may free a slot
        if open_sockets() >= MAX_SOCKETS:
            _refuse("socket()")
    return _Socket(_native.socket(af, type, proto))


def outside_budget(af=_native.AF_INET, type=_native.SOCK_STREAM, proto=0):
    """A socket of the simulator itself (the launcher's watchdog line): no part of the device's budget."""
    s = _native.socket(af, type, proto)
    _own.add(s.fileno())
    return s


class _Socket(io.IOBase):
    """The built-in socket with a finaliser, and an accept() that keeps to the budget. A stream (io.IOBase)
    so select.poll, asyncio and ssl take it as they take the built-in."""

    def __init__(self, s):
        self._s = s
        self._guard = open(s.fileno(), "rb")    # its finaliser closes the descriptor when collected

    def close(self):
        if self._guard is not None:
            self._guard.close()     # the descriptor's one close
            self._guard = None
            self._s = _CLOSED       # the built-in object still names the descriptor: never used again

    def accept(self):
        conn, addr = self._s.accept()
        if open_sockets() > MAX_SOCKETS:
            conn.close()
            _refuse("a connection to the listener")
        return _Socket(conn), addr

    def ioctl(self, req, arg):
        if req == 4:                    # MP_STREAM_CLOSE
            self.close()
            return 0
        if self._guard is None:
            return -EBADF
        if req == 10:                   # MP_STREAM_GET_FILENO: select.poll watches the descriptor
            return self._s.fileno()
        if req == 3:                    # MP_STREAM_POLL
            import select

            p = select.poll()
            p.register(self._s, arg)
            for _, ev in p.ipoll(0):
                return ev
            return 0
        return -22                      # EINVAL

    def fileno(self):
        return self._s.fileno()

    def readinto(self, *a):
        return self._s.readinto(*a)

    def write(self, *a):
        return self._s.write(*a)

    def read(self, *a):
        return self._s.read(*a)

    def readline(self, *a):
        return self._s.readline(*a)

    def send(self, *a):
        return self._s.send(*a)

    def recv(self, *a):
        return self._s.recv(*a)

    def sendto(self, *a):
        return self._s.sendto(*a)

    def recvfrom(self, *a):
        return self._s.recvfrom(*a)

    def __getattr__(self, name):        # bind, listen, connect, setblocking, setsockopt, ...
        return getattr(self._s, name)
