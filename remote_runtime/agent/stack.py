"""Which Jupyter can serve Colab here, and the managed env that can."""

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys

from .common import base_dir, emit, port_free

CANDIDATES = ("jupyter", "/opt/conda/bin/jupyter", "~/.local/bin/jupyter")
MIN_PYTHON = (3, 8)  # remote_runtime.stacks.MIN_PYTHON

# What a Jupyter's interpreter has, as one JSON line: the versions of the server
# packages (None when missing) and whether the classic server's handlers import.
CHECK_STACK = (
    "import json\n"
    "found = {}\n"
    "for name in ('notebook', 'jupyter_server', 'tornado', 'jupyter_http_over_ws'):\n"
    "    try:\n"
    "        module = __import__(name)\n"
    "    except Exception:\n"
    "        found[name] = None\n"
    "    else:\n"
    "        found[name] = str(getattr(module, '__version__', None) or\n"
    "                          getattr(module, 'version', None) or '?')\n"
    "try:\n"
    "    import notebook.base.handlers\n"
    "    found['classic_handlers'] = True\n"
    "except Exception:\n"
    "    found['classic_handlers'] = False\n"
    "print(json.dumps(found))\n"
)


def interpreter_of(executable):
    """The Python behind a `jupyter` script (its shebang), or None."""
    try:
        with open(executable, "rb") as handle:
            first = handle.readline(512).decode("utf-8", "replace").strip()
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    parts = first[2:].split()
    if parts and os.path.basename(parts[0]) == "env" and len(parts) > 1:
        return shutil.which(parts[1])
    return parts[0] if parts else None


def major_minor(version):
    numbers = re.findall(r"\d+", version or "")
    return tuple(int(n) for n in numbers[:2]) if len(numbers) >= 2 else (0, 0)


def stacks_served(found):
    """The stacks a Jupyter with these packages can run, and why not the others."""
    stacks, reasons = [], []
    notebook, tornado = found.get("notebook"), found.get("tornado")
    if (notebook and major_minor(notebook)[0] == 6 and found.get("classic_handlers")
            and found.get("jupyter_http_over_ws") and major_minor(tornado) < (6, 5)):
        stacks.append("classic")
    elif found.get("jupyter_http_over_ws") or (notebook and major_minor(notebook)[0] == 6):
        reasons.append("the classic stack needs notebook 6, jupyter_http_over_ws and tornado "
                       "< 6.5, found notebook %s, tornado %s, jupyter_http_over_ws %s" % (
                           notebook, tornado, found.get("jupyter_http_over_ws")))
    server = found.get("jupyter_server")
    if server and major_minor(server)[0] >= 2:
        stacks.append("modern")
    else:
        reasons.append("no Jupyter Server 2 (found %s)" % (server or "none"))
    return stacks, reasons


def check_jupyter(argv):
    """Which stacks can this jupyter command run (classic: the extension loads;
    modern: a Jupyter Server 2)?"""
    executable = argv[0]
    found = shutil.which(os.path.expanduser(executable))
    if not found:
        return {"path": executable, "ok": False, "stacks": [], "reason": "not found"}
    # A command like "python3 -m jupyter" names its interpreter itself.
    python = found if os.path.basename(found).startswith("python") else interpreter_of(found)
    if not python:
        return {"path": found, "ok": False, "stacks": [],
                "reason": "cannot tell which Python it runs on"}
    try:
        out = subprocess.run([python, "-c", CHECK_STACK], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"path": found, "ok": False, "stacks": [], "reason": str(exc)}
    try:
        versions = json.loads(out.stdout.decode(errors="replace").strip().splitlines()[-1])
    except (ValueError, IndexError):
        last = (out.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]
        return {"path": found, "ok": False, "stacks": [], "reason": last[:200]}
    stacks, reasons = stacks_served(versions)
    return {"path": found, "argv": [found] + list(argv[1:]), "ok": bool(stacks),
            "stacks": stacks, "reason": "; ".join(reasons) if not stacks else "",
            "python": python, "versions": versions}


PYTHON_NAME = re.compile(r"^python3(\.\d+)?$")
PYTHON_DIRS = ("/usr/local/bin", "/usr/bin", "/opt/conda/bin", "~/miniconda3/bin",
               "~/anaconda3/bin", "~/miniforge3/bin", "~/.local/bin")
VERSION_OF = "import sys; print('%d %d' % sys.version_info[:2])"


