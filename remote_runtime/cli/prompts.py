"""The terminal as the SSH login's `Prompter`: passphrases, one-time codes, passwords.

Used only when stdin is a terminal; hidden answers go through getpass (which
reads /dev/tty), prompts and server text go to stderr so stdout stays clean
for `--json`.
"""

from __future__ import annotations

import getpass
import sys

from ..ssh import Prompter


class TerminalPrompter:
    """Asks on the controlling terminal."""

    def ask(self, prompt: str, *, echo: bool) -> str:
        if not echo:
            return getpass.getpass(prompt, stream=sys.stderr)
        sys.stderr.write(prompt)
        sys.stderr.flush()
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")

    def show(self, text: str) -> None:
        sys.stderr.write(text.rstrip("\n") + "\n")
        sys.stderr.flush()


def terminal_prompter() -> Prompter | None:
    """A prompter when a person is at a terminal, else None (CI, pipes, cron)."""
    return TerminalPrompter() if sys.stdin.isatty() else None
