"""`make sim`: a local MQTT broker (if none listens on 127.0.0.1:1883), a local NTP server (chronyd
serving the host's clock on 127.0.0.1:12300) and the simulator, until Ctrl-C."""
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
NTP_PORT = 12300
DEV_KEY = os.path.join(ROOT, "build", "dev-keys", "update.pem")   # this checkout's own, never committed


def dev_update_key(state):
    """A development update key for `make sim` devices (made once per checkout, kept in build/): the
    simulated meter accepts releases signed with it (tools/release --key build/dev-keys/update.pem)."""
    if os.path.exists(os.path.join(state, "update_key.json")):
        return
    if not os.path.exists(DEV_KEY):
        os.makedirs(os.path.dirname(DEV_KEY), exist_ok=True)
        subprocess.run([os.path.join(ROOT, "tools", "release"), "--new-key", DEV_KEY], check=True,
                       stdout=subprocess.DEVNULL)
    os.makedirs(state, exist_ok=True)
    subprocess.run([os.path.join(ROOT, "tools", "provision"), "--update-key", DEV_KEY[:-4] + ".pub.json",
                    "--state", state], check=True, stdout=subprocess.DEVNULL)
    print("make sim: the device accepts releases signed with %s (tools/release --key ...)"
          % os.path.relpath(DEV_KEY, ROOT))


def ntp_answers(port):
    """True when an NTP server answers on HOST:port (one SNTP request, 0.5 s)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        try:
            s.sendto(b"\x23" + bytes(47), (HOST, port))
            return len(s.recv(100)) >= 48
        except OSError:
            return False


def start_ntp(port):
    """chronyd serving this host's clock on loopback, never setting it (-x); None without chronyd."""
    chronyd = shutil.which("chronyd") or "/usr/sbin/chronyd"      # sbin: not on every user's PATH
    if not os.path.exists(chronyd):
        return None
    folder = tempfile.mkdtemp(prefix="ampguard-ntp-")
    conf = os.path.join(folder, "chrony.conf")
    with open(conf, "w") as f:
        f.write("port %d\nbindaddress %s\nlocal stratum 8\nallow %s\ncmdport 0\npidfile %s\n"
                % (port, HOST, HOST, os.path.join(folder, "chronyd.pid")))
    proc = subprocess.Popen([chronyd, "-x", "-d", "-f", conf], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not ntp_answers(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            return None
    return proc


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
    dev_update_key(args.state)
    ntp = None
    if ntp_answers(NTP_PORT):
        print("make sim: using the NTP server already answering on %s:%d" % (HOST, NTP_PORT))
    else:
        ntp = start_ntp(NTP_PORT)
        print("make sim: started chronyd on %s:%d" % (HOST, NTP_PORT) if ntp else
              "make sim: no chronyd: the simulated clock is set from the ntp_server setting, if reachable")
    sim = subprocess.Popen([os.path.join(ROOT, "tools", "sim"), "--state", args.state, "--scenario",
                            args.scenario, "--http", args.http, "--broker", "%s:%d" % (HOST, port)]
                           + (["--ntp", "%s:%d" % (HOST, NTP_PORT)] if ntp or ntp_answers(NTP_PORT) else []),
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
        for proc in (broker, ntp):
            if proc:
                proc.terminate()
                proc.wait(10)
    return sim.returncode


if __name__ == "__main__":
    sys.exit(main())
