# Runs on the MicroPython unix port (driven by test_settings_sigkill.py): settings writes exactly as
# the device makes them, each one announced before and after, until it is killed.
# usage: micropython mp_settings_writer.py STATE_DIR FIRST_INDEX COUNT
import sys

import log
import settings

log.level = 2       # warnings only: the progress lines are what the test reads

state, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = settings.Settings(state)
s.load()
print("loaded port %d" % s.current["mqtt"]["port"])
for i in range(first, first + count):
    print("begin %d" % i)
    s.update({"interval_s": 1 + i % 60, "mqtt": {"port": 1 + i, "host": "h%d.lan" % i}})
    print("done %d" % i)
print("finished")
