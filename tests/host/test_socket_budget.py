"""The simulated device keeps to the ESP32's socket budget (issue 11 point 4): ESP-IDF's lwIP has 10
sockets (CONFIG_LWIP_MAX_SOCKETS, which MicroPython's ESP32 port keeps), and past them socket() and
accept() fail with OSError(ENFILE). tools/simhw/lwip/socket.py, first on the device's path in tools/sim,
is checked here on both MicroPython runtimes; test_socket_budget_sim.py runs the whole firmware under it.
"""
import os
import subprocess

import pytest
from simctl import free_port

from mpenv import ROOT, runtime_binary, runtime_env, runtime_problem

LWIP = os.path.join(ROOT, "tools", "simhw", "lwip")
RUNTIMES = ("micropython", "esp32-like")

SCRIPT = """
import gc, select, socket
PORT = %d
addr = socket.getaddrinfo("127.0.0.1", PORT)[0][-1]
def check(cond, what):
    if not cond:
        raise SystemExit("FAILED: " + what)
own = socket.outside_budget(socket.AF_INET, socket.SOCK_DGRAM)   # the simulator's watchdog line
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(addr)
listener.listen(4)
udp = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(7)]
check(socket.open_sockets() == 8, "8 open, the simulator's own not counted: %%d" %% socket.open_sockets())
client = socket.socket()
client.connect(addr)
poller = select.poll()
poller.register(listener, select.POLLIN)
check(len(poller.poll(2000)) == 1, "the listener polls readable")
conn, _ = listener.accept()
check(socket.open_sockets() == 10, "the accepted connection takes a slot")
conn.write(b"hi")
check(client.recv(10) == b"hi", "an accepted connection works")
try:
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    check(False, "the 11th socket is refused")
except OSError as e:
    check(e.errno == 23, "ENFILE, as on the ESP32: %%r" %% e)
conn.close()
check(socket.open_sockets() == 9, "close() gives the slot back")
late = socket.socket()                       # the 10th again
late.connect(addr)
check(len(poller.poll(2000)) == 1, "the new connection waits at the listener")
try:
    listener.accept()
    check(False, "a connection past the budget is refused")
except OSError as e:
    check(e.errno == 23, "accept: ENFILE: %%r" %% e)
check(late.recv(10) == b"", "lwIP drops the refused connection: its client sees it closed")
late.close()
client.close()
udp.pop()                                    # forgotten, not closed: a collection closes it
check(socket.open_sockets() == 8, "a forgotten socket holds its slot until collected")
gc.collect()
check(socket.open_sockets() == 7, "a collection frees a forgotten socket's slot")
udp.pop(); udp.pop(); udp.pop()
check(socket.open_sockets() == 7, "still held before socket() collects")
spare = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(6)]   # room only after a collection
check(socket.open_sockets() == 10, "socket() collected to make room: %%d" %% socket.open_sockets())
check(socket.refused[0] == 2, "two refusals counted: %%r" %% socket.refused)
print("OK")
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_eleventh_socket_is_refused_with_enfile_and_slots_come_back(runtime, tmp_path):
    problem = runtime_problem(runtime)
    assert problem is None, problem
    env = runtime_env(runtime, [LWIP])
    out = subprocess.run([runtime_binary(runtime), "-c", SCRIPT % free_port()], env=env, cwd=str(tmp_path),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip().endswith("OK"), out.stdout + out.stderr
    assert out.stdout.count("lwip: ") == 2, out.stdout          # each refusal is in the device's log
