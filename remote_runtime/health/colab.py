"""Colab's two routes driven as the page drives them, each to a kernel round trip, from
both Colab origins (`doctor`). The health checks prove each piece answers; these prove a
notebook can run: a kernel is started over the route, code runs in it from each origin
through the route's own websocket, and it is shut down over the route.

- websocket route (jupyter_http_over_ws): the diagnose socket, a proxied GET
  /api/status, POST /api/kernels proxied through the extension's socket, the kernel's
  channels through `/http_over_websocket/proxied_ws/`, DELETE proxied.
- direct route (CORS, Colab since 2025): the preflight (credentials, private network,
  the Authorization header) and a credentialed GET, then POST /api/kernels preflighted
  and sent with the token, the kernel's websocket opened from the page's origin with
  the token, DELETE preflighted.
Nothing here prints; each route and origin becomes one `Check`.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import time
import uuid
from typing import Any

import websocket

from .. import jupyter, stacks
from .checks import Check, _check_cors_origin, _clean, _cors_problems, _describe, _http
from .extension import MIN_EXTENSION_VERSION, auth_query, diagnose, open_websocket, proxied_status
from .target import Failed, Target

KERNEL_TIMEOUT = 60.0  # a kernel's first start on a cold VM imports a lot
CODE = "print(6 * 7)"
EXPECTED = "42"
ROUTE_LABELS = {stacks.WEBSOCKET: "websocket route", stacks.CORS: "direct route"}


def host_of(origin: str) -> str:
    return origin.removeprefix("https://")


def kernel_round_trips(port: int, token: str, *, routes: tuple[str, ...],
                       host: str = "127.0.0.1", timeout: float = 10.0) -> list[Check]:
    """One check per served route and Colab origin: the route works to a kernel."""
    checks: list[Check] = []
    for route in routes:
        target = Target(host, port, token, max(timeout, KERNEL_TIMEOUT), None, routes=routes)
        client = _WebsocketRoute(target) if route == stacks.WEBSOCKET else _DirectRoute(target)
        checks += client.run()
    return checks


def serves_websocket(port: int, token: str, host: str = "127.0.0.1",
                     timeout: float = 5.0) -> bool:
    """Is the extension loaded (its diagnose socket answers Colab's origin)?"""
    try:
        diagnose(Target(host, port, token, timeout, None), jupyter.COLAB_ORIGIN)
    except Failed:
        return False
    except (OSError, websocket.WebSocketException):
        return False
    return True


class _Route:
    route = ""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.session = uuid.uuid4().hex

    def run(self) -> list[Check]:
        """Start a kernel from the first origin, run code from each, shut it down."""
        checks: list[Check] = []
        kernel: str | None = None
        origins = jupyter.COLAB_ORIGINS
        try:
            for index, origin in enumerate(origins):
                name = f"{ROUTE_LABELS[self.route]} from {host_of(origin)}"
                started = time.monotonic()
                try:
                    detail = self.prepare(origin)
                    if kernel is None:
                        kernel = self.start_kernel(origin)
                    self.execute(kernel, origin)
                    if index == len(origins) - 1:
                        self.shutdown_kernel(kernel, origin)
                        kernel = None
                except Failed as exc:
                    checks.append(Check(name, False, self.clean(str(exc))))
                    continue
                except (OSError, http.client.HTTPException, websocket.WebSocketException,
                        ValueError) as exc:
                    text = _describe(exc, self.target) if not isinstance(exc, ValueError) \
                        else f"an answer that is not JSON ({exc})"
                    checks.append(Check(name, False, self.clean(text)))
                    continue
                took = time.monotonic() - started
                checks.append(Check(name, True, self.clean(
                    f"{detail}; a kernel ran {CODE} -> {EXPECTED} ({took:.1f} s)")))
        finally:
            if kernel is not None:
                self.best_effort_shutdown(kernel)
        return checks

    def clean(self, text: str) -> str:
        return _clean(text, self.target.token)

    def best_effort_shutdown(self, kernel: str) -> None:
        # (The server stops its kernels when it stops, anyway.)
        with contextlib.suppress(OSError, http.client.HTTPException, Failed):
            _http(self.target, "DELETE", f"/api/kernels/{kernel}",
                  {"Authorization": f"token {self.target.token}"})

    # Each route's own way: what it checks first, how a request and the kernel's
    # channels travel, and how messages name it ("proxied " for the extension's).
    via = ""

    def prepare(self, origin: str) -> str:
        raise NotImplementedError

    def request(self, origin: str, method: str, path: str,
                body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        raise NotImplementedError

    def channels_path(self, kernel: str) -> str:
        raise NotImplementedError

    def start_kernel(self, origin: str) -> str:
        status, data = self.request(origin, "POST", "/api/kernels", {"name": "python3"})
        if status != 201:
            raise Failed(f"{self.via}POST /api/kernels from {origin} answered {status}: "
                         f"{data[:200].decode(errors='replace')}")
        return str(json.loads(data)["id"])

    def execute(self, kernel: str, origin: str) -> None:
        try:
            with open_websocket(self.target.host, self.target.port, self.channels_path(kernel),
                                KERNEL_TIMEOUT, origin=origin) as ws:
                run_code(ws, self.session, CODE, EXPECTED)
        except websocket.WebSocketBadStatusException as exc:
            raise Failed(f"the kernel's {self.via}websocket answered {exc.status_code} to a "
                         f"page of {origin}") from None

    def shutdown_kernel(self, kernel: str, origin: str) -> None:
        status, _ = self.request(origin, "DELETE", f"/api/kernels/{kernel}")
        if status != 204:
            raise Failed(f"{self.via}DELETE /api/kernels/{kernel} from {origin} answered "
                         f"{status}")


class _WebsocketRoute(_Route):
    route = stacks.WEBSOCKET
    via = "proxied "

    def prepare(self, origin: str) -> str:
        version = diagnose(self.target, origin)
        status = proxied_status(self.target, origin)
        return (f"jupyter_http_over_ws {version} answers; proxied GET /api/status "
                f"answered {status}")

    def request(self, origin: str, method: str, path: str,
                body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        """One HTTP request proxied through the extension's websocket."""
        socket_path = (f"/http_over_websocket?min_version={MIN_EXTENSION_VERSION}"
                       f"&{auth_query(self.target)}")
        message: dict[str, Any] = {"message_id": "doctor-1", "method": method, "path": path,
                                   "headers": {}}
        if body is not None:
            message["headers"] = {"Content-Type": "application/json"}
            message["body_base64"] = base64.b64encode(json.dumps(body).encode()).decode()
        status, data = 0, bytearray()
        with open_websocket(self.target.host, self.target.port, socket_path,
                            KERNEL_TIMEOUT, origin=origin) as ws:
            ws.send(json.dumps(message))
            while True:
                raw = ws.recv()
                if not raw:
                    raise Failed(f"the extension closed its websocket during {method} {path}")
                reply = json.loads(raw)
                status = int(reply.get("status", status) or status)
                if reply.get("data"):
                    data += base64.b64decode(reply["data"])
                if reply.get("done"):
                    return status, bytes(data)

    def channels_path(self, kernel: str) -> str:
        return (f"/http_over_websocket/proxied_ws/api/kernels/{kernel}/channels"
                f"?session_id={self.session}&{auth_query(self.target)}")


class _DirectRoute(_Route):
    route = stacks.CORS

    def prepare(self, origin: str) -> str:
        _check_cors_origin(self.target, origin)
        return "preflight and credentialed GET allowed, with private network access"

    def request(self, origin: str, method: str, path: str,
                body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        """A request as the page sends it: preflighted, then with the token."""
        preflight = _http(self.target, "OPTIONS", path, {
            "Origin": origin, "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization,content-type",
            "Access-Control-Request-Private-Network": "true"})
        methods = [m.strip().upper() for m in
                   (preflight.header("Access-Control-Allow-Methods") or "").split(",")]
        problems = _cors_problems(preflight, origin, f"the preflight of {method} {path}")
        if not 200 <= preflight.status < 300:
            problems.insert(0, f"the preflight of {method} {path} answered {preflight.status}")
        elif method not in methods:
            problems.append(f"the preflight of {method} {path} does not allow {method}")
        if problems:
            raise Failed("; ".join(problems))
        headers = {"Origin": origin, "Authorization": f"token {self.target.token}"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        resp = _http(self.target, method, path, headers, data)
        problems = _cors_problems(resp, origin, f"{method} {path}")
        if problems:
            raise Failed("; ".join(problems))
        return resp.status, resp.body

    def channels_path(self, kernel: str) -> str:
        return (f"/api/kernels/{kernel}/channels?session_id={self.session}"
                f"&token={self.target.token}")


def run_code(ws: websocket.WebSocket, session: str, code: str, expected: str,
             timeout: float = KERNEL_TIMEOUT) -> None:
    """One execute_request on a kernel's channels websocket; Failed unless its stdout
    is `expected`."""
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "username": "colab", "session": session,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
    out: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Failed(f"the kernel did not finish running {code} within {timeout:.0f} s")
        ws.settimeout(left)
        raw = ws.recv()
        if not isinstance(raw, str):
            continue  # binary frames carry buffers, not output
        if not raw:
            raise Failed("the kernel's websocket closed before the code ran")
        message = json.loads(raw)
        if message.get("parent_header", {}).get("msg_id") != msg_id or \
                message.get("channel") != "iopub":
            continue
        kind, content = message.get("msg_type"), message.get("content", {})
        if kind == "stream" and content.get("name") == "stdout":
            out.append(str(content.get("text", "")))
        elif kind == "error":
            raise Failed(f"the kernel raised {content.get('ename')}: {content.get('evalue')}")
        elif kind == "status" and content.get("execution_state") == "idle":
            if "".join(out).strip() != expected:
                raise Failed(f"the kernel printed {''.join(out).strip()!r}, not {expected}")
            return

