"""A mini Colab frontend: speaks jupyter_http_over_ws the way the Colab page does.

Protocol (jupyter_http_over_ws 0.0.8, handlers.py):
- `/http_over_websocket?min_version=0.0.7&jupyter_http_over_ws_auth_url=<url>`:
  every text message is one HTTP request as JSON
  `{"message_id", "method", "path", "headers", "body_base64"}`. The extension
  GETs the auth URL (`http://localhost:P/?token=T`) from itself, copies the
  Set-Cookie answers into a Cookie header, and re-issues the request to
  `http://<Host header><path>`, adding `_xsrf` for POST/PUT/PATCH/DELETE.
  Answers stream back as `{"message_id", "status", "statusText", "headers",
  "data" (base64), "done"}`; status and headers come on the first chunk, the
  last has done=true. Errors of the proxy itself are `{"status": 500,
  "statusText", "done": true}`.
- `/http_over_websocket/proxied_ws/<path>?jupyter_http_over_ws_auth_url=<url>`
  relays a websocket to `ws://<Host header>/<path>` with the same cookies.
- Only the Origin is checked on the websocket handshakes themselves; the token
  matters through the auth URL.

`DirectClient` is Colab's newer direct route (2025+), the only one a modern Jupyter
Server serves: plain HTTP from the Colab origin with the token, a CORS preflight
before anything a browser would preflight (checked the way a browser checks it),
and the kernel's websocket opened straight at `/api/kernels/<id>/channels`.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import time
import urllib.parse
import uuid
from contextlib import ExitStack
from typing import Any

import websocket

from remote_runtime import health, jupyter

MIN_VERSION = "0.0.7"


class ColabError(Exception):
    pass


class _Kernels:
    """Kernels started and shut down over the REST API, through a route's `request`."""

    def request(self, method: str, path: str,
                body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError

    def start_kernel(self, name: str = "python3") -> str:
        status, _, body = self.request("POST", "/api/kernels", json.dumps({"name": name}).encode())
        if status != 201:
            raise ColabError(f"POST /api/kernels answered {status}: {body[:200]!r}")
        return str(json.loads(body)["id"])

    def shutdown_kernel(self, kernel_id: str) -> None:
        status, _, body = self.request("DELETE", f"/api/kernels/{kernel_id}")
        if status != 204:
            raise ColabError(f"DELETE /api/kernels/{kernel_id} answered {status}: {body[:200]!r}")


class ColabClient(_Kernels):
    def __init__(self, port: int, token: str, *, host: str = "127.0.0.1", timeout: float = 10.0,
                 origin: str = jupyter.COLAB_ORIGIN):
        self.port = port
        self.token = token
        self.host = host
        self.timeout = timeout
        self.origin = origin  # the page's origin, on every websocket handshake
        self._ids = itertools.count(1)
        self._stack = ExitStack()
        self._http_ws: websocket.WebSocket | None = None
        self._session = uuid.uuid4().hex

    # -- plumbing ----------------------------------------------------------

    def _auth_query(self) -> str:
        auth_url = jupyter.colab_url(self.port, self.token)
        return "jupyter_http_over_ws_auth_url=" + urllib.parse.quote(auth_url, safe="")

    def _open(self, path: str, stack: ExitStack) -> websocket.WebSocket:
        return stack.enter_context(
            health.open_websocket(self.host, self.port, path, self.timeout, origin=self.origin))

    def __enter__(self) -> ColabClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http_ws = None
        self._stack.close()

    # -- the API -----------------------------------------------------------

    def diagnose(self) -> dict[str, Any]:
        with ExitStack() as stack:
            ws = self._open(f"/http_over_websocket/diagnose?min_version={MIN_VERSION}", stack)
            ws.send("diagnose-1")
            answer: dict[str, Any] = json.loads(ws.recv())
            return answer

    def request(
        self, method: str, path: str, body: bytes | None = None, timeout: float | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request proxied through the extension's websocket."""
        if self._http_ws is None:
            self._http_ws = self._open(
                f"/http_over_websocket?min_version={MIN_VERSION}&{self._auth_query()}",
                self._stack,
            )
        ws = self._http_ws
        message_id = f"req-{next(self._ids)}"
        message: dict[str, Any] = {
            "message_id": message_id,
            "method": method,
            "path": path,
            "headers": {"Content-Type": "application/json"} if body is not None else {},
        }
        if body is not None:
            message["body_base64"] = base64.b64encode(body).decode()
        ws.send(json.dumps(message))
        deadline = time.monotonic() + (timeout or self.timeout)
        status: int | None = None
        headers: dict[str, str] = {}
        data = bytearray()
        while True:
            ws.settimeout(_remaining(deadline, f"{method} {path}"))
            reply = json.loads(ws.recv())
            if reply.get("message_id") not in (message_id, None):
                continue
            if "status" in reply:
                status = int(reply["status"])
                headers.update(reply.get("headers") or {})
            if reply.get("data"):
                data += base64.b64decode(reply["data"])
            if reply.get("done"):
                break
        if status is None:
            raise ColabError(f"{method} {path}: the extension sent no status")
        return status, headers, bytes(data)

    def execute(self, kernel_id: str, code: str, timeout: float = 30) -> str:
        """Run `code` through the proxied kernel channel; return its stdout
        (and the text of an execute_result, as a notebook cell would show it)."""
        deadline = time.monotonic() + timeout
        path = (
            f"/http_over_websocket/proxied_ws/api/kernels/{kernel_id}/channels"
            f"?session_id={self._session}&{self._auth_query()}"
        )
        with ExitStack() as stack:
            ws = self._open(path, stack)
            return run_code(ws, self._session, code, deadline)


def run_code(ws: websocket.WebSocket, session: str, code: str, deadline: float) -> str:
    """Send one execute_request on a kernel channels websocket; return its stdout (and
    the text of an execute_result, as a notebook cell would show it)."""
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps(_execute_request(session, msg_id, code)))
    out: list[str] = []
    while True:
        ws.settimeout(_remaining(deadline, "execute"))
        raw = ws.recv()
        if not isinstance(raw, str):
            continue  # binary frames carry buffers, not output
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if msg.get("channel") != "iopub":
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream" and content.get("name") == "stdout":
            out.append(content["text"])
        elif kind == "execute_result":
            out.append(content["data"].get("text/plain", "") + "\n")
        elif kind == "error":
            raise ColabError(f"{content['ename']}: {content['evalue']}")
        elif kind == "status" and content.get("execution_state") == "idle":
            return "".join(out)


def _execute_request(session: str, msg_id: str, code: str) -> dict[str, Any]:
    return {
        "header": {
            "msg_id": msg_id,
            "username": "colab",
            "session": session,
            "msg_type": "execute_request",
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
        "channel": "shell",
        "buffers": [],
    }


class DirectClient(_Kernels):
    """Colab's direct route: CORS requests from `origin` with the token, checked as a
    browser checks them (a missing grant is a ColabError: the browser would block)."""

    def __init__(self, port: int, token: str, *, host: str = "127.0.0.1",
                 origin: str = jupyter.COLAB_ORIGIN, timeout: float = 10.0):
        self.port = port
        self.token = token
        self.host = host
        self.origin = origin
        self.timeout = timeout
        self._session = uuid.uuid4().hex

    def __enter__(self) -> DirectClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def raw(self, method: str, path: str, headers: dict[str, str],
            body: bytes | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
        """One request from the page's origin, nothing checked."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=body, headers={
                "Host": f"localhost:{self.port}", "Origin": self.origin, **headers})
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        finally:
            conn.close()

    def _granted(self, headers: http.client.HTTPMessage, what: str) -> None:
        allowed = headers.get("Access-Control-Allow-Origin")
        if allowed != self.origin:
            raise ColabError(f"{what}: Access-Control-Allow-Origin is {allowed!r}, "
                             f"not {self.origin}: the browser blocks it")
        if (headers.get("Access-Control-Allow-Credentials") or "").lower() != "true":
            raise ColabError(f"{what}: no Access-Control-Allow-Credentials: the browser "
                             "blocks it")

    def preflight(self, method: str, path: str) -> http.client.HTTPMessage:
        """The browser's OPTIONS before a request with the Authorization header."""
        status, headers, _ = self.raw("OPTIONS", path, {
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization,content-type",
            "Access-Control-Request-Private-Network": "true",
        })
        what = f"preflight of {method} {path} from {self.origin}"
        if not 200 <= status < 300:
            raise ColabError(f"{what} answered {status}")
        self._granted(headers, what)
        if (headers.get("Access-Control-Allow-Private-Network") or "").lower() != "true":
            raise ColabError(f"{what}: no Access-Control-Allow-Private-Network")
        methods = (headers.get("Access-Control-Allow-Methods") or "").upper()
        if method not in [m.strip() for m in methods.split(",")]:
            raise ColabError(f"{what}: {method} is not among the allowed methods {methods!r}")
        return headers

    def request(self, method: str, path: str,
                body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        """One request as the Colab page sends it: preflighted, with the token."""
        self.preflight(method, path)
        headers = {"Authorization": f"token {self.token}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        status, answer, data = self.raw(method, path, headers, body)
        self._granted(answer, f"{method} {path} from {self.origin}")
        return status, dict(answer.items()), data

    def execute(self, kernel_id: str, code: str, timeout: float = 30) -> str:
        """Run `code` over the kernel's own websocket, opened from the Colab origin."""
        deadline = time.monotonic() + timeout
        path = (f"/api/kernels/{kernel_id}/channels?session_id={self._session}"
                f"&token={self.token}")
        with health.open_websocket(self.host, self.port, path, self.timeout,
                                   origin=self.origin) as ws:
            return run_code(ws, self._session, code, deadline)


def _remaining(deadline: float, what: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise ColabError(f"{what}: no answer before the deadline")
    return left
