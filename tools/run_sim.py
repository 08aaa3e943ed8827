"""`make sim`: a local MQTT broker (if none listens on 127.0.0.1:1883) and the simulator, until Ctrl-C."""
import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from mpenv import ROOT

BROKER = ("127.0.0.1", 1883)


def listening(addr):
    try:
        socket.create_connection(addr, timeout=0.5).close()
        return True
    except OSError:
        return False


def start_broker():
    """mosquitto when installed, else the embedded amqtt broker; both only on loopback."""
    if shutil.which("mosquitto"):
        conf = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
        conf.write("listener %d %s\nallow_anonymous true\n" % (BROKER[1], BROKER[0]))
        conf.close()
        proc = subprocess.Popen(["mosquitto", "-c", conf.name], stdout=subprocess.DEVNULL)
        name = "mosquitto"
    else:
        proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "embedded_broker.py"),
                                 "--bind", "%s:%d" % BROKER])
        name = "embedded amqtt broker"
    deadline = time.monotonic() + 15
    while not listening(BROKER):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("make sim: the %s did not start on %s:%d" % ((name,) + BROKER))
        time.sleep(0.1)
    return proc, name


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--state", default=".sim-state")
    p.add_argument("--scenario", default="tools/scenarios/default.json")
    p.add_argument("--http", default="127.0.0.1:8080")
    args = p.parse_args()
    broker = None
    if listening(BROKER):
        print("make sim: using the MQTT broker already listening on %s:%d" % BROKER)
    else:
        broker, name = start_broker()
        print("make sim: started %s on %s:%d" % ((name,) + BROKER))
    sim = subprocess.Popen([os.path.join(ROOT, "tools", "sim"), "--state", args.state, "--scenario",
                            args.scenario, "--http", args.http, "--broker", "%s:%d" % BROKER],
                           start_new_session=True)
    print("make sim: portal  http://%s/   (scenario: %s, edit it while running)" % (args.http, args.scenario))
    print("make sim: watch   mosquitto_sub -h %s -p %d -t 'ampguard/#' -v" % BROKER)
    print("make sim: Ctrl-C stops the simulator (orderly shutdown) and the broker we started")
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        while sim.poll() is None:
            if stop:
                sim.send_signal(signal.SIGTERM)
                sim.wait()
                break
            time.sleep(0.2)
    finally:
        if broker:
            broker.terminate()
            broker.wait(10)
    return sim.returncode


if __name__ == "__main__":
    sys.exit(main())
