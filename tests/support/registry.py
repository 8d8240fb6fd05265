"""A minimal read-only container registry (the Docker Registry HTTP API v2, the part
`docker pull` and `docker manifest inspect` use), serving one image: the Colab image
stand-in's config and its gzip'd layer, under any repository name and tag.

Run it where the remote's Docker can reach it: `python -m support.registry PORT DIR`
inside the sandbox's namespace, DIR holding `config.json` and `layer.tar.gz`. Docker
talks plain HTTP to a registry on 127.0.0.0/8 (its default insecure range), so a pull of
`127.0.0.1:PORT/NAME:TAG` exercises the real pull path: manifest, blobs, progress,
unpacking. As Artifact Registry does for anonymous pulls, every request needs a bearer
token, handed out by its `/token` realm to anyone who asks; a tag names an image index
(the linux/amd64 entry is the image, an arm64 one is listed too). With `--delay S` each
layer chunk is held a little, so a pull takes a while.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
TOKEN = "standin-pull-token"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
_PATH = re.compile(r"^/v2/(?P<name>.+)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)$")


def _digest_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


class Content:
    """The blobs and the manifest of the one image served."""

    def __init__(self, folder: Path) -> None:
        self.config = folder / "config.json"
        self.layer = folder / "layer.tar.gz"
        self.blobs = {_digest_of(self.config): self.config, _digest_of(self.layer): self.layer}
        config_digest, layer_digest = list(self.blobs)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "size": self.config.stat().st_size,
                       "digest": config_digest},
            "layers": [{"mediaType": LAYER_TYPE, "size": self.layer.stat().st_size,
                        "digest": layer_digest}],
        }
        self.manifest = json.dumps(manifest, indent=3).encode()
        self.manifest_digest = "sha256:" + hashlib.sha256(self.manifest).hexdigest()
        index = {
            "schemaVersion": 2,
            "mediaType": INDEX_TYPE,
            "manifests": [
                {"mediaType": MANIFEST_TYPE, "size": 1234, "digest": "sha256:" + "0" * 64,
                 "platform": {"architecture": "arm64", "os": "linux"}},
                {"mediaType": MANIFEST_TYPE, "size": len(self.manifest),
                 "digest": self.manifest_digest,
                 "platform": {"architecture": "amd64", "os": "linux"}},
            ],
        }
        self.index = json.dumps(index).encode()
        self.index_digest = "sha256:" + hashlib.sha256(self.index).hexdigest()
        self.download_bytes = sum(path.stat().st_size for path in self.blobs.values())


def handler(content: Content, delay: float, port: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            sys.stderr.write("registry: " + format % args + "\n")

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, *, body: bool) -> None:
            if self.path.startswith("/token"):
                data = json.dumps({"token": TOKEN, "access_token": TOKEN}).encode()
                self._answer(200, data, "application/json", body=body)
                return
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                match = _PATH.match(self.path.split("?", 1)[0])
                scope = f"repository:{match['name']}:pull" if match else ""
                self.send_response(401)
                self.send_header("WWW-Authenticate", f'Bearer realm="http://127.0.0.1:{port}'
                                 f'/token",service="standin",scope="{scope}"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path.rstrip("/") == "/v2":
                self._answer(200, b"{}", "application/json", body=body)
                return
            match = _PATH.match(self.path.split("?", 1)[0])
            if match is None:
                self._answer(404, b'{"errors":[{"code":"NAME_UNKNOWN"}]}', "application/json",
                             body=body)
                return
            if match["kind"] == "manifests" and match["ref"] == content.manifest_digest:
                self._answer(200, content.manifest, MANIFEST_TYPE, body=body,
                             digest=content.manifest_digest)
                return
            if match["kind"] == "manifests" and (
                    match["ref"] == content.index_digest or not match["ref"].startswith("sha256:")):
                self._answer(200, content.index, INDEX_TYPE, body=body,
                             digest=content.index_digest)
                return
            blob = content.blobs.get(match["ref"])
            if blob is None:
                self._answer(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}', "application/json",
                             body=body)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(blob.stat().st_size))
            self.send_header("Docker-Content-Digest", match["ref"])
            self.end_headers()
            if body:
                with blob.open("rb") as handle:
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        self.wfile.write(chunk)
                        if delay and blob == content.layer:
                            time.sleep(delay)

        def _answer(self, status: int, data: bytes, kind: str, *, body: bool,
                    digest: str = "") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            if digest:
                self.send_header("Docker-Content-Digest", digest)
            self.end_headers()
            if body:
                self.wfile.write(data)

    return Handler


def main(argv: list[str]) -> int:
    port, folder = int(argv[0]), Path(argv[1])
    delay = float(argv[argv.index("--delay") + 1]) if "--delay" in argv else 0.0
    server = ThreadingHTTPServer(("127.0.0.1", port), handler(Content(folder), delay, port))
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
