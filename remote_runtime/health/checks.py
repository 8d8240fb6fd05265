"""Does the forwarded URL answer the way Colab needs? Returns a report, prints nothing.

Each check does what the Colab frontend (and the browser under it) would do
through the forwarded port: it connects to `host` but sends
`Host: localhost:P`, because the extension re-issues its proxied requests to
the Host header (DESIGN.md fact 2). Network trouble becomes a failed `Check`
whose detail says what Colab would see; nothing here raises on a dead server.

Which checks run follows the routes the server serves (`stacks.ROUTES`): the
`extension` check only where the websocket route is served. The `api`, `auth`,
`cors` and `origins` checks are plain HTTP and live here; the `extension` check
(websockets, jupyter_http_over_ws) is in `extension`. Both of Colab's origins are
checked, and `origins` proves that a look-alike of them is refused.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import websocket

from .. import jupyter, redact, stacks
from .extension import check_extension, check_extension_refuses
from .target import Failed, Target

CHECKS = ("api", "auth", "extension", "cors", "origins")
QUICK_CHECKS = ("api", "auth")
ALL_ROUTES = stacks.ROUTES["classic"]
# Not Colab: what a page elsewhere (or a look-alike host) would send.
FOREIGN_ORIGIN = "https://colab.google.com.evil.example"


def checks_for(routes: tuple[str, ...]) -> tuple[str, ...]:
    """The checks of a server that serves `routes`."""
    return tuple(c for c in CHECKS if c != "extension" or stacks.WEBSOCKET in routes)
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
    routes: tuple[str, ...] = ALL_ROUTES  # the Colab routes the server serves

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
            "routes": list(self.routes),
        }


def check(
    port: int, token: str, *, host: str = "127.0.0.1", timeout: float = 5.0,
    routes: tuple[str, ...] = ALL_ROUTES,
) -> HealthReport:
    """Run every check of a server serving `routes`, in order; the first failure
    stops the rest."""
    return _run(Target(host, port, token, timeout, None), checks_for(routes), routes)


def quick_check(
    port: int, token: str, timeout: float = 2.0, *, host: str = "127.0.0.1",
    routes: tuple[str, ...] = ALL_ROUTES,
) -> HealthReport:
    """Only `api` and `auth`: cheap enough for `list`."""
    return _run(Target(host, port, token, timeout, None), QUICK_CHECKS, routes)


def wait_healthy(
    port: int,
    token: str,
    *,
    deadline: float,
    host: str = "127.0.0.1",
    interval: float = 0.5,
    should_stop: Callable[[], bool] | None = None,
    routes: tuple[str, ...] = ALL_ROUTES,
) -> HealthReport:
    """Poll `check` until it passes, `deadline` (a time.monotonic() value)
    passes, or `should_stop()` is true. Returns the last report."""
    last: HealthReport | None = None
    while True:
        report = _run(Target(host, port, token, 5.0, deadline), checks_for(routes), routes)
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


_CheckFn = Callable[[Target], str]


def _run(
    target: Target, names: tuple[str, ...], routes: tuple[str, ...] = ALL_ROUTES
) -> HealthReport:
    target.routes = routes
    checks: list[Check] = []
    failed: str | None = None
    for name in names:
        if failed is not None:
            checks.append(Check(name, False, f"not reached ({failed} failed)"))
            continue
        try:
            detail = _CHECK_FNS[name](target)
            ok = True
        except Failed as exc:
            detail, ok = str(exc), False
        except (OSError, http.client.HTTPException, websocket.WebSocketException) as exc:
            detail, ok = _describe(exc, target), False
        checks.append(Check(name, ok, _clean(detail, target.token)))
        if not ok:
            failed = name
    return HealthReport(redact.url(target.url), tuple(checks), tuple(routes))


def _clean(detail: str, token: str) -> str:
    # A last guard: details are shown and logged, the token must never be in them.
    return redact.text(" ".join(detail.split()), token)


def _describe(exc: BaseException, target: Target) -> str:
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


def _http(target: Target, method: str, path: str, headers: dict[str, str],
          body: bytes | None = None) -> _Response:
    conn = http.client.HTTPConnection(target.host, target.port, timeout=target.call_timeout())
    try:
        conn.request(method, path, body=body, headers={"Host": target.host_header, **headers})
        resp = conn.getresponse()
        return _Response(resp.status, resp.reason, resp.headers, resp.read(_MAX_BODY))
    finally:
        conn.close()


def _check_api(target: Target) -> str:
    resp = _http(target, "GET", "/api", {})
    if resp.status != 200:
        raise Failed(f"GET /api answered {resp.status} {resp.reason}: not a Jupyter server")
    try:
        version = json.loads(resp.body)["version"]
    except (ValueError, KeyError, TypeError):
        raise Failed("GET /api did not answer Jupyter's JSON: not a Jupyter server") from None
    return f"Jupyter {version} answers on /api"


def _check_auth(target: Target) -> str:
    resp = _http(target, "GET", "/api/status", {"Authorization": f"token {target.token}"})
    if resp.status in (401, 403):
        raise Failed(
            f"the token was refused (GET /api/status answered {resp.status}): "
            "Colab would fail to connect with this URL"
        )
    if resp.status != 200:
        raise Failed(f"GET /api/status with the token answered {resp.status} {resp.reason}")
    resp = _http(target, "GET", "/api/status", {})
    if resp.status not in (401, 403):
        raise Failed(
            f"GET /api/status without a token answered {resp.status}, not 403: "
            "the server does not enforce a token"
        )
    return f"token accepted; requests without it are refused ({resp.status})"


# --- CORS (Colab's direct route, DESIGN.md facts 3 and 9) --------------------


def _check_cors(target: Target) -> str:
    for origin in jupyter.COLAB_ORIGINS:
        _check_cors_origin(target, origin)
    hosts = " and ".join(o.removeprefix("https://") for o in jupyter.COLAB_ORIGINS)
    return f"preflight and credentialed GET allow {hosts}, with private network access"


def _preflight(target: Target, origin: str) -> _Response:
    return _http(
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


def _check_cors_origin(target: Target, origin: str) -> None:
    resp = _preflight(target, origin)
    if not 200 <= resp.status < 300:
        raise Failed(
            f"CORS preflight OPTIONS /api/kernels from {origin} answered {resp.status}: "
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
        raise Failed("; ".join(problems))

    resp = _http(target, "GET", f"/api/kernels?token={target.token}", {"Origin": origin})
    if resp.status != 200:
        raise Failed(
            f"cross-origin GET /api/kernels from {origin} with the token answered "
            f"{resp.status} {resp.reason}"
        )
    problems = _cors_problems(resp, origin, "cross-origin GET")
    if problems:
        raise Failed("; ".join(problems))


def _check_origins(target: Target) -> str:
    """Nothing but Colab's two origins is admitted: a look-alike gets no CORS grant
    (and, where the extension is served, no websocket)."""
    origin = FOREIGN_ORIGIN
    for resp, what in (
        (_preflight(target, origin), "preflight"),
        (_http(target, "GET", f"/api/kernels?token={target.token}", {"Origin": origin}),
         "cross-origin GET"),
    ):
        granted = resp.header("Access-Control-Allow-Origin")
        if granted in (origin, "*"):
            raise Failed(
                f"the {what} from {origin} was allowed (Access-Control-Allow-Origin: "
                f"{granted}): any web site could drive this runtime"
            )
    if stacks.WEBSOCKET in target.routes:
        check_extension_refuses(target, origin)
    return f"a look-alike origin ({origin.removeprefix('https://')}) is refused"


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
    "extension": check_extension,
    "cors": _check_cors,
    "origins": _check_origins,
}
