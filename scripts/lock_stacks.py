#!/usr/bin/env python3
"""Resolve the managed env's version sets (remote_runtime/locks/STACK-pyXY.txt).

For each Python (default: every CPython 3.8+ under ~/.pyenv/versions) and each stack
(classic, modern), this:
1. makes a fresh venv with that interpreter, with NO pip configuration (PIP_CONFIG_FILE
   is os.devnull and every PIP_* variable is dropped), so only PyPI is seen;
2. upgrades pip there to the newest release for that Python (pinned in the lock too);
3. installs the stack's requirements (remote_runtime.stacks.REQUIREMENTS) for real,
   with `--report`, and smoke-tests the result (imports, `jupyter ... --version`);
4. pins every installed distribution, with the sha256 of every file of that version
   that this Python could install (the sdist, pure-Python wheels, and this version's
   or older abi3 wheels for every platform, so any platform's pip finds a match), read
   from PyPI's JSON simple API: the same index pages pip reads when it resolves;
5. writes the lock, which the remote installs with `pip install --no-deps`.

A stack that cannot be installed or fails its smoke test on a Python gets no lock
there (the tool then picks the modern stack, or says why it cannot).

    python3 scripts/lock_stacks.py                       # every Python, both stacks
    python3 scripts/lock_stacks.py --python 3.12 --stack modern
    python3 scripts/lock_stacks.py --check               # are the locks complete?
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request
from functools import cache
from pathlib import Path

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from remote_runtime import stacks  # noqa: E402

LOCKS = ROOT / "remote_runtime" / "locks"
PYENV = Path.home() / ".pyenv" / "versions"
INDEX = "https://pypi.org/simple"
SMOKE = {
    "classic": "import notebook.notebookapp, notebook.base.handlers, jupyter_http_over_ws, "
    "ipykernel, tornado; assert tornado.version_info < (6, 5)",
    "modern": "import jupyter_server.serverapp, ipykernel; "
    "assert int(jupyter_server.__version__.split('.')[0]) >= 2",
}
SERVER = {"classic": "notebook", "modern": "server"}


def clean_env() -> dict[str, str]:
    """This process's environment without any pip configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1",
               PYTHONNOUSERSITE="1")
    return env


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, env=clean_env(),
                          timeout=1200, check=False, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def interpreters(wanted: list[str]) -> list[Path]:
    """python3.X executables of pyenv's CPython versions >= 3.8 (or those asked for)."""
    found = []
    for version_dir in sorted(PYENV.iterdir()):
        match = re.fullmatch(r"3\.(\d+)\.\d+", version_dir.name)
        if not match or (3, int(match.group(1))) < stacks.MIN_PYTHON:
            continue
        minor = f"3.{match.group(1)}"
        if wanted and minor not in wanted and version_dir.name not in wanted:
            continue
        found.append(version_dir / "bin" / f"python{minor}")
    found += [Path(w) for w in wanted if "/" in w]
    return found


def minor_of(python: Path) -> tuple[int, int]:
    out = run([str(python), "-c", "import sys; print(*sys.version_info[:2])"]).stdout.split()
    return int(out[0]), int(out[1])


