"""`python -m sandbox`: keep a sandbox host up for the README demo.

Starts a `Sandbox`, writes a profiles.yaml with one profile for it, says which mode
it used, and stays up until SIGINT/SIGTERM; then removes sshd, relay, proxy and
namespace.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from sandbox import MODES, Sandbox, SandboxError

MODE_NOTES = {
    "netns": "a network namespace is the remote host; its Jupyter binds 127.0.0.1 there",
    "loopback-alias": "no namespaces here; the remote Jupyter binds 127.0.0.2 on this host",
}


def main(argv: list[str] | None = None) -> int:
    """Run the sandbox until a signal; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m sandbox")
    parser.add_argument(
        "--write-profiles",
        type=Path,
        metavar="PATH",
        help="directory (or .yaml file) to write a profiles.yaml into",
    )
    parser.add_argument("--name", default="sandbox", help="profile name (default: sandbox)")
    parser.add_argument("--jupyter-port", type=int, default=None,
                        help="write this port into the profile (default: none, so `up` "
                        "starts at 8888 and takes the next port free on both ends)")
    parser.add_argument("--mode", choices=("auto", *MODES), default="auto")
    parser.add_argument("--workdir", type=Path, help="keep sandbox files here (default: temp)")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Installed before starting, so a signal during startup still reaches the cleanup.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        with Sandbox(args.workdir, mode=args.mode) as sandbox:
            print(f"sandbox mode: {sandbox.mode} ({MODE_NOTES[sandbox.mode]})", flush=True)
            if args.write_profiles:
                written = sandbox.write_profiles(args.write_profiles, args.name, args.jupyter_port)
                print(f"profiles: {written} (profile '{args.name}')", flush=True)
            print("ready; press Ctrl-C to stop and clean up", flush=True)
            stop.wait()
            print("stopping sandbox", flush=True)
    except SandboxError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        print(f"sandbox failed: {exc.message}{hint}", file=sys.stderr)
        if exc.details:
            print(exc.details, file=sys.stderr)
        return int(exc.exit_code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
