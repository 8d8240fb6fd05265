"""The docker-pull command: `docker pull` under a pseudo-terminal (so it prints its
per-layer progress), relayed as counted steps in MB for the laptop's progress bar.
Standard library only, Python >= 3.6.
"""

import errno
import json
import os
import re
import select
import subprocess
import sys
import time

from .common import emit

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_SIZE = re.compile(r"^([\d.]+)\s*([kMGT]?B)$")
_UNITS = {"B": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_LAYER = re.compile(r"^([0-9a-f]{12}): ([A-Za-z ]+?)\s*(?:\[[^\]]*\])?\s*(?:(\S+)/(\S+))?\s*$")


def parse_size(text):
    match = _SIZE.match(text or "")
    if not match:
        return None
    return float(match.group(1)) * _UNITS[match.group(2)]


class PullProgress:
    """The state of a `docker pull` from its terminal output: each layer's bytes
    downloaded and extracted. Done = (downloaded + extracted) / 2, in bytes."""

    def __init__(self, sizes=None):
        self.sizes = dict(sizes or {})  # short id -> bytes, from the registry
        self.downloaded = {}
        self.extracted = {}
        self.complete = set()

    def feed(self, line):
        match = _LAYER.match(_ANSI.sub("", line).strip())
        if not match:
            return False
        layer, status = match.group(1), match.group(2).strip()
        current, total = parse_size(match.group(3)), parse_size(match.group(4))
        if total and not self.sizes.get(layer):  # the registry's size, else docker's
            self.sizes[layer] = total
        self.sizes.setdefault(layer, 0)
        if status == "Downloading" and current is not None:
            self.downloaded[layer] = current
        elif status == "Extracting" and current is not None:
            self.downloaded[layer] = self.sizes[layer]
            self.extracted[layer] = current
        elif status in ("Download complete", "Verifying Checksum"):
            self.downloaded[layer] = self.sizes[layer]
        elif status in ("Pull complete", "Already exists"):
            self.downloaded[layer] = self.extracted[layer] = self.sizes[layer]
            self.complete.add(layer)
        return True

    @property
    def total(self):
        return sum(self.sizes.values())

    @property
    def done(self):
        return (sum(self.downloaded.values()) + sum(self.extracted.values())) / 2.0

    def step(self, task):
        total_mb = max(1, int(self.total / 10**6))
        done_mb = min(total_mb, int(self.done / 10**6))
        detail = "MB, %d of %d layers" % (len(self.complete), len(self.sizes))
        return {"task": task, "done": done_mb, "total": total_mb, "detail": detail}


def terminal_lines(fd, process):
    """Lines (split on CR or LF) a process writes to the pty `fd`, until it exits."""
    pending = b""
    while True:
        ready = select.select([fd], [], [], 1.0)[0]
        if not ready:
            if process.poll() is not None:
                break
            yield None  # a quiet second: a chance to report anyway
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError as exc:  # EIO: the other end closed
            if exc.errno != errno.EIO:
                raise
            chunk = b""
        if not chunk:
            break
        pending += chunk
        parts = re.split(rb"[\r\n]", pending)
        pending = parts.pop()
        for part in parts:
            yield part.decode("utf-8", "replace")
    if pending:
        yield pending.decode("utf-8", "replace")


def cmd_docker_pull(args):
    import pty

    config = json.loads(sys.stdin.readline() or "{}")
    image, task = config["image"], config.get("task") or "pulling " + config["image"]
    progress = PullProgress(config.get("layers"))
    master, slave = pty.openpty()
    _wide(slave)
    try:
        process = subprocess.Popen(config["docker"] + ["pull", image], stdin=subprocess.DEVNULL,
                                   stdout=slave, stderr=slave, close_fds=True)
    except OSError as exc:
        emit({"error": str(exc)})
        return 1
    finally:
        os.close(slave)
    tail = []
    last, sent = 0.0, None
    try:
        for line in terminal_lines(master, process):
            if line is not None and not progress.feed(line):
                text = _ANSI.sub("", line).strip()
                if text:
                    tail = (tail + [text])[-20:]
            if time.time() - last >= 0.5 and progress.sizes:
                sent = progress.step(task)
                emit({"step": sent})
                last = time.time()
    finally:
        os.close(master)
    status = process.wait()
    if status != 0:
        emit({"error": "docker pull exited with status %d" % status, "log": "\n".join(tail)})
        return 1
    if sent is not None and sent["done"] < sent["total"]:  # the bar ends full
        sent["done"] = sent["total"]
        emit({"step": sent})
    emit({"ok": True})
    return 0


def _wide(fd):
    """A wide terminal, so docker's progress lines keep their numbers."""
    try:
        import fcntl
        import struct
        import termios
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    except (ImportError, OSError):
        pass
