"""Does the forwarded URL answer the way Colab needs? Returns a report, prints nothing.

Each check does what the Colab frontend (and the browser under it) would do
through the forwarded port: it connects to `host` but sends
`Host: localhost:P`, because the extension re-issues its proxied requests to
the Host header (DESIGN.md fact 2). Network trouble becomes a failed `Check`
whose detail says what Colab would see; nothing here raises on a dead server.

What the checks learned from jupyter_http_over_ws 0.0.8 (handlers.py):
- `/http_over_websocket/diagnose` needs no token: it checks only the Origin
  (notebook's `allow_origin`). So it proves the extension is loaded, not that
  the token works; the `extension` check therefore also sends one proxied
  request the way Colab does, with the token in `jupyter_http_over_ws_auth_url`
  (the extension fetches that URL from itself and forwards its cookies). That
  request is the one tornado >= 6.5 breaks (DESIGN.md fact 1).
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import websocket

from remote_runtime import jupyter

CHECKS = ("api", "auth", "extension", "cors")
QUICK_CHECKS = ("api", "auth")
# The oldest extension protocol Colab asks for (it sends min_version=0.0.7).
MIN_EXTENSION_VERSION = "0.0.7"
_MAX_BODY = 1 << 20


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str  # one line; never contains the token


@dataclass(frozen=True)
class HealthReport:
    url: str  # redacted
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def first_failure(self) -> Check | None:
        return next((c for c in self.checks if not c.ok), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "ok": self.ok,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
        }


class _Failed(Exception):
    """A check failed; the message is the detail."""


@dataclass
class _Target:
    host: str
    port: int
    token: str
    timeout: float
    deadline: float | None  # time.monotonic(); no call may run past it
    last_timeout: float = 0.0  # of the latest call, for "no answer within N s"

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
            raise _Failed("deadline reached before the check could run")
        self.last_timeout = min(self.timeout, remaining)
        return self.last_timeout


def check(port: int, token: str, *, host: str = "127.0.0.1", timeout: float = 5.0) -> HealthReport:
    """Run every check in order; the first failure stops the rest."""
    return _run(_Target(host, port, token, timeout, None), CHECKS)


def quick_check(
    port: int, token: str, timeout: float = 2.0, *, host: str = "127.0.0.1"
) -> HealthReport:
    """Only `api` and `auth`: cheap enough for `list` and `status`."""
    return _run(_Target(host, port, token, timeout, None), QUICK_CHECKS)


def wait_healthy(
    port: int,
    token: str,
    *,
    deadline: float,
    host: str = "127.0.0.1",
    interval: float = 0.5,
    should_stop: Callable[[], bool] | None = None,
) -> HealthReport:
    """Poll `check` until it passes, `deadline` (a time.monotonic() value)
    passes, or `should_stop()` is true. Returns the last report."""
    last: HealthReport | None = None
    while True:
        report = _run(_Target(host, port, token, 5.0, deadline), CHECKS)
        if report.ok:
            return report
        # An attempt cut short by the deadline ("no answer within 0.0005 s") would
        # hide the real failure: keep the last attempt that had its full time.
        if last is None or time.monotonic() < deadline:
            last = report
        # Sleep in short slices so should_stop (Ctrl-C, a dead SSH session) is seen quickly.
        wake = min(time.monotonic() + interval, deadline)
        while True:
            if should_stop is not None and should_stop():
                return last
            now = time.monotonic()
            if now >= deadline:
                return last
            if now >= wake:
                break
            time.sleep(min(0.1, wake - now))


_CheckFn = Callable[[_Target], str]


def _run(target: _Target, names: tuple[str, ...]) -> HealthReport:
    checks: list[Check] = []
    failed: str | None = None
    for name in names:
        if failed is not None:
            checks.append(Check(name, False, f"not reached ({failed} failed)"))
            continue
        try:
            detail = _CHECK_FNS[name](target)
            ok = True
        except _Failed as exc:
            detail, ok = str(exc), False
        except (OSError, http.client.HTTPException, websocket.WebSocketException) as exc:
            detail, ok = _describe(exc, target), False
        checks.append(Check(name, ok, _clean(detail, target.token)))
        if not ok:
            failed = name
    return HealthReport(jupyter.redact(target.url), tuple(checks))


def _clean(detail: str, token: str) -> str:
    # A last guard: details are shown and logged, the token must never be in them.
    one_line = " ".join(detail.split())
    return one_line.replace(token, "<hidden>") if token else one_line


def _describe(exc: BaseException, target: _Target) -> str:
    """What a network error means to Colab, in a few words."""
    where = f"{target.host}:{target.port}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused on {where}: nothing is listening there"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return f"connection reset on {where}: the tunnel or the server dropped it"
    if isinstance(exc, TimeoutError | websocket.WebSocketTimeoutException):
        return f"no answer from {where} within {target.last_timeout:.3g} s"
    if isinstance(
        exc,
        http.client.RemoteDisconnected
        | http.client.IncompleteRead
        | websocket.WebSocketConnectionClosedException,
    ):
        # What a forwarder shows when nothing listens behind it on the remote.
        return f"connection to {where} closed without an answer: is the server running?"
    if isinstance(exc, OSError):
        return f"cannot connect to {where}: {exc.strerror or type(exc).__name__}"
    return f"{type(exc).__name__} talking to {where}: {exc}"


# --- HTTP -----------------------------------------------------------------


@dataclass(frozen=True)
class _Response:
    status: int
    reason: str
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


def _http(target: _Target, method: str, path: str, headers: dict[str, str]) -> _Response:
    conn = http.client.HTTPConnection(target.host, target.port, timeout=target.call_timeout())
    try:
        conn.request(method, path, headers={"Host": target.host_header, **headers})
        resp = conn.getresponse()
        return _Response(resp.status, resp.reason, resp.headers, resp.read(_MAX_BODY))
    finally:
        conn.close()


def _check_api(target: _Target) -> str:
    resp = _http(target, "GET", "/api", {})
    if resp.status != 200:
        raise _Failed(f"GET /api answered {resp.status} {resp.reason}: not a Jupyter server")
    try:
        version = json.loads(resp.body)["version"]
    except (ValueError, KeyError, TypeError):
        raise _Failed("GET /api did not answer Jupyter's JSON: not a Jupyter server") from None
    return f"Jupyter {version} answers on /api"


def _check_auth(target: _Target) -> str:
    resp = _http(target, "GET", "/api/status", {"Authorization": f"token {target.token}"})
    if resp.status in (401, 403):
        raise _Failed(
            f"the token was refused (GET /api/status answered {resp.status}): "
            "Colab would fail to connect with this URL"
        )
    if resp.status != 200:
        raise _Failed(f"GET /api/status with the token answered {resp.status} {resp.reason}")
    resp = _http(target, "GET", "/api/status", {})
    if resp.status not in (401, 403):
        raise _Failed(
            f"GET /api/status without a token answered {resp.status}, not 403: "
            "the server does not enforce a token"
        )
    return f"token accepted; requests without it are refused ({resp.status})"


# --- the extension ---------------------------------------------------------


@contextmanager
def open_websocket(
    host: str, port: int, path: str, timeout: float
) -> Iterator[websocket.WebSocket]:
    """A websocket to `path` as the Colab page opens it: Origin colab,
    `Host: localhost:P`, through a socket we connect ourselves (so no
    http_proxy from the environment is ever used for a loopback port)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        ws = websocket.create_connection(
            f"ws://localhost:{port}{path}",
            timeout=timeout,
            socket=sock,
            origin=jupyter.COLAB_ORIGIN,
            host=f"localhost:{port}",
            redirect_limit=0,
        )
    except BaseException:
        sock.close()
        raise
    try:
        yield ws
    finally:
        ws.close(timeout=min(timeout, 1.0))


