"""Idle shutdown, done on the VM: after `idle_stop_seconds` with no kernel busy and no
client connected, stop the servers and power the machine off.

Two halves:

- `Activity`, run by each server's monitor (it holds the token, in memory only):
  every poll it asks its server's /api/kernels and writes `activity.json` in the run
  dir: kernels, busy ones, client connections, and the last moment anything was active.
- the watcher, one per user on the machine (it holds `idle.lock` in the base dir),
  started by `start` when the profile sets an idle stop. It reads every run's activity;
  once nothing was active for `idle_stop_seconds` it asks every live server to stop,
  waits for them, and powers the machine off. It keeps counting after a server ended
  on its own (its lease ran out: the laptop is gone), so a VM nobody uses goes off
  anyway; a later `start` that asks for no idle stop ends it.

Power off: `$REMOTE_RUNTIME_POWEROFF` (a shell command) when set, else on a Compute
Engine VM `shutdown -h now` (through `sudo -n` unless root). Any other machine only
gets its servers stopped: this never powers off a machine that is not a GCE VM.
"""

import calendar
import fcntl
import http.client
import json
import os
import re
import subprocess
import time

from .common import alive, base_dir, detach, read_state, write_json

CONFIG = "idle.json"  # {"idle_stop_seconds": N, "since": t}, written by `start`
STATUS = "idle-status.json"  # the watcher's view: idle since, planned stop, power off
LOCK = "idle.lock"
STOP_WAIT = 45.0  # for the servers to stop before the power goes
GRACE = 3.0  # lets each owner read its server's last words before the network goes
DMI_PRODUCT = "/sys/class/dmi/id/product_name"


def poll_interval(seconds):
    """How often to look: often enough for the limit, at most every 30 s."""
    return max(1.0, min(30.0, float(seconds) / 10.0))


def parse_time(text):
    """A Jupyter timestamp (UTC, "Z") as epoch seconds; Python 3.6 has no fromisoformat."""
    whole, _, fraction = text.replace("Z", "").split("+")[0].partition(".")
    try:
        seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return 0.0
    return seconds + (float("0." + fraction) if fraction.isdigit() else 0.0)


def read_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


class Activity:
    """The monitor's probe of its own server (a no-op without an idle stop)."""

    def __init__(self, config, directory):
        self.seconds = config.get("idle_stop_seconds")
        self.interval = poll_interval(self.seconds or 60)
        self.host, self.port = config["bind_host"], config["port"]
        self.token = config["token"]
        # A server that makes its own token (Colab's image) prints it in its log.
        self.url_pattern = config.get("url_pattern")
        self.log = os.path.join(directory, "server.log")
        self.path = os.path.join(directory, "activity.json")
        self.active_at = time.time()  # a server that just started counts as activity
        self.next = 0.0

    def token_from_log(self):
        try:
            with open(self.log, "rb") as handle:
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            return ""
        match = re.search(self.url_pattern, text)
        return match.group(2) if match else ""

    def kernels(self):
        if not self.token and self.url_pattern:
            self.token = self.token_from_log()
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            connection.request("GET", "/api/kernels",
                               headers={"Authorization": "token " + self.token})
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise OSError("HTTP %d" % response.status)
        return json.loads(body.decode())

    def poll(self):
        if not self.seconds or time.time() < self.next:
            return
        self.next = time.time() + self.interval
        record = {"checked": time.time()}
        try:
            kernels = self.kernels()
        except (OSError, ValueError, http.client.HTTPException) as exc:
            record["error"] = str(exc)[:200]  # starting up or wedged: no news
        else:
            busy = sum(1 for k in kernels if k.get("execution_state") == "busy")
            connections = sum(int(k.get("connections") or 0) for k in kernels)
            if busy or connections:
                self.active_at = time.time()
            for kernel in kernels:
                if kernel.get("last_activity"):
                    self.active_at = max(self.active_at, parse_time(kernel["last_activity"]))
            record.update(kernels=len(kernels), busy=busy, connections=connections)
        record["active_at"] = self.active_at
        write_json(self.path, record)


