"""What callers pass down through the layers: a progress callback and the options of `up`.

`UpOptions` is built once (by the CLI, the Python API, or from a supervisor's
argument) and handed as one value to the runtime, the supervisor and the API,
instead of the same three parameters declared at every layer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

# A progress callback: one short human line at a time ("starting instance ...").
Progress = Callable[[str], None]


class Step(str):
    """A progress message that is one step of a counted task (an install: 12 of 86).

    It is a `str` ("installing ...: 12/86 tornado 6.4.2"), so any progress callback can
    print it; the CLI draws the steps of one task as a single updating bar instead.
    """

    task: str
    done: int
    total: int
    detail: str

    def __new__(cls, task: str, done: int, total: int, detail: str = "") -> Step:
        text = f"{task}: {done}/{total}" + (f" {detail}" if detail else "")
        step = super().__new__(cls, text)
        step.task, step.done, step.total, step.detail = task, done, total, detail
        return step

    @property
    def finished(self) -> bool:
        return self.done >= self.total

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "done": self.done, "total": self.total,
                "detail": self.detail}

DEFAULT_TIMEOUT = 180.0


def quiet(_: str) -> None:
    """A progress callback that says nothing."""


@dataclass(frozen=True)
class UpOptions:
    """How to bring a runtime up, beyond what its profile says."""

    port: int | None = None  # the port on both ends; None: the profile's (or the next free)
    timeout: float = DEFAULT_TIMEOUT  # seconds until the runtime must be healthy
    accept_new_host_key: bool = False  # record an unknown host key (never a changed one)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> UpOptions:
        data: dict[str, Any] = json.loads(text)
        return cls(
            port=None if data.get("port") is None else int(data["port"]),
            timeout=float(data.get("timeout", DEFAULT_TIMEOUT)),
            accept_new_host_key=bool(data.get("accept_new_host_key", False)),
        )
