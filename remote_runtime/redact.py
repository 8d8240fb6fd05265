"""Keeping tokens out of everything shown or logged: one place that hides them."""

from __future__ import annotations

import re

HIDDEN = "<hidden>"
# `token=T`, `token: T`, `--token T`, `JUPYTER_TOKEN=T`, `?token=T` in text we did not write.
_TOKEN_VALUE = re.compile(r"(token(?:=|:\s*|\s+))([^\s&'\"]+)", re.IGNORECASE)


def text(value: str, *secrets: str) -> str:
    """`value` with every occurrence of each (non-empty) secret replaced by <hidden>."""
    for secret in secrets:
        if secret:
            value = value.replace(secret, HIDDEN)
    return value


def url(value: str) -> str:
    """A runtime URL with its token hidden (`http://localhost:P/?token=<hidden>`)."""
    head, sep, _token = value.partition("?token=")
    return f"{head}{sep}{HIDDEN}" if sep else value


def tokens(value: str) -> str:
    """`value` (another program's command line, say) with what follows `token` hidden,
    for secrets we do not know: `--NotebookApp.token=T`, `?token=T`, `JUPYTER_TOKEN=T`."""
    return _TOKEN_VALUE.sub(lambda m: m.group(1) + HIDDEN, value)
