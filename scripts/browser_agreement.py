"""Does `doctor` read Chrome's local network permission the way Chrome applies it?

Against a real Chromium (`apt-get install chromium`; root, for port 443): a page served as
https://colab.research.google.com (this machine, its address space overridden to public,
as Colab's is) fetches http://localhost:PORT, in a profile whose Preferences hold each
case (no entry, allowed, blocked, the 142-144 name, a default). For each, it prints
whether the fetch went through, what Chromium wrote back to Preferences, and the verdict
`remote_runtime.doctor.browser` reads from that file; they must agree.

    sudo python3 scripts/browser_agreement.py

Measured with Chromium 156.0.8078.114 (Debian 12), three runs: 5 of 5 cases agree in two;
in one, the page of the 142-144 case loaded before Chromium's own startup migration of
that setting (to loopback_network) had run, and was blocked once. With no entry, the
headless browser (which cannot ask) denies, and records that as a block, as a denied
prompt is recorded (a headed Chrome asks).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import websocket

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from remote_runtime.doctor.browser import ALLOW, chrome_setting

ORIGIN = "https://colab.research.google.com"
PATTERN = f"{ORIGIN}:443,*"
API_PORT, DEBUG_PORT = 25951, 25952
CASES: dict[str, dict[str, Any] | None] = {
    "no entry": None,
    "allowed": {"content_settings": {"exceptions": {"loopback_network": {
        PATTERN: {"setting": 1}}}}},
    "blocked": {"content_settings": {"exceptions": {"loopback_network": {
        PATTERN: {"setting": 2}}}}},
    "allowed (142-144 name)": {"content_settings": {"exceptions": {"local_network_access": {
        PATTERN: {"setting": 1}}}}},
    "allowed by default": {"default_content_setting_values": {"loopback_network": 1}},
}
PAGE = (f'<script>fetch("http://localhost:{API_PORT}/api").then(r => r.text())'
        '.then(t => document.title = "through").catch(e => document.title = "blocked")'
        "</script>").encode()


class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: object) -> None:
        pass


class Api(http.server.BaseHTTPRequestHandler):
    def _cors(self) -> None:
        self.send_header("Access-Control-Allow-Origin", self.headers.get("Origin", "*"))
        self.send_header("Access-Control-Allow-Private-Network", "true")

    def do_OPTIONS(self) -> None:
        self.send_response(204)
        self._cors()
        self.end_headers()

    def do_GET(self) -> None:
        self.send_response(200)
        self._cors()
        self.end_headers()
        self.wfile.write(b"api")

    def log_message(self, *args: object) -> None:
        pass


def serve(workdir: Path) -> None:
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj",
                    "/CN=colab.research.google.com"], check=True, capture_output=True)
    page = http.server.ThreadingHTTPServer(("127.0.0.1", 443), Page)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    page.socket = context.wrap_socket(page.socket, server_side=True)
    for server in (page, http.server.ThreadingHTTPServer(("127.0.0.1", API_PORT), Api)):
        threading.Thread(target=server.serve_forever, daemon=True).start()


def call(ws: websocket.WebSocket, method: str, ids: list[int], **params: Any) -> Any:
    ids.append(len(ids) + 1)
    ws.send(json.dumps({"id": ids[-1], "method": method, "params": params}))
    while True:
        message = json.loads(ws.recv())
        if message.get("id") == ids[-1]:
            return message.get("result", {})


def run(chromium: str, data: Path, profile: dict[str, Any] | None) -> tuple[str, str, dict]:
    (data / "Default").mkdir(parents=True)
    if profile is not None:
        (data / "Default" / "Preferences").write_text(json.dumps({"profile": profile}))
    proc = subprocess.Popen([chromium, "--headless=new", "--no-sandbox", f"--user-data-dir={data}",
                             f"--remote-debugging-port={DEBUG_PORT}", "--ignore-certificate-errors",
                             "--host-resolver-rules=MAP colab.research.google.com 127.0.0.1",
                             "--ip-address-space-overrides=127.0.0.1:443=public", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError, StopIteration, ValueError):
                targets = json.load(urllib.request.urlopen(
                    f"http://127.0.0.1:{DEBUG_PORT}/json", timeout=2))
                target = next(t for t in targets if t["type"] == "page")
                break
            if time.monotonic() > deadline:
                raise SystemExit("Chromium did not start")
            time.sleep(0.2)
        ws, ids = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=20), []
        version = call(ws, "Browser.getVersion", ids)["product"]
        call(ws, "Page.navigate", ids, url=f"{ORIGIN}/")
        title = ""
        while not title and time.monotonic() < deadline:
            title = call(ws, "Runtime.evaluate", ids, expression="document.title")[
                "result"].get("value", "")
            time.sleep(0.2)
        call(ws, "Browser.close", ids)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    written = json.loads((data / "Default" / "Preferences").read_text())
    return version, title, written


def main() -> int:
    chromium = shutil.which("chromium") or shutil.which("google-chrome")
    if chromium is None:
        print("no chromium here (apt-get install chromium)")
        return 2
    agree = 0
    with tempfile.TemporaryDirectory(prefix="rr-lna-") as temp:
        workdir = Path(temp)
        serve(workdir)
        for number, (case, profile) in enumerate(CASES.items()):
            version, title, written = run(chromium, workdir / f"data-{number}", profile)
            value, name = chrome_setting(written, ORIGIN)
            expected = "through" if value == ALLOW else "blocked"
            agree += title == expected
            print(f"{version}  {case:24} fetch {title:8} doctor reads {name}={value} "
                  f"({'agrees' if title == expected else 'DISAGREES'})")
    print(f"{agree} of {len(CASES)} cases agree")
    return 0 if agree == len(CASES) else 1


if __name__ == "__main__":
    sys.exit(main())