def _handshake_failure(exc: websocket.WebSocketBadStatusException, path: str) -> _Failed:
    status = exc.status_code
    if status == 404:
        return _Failed(
            f"{path} answered 404: the jupyter_http_over_ws extension is not loaded "
            "(it needs notebook<7, enabled with `jupyter serverextension enable`); "
            "Colab will say it cannot connect"
        )
    if status == 403:
        return _Failed(
            f"websocket {path} from Origin {jupyter.COLAB_ORIGIN} refused (403): "
            "allow_origin is not the Colab origin"
        )
    return _Failed(f"websocket {path} answered {status} {exc.status_message or ''}".rstrip())


def _check_extension(target: _Target) -> str:
    version = _diagnose(target)
    status = _proxied_status(target)
    return f"jupyter_http_over_ws {version}; proxied GET /api/status answered {status}"


def _diagnose(target: _Target) -> str:
    path = f"/http_over_websocket/diagnose?min_version={MIN_EXTENSION_VERSION}"
    try:
        with open_websocket(target.host, target.port, path, target.call_timeout()) as ws:
            ws.send("health-diagnose")
            ws.settimeout(target.call_timeout())
            raw = ws.recv()
    except websocket.WebSocketBadStatusException as exc:
        raise _handshake_failure(exc, "/http_over_websocket/diagnose") from None
    try:
        answer = json.loads(raw)
        version = str(answer["extension_version"])
    except (ValueError, KeyError, TypeError):
        raise _Failed("the extension's diagnose websocket did not answer its JSON") from None
    if answer.get("is_outdated_extension"):
        raise _Failed(
            f"jupyter_http_over_ws {version} is older than {MIN_EXTENSION_VERSION}: "
            "Colab refuses it; upgrade the package"
        )
    return version


