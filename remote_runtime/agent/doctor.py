"""What `doctor` asks of the remote, besides the probe and the kernel's Python (`kernel`):
can this Python make a venv, is the managed env built, and how much disk is free where it
goes and in the workdir. One JSON line in, one out; nothing is changed."""

import json
import os
import sys

from .build import is_built, managed_dir
from .common import base_dir, emit


def venv_support():
    """Can this interpreter build the managed env (`python -m venv`, which runs ensurepip)?
    Debian and Ubuntu ship both in python3.X-venv, apart from python3 itself."""
    try:
        import venv  # noqa: F401 - only whether it imports
    except ImportError as exc:
        return {"ok": False, "reason": "no venv module (%s)" % exc}
    try:
        import ensurepip
    except ImportError as exc:
        return {"ok": False, "reason": "no ensurepip module (%s)" % exc}
    try:
        pip = ensurepip.version()
    except Exception as exc:  # noqa: BLE001 - any failure means venv would fail the same way
        return {"ok": False, "reason": "ensurepip has no pip to install (%s)" % exc}
    return {"ok": True, "reason": "venv and ensurepip (pip %s)" % pip}


def disk(path):
    path = os.path.expanduser(path)
    try:
        stat = os.statvfs(path)
    except OSError as exc:
        return {"path": path, "error": exc.strerror or str(exc)}
    return {"path": path, "free": stat.f_bavail * stat.f_frsize,
            "total": stat.f_blocks * stat.f_frsize}


def cmd_doctor(args):
    config = json.loads(sys.stdin.readline() or "{}")
    base = base_dir()
    answer = {"python": sys.executable, "venv": venv_support(),
              "disk": {"env": disk(base), "workdir": disk(config.get("workdir") or "~")}}
    name = config.get("env_name")
    if name:
        env = managed_dir(name)
        answer["env"] = {"path": env, "built": is_built(env)}
    emit(answer)
    return 0
