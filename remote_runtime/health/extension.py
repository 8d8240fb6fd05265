"""The `extension` check: jupyter_http_over_ws answers the way Colab drives it.

What the check learned from jupyter_http_over_ws 0.0.8 (handlers.py):
- `/http_over_websocket/diagnose` needs no token: it checks only the Origin
  (notebook's `allow_origin`). So it proves the extension is loaded, not that
  the token works; the check therefore also sends one proxied request the way
  Colab does, with the token in `jupyter_http_over_ws_auth_url` (the extension
  fetches that URL from itself and forwards its cookies). That request is the
  one tornado >= 6.5 breaks (DESIGN.md fact 1).

`open_websocket` opens a websocket the way the Colab page does; the tests'
mini Colab client uses it too.
"""

from __future__ import annotations

import json
import socket
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager

import websocket

from .. import jupyter
from .target import Failed, Target

# The oldest extension protocol Colab asks for (it sends min_version=0.0.7).
MIN_EXTENSION_VERSION = "0.0.7"


@contextmanager
def open_websocket(
    host: str, port: int, path: str, timeout: float, origin: str = jupyter.COLAB_ORIGIN
) -> Iterator[websocket.WebSocket]:
    """A websocket to `path` as the Colab page opens it: Origin colab (`origin`),
    `Host: localhost:P`, through a socket we connect ourselves (so no
    http_proxy from the environment is ever used for a loopback port)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        ws = websocket.create_connection(
            f"ws://localhost:{port}{path}",
            timeout=timeout,
            socket=sock,
            origin=origin,
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


def _handshake_failure(
    exc: websocket.WebSocketBadStatusException, path: str, origin: str = jupyter.COLAB_ORIGIN
) -> Failed:
    status = exc.status_code
    if status == 404:
        return Failed(
            f"{path} answered 404: the jupyter_http_over_ws extension is not loaded "
            "(it needs notebook<7, enabled with `jupyter serverextension enable`); "
            "Colab will say it cannot connect"
        )
    if status == 403:
        return Failed(
            f"websocket {path} from Origin {origin} refused (403): "
            "allow_origin_pat does not admit that Colab origin"
        )
    return Failed(f"websocket {path} answered {status} {exc.status_message or ''}".rstrip())


def check_extension(target: Target) -> str:
    versions = {diagnose(target, origin) for origin in jupyter.COLAB_ORIGINS}
    status = proxied_status(target)
    return (f"jupyter_http_over_ws {', '.join(sorted(versions))} answers both Colab origins; "
            f"proxied GET /api/status answered {status}")


_DIAGNOSE = f"/http_over_websocket/diagnose?min_version={MIN_EXTENSION_VERSION}"


def check_extension_refuses(target: Target, origin: str) -> None:
    """The extension's websocket must refuse a page from `origin` (not Colab)."""
    try:
        with open_websocket(target.host, target.port, _DIAGNOSE, target.call_timeout(),
                            origin=origin):
            pass
    except websocket.WebSocketBadStatusException as exc:
        if exc.status_code in (403, 404):
            return
        raise
    raise Failed(f"the extension's websocket accepted a page from {origin}: any web site "
                 "could drive this runtime")


def diagnose(target: Target, origin: str) -> str:
    """The extension's version, asked from a page of `origin` (no token needed)."""
    try:
        with open_websocket(target.host, target.port, _DIAGNOSE, target.call_timeout(),
                            origin=origin) as ws:
            ws.send("health-diagnose")
            ws.settimeout(target.call_timeout())
            raw = ws.recv()
    except websocket.WebSocketBadStatusException as exc:
        raise _handshake_failure(exc, "/http_over_websocket/diagnose", origin) from None
    try:
        answer = json.loads(raw)
        version = str(answer["extension_version"])
    except (ValueError, KeyError, TypeError):
        raise Failed("the extension's diagnose websocket did not answer its JSON") from None
    if answer.get("is_outdated_extension"):
        raise Failed(
            f"jupyter_http_over_ws {version} is older than {MIN_EXTENSION_VERSION}: "
            "Colab refuses it; upgrade the package"
        )
    return version


def auth_query(target: Target) -> str:
    """The extension's query parameter that carries the token: the URL it fetches itself."""
    return "jupyter_http_over_ws_auth_url=" + urllib.parse.quote(target.url, safe="")


def proxied_status(target: Target, origin: str = jupyter.COLAB_ORIGIN) -> int:
    """One proxied request, as Colab sends them: the token rides in the auth URL."""
    path = f"/http_over_websocket?min_version={MIN_EXTENSION_VERSION}&{auth_query(target)}"
    request = {"message_id": "health-1", "method": "GET", "path": "/api/status", "headers": {}}
    status: int | None = None
    status_text = ""
    try:
        with open_websocket(target.host, target.port, path, target.call_timeout(),
                            origin=origin) as ws:
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
        raise _handshake_failure(exc, "/http_over_websocket", origin) from None
    except websocket.WebSocketTimeoutException:
        raise Failed(
            f"the extension did not answer a proxied GET /api/status within "
            f"{target.last_timeout:.3g} s: {_TORNADO_HINT}"
        ) from None
    except websocket.WebSocketConnectionClosedException:
        # Seen with tornado 6.6: the extension's own request raises, tornado drops the socket.
        raise Failed(
            f"the extension closed the websocket instead of proxying GET /api/status: "
            f"{_TORNADO_HINT}"
        ) from None
    except ValueError:
        raise Failed("the extension answered a proxied request with something not JSON") from None
    if status in (401, 403):
        raise Failed(
            f"the extension's proxied GET /api/status was refused ({status}): "
            "the token in the URL is not accepted"
        )
    if status != 200:
        raise Failed(
            f"the extension could not proxy GET /api/status ({status} {status_text}): "
            f"{_TORNADO_HINT}"
        )
    return status


_TORNADO_HINT = (
    "Colab cannot use this runtime; jupyter_http_over_ws breaks on tornado >= 6.5 "
    "(it needs tornado<6.5), the server log says more"
)
