"""Which Jupyter can serve Colab here, and the managed env that can."""

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys

from .common import base_dir, emit, port_free

CANDIDATES = ("jupyter", "/opt/conda/bin/jupyter", "~/.local/bin/jupyter")


CHECK_STACK = (
    "import sys, notebook, tornado, jupyter_http_over_ws\n"
    "import notebook.base.handlers\n"
    "v = tuple(int(x) for x in tornado.version.split('.')[:2])\n"
    "ok = notebook.__version__.split('.')[0] == '6' and v < (6, 5)\n"
    "print(notebook.__version__, tornado.version, 'ok' if ok else 'bad')\n"
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


def check_jupyter(argv):
    """Can this jupyter command run the classic server with the extension?"""
    executable = argv[0]
    found = shutil.which(os.path.expanduser(executable))
    if not found:
        return {"path": executable, "ok": False, "reason": "not found"}
    # A command like "python3 -m jupyter" names its interpreter itself.
    python = found if os.path.basename(found).startswith("python") else interpreter_of(found)
    if not python:
        return {"path": found, "ok": False, "reason": "cannot tell which Python it runs on"}
    try:
        out = subprocess.run([python, "-c", CHECK_STACK], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"path": found, "ok": False, "reason": str(exc)}
    words = out.stdout.decode(errors="replace").split()
    if out.returncode != 0 or len(words) != 3:
        last = (out.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]
        return {"path": found, "ok": False, "reason": last[:200]}
    ok = words[2] == "ok"
    reason = "" if ok else "needs notebook 6 and tornado < 6.5, found notebook %s, tornado %s" % (
        words[0], words[1])
    return {"path": found, "argv": [found] + list(argv[1:]), "ok": ok, "reason": reason,
            "python": python,
            "notebook": words[0], "tornado": words[1]}


def cmd_probe(args):
    config = json.loads(sys.stdin.readline() or "{}")
    host = config.get("bind_host", "127.0.0.1")
    names = [config["command"]] if config.get("command") else [[c] for c in CANDIDATES]
    candidates = [check_jupyter(n) for n in names] if config.get("check_existing", True) else []
    managed = managed_dir(stack_requirements(config))
    emit({
        "python": sys.executable,
        "version": list(sys.version_info[:2]),
        "uid": os.getuid(),
        "user": os.environ.get("USER") or os.environ.get("LOGNAME") or str(os.getuid()),
        "home": os.path.expanduser("~"),
        "base": base_dir(),
        "candidates": candidates,
        "managed": os.path.join(managed, "bin", "jupyter") if is_built(managed) else None,
        "free_ports": [p for p in (int(a) for a in args) if port_free(host, p)],
    })


def stack_requirements(config):
    """The package set for this interpreter (Python >= 3.12 needs setuptools too)."""
    extra = config.get("requirements_py312", []) if sys.version_info >= (3, 12) else []
    return list(config.get("requirements", [])) + list(extra)


def managed_dir(requirements):
    digest = hashlib.sha256(json.dumps(sorted(requirements)).encode()).hexdigest()[:12]
    version = "py%d%d" % sys.version_info[:2]
    return os.path.join(base_dir(), "envs", "colab-%s-%s" % (version, digest))


def is_built(env):
    return os.path.exists(os.path.join(env, ".complete"))


def cmd_ensure_managed(args):
    config = json.loads(sys.stdin.readline() or "{}")
    requirements = stack_requirements(config)
    env = managed_dir(requirements)
    os.makedirs(os.path.dirname(env), mode=0o700, exist_ok=True)
    with open(env + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second `up` waits for the first build
        if not is_built(env):
            shutil.rmtree(env, ignore_errors=True)  # a half-built env from a killed run
            steps = [
                ["venv", [sys.executable, "-m", "venv", env]],
                ["pip", [os.path.join(env, "bin", "python"), "-m", "pip", "install",
                         "--disable-pip-version-check", "--progress-bar", "off"] + requirements],
                ["enable", [os.path.join(env, "bin", "jupyter"), "serverextension", "enable",
                            "--py", "jupyter_http_over_ws", "--sys-prefix"]],
            ]
            for name, argv in steps:
                emit({"progress": "%s: %s" % (name, " ".join(argv[-3:]))})
                proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                tail = []
                for raw in proc.stdout:
                    line = raw.decode(errors="replace").rstrip()
                    tail = (tail + [line])[-15:]
                    if line.startswith(("Collecting", "Successfully", "ERROR", "Installing")):
                        emit({"progress": line[:160]})
                if proc.wait() != 0:
                    emit({"error": "%s failed (exit %d)" % (name, proc.returncode),
                          "log": "\n".join(tail)})
                    return 1
            open(os.path.join(env, ".complete"), "w").close()
    emit({"ok": True, "jupyter": os.path.join(env, "bin", "jupyter")})
    return 0
