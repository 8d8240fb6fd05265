"""The managed env: build it once from a lock (or reuse it), reporting counted steps.

The client sends the lock of this Python's minor version (remote_runtime.stacks):
every package pinned with its hashes. The build is
  1. a venv with this interpreter;
  2. pip itself, pinned, on its own (a venv's pip may be too old for today's wheels);
  3. the locked files, fetched by a few `pip download --no-deps` at once (the host's
     pip configuration, indexes and proxy apply; nothing is resolved);
  4. `pip install --no-index --no-deps --require-hashes` from those files, without
     byte-compiling all of them (a quarter of the install time; Python compiles what
     the server imports, once);
  5. the extension enabled (classic stack).
pip's output is read for progress and kept for an error's tail, never shown raw.
"""

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import threading

from .common import base_dir, emit

MIN_PYTHON = (3, 8)  # remote_runtime.stacks.MIN_PYTHON
DOWNLOADERS = 4  # parallel `pip download`s: index lookups dominate a cold build
COLLECTING = re.compile(r"^Collecting (\S+?)(?:==(\S+))?(?: |$)")
# Over the host's pip configuration, which otherwise applies (indexes, proxy, certs):
# no prompts, no download bars, and no `user = true` (it cannot install into a venv).
PIP_ENV = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1",
           "PIP_PROGRESS_BAR": "off", "PIP_USER": "0", "PYTHONUNBUFFERED": "1"}


def is_built(env):
    return os.path.exists(os.path.join(env, ".complete"))


def managed_dir(name):
    if not re.match(r"^[a-z]+-py\d+-[a-z0-9-]+$", name):
        raise SystemExit("bad env name")
    return os.path.join(base_dir(), "envs", name)


class Steps:
    """Progress of the build as counted steps: {"step": {task, done, total, detail}}."""

    def __init__(self, task, total):
        self.task, self.total, self.done = task, total, 0
        self.lock = threading.Lock()

    def advance(self, detail, by=1):
        with self.lock:
            self.done = min(self.total, self.done + by)
            emit({"step": {"task": self.task, "done": self.done, "total": self.total,
                           "detail": detail[:120]}})

    def finish_to(self, left, detail):
        """Jump to `left` steps before the end (steps pip did not print)."""
        self.advance(detail, by=max(0, self.total - left - self.done))


def pip_progress(line, steps):
    """A step per locked package pip collects; unpinned, only the name (no count)."""
    match = COLLECTING.match(line)
    if match:
        name, version = match.group(1), match.group(2)
        steps.advance("%s %s" % (name, version) if version else name, by=1 if version else 0)


class Command:
    """One build command, its output read for progress on a thread."""

    def __init__(self, argv, steps, on_line=None):
        self.argv, self.steps, self.on_line = argv, steps, on_line
        self.tail, self.error = [], None
        env = dict(os.environ)
        env.update(PIP_ENV)
        try:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env)
        except OSError as exc:
            self.proc = None
            self.error = {"error": "%s: %s" % (os.path.basename(argv[0]), exc), "log": ""}
            return
        self.reader = threading.Thread(target=self._read)
        self.reader.daemon = True
        self.reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.tail = (self.tail + [line])[-25:]
            if self.on_line is not None:
                self.on_line(line, self.steps)

    def wait(self):
        """None, or an error answer with the output's tail."""
        if self.proc is None:
            return self.error
        status = self.proc.wait()
        self.reader.join()
        if status != 0:
            return {"error": "%s exited with status %d" % (" ".join(self.argv[1:4]), status),
                    "log": "\n".join(line for line in self.tail if line)}
        return None


def run(argv, steps, on_line=None):
    return Command(argv, steps, on_line).wait()


def blocks(text):
    """Requirement entries with their continuation lines (comments dropped)."""
    found = []
    for line in text.splitlines(True):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[:1].isspace() and found:
            found[-1] += line
        else:
            found.append(line)
    return found


def write_file(path, text):
    with open(path, "w") as handle:
        handle.write(text)


def download(env, python, lock, steps):
    """Fetch every locked file into env/.downloads with a few pip downloads at once."""
    folder = os.path.join(env, ".downloads")
    os.makedirs(folder)
    entries = blocks(lock)
    commands = []
    for index in range(min(DOWNLOADERS, len(entries))):
        part = os.path.join(folder, "part-%d.txt" % index)
        write_file(part, "".join(entries[index::DOWNLOADERS]))
        commands.append(Command([python, "-m", "pip", "download", "--no-deps",
                                 "--require-hashes", "--dest", folder, "-r", part],
                                steps, pip_progress))
    failures = [f for f in (c.wait() for c in commands) if f]
    return folder, (failures[0] if failures else None)


def build(env, config):
    """venv, pip (pinned, alone), the locked files, an offline install, the extension."""
    python = os.path.join(env, "bin", "python")
    count = int(config.get("count") or 0)
    steps = Steps(config.get("task") or "installing the Jupyter server", count + 4)
    steps.advance("creating the venv", by=0)
    failed = run([sys.executable, "-m", "venv", env], steps)
    if failed:
        return failed
    steps.advance("upgrading pip")
    if config.get("bootstrap"):
        pin = os.path.join(env, "remote-runtime-pip.txt")
        write_file(pin, config["bootstrap"])
        failed = run([python, "-m", "pip", "install", "--no-deps", "--require-hashes",
                      "--no-compile", "-r", pin], steps)
        if failed:
            return failed
    steps.advance("downloading")
    if config.get("lock"):
        lock = os.path.join(env, "remote-runtime-lock.txt")
        write_file(lock, config["lock"])
        folder, failed = download(env, python, config["lock"], steps)
        if failed:
            return failed
        steps.finish_to(2, "installing %d packages" % count)
        failed = run([python, "-m", "pip", "install", "--no-deps", "--require-hashes",
                      "--no-compile", "--no-index", "--find-links", folder, "-r", lock], steps)
        shutil.rmtree(folder, ignore_errors=True)
    else:  # no tested set for this Python (the client said so): pip resolves
        failed = run([python, "-m", "pip", "install"] + list(config["requirements"]), steps,
                     pip_progress)
    if failed:
        return failed
    steps.finish_to(1, "enabling the server extension" if config.get("enable_extension")
                    else "finishing")
    if config.get("enable_extension"):
        failed = run([os.path.join(env, "bin", "jupyter"), "serverextension", "enable",
                      "--py", "jupyter_http_over_ws", "--sys-prefix"], steps)
        if failed:
            return failed
    steps.finish_to(0, "ready")
    return None


def cmd_ensure_managed(args):
    config = json.loads(sys.stdin.readline() or "{}")
    if sys.version_info[:2] < MIN_PYTHON:
        emit({"error": "Python %d.%d cannot host the Jupyter server" % sys.version_info[:2]})
        return 1
    env = managed_dir(config["name"])
    os.makedirs(os.path.dirname(env), mode=0o700, exist_ok=True)
    with open(env + ".lock", "w") as lock:
        if not is_built(env):
            emit({"building": True})
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second `up` waits for the first build
        if not is_built(env):
            shutil.rmtree(env, ignore_errors=True)  # a half-built env from a killed run
            failed = build(env, config)
            if failed:
                shutil.rmtree(env, ignore_errors=True)
                emit(failed)
                return 1
            open(os.path.join(env, ".complete"), "w").close()
    emit({"ok": True, "jupyter": os.path.join(env, "bin", "jupyter")})
    return 0