def _proxied_status(target: _Target) -> int:
    """One proxied request, as Colab sends them: the token rides in the auth URL."""
    auth_url = urllib.parse.quote(target.url, safe="")
    path = (
        f"/http_over_websocket?min_version={MIN_EXTENSION_VERSION}"
        f"&jupyter_http_over_ws_auth_url={auth_url}"
    )
    request = {"message_id": "health-1", "method": "GET", "path": "/api/status", "headers": {}}
    status: int | None = None
    status_text = ""
    try:
        with open_websocket(target.host, target.port, path, target.call_timeout()) as ws:
            ws.send(json.dumps(request))
            while True:
                ws.settimeout(target.call_timeout())
                raw = ws.recv()
                if not raw:  # a close frame
                    raise websocket.WebSocketConnectionClosedException
                reply = json.loads(raw)
                status = reply.get("status", status)
                status_text = reply.get("statusText", status_text)
                if reply.get("done"):
                    break
    except websocket.WebSocketBadStatusException as exc:
        raise _handshake_failure(exc, "/http_over_websocket") from None
    except websocket.WebSocketTimeoutException:
        raise _Failed(
            f"the extension did not answer a proxied GET /api/status within "
            f"{target.last_timeout:.3g} s: {_TORNADO_HINT}"
        ) from None
    except websocket.WebSocketConnectionClosedException:
        # Seen with tornado 6.6: the extension's own request raises, tornado drops the socket.
        raise _Failed(
            f"the extension closed the websocket instead of proxying GET /api/status: "
            f"{_TORNADO_HINT}"
        ) from None
    except ValueError:
        raise _Failed("the extension answered a proxied request with something not JSON") from None
    if status in (401, 403):
        raise _Failed(
            f"the extension's proxied GET /api/status was refused ({status}): "
            "the token in the URL is not accepted"
        )
    if status != 200:
        raise _Failed(
            f"the extension could not proxy GET /api/status ({status} {status_text}): "
            f"{_TORNADO_HINT}"
        )
    return status


_TORNADO_HINT = (
    "Colab cannot use this runtime; jupyter_http_over_ws breaks on tornado >= 6.5 "
    "(it needs tornado<6.5), the server log says more"
)


# --- CORS (Colab's direct route, DESIGN.md facts 3 and 9) --------------------


def _check_cors(target: _Target) -> str:
    origin = jupyter.COLAB_ORIGIN
    resp = _http(
        target,
        "OPTIONS",
        "/api/kernels",
        {
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
            "Access-Control-Request-Private-Network": "true",
        },
    )
    if not 200 <= resp.status < 300:
        raise _Failed(
            f"CORS preflight OPTIONS /api/kernels answered {resp.status}: "
            "the browser blocks Colab's direct requests"
        )
    problems = _cors_problems(resp, origin, "preflight")
    allow_headers = (resp.header("Access-Control-Allow-Headers") or "").lower()
    if "authorization" not in [h.strip() for h in allow_headers.split(",")]:
        problems.append(
            "preflight does not allow the Authorization header: "
            "the browser blocks Colab's token requests"
        )
    if (resp.header("Access-Control-Allow-Private-Network") or "").lower() != "true":
        problems.append(
            "no Access-Control-Allow-Private-Network: true on preflight: "
            "Chrome 130-141 will block the connection"
        )
    if problems:
        raise _Failed("; ".join(problems))

    resp = _http(target, "GET", f"/api/kernels?token={target.token}", {"Origin": origin})
    if resp.status != 200:
        raise _Failed(
            f"cross-origin GET /api/kernels with the token answered {resp.status} {resp.reason}"
        )
    problems = _cors_problems(resp, origin, "cross-origin GET")
    if problems:
        raise _Failed("; ".join(problems))
    return "preflight and credentialed GET allow the Colab origin and private network"


def _cors_problems(resp: _Response, origin: str, what: str) -> list[str]:
    problems = []
    allow_origin = resp.header("Access-Control-Allow-Origin")
    if allow_origin is None:
        problems.append(
            f"no Access-Control-Allow-Origin on {what}: the browser blocks Colab's "
            "direct requests (allow_origin is not set)"
        )
    elif allow_origin != origin:
        # "*" is not enough either: browsers refuse it on credentialed requests.
        problems.append(
            f"Access-Control-Allow-Origin on {what} is {allow_origin!r}, not {origin}: "
            "the browser blocks Colab's direct requests"
        )
    if (resp.header("Access-Control-Allow-Credentials") or "").lower() != "true":
        problems.append(
            f"no Access-Control-Allow-Credentials: true on {what}: the browser blocks "
            "Colab's credentialed requests (allow_credentials is not set)"
        )
    return problems


_CHECK_FNS: dict[str, _CheckFn] = {
    "api": _check_api,
    "auth": _check_auth,
    "extension": _check_extension,
    "cors": _check_cors,
}