@cache
def index_files(name: str) -> list[dict[str, object]]:
    """Every file PyPI lists for a project (PEP 691 JSON)."""
    request = urllib.request.Request(
        f"{INDEX}/{canonicalize_name(name)}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return list(json.load(answer)["files"])


def file_version(filename: str) -> Version | None:
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[1]
        return parse_sdist_filename(filename)[1]
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None


def usable_on(filename: str, minor: tuple[int, int]) -> bool:
    """Could a CPython of this minor version (on any platform) install this file?
    Sdists: yes. Wheels: pure Python 3, this version's own, or abi3 of an older one."""
    if not filename.endswith(".whl"):
        return True
    for tag in parse_wheel_filename(filename)[3]:
        interpreter, abi = tag.interpreter, tag.abi
        if interpreter.startswith("py3") or interpreter == "py2.py3":
            return True
        if interpreter == f"cp{minor[0]}{minor[1]}" and abi != "abi3":
            return True
        if abi == "abi3" and interpreter.startswith("cp3") and (3, int(interpreter[3:])) <= minor:
            return True
    return False


def hashes(name: str, version: str, minor: tuple[int, int]) -> list[str]:
    """sha256 of every file of name==version that this Python could install."""
    wanted = Version(version)
    found = sorted({
        str(f["hashes"]["sha256"])  # type: ignore[index]
        for f in index_files(name)
        if file_version(str(f["filename"])) == wanted and not f.get("yanked")
        and usable_on(str(f["filename"]), minor)
    })
    if not found:
        raise RuntimeError(f"PyPI lists no files for {name}=={version}")
    return found


def resolve(python: Path, stack: str, minor: tuple[int, int], work: Path) -> tuple[str, str, list]:
    """Install the stack into a fresh venv with no pip config; return
    (exact Python version, pip version, [(name, version)])."""
    env = work / "env"
    run([str(python), "-m", "venv", str(env)])
    py = str(env / "bin" / "python")
    run([py, "-m", "pip", "install", "--upgrade", "pip"])
    pip_version = run([py, "-c", "import pip; print(pip.__version__)"]).stdout.strip()
    report = work / "report.json"
    run([py, "-m", "pip", "install", "--ignore-installed", "--report", str(report),
         *stacks.requirements(stack, minor)])
    run([py, "-c", SMOKE[stack]])
    run([str(env / "bin" / "jupyter"), SERVER[stack], "--version"])
    full = run([py, "-c", "import platform; print(platform.python_version())"]).stdout.strip()
    installed = json.loads(report.read_text())["install"]
    pins = sorted({(str(item["metadata"]["name"]), str(item["metadata"]["version"]))
                   for item in installed}, key=lambda p: canonicalize_name(p[0]))
    pins = [p for p in pins if canonicalize_name(p[0]) != "pip"]
    return full, pip_version, [("pip", pip_version), *pins]


def render(stack: str, minor: tuple[int, int], full: str, pip_version: str,
           pins: list[tuple[str, str]]) -> str:
    today = datetime.date.today().isoformat()
    lines = [
        f"# remote-runtime managed Jupyter: the {stack} stack on Python {minor[0]}.{minor[1]}.",
        "# Generated by scripts/lock_stacks.py; do not edit. Installed on the remote with",
        "# `pip install --no-deps --require-hashes -r` (pip first, on its own).",
        f"# From: {' '.join(stacks.requirements(stack, minor))}",
        f"# Resolved on CPython {full} with pip {pip_version}, no pip configuration, "
        f"PyPI as of {today}.",
    ]
    for name, version in pins:
        entry = [f"{canonicalize_name(name)}=={version}"]
        entry += [f"    --hash=sha256:{digest}" for digest in hashes(name, version, minor)]
        lines.append(" \\\n".join(entry))
    return "\n".join(lines) + "\n"


def lock_one(python: Path, stack: str) -> str:
    minor = minor_of(python)
    with tempfile.TemporaryDirectory(prefix="rr-lock-") as tmp:
        full, pip_version, pins = resolve(python, stack, minor, Path(tmp))
    text = render(stack, minor, full, pip_version, pins)
    path = LOCKS / stacks.lock_name(stack, minor)
    path.write_text(text)
    return f"{path.relative_to(ROOT)}: {len(pins)} packages (CPython {full}, pip {pip_version})"


def check() -> int:
    """Every lock pins every package with hashes; say which Pythons have which stack."""
    problems = 0
    for path in sorted(LOCKS.glob("*.txt")):
        match = re.fullmatch(r"(\w+)-py3(\d+)\.txt", path.name)
        assert match, path
        lock = stacks.Lock(match.group(1), (3, int(match.group(2))), path.read_text())
        pip, rest = lock.split()
        entries = [b for b in (pip + rest).split("\n") if b and not b.startswith(" ")]
        unhashed = [e for e in entries if not e.rstrip().endswith("\\")]
        if not pip or unhashed:
            problems += 1
            print(f"{path.name}: missing pip pin or hashes: {unhashed[:3]}")
        print(f"{path.name}: {len(lock.pins)} pins")
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", action="append", default=[],
                        help="3.X (a pyenv version) or a path to an interpreter; repeatable")
    parser.add_argument("--stack", action="append", choices=stacks.STACKS, default=[])
    parser.add_argument("--check", action="store_true", help="only check the shipped locks")
    args = parser.parse_args()
    if args.check:
        return check()
    LOCKS.mkdir(exist_ok=True)
    failures = 0
    for python in interpreters(args.python):
        for stack in args.stack or stacks.STACKS:
            try:
                print(lock_one(python, stack), flush=True)
            except (RuntimeError, OSError) as exc:
                failures += 1
                print(f"{python} {stack}: NO LOCK: {str(exc)[-1500:]}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
