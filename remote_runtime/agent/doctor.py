"""What `doctor` asks of the remote, besides the probe: can this Python make a venv, is
the managed env built, how much disk is free where it goes and in the workdir, and has
the kernel's Python ipykernel. One JSON line in, one out; nothing is changed."""

import json
import os
import subprocess
import sys

from .build import is_built, managed_dir
from .common import base_dir, emit

# Run by the kernel's Python (any version): which one it is, and its ipykernel.
KERNEL_CHECK = (
    "import json, sys\n"
    "try:\n"
    "    import ipykernel\n"
    "    found = str(getattr(ipykernel, '__version__', '?'))\n"
    "except Exception as exc:\n"
    "    found = None\n"
    "print(json.dumps({'executable': sys.executable, 'ipykernel': found,\n"
    "                  'version': '%d.%d.%d' % tuple(sys.version_info[:3])}))\n"
)


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


def kernel_facts(python):
    """The kernel's interpreter and its ipykernel, run as the kernel would run it."""
    try:
        out = subprocess.run([os.path.expanduser(python), "-c", KERNEL_CHECK],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60,
                             check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"python": python, "error": str(exc)}
    try:
        found = json.loads(out.stdout.decode(errors="replace").strip().splitlines()[-1])
    except (ValueError, IndexError):
        last = (out.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]
        return {"python": python, "error": last[:200]}
    found["python"] = python
    return found


def cmd_doctor(args):
    config = json.loads(sys.stdin.readline() or "{}")
    base = base_dir()
    answer = {"python": sys.executable, "venv": venv_support(),
              "disk": {"env": disk(base), "workdir": disk(config.get("workdir") or "~")}}
    name = config.get("env_name")
    if name:
        env = managed_dir(name)
        answer["env"] = {"path": env, "built": is_built(env)}
    if config.get("kernel_python"):
        answer["kernel"] = kernel_facts(config["kernel_python"])
    emit(answer)
    return 0
