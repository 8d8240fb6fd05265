"""How often the tool connects the way OpenSSH would, over tests/support/ssh_cases.py.

For every case (a small ~/.ssh/config in a temporary HOME) OpenSSH itself is the
reference: `ssh -G` for hostname, port, user, proxy route and known_hosts files,
and a real `ssh -v` for the identity files it loads (tokens expanded by OpenSSH).
Compared, as the issue measured them: the resolver on main before issue 9 (paramiko's
SSHConfig; read from git), and today's resolver through both of its sources (the
fallback reader, and `ssh -G`).

    python3 scripts/ssh_agreement.py [--base main] [-v]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.openssh import install_wrapper  # noqa: E402
from support.ssh_cases import CASES, FIELDS, Case, endpoint_for, reference  # noqa: E402

from remote_runtime.errors import SSHError  # noqa: E402
from remote_runtime.ssh import config as new_config  # noqa: E402
from remote_runtime.ssh import resolver, tokens  # noqa: E402


def old_resolver(base: str) -> types.ModuleType:
    """ssh/config.py as it was on `base`, importable on its own."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{base}:remote_runtime/ssh/config.py"],
        capture_output=True, text=True, check=True).stdout
    source = (source.replace("from .. import paths", "from remote_runtime import paths")
              .replace("from ..errors import", "from remote_runtime.errors import")
              .replace("from .endpoint import", "from remote_runtime.ssh.endpoint import"))
    module = types.ModuleType("old_ssh_config")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{base}:remote_runtime/ssh/config.py", "exec"), module.__dict__)
    return module


def from_old(module: types.ModuleType, case: Case) -> dict[str, Any]:
    target = module.resolve(endpoint_for(case))
    jump = target.proxy_jump
    return {
        "hostname": target.hostname, "port": target.port, "user": target.user,
        "identity files": [str(p) for p in target.identity_files],
        "proxy route": (target.proxy_command, jump),
        "known_hosts": [str(p) for p in target.known_hosts],
    }


def from_new(case: Case, *, fallback: bool) -> dict[str, Any]:
    endpoint = endpoint_for(case)
    target = new_config.resolve(endpoint, force_fallback=fallback)
    jump = resolver.resolve_host(case.host, new_config._profile_options(endpoint),
                                 force_fallback=fallback).get("proxyjump")
    return {
        "hostname": target.hostname, "port": target.port, "user": target.user,
        "identity files": [str(p) for p in target.identity_files],
        "proxy route": (target.proxy_command, jump),
        "known_hosts": [str(p) for p in target.known_hosts],
    }


def is_default(field: str, value: object, home: Path) -> bool:
    if field == "identity files":
        return value == [str(home / ".ssh" / n) for n in ("id_rsa", "id_ecdsa", "id_ecdsa_sk",
                                                          "id_ed25519", "id_ed25519_sk",
                                                          "id_xmss", "id_dsa")]
    if field == "known_hosts":
        return value == [str(home / ".ssh" / "known_hosts"), str(home / ".ssh" / "known_hosts2")]
    return False


def prepare(case: Case, root: Path) -> tuple[Path, Path]:
    home = Path(tempfile.mkdtemp(dir=root))
    (home / ".ssh").mkdir(mode=0o700)
    text = case.config.replace("{HOME}", str(home)).replace("{LOCALUSER}", tokens.local_user())
    (home / ".ssh" / "config").write_text(text)
    for relative, content in case.files.items():
        path = home / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    wrapper = install_wrapper(home, home / "bin")
    return home, wrapper


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="main", help="git revision of the old resolver")
    parser.add_argument("-v", "--verbose", action="store_true", help="show each difference")
    args = parser.parse_args()
    old = old_resolver(args.base)
    totals = {"old": 0, "fallback": 0, "ssh -G": 0}
    lenient = dict.fromkeys(totals, 0)
    misses: dict[str, dict[str, int]] = {name: dict.fromkeys(FIELDS, 0) for name in totals}
    saved = dict(os.environ)
    with tempfile.TemporaryDirectory() as scratch:
        for case in CASES:
            home, wrapper = prepare(case, Path(scratch))
            os.environ.update(case.env, HOME=str(home),
                              PATH=f"{wrapper.parent}{os.pathsep}{saved['PATH']}")
            try:
                expected = reference(case, wrapper)
                for name, get in (("old", lambda c: from_old(old, c)),
                                  ("fallback", lambda c: from_new(c, fallback=True)),
                                  ("ssh -G", lambda c: from_new(c, fallback=False))):
                    try:
                        got = get(case)
                    except (SSHError, ValueError, KeyError, RecursionError) as exc:
                        got = {"error": f"{type(exc).__name__}: {exc}"}
                    if expected is None:
                        agree = "error" in got
                        wrong = [] if agree else ["error"]
                    else:
                        wrong = [f for f in FIELDS if got.get(f) != expected[f]]
                        agree = not wrong
                    totals[name] += agree
                    # The same, not counting OpenSSH's default lists (id_* files,
                    # known_hosts2) where the config names none.
                    lenient[name] += agree or (expected is not None and not [
                        f for f in wrong if not is_default(f, expected[f], home)])
                    for field in wrong:
                        if field in misses[name]:
                            misses[name][field] += 1
                    if args.verbose and not agree:
                        print(f"{case.name} [{name}]:", {f: (expected or {}).get(f) for f in wrong},
                              "got", {f: got.get(f) for f in wrong} if "error" not in got
                              else got["error"])
            finally:
                os.environ.clear()
                os.environ.update(saved)
    count = len(CASES)
    print(f"{count} configurations, compared with OpenSSH ({', '.join(FIELDS)}):")
    for name, agreed in totals.items():
        label = {"old": f"before issue 9 ({args.base})", "fallback": "fallback reader",
                 "ssh -G": "ssh -G resolver"}[name]
        worst = ", ".join(f"{f} {n}" for f, n in misses[name].items() if n)
        print(f"  {label:<28} {agreed}/{count} agree; {lenient[name]}/{count} not counting "
              "default id_*/known_hosts2 lists" + (f"  (differ: {worst})" if worst else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
