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

HOST = "127.0.0.1"


def listening(port):
    try:
        socket.create_connection((HOST, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def start_broker(port, impl="auto"):
    """mosquitto when installed, else the embedded amqtt broker; both only on loopback.

    Each in its own session: Ctrl-C must not take the broker down before the device said "offline".
    """
    if impl == "mosquitto" or (impl == "auto" and shutil.which("mosquitto")):
        conf = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
        conf.write("listener %d %s\nallow_anonymous true\nlog_type error\nlog_type warning\n" % (port, HOST))
        conf.close()
        proc = subprocess.Popen(["mosquitto", "-c", conf.name], start_new_session=True)
        name = "mosquitto"
        try:
            _wait_listening(proc, port, name)
        finally:
            os.unlink(conf.name)      # mosquitto read it at start: nothing is left in the temp folder
        return proc, name
    else:
        proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "embedded_broker.py"),
                                 "--bind", "%s:%d" % (HOST, port)], start_new_session=True)
        name = "embedded amqtt broker"
    _wait_listening(proc, port, name)
    return proc, name


def _wait_listening(proc, port, name):
    deadline = time.monotonic() + 15
    while not listening(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("make sim: the %s did not start on %s:%d" % (name, HOST, port))
        time.sleep(0.1)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--state", default=".sim-state")
    p.add_argument("--scenario", default="tools/scenarios/default.json")
    p.add_argument("--http", default="127.0.0.1:8080")
    p.add_argument("--broker-port", type=int, default=1883)
    p.add_argument("--broker-impl", choices=("auto", "mosquitto", "embedded"), default="auto")
    args = p.parse_args()
    port = args.broker_port
    broker = None
    if listening(port):
        print("make sim: using the MQTT broker already listening on %s:%d" % (HOST, port))
    else:
        broker, name = start_broker(port, args.broker_impl)
        print("make sim: started %s on %s:%d" % (name, HOST, port))
    sim = subprocess.Popen([os.path.join(ROOT, "tools", "sim"), "--state", args.state, "--scenario",
                            args.scenario, "--http", args.http, "--broker", "%s:%d" % (HOST, port)],
                           start_new_session=True)
    print("make sim: portal  http://%s/   (scenario: %s, edit it while running)" % (args.http, args.scenario))
    print("make sim: watch   mosquitto_sub -h %s -p %d -t 'ampguard/#' -v" % (HOST, port))
    print("make sim: Ctrl-C stops the simulator (orderly shutdown) and the broker we started", flush=True)
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
