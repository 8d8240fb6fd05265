"""The remote Jupyter server's REST API, reached through the forwarded port.

JSON in and out, the token in an `Authorization` header (never in a URL that
could be logged), one `ServerApiError` for every failure.
"""

from __future__ import annotations

import http.client
import json
from datetime import datetime
from typing import Any


class ServerApiError(Exception):
    """An answer other than 2xx (status > 0), or no answer at all (status 0)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def parse_time(text: str) -> float:
    """A Jupyter timestamp ("2026-01-02T03:04:05.678901Z") as epoch seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class ServerApi:
    def __init__(self, port: int, token: str, *, host: str = "127.0.0.1",
                 timeout: float = 30.0) -> None:
        self.port = port
        self.token = token
        self.host = host
        self.timeout = timeout

    @property
    def base(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def request(self, method: str, path: str, body: Any = None,
                timeout: float | None = None) -> Any:
        """The decoded JSON answer (None for an empty one)."""
        data = None if body is None else json.dumps(body).encode()
        headers = dict(self.headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        connection = http.client.HTTPConnection(self.host, self.port,
                                                timeout=timeout or self.timeout)
        try:
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ServerApiError(0, f"no answer from {self.base}: {exc}") from None
        finally:
            connection.close()
        if not 200 <= response.status < 300:
            raise ServerApiError(response.status, _message(response.status, response.reason,
                                                           raw))
        return json.loads(raw) if raw.strip() else None


def _message(status: int, reason: str, raw: bytes) -> str:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        body = {}
    detail = (body.get("message") or body.get("reason")) if isinstance(body, dict) else None
    return f"HTTP {status}: {detail or reason}"
