"""The image-size command: an image's download size from its registry, read as `docker
pull` reads it (the Docker Registry HTTP API v2: an anonymous bearer token from the
registry's realm, the index, the platform's manifest, its layers). Standard library
only, Python >= 3.6.
"""

import json
import re
import urllib.error
import urllib.parse
import urllib.request

from .common import emit

ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
])


def parse_reference(reference):
    """(registry host, repository, tag or digest) as Docker reads an image reference."""
    name, digest = reference, None
    if "@" in name:
        name, digest = name.split("@", 1)
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    first = name.split("/", 1)[0]
    if "/" in name and ("." in first or ":" in first or first == "localhost"):
        host, path = name.split("/", 1)
    else:
        host, path = "registry-1.docker.io", name
        if "/" not in path:
            path = "library/" + path
    if host == "docker.io":
        host = "registry-1.docker.io"
    return host, path, digest or tag or "latest"


def loopback(host):
    """Is a registry's HOST[:PORT] ([V6]:PORT, or a bare V6 address) this host's loopback?"""
    if host.startswith("["):
        name = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        name = host.split(":", 1)[0]
    else:
        name = host
    return name == "localhost" or name.startswith("127.") or name == "::1"


class Registry:
    """Just enough of the registry API for sizes: anonymous bearer tokens, manifests."""

    def __init__(self, host, path, timeout=20):
        self.base = ("http://" if loopback(host) else "https://") + host
        self.path = path
        self.timeout = timeout
        self.token = None

    def open(self, url, headers):
        """GET `url`, an http(s) URL only (a token realm comes from the registry)."""
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("refusing a non-HTTP URL from the registry: %r" % url[:100])
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - checked above
        return urllib.request.urlopen(request, timeout=self.timeout)  # noqa: S310

    def get(self, url, accept=ACCEPT):
        headers = {"Accept": accept, "User-Agent": "remote-runtime-agent"}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        try:
            with self.open(url, headers) as response:
                return json.loads(response.read().decode())
        except urllib.error.HTTPError as exc:
            challenge = exc.headers.get("WWW-Authenticate", "")
            if exc.code == 401 and self.token is None and challenge.lower().startswith("bearer"):
                self.token = self.fetch_token(challenge)
                return self.get(url, accept)
            raise

    def fetch_token(self, challenge):
        fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = fields.pop("realm")
        query = urllib.parse.urlencode(fields)
        url = realm + ("?" + query if query else "")
        with self.open(url, {"User-Agent": "remote-runtime-agent"}) as response:
            data = json.loads(response.read().decode())
        return data.get("token") or data.get("access_token")

    def manifest(self, reference):
        return self.get("%s/v2/%s/manifests/%s" % (self.base, self.path, reference))


def image_size(reference, platform=("linux", "amd64")):
    """{"download_bytes": N, "layers": {short id: bytes}} for the platform's manifest."""
    host, path, ref = parse_reference(reference)
    registry = Registry(host, path)
    manifest = registry.manifest(ref)
    if "manifests" in manifest:  # an index: the platform's own manifest
        for entry in manifest["manifests"]:
            wanted = entry.get("platform") or {}
            if (wanted.get("os"), wanted.get("architecture")) == tuple(platform):
                manifest = registry.manifest(entry["digest"])
                break
        else:
            return {"error": "the image has no %s/%s variant" % platform}
    layers = {}
    for layer in manifest.get("layers") or []:
        layers[layer["digest"].split(":", 1)[1][:12]] = int(layer.get("size") or 0)
    config = int((manifest.get("config") or {}).get("size") or 0)
    return {"download_bytes": sum(layers.values()) + config, "layers": layers}


def cmd_image_size(args):
    """image-size REF [OS/ARCH]: the platform the image is for (colab_image.PLATFORM)."""
    platform = tuple(args[1].split("/", 1)) if len(args) > 1 else ("linux", "amd64")
    try:
        emit(image_size(args[0], platform))
    except (TimeoutError, OSError, ValueError, KeyError, urllib.error.URLError) as exc:
        emit({"error": str(exc)[:300] or type(exc).__name__})
    return 0
