"""Start and watch `tools/sim` from tests: free loopback ports, a log file, waiting for log lines."""
import json
import os
import signal
import socket
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIM = os.path.join(ROOT, "tools", "sim")


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Sim:
    def __init__(self, workdir, scenario=None, args=(), env=None):
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.state = os.path.join(self.workdir, "state")
        self.scenario_path = os.path.join(self.workdir, "scenario.json")
        self.http = "127.0.0.1:%d" % free_port()
        self.dns = "127.0.0.1:%d" % free_port(socket.SOCK_DGRAM)
        self.log_path = os.path.join(self.workdir, "sim.log")
        self.write_scenario(scenario or {})
        self.args = list(args)
        self.env = dict(os.environ, **(env or {}))
        self.proc = None

    def write_scenario(self, scenario):
        tmp = self.scenario_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(scenario, f)
        os.replace(tmp, self.scenario_path)

    def start(self):
        self._log = open(self.log_path, "ab")
        cmd = [SIM, "--state", self.state, "--scenario", self.scenario_path, "--http", self.http,
               "--dns", self.dns] + self.args
        if "--ntp" not in self.args:        # a clock, as on a site with Internet access
            import ntpd

            cmd += ["--ntp", ntpd.shared()]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
                                     cwd=ROOT)
        return self

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_for(self, text, timeout=30.0, count=1):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log().count(text) >= count:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError("sim log never showed %r %d time(s); log:\n%s"
                             % (text, count, self.log()[-4000:]))

    def stop(self, sig=signal.SIGTERM, timeout=20.0):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def close(self):
        self.stop(signal.SIGKILL, 5)
        self._log.close()
