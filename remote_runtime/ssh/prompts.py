"""Questions the SSH login may need to ask a person: passphrases, one-time codes, passwords.

The `ssh` package never touches a terminal itself: the caller hands it a
`Prompter` (the CLI's terminal, or a detached supervisor relaying to the
`up --detach` that started it) or None, when nobody can answer (CI, a
background reconnect). Server-sent text is shown as the server sent it, with
only control characters made visible, as OpenSSH does.
"""

from __future__ import annotations

from typing import Protocol


class Prompter(Protocol):
    """Someone at a terminal."""

    def ask(self, prompt: str, *, echo: bool) -> str:
        """Show `prompt` and return the answer typed (hidden unless `echo`).

        Raises KeyboardInterrupt or EOFError when the person gives up.
        """

    def show(self, text: str) -> None:
        """Show a message (a keyboard-interactive name or instruction) as is."""


def visible(text: str) -> str:
    """Server text made safe for a terminal: control characters (escape sequences
    that could rewrite the screen) shown as \\xNN; newlines and tabs kept."""
    out = []
    for ch in text:
        if ch in "\n\t" or (ord(ch) >= 32 and ord(ch) != 127):
            out.append(ch)
        elif ch == "\r":
            continue
        else:
            out.append(f"\\x{ord(ch):02x}")
    return "".join(out)
