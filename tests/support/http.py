"""A small JSON HTTP server on 127.0.0.1 that answers GETs from a dict and insists on a
token in the Authorization header, as a Jupyter server does."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@contextlib.contextmanager
def json_server(answers: dict[str, Any], token: str) -> Iterator[int]:
    """Serve `answers[path]` (read at each request) to GETs with `token`; yields the port.
    Every request's Authorization header is appended to `answers["authorization"]`."""
    seen = answers.setdefault("authorization", [])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            ok = self.headers.get("Authorization") == f"token {token}" and \
                self.path in answers
            body = json.dumps(answers[self.path] if ok else {"message": "Forbidden"}).encode()
            self.send_response(200 if ok else 403)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
