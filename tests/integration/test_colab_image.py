"""`jupyter.stack: colab-image`: Colab's runtime image run with Docker on the remote.

Google's image cannot be pulled here, so the remote runs a stand-in built to the image's
documented contract (support/colab_standin.py: listens on 8080 in the container, prints
`http://127.0.0.1:9000/?token=T` in its log, serves Colab's routes), served under the
name of Colab's image by a registry on the remote's loopback (support/registry.py, with
the bearer-token dance Artifact Registry does), and pulled by a real Docker engine in the
sandbox's network namespace (sandbox/docker.py), so the published port is on the
remote's loopback. Everything else is real: sshd, the tool's tunnel, the agent's monitor
and lease, Colab's two routes from both of its origins.

Ports: 25000-25499 (this file's range; 25000 is the registry's, on the remote). The
image's own port, 9000, is the one the URL uses by default, as its documented command.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cli import UpProcess, assert_one_error_line, describe, list_json, run_cli
from support.colab_client import ColabClient, ColabError, DirectClient
from support.docker_host import DockerBox
from support.env import Isolated, require_netns_sandbox
from support.net import PortRange
from support.remote import sandbox_profile, write_profiles

from remote_runtime import colab_image, jupyter
from remote_runtime.errors import ExitCode
from sandbox import Sandbox

PORTS = PortRange(25001, 25499)
StartUp = Callable[..., UpProcess]
IMAGE_PORT = colab_image.PRINTED_PORT  # 9000


def image_profile(dock: DockerBox, tmp_path: Path, name: str = "colab", *,
                  jupyter_settings: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """A profiles file with one colab-image profile for the Docker sandbox, its workdir
    a fresh directory holding data.txt; returns (profiles path, workdir)."""
    workdir = tmp_path / "remote-work"
    workdir.mkdir()
    (workdir / "data.txt").write_text("the VM's data\n")
    body = sandbox_profile(dock.box, name, port=None, jupyter={
        "stack": "colab-image", "image": dock.image, "workdir": str(workdir),
        **(jupyter_settings or {})})
    body["jupyter"].pop("env")  # managed: not for this stack (profiles check says so)
    profiles = write_profiles(tmp_path / "profiles.yaml", {name: body})
    if dock.teardown is not None:
        dock.teardown.add(profiles)
    return profiles, workdir


@contextlib.contextmanager
def local_port_free(port: int, timeout: float = 30) -> Iterator[None]:
    """The URL's port must be free here: the image's 9000 (another test may briefly
    hold it: wait a little, then say so)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_server(("127.0.0.1", port)):
                break
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"port {port} is held on this machine") from None
            time.sleep(0.5)
    yield


def content_listing_over_websocket(port: int, token: str, origin: str) -> str:
    """What a kernel sees in /content, asked through the extension's websocket route."""
    with ColabClient(port, token, origin=origin, timeout=30) as client:
        kernel = client.start_kernel()
        try:
            return client.execute(kernel, "import os; print(sorted(os.listdir('/content')))",
                                  timeout=60)
        finally:
            client.shutdown_kernel(kernel)


def content_listing_over_direct_route(port: int, token: str, origin: str) -> str:
    """The same through Colab's direct route: the contents API (CORS, preflighted) and a
    kernel on its own websocket."""
    with DirectClient(port, token, origin=origin, timeout=30) as client:
        status, _headers, body = client.request("GET", "/api/contents")
        assert status == 200, body[:300]
        names = sorted(entry["name"] for entry in json.loads(body)["content"])
        kernel = client.start_kernel()
        try:
            listing = client.execute(kernel, "import os; print(sorted(os.listdir('/content')))",
                                     timeout=60)
        finally:
            client.shutdown_kernel(kernel)
        return f"{names} {listing}"


def test_first_up_pulls_the_image_then_serves_both_routes_with_the_workdir_at_content(
    docker_host: DockerBox, tmp_path: Path, start_up: StartUp, isolated: Isolated,
) -> None:
    """The first `up` pulls the image (the disk checked first, a progress bar), runs it
    bound to the remote's loopback on the image's port 9000, reads its token from its
    log, and the URL then serves both of Colab's routes, from both origins, with the
    workdir at /content; Ctrl-C removes the container and keeps the image."""
    dock = docker_host
    if dock.has_image(dock.image):  # another test pulled it already: pull it again
        dock.remove_image(dock.image)
    profiles, workdir = image_profile(dock, tmp_path)
    with local_port_free(IMAGE_PORT):
        up = start_up("colab", "--profiles", str(profiles), "--timeout", "300")
        port, token = up.wait_ready(timeout=420)
    assert port == IMAGE_PORT
    assert "pulling runtime:standin" in up.stderr, up.describe()
    assert f"{dock.image}" in up.stderr
    [container] = dock.containers()
    assert container["Image"] == dock.image
    published = [(p["IP"], p["PublicPort"], p["PrivatePort"]) for p in container["Ports"]]
    assert published == [("127.0.0.1", IMAGE_PORT, colab_image.CONTAINER_PORT)]
    printed = dock.docker("logs", container["Id"]).stdout
    assert f"http://127.0.0.1:{IMAGE_PORT}/?token={token}" in printed  # the image's own
    assert up.stdout.count(token) == 1  # the URL, and nowhere else
    assert "websocket" in up.stdout and "direct" in up.stdout

    for origin in jupyter.COLAB_ORIGINS:
        listing = content_listing_over_websocket(port, token, origin)
        assert "data.txt" in listing, listing
        assert content_listing_over_direct_route(port, token, origin).count("data.txt") == 2
    # A file the notebook writes at /content lands in the remote's workdir.
    with ColabClient(port, token, timeout=30) as client:
        kernel = client.start_kernel()
        client.execute(kernel, "open('/content/out.txt', 'w').write('from the notebook')")
        client.shutdown_kernel(kernel)
    assert (workdir / "out.txt").read_text() == "from the notebook"

    up.interrupt()
    assert up.wait(90) == 0, up.describe()
    assert "stopped and removed the container rr-colab-" in up.stdout + up.stderr
    assert dock.containers() == [], "teardown left a container"
    assert dock.has_image(dock.image), "the image must stay cached"
    assert isolated.runtime_records == []
