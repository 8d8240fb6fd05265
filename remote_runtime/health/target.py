"""What a health check talks to, and how it fails: shared by `checks` and `extension`."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .. import jupyter, stacks


class Failed(Exception):
    """A check failed; the message is the detail."""


@dataclass
class Target:
    host: str
    port: int
    token: str
    timeout: float
    deadline: float | None  # time.monotonic(); no call may run past it
    last_timeout: float = 0.0  # of the latest call, for "no answer within N s"
    routes: tuple[str, ...] = stacks.ROUTES["classic"]  # the Colab routes it serves

    @property
    def host_header(self) -> str:
        return f"localhost:{self.port}"

    @property
    def url(self) -> str:
        return jupyter.colab_url(self.port, self.token)

    def call_timeout(self) -> float:
        if self.deadline is None:
            self.last_timeout = self.timeout
            return self.timeout
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise Failed("deadline reached before the check could run")
        self.last_timeout = min(self.timeout, remaining)
        return self.last_timeout
