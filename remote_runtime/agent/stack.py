"""Which Jupyter can serve Colab here, and the managed env that can."""

import glob
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
    elif notebook or found.get("jupyter_http_over_ws"):
        reasons.append("the classic stack needs notebook 6, jupyter_http_over_ws and tornado "
                       "< 6.5, found notebook %s, tornado %s, jupyter_http_over_ws %s" % (
                           notebook, tornado, found.get("jupyter_http_over_ws")))
    else:
        reasons.append("no classic notebook with jupyter_http_over_ws")
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
    first: python3 and python3.N on PATH, in the usual places and in pyenv's versions
    (by their real paths: a pyenv shim runs whichever version pyenv selects). Each is
    run once, to be sure."""
    path = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not d.rstrip("/").endswith("/shims")]
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    dirs = path + [os.path.expanduser(d) for d in PYTHON_DIRS] + sorted(
        glob.glob(os.path.join(pyenv, "versions", "*", "bin")))
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