def configure(config):
    """From `start`: set (or clear) the idle stop and make sure a watcher runs."""
    base = base_dir()
    path = os.path.join(base, CONFIG)
    seconds = config.get("idle_stop_seconds")
    if not seconds:
        try:
            os.remove(path)
        except OSError:
            pass
        return
    write_json(path, {"idle_stop_seconds": float(seconds), "since": time.time()})
    lock = open(os.path.join(base, LOCK), "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # a watcher holds it: it reads the new configuration
    finally:
        lock.close()
    detach(lambda: watch(base))


def _runs(base):
    """(directory, state, activity) of every run on this machine."""
    runs = os.path.join(base, "runs")
    found = []
    for name in os.listdir(runs) if os.path.isdir(runs) else []:
        directory = os.path.join(runs, name)
        state = read_state(directory)
        if state is not None:
            found.append((directory, state,
                          read_json(os.path.join(directory, "activity.json")) or {}))
    return found


def _live(state):
    return "stopped" not in state and alive(state.get("monitor_pid", 0))


def watch(base):
    lock = open(os.path.join(base, LOCK), "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another watcher runs
    logfile = open(os.path.join(base, "idle.log"), "a")

    def log(text):
        logfile.write("%s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), text))
        logfile.flush()

    started = time.time()
    log("watching (pid %d)" % os.getpid())
    while True:
        config = read_json(os.path.join(base, CONFIG))
        if not config or not config.get("idle_stop_seconds"):
            log("idle stop turned off")
            return
        seconds = float(config["idle_stop_seconds"])
        runs = _runs(base)
        now = time.time()
        last = max([started, float(config.get("since", 0))] + [
            max(float(state.get("started", 0)), float(state.get("stopped", 0)),
                float(activity.get("active_at", 0)))
            for _directory, state, activity in runs])
        live = [(d, s, a) for d, s, a in runs if _live(s)]
        if any(a.get("busy") or a.get("connections") for _d, _s, a in live):
            last = now
        write_json(os.path.join(base, STATUS), {
            "idle_since": last, "stop_at": last + seconds, "live_runs": len(live),
            "checked": now})
        if now >= last + seconds:
            reason = ("idle for %s (no kernel busy, no client connected): the VM powers "
                      "off" % _minutes(now - last))
            log(reason)
            _stop_all(live, reason, log)
            time.sleep(GRACE)
            status = power_off(log)
            write_json(os.path.join(base, STATUS), {
                "idle_since": last, "stop_at": last + seconds, "powered_off": time.time(),
                "poweroff_status": status})
            return
        time.sleep(min(poll_interval(seconds), max(0.5, last + seconds - now)))


def _minutes(seconds):
    return "%.0f min" % (seconds / 60) if seconds >= 90 else "%.0f s" % seconds


def _stop_all(live, reason, log):
    for directory, _state, _activity in live:
        with open(os.path.join(directory, "stop"), "w") as handle:
            handle.write(reason)
    deadline = time.time() + STOP_WAIT
    while time.time() < deadline and any(
            _live(read_state(d) or {}) for d, _s, _a in live):
        time.sleep(0.2)
    log("stopped %d server(s)" % len(live))


def on_gce():
    try:
        with open(DMI_PRODUCT) as handle:
            return "Google Compute Engine" in handle.read()
    except OSError:
        return False


def power_off(log):
    """Run the power-off command; its exit status, or None when there is none."""
    command = os.environ.get("REMOTE_RUNTIME_POWEROFF")
    if command:
        argv = ["/bin/sh", "-c", command]
    elif on_gce():
        argv = ["shutdown", "-h", "now"]
        if os.getuid() != 0:
            argv = ["sudo", "-n"] + argv
    else:
        log("not a Compute Engine VM: the servers were stopped; not powering off")
        return None
    log("powering off: %s" % " ".join(argv))
    try:
        result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log("power off failed: %s" % exc)
        return -1
    output = result.stdout.decode(errors="replace").strip()
    log("power off command exited %d%s" % (result.returncode,
                                           (": " + output[-300:]) if output else ""))
    return result.returncode