def other_pythons():
    """Interpreters on this host that could host the server (Python >= 3.8), newest
    first: python3 and python3.N on PATH and in the usual places. Each is run once
    (a pyenv shim can name a version that is not there)."""
    dirs = os.environ.get("PATH", "").split(os.pathsep) + [os.path.expanduser(d)
                                                           for d in PYTHON_DIRS]
    seen, found = set(), []
    for directory in dirs:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            path = os.path.join(directory, name)
            if not PYTHON_NAME.match(name) or not os.access(path, os.X_OK):
                continue
            real = os.path.realpath(path)
            if real in seen or real == os.path.realpath(sys.executable):
                continue
            seen.add(real)
            try:
                out = subprocess.run([path, "-c", VERSION_OF], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, timeout=10, check=False)
                version = tuple(int(v) for v in out.stdout.split()[:2])
            except (OSError, ValueError, subprocess.TimeoutExpired):
                continue
            if out.returncode == 0 and len(version) == 2 and version >= MIN_PYTHON:
                found.append({"path": path, "version": list(version)})
            if len(seen) > 40:  # bounded: a PATH full of pythons is not worth a minute
                break
    found.sort(key=lambda p: p["version"], reverse=True)
    return found


def cmd_probe(args):
    config = json.loads(sys.stdin.readline() or "{}")
    host = config.get("bind_host", "127.0.0.1")
    names = [config["command"]] if config.get("command") else [[c] for c in CANDIDATES]
    candidates = [check_jupyter(n) for n in names] if config.get("check_existing", True) else []
    answer = {
        "python": sys.executable,
        "version": list(sys.version_info[:2]),
        "uid": os.getuid(),
        "user": os.environ.get("USER") or os.environ.get("LOGNAME") or str(os.getuid()),
        "home": os.path.expanduser("~"),
        "base": base_dir(),
        "candidates": candidates,
        "free_ports": [p for p in (int(a) for a in args) if port_free(host, p)],
    }
    if sys.version_info[:2] < MIN_PYTHON and not any(c.get("ok") for c in candidates):
        answer["other_pythons"] = other_pythons()
    emit(answer)


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

    def advance(self, detail, by=1):
        self.done = min(self.total, self.done + by)
        emit({"step": {"task": self.task, "done": self.done, "total": self.total,
                       "detail": detail[:120]}})


def run_step(argv, steps, on_line=None):
    """Run one build command; its output is read for progress, never shown raw.
    Returns None, or an error answer with the output's tail."""
    env = dict(os.environ)
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PIP_PROGRESS_BAR="off",
               PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env)
    except OSError as exc:
        return {"error": "%s: %s" % (os.path.basename(argv[0]), exc), "log": ""}
    tail = []
    for raw in proc.stdout:
        line = raw.decode(errors="replace").rstrip()
        tail = (tail + [line])[-25:]
        if on_line is not None:
            on_line(line, steps)
    if proc.wait() != 0:
        return {"error": "%s exited with status %d" % (" ".join(argv[1:4]), proc.returncode),
                "log": "\n".join(tail)}
    return None


COLLECTING = re.compile(r"^Collecting (\S+?)==(\S+)")


def pip_progress(line, steps):
    match = COLLECTING.match(line)
    if match:
        steps.advance("%s %s" % (match.group(1), match.group(2)))
    elif line.startswith("Installing collected packages"):
        steps.advance("installing")


def write_file(path, text):
    with open(path, "w") as handle:
        handle.write(text)


def build(env, config):
    """venv, then pip (pinned, on its own), then the locked set, with --no-deps."""
    python = os.path.join(env, "bin", "python")
    pip = [python, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check"]
    count = int(config.get("count") or 0)
    steps = Steps(config.get("task") or "installing the Jupyter server", count + 4)
    steps.advance("creating the venv", by=0)
    failed = run_step([sys.executable, "-m", "venv", env], steps)
    if failed:
        return failed
    steps.advance("venv created")
    if config.get("bootstrap"):
        write_file(os.path.join(env, "remote-runtime-pip.txt"), config["bootstrap"])
        failed = run_step(pip + ["-r", os.path.join(env, "remote-runtime-pip.txt")], steps)
        if failed:
            return failed
    steps.advance("pip ready")
    if config.get("lock"):
        lock = os.path.join(env, "remote-runtime-lock.txt")
        write_file(lock, config["lock"])
        failed = run_step(pip + ["--require-hashes", "-r", lock], steps, pip_progress)
    else:  # no tested set for this Python: resolve (the tool said so)
        unpinned = [python, "-m", "pip", "install", "--disable-pip-version-check"]
        failed = run_step(unpinned + list(config["requirements"]), steps, pip_progress)
    if failed:
        return failed
    steps.advance("packages installed", by=steps.total - steps.done - 1)
    if config.get("enable_extension"):
        failed = run_step([os.path.join(env, "bin", "jupyter"), "serverextension", "enable",
                           "--py", "jupyter_http_over_ws", "--sys-prefix"], steps)
        if failed:
            return failed
    steps.advance("ready")
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
