# Console log: "<uptime s> <LEVEL> <tag>: <message>". Callers never pass secrets (password, PIN).
import uptime

_LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")
level = 1


def _emit(lvl, tag, msg):
    if lvl >= level:
        # Seconds from uptime, not a ticks difference (which wraps after 6.2 days), written from ints
        # (a float32 has whole seconds only, past 97 days).
        s = uptime.seconds()
        print("%5d.%03d %s %s: %s" % (s, uptime.millis(), _LEVELS[lvl], tag, msg))


def debug(tag, msg):
    _emit(0, tag, msg)


def info(tag, msg):
    _emit(1, tag, msg)


def warn(tag, msg):
    _emit(2, tag, msg)


def error(tag, msg):
    _emit(3, tag, msg)
