#!/usr/bin/env python3
"""Cold and warm `up` times per remote Python, on the sandbox host (needs root).

For each CPython 3.8+ under ~/.pyenv/versions (or --python 3.X ...), a fresh sandbox
host (a real sshd in a network namespace; pip reaches PyPI through the sandbox's
CONNECT proxy) with a fresh remote cache dir (XDG_CACHE_HOME of the remote sessions:
no managed env, no pip cache) is brought up with the profile's jupyter.python set to
that interpreter, then:

- cold: `up` until healthy (the URL would be printed), on that empty cache: venv,
  pinned pip, the locked stack, the server, every health check through the tunnel;
- warm: torn down, then `up` again on the same cache (the env is reused).

Each `up` runs through the Python API (the code the CLI runs) and is torn down
before the next. The remote keeps this machine's root pip configuration (extra
indexes, find-links, constraints), as a realistic remote would. Prints a Markdown
table; phases come from the progress messages.

    sudo python3 scripts/bench_up.py                    # every Python, the default stack
    sudo python3 scripts/bench_up.py --python 3.8 --stack modern
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from support.remote import sandbox_profile, write_profiles  # noqa: E402

from remote_runtime import api  # noqa: E402
from remote_runtime.options import Step  # noqa: E402
from sandbox import Sandbox  # noqa: E402

PYENV = Path.home() / ".pyenv" / "versions"
PORT = 20980  # in issue 8's test range; the bench never runs beside the tests


def interpreters(wanted: list[str]) -> list[tuple[str, Path]]:
    found = []
    for version_dir in sorted(PYENV.iterdir(), key=lambda p: [int(x) for x in
                                                              re.findall(r"\d+", p.name)]):
        match = re.fullmatch(r"3\.(\d+)\.\d+", version_dir.name)
        if not match or int(match.group(1)) < 8:
            continue
        minor = f"3.{match.group(1)}"
        if not wanted or minor in wanted:
            found.append((version_dir.name, version_dir / "bin" / f"python{minor}"))
    return found


def timed_up(profiles: Path, marks: dict[str, float]) -> tuple[float, str]:
    started = time.monotonic()

    def progress(message: str) -> None:
        text = str(message)
        now = time.monotonic() - started
        if text.startswith("building it"):
            marks.setdefault("build", now)
        elif text.startswith("starting Jupyter"):
            marks.setdefault("server", now)
        elif isinstance(message, Step):  # the build's phases, by the step that starts each
            for phase in ("upgrading pip", "downloading", "installing", "enabling", "ready"):
                if message.detail.startswith(phase):
                    marks.setdefault(phase, now)

    with api.up("sb", profiles=profiles, port=PORT, timeout=900, progress=progress) as info:
        elapsed = time.monotonic() - started
        stack = info.stack
    return elapsed, stack


def bench(version: str, python: Path, stack: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="rr-bench-up-") as tmp:
        work = Path(tmp)
        os.environ["XDG_STATE_HOME"] = str(work / "state")  # this run's state records
        with Sandbox(work / "box", mode="netns", remote_cache_dir=work / "cache") as box:
            body = sandbox_profile(box, "sb", PORT, jupyter={"python": str(python),
                                                              "stack": stack})
            profiles = write_profiles(work / "profiles.yaml", {"sb": body})
            cold_marks: dict[str, float] = {}
            cold, chosen = timed_up(profiles, cold_marks)
            warm, _ = timed_up(profiles, {})
    install = cold_marks.get("server", 0.0) - cold_marks.get("build", 0.0)
    order = ["build", "upgrading pip", "downloading", "installing", "enabling", "ready",
             "server"]
    seen = [(name, cold_marks[name]) for name in order if name in cold_marks]
    phases = ", ".join(f"{a}->{b} {tb - ta:.1f}s" for (a, ta), (b, tb) in itertools.pairwise(seen))
    return {"version": version, "stack": chosen, "cold": cold, "warm": warm,
            "install": install, "phases": phases}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", action="append", default=[], help="3.X; repeatable")
    parser.add_argument("--stack", default="auto", choices=("auto", "classic", "modern"))
    args = parser.parse_args()
    rows = []
    for version, python in interpreters(args.python):
        row = bench(version, python, args.stack)
        rows.append(row)
        print(f"{version}: cold {row['cold']:.1f} s (install {row['install']:.1f} s), "
              f"warm {row['warm']:.1f} s, {row['stack']} stack ({row['phases']})",
              file=sys.stderr, flush=True)
    print("| remote Python | stack | cold `up` | of which env build | warm `up` |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['version']} | {row['stack']} | {row['cold']:.1f} s | "
              f"{row['install']:.1f} s | {row['warm']:.1f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
