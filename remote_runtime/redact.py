"""Keeping tokens out of everything shown or logged: one place that hides them."""

from __future__ import annotations

HIDDEN = "<hidden>"


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
