# Console log: "<uptime s> <LEVEL> <tag>: <message>". Callers never pass secrets (password, PIN).
import time

_start = time.ticks_ms()
_LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")
level = 1


def _emit(lvl, tag, msg):
    if lvl >= level:
        t = time.ticks_diff(time.ticks_ms(), _start) / 1000
        print("%9.3f %s %s: %s" % (t, _LEVELS[lvl], tag, msg))


def debug(tag, msg):
    _emit(0, tag, msg)


def info(tag, msg):
    _emit(1, tag, msg)


def warn(tag, msg):
    _emit(2, tag, msg)


def error(tag, msg):
    _emit(3, tag, msg)
