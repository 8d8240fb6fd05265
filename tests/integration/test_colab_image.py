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
import support.cli
from support.cli import UpProcess, assert_one_error_line, describe, list_json
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


def image_body(box: Sandbox, name: str, jupyter_settings: dict[str, Any]) -> dict[str, Any]:
    """A sandbox profile body for the colab-image stack: without the sandbox's managed
    env and its kernel Python, which do not apply to it (profiles check says so)."""
    body = sandbox_profile(box, name, port=None, jupyter={"stack": "colab-image",
                                                          **jupyter_settings})
    body["jupyter"].pop("env")
    body.pop("kernel")
    return body


def image_profile(dock: DockerBox, tmp_path: Path, name: str = "colab", *,
                  jupyter_settings: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """A profiles file with one colab-image profile for the Docker sandbox, its workdir
    a fresh directory holding data.txt; returns (profiles path, workdir)."""
    workdir = tmp_path / "remote-work"
    workdir.mkdir()
    (workdir / "data.txt").write_text("the VM's data\n")
    body = image_body(dock.box, name, {"image": dock.image, "workdir": str(workdir),
                                       **(jupyter_settings or {})})
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


def cli(profiles: Path, *args: str, timeout: float = 120) -> Any:
    return support.cli.run_cli(*args, "--profiles", str(profiles), timeout=timeout)


def up_detached(profiles: Path, name: str = "colab", *extra: str) -> dict[str, Any]:
    result = cli(profiles, "up", name, "--detach", "--json", *extra, timeout=420)
    assert result.returncode == 0, describe(result)
    info: dict[str, Any] = json.loads(result.stdout)
    return info


def test_9000_taken_on_the_remote_publishes_another_port_and_keeps_the_url(
    docker_host: DockerBox, tmp_path: Path, isolated: Isolated,
) -> None:
    """With 9000 held on the remote, the container is published on the next free port
    there while the URL keeps the image's 9000 (the port its requests are re-issued to,
    inside the container): both routes still answer. Then a detached runtime of the
    image as of any stack: list, status, logs (the container's, token hidden), down."""
    dock = docker_host
    profiles, _workdir = image_profile(dock, tmp_path)
    holder = dock.listener(IMAGE_PORT)
    try:
        with local_port_free(IMAGE_PORT):
            info = up_detached(profiles)
    finally:
        holder.kill()
        holder.wait(timeout=10)
    token = info["token"]
    assert info["port"] == IMAGE_PORT and info["url"].startswith("http://localhost:9000/")
    assert info["remote_port"] == IMAGE_PORT + 1, info
    assert info["stack"] == "colab-image" and info["routes"] == ["websocket", "cors"]
    assert any("published on 9001" in note for note in info["notes"]), info["notes"]
    [container] = dock.containers()
    assert [(p["IP"], p["PublicPort"]) for p in container["Ports"]] == [("127.0.0.1", 9001)]
    for origin in jupyter.COLAB_ORIGINS:
        assert "data.txt" in content_listing_over_websocket(IMAGE_PORT, token, origin)

    row = list_json(profiles)["colab"]
    assert row["state"] == "up" and row["stack"] == "colab-image", row
    assert row["health"]["ok"] is True and row["routes"] == ["websocket", "cors"]
    status = cli(profiles, "status", "colab", "--json")
    assert status.returncode == 0, describe(status)
    report = json.loads(status.stdout)
    assert {c["name"] for c in report["health"]["checks"]} >= {"extension", "cors", "origins"}
    logs = cli(profiles, "logs", "colab", "-n", "400")
    assert logs.returncode == 0, describe(logs)
    assert "Initial backend URL" in logs.stdout, logs.stdout  # the container's own log
    assert token not in logs.stdout + logs.stderr
    assert "token=<hidden>" in logs.stdout or "token=…" in logs.stdout, logs.stdout

    down = cli(profiles, "down", "colab")
    assert down.returncode == 0, describe(down)
    assert dock.wait_no_containers() == []
    supervisor_log = Path(info["log"]).read_text()
    assert "stopped and removed the container rr-colab-" in supervisor_log, supervisor_log
    assert isolated.runtime_records == []


def test_9000_taken_here_serves_the_direct_route_on_another_port(
    docker_host: DockerBox, tmp_path: Path, start_up: StartUp,
) -> None:
    """With 9000 held on this machine the URL takes the next free port, on both ends,
    and says that only Colab's direct route is served: checked against the stand-in,
    the websocket route's proxied requests go to the URL's port inside the container,
    where nothing listens (the image's server is on its printed 9000)."""
    dock = docker_host
    if not dock.has_image(dock.image):
        assert dock.docker("pull", dock.image, timeout=300).returncode == 0
    profiles, _workdir = image_profile(dock, tmp_path)
    try:
        holder = socket.create_server(("127.0.0.1", IMAGE_PORT))
    except OSError:
        holder = None  # something else holds it: just as good
    try:
        up = start_up("colab", "--profiles", str(profiles))
        port, token = up.wait_ready(timeout=300)
    finally:
        if holder is not None:
            holder.close()
    assert port != IMAGE_PORT
    assert "only the direct route is served" in up.stdout, up.describe()
    assert "direct (CORS) route only" in up.stdout
    [container] = dock.containers()
    assert [p["PublicPort"] for p in container["Ports"]] == [port]  # the same on both ends
    for origin in jupyter.COLAB_ORIGINS:
        assert content_listing_over_direct_route(port, token, origin).count("data.txt") == 2
    # The assumption, checked: the websocket route answers, but what it re-issues to
    # localhost:PORT inside the container finds nothing there.
    with ColabClient(port, token, timeout=30) as client:
        try:
            status, _headers, body = client.request("GET", "/api/status")
        except ColabError as exc:
            status, body = 0, str(exc).encode()
    assert status != 200, (status, body[:300])
    up.interrupt()
    assert up.wait(90) == 0, up.describe()
    assert dock.wait_no_containers() == []


def test_the_lease_removes_the_container_when_the_supervisor_is_killed(
    docker_host: DockerBox, tmp_path: Path,
) -> None:
    """A detached runtime whose supervisor is SIGKILLed: nothing renews the lease, the
    agent's monitor stops the container and removes it, as it stops a Jupyter."""
    dock = docker_host
    lease = 10
    profiles, _workdir = image_profile(dock, tmp_path, jupyter_settings={
        "port": PORTS.take(), "lease_seconds": lease})
    info = up_detached(profiles)
    assert len(dock.containers()) == 1
    os.kill(info["pid"], signal.SIGKILL)
    killed = time.monotonic()
    left = dock.wait_no_containers(timeout=lease + 40)
    took = time.monotonic() - killed
    assert left == [], f"the container still exists {took:.0f}s after the kill"
    assert took > lease - lease / 4 - 1, f"removed {took:.1f}s after the kill: not the lease"
    down = cli(profiles, "down", "colab")
    assert down.returncode == 0, describe(down)


@pytest.fixture(scope="module")
def no_docker_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A remote host whose docker client finds no engine (DOCKER_HOST names a socket
    that does not exist, so this machine's own is never used)."""
    require_netns_sandbox()
    workdir = tmp_path_factory.mktemp("no-docker")
    env = {"DOCKER_HOST": f"unix://{workdir}/absent/docker.sock"}
    with Sandbox(workdir, mode="netns", env=env) as box:
        yield box


def test_docker_not_usable_is_one_line_with_the_fix(
    no_docker_host: Sandbox, tmp_path: Path, isolated: Isolated,
) -> None:
    box = no_docker_host
    profiles = write_profiles(tmp_path / "profiles.yaml", {"colab": image_body(box, "colab", {})})
    result = cli(profiles, "up", "colab")
    line = assert_one_error_line(result, ExitCode.REMOTE_SETUP,
                                 "the Docker daemon is not running on the remote host")
    assert "Traceback" not in result.stderr, line
    assert "hint: start it there" in result.stderr
    assert isolated.runtime_records == []
    assert not box.remote_pids()


@pytest.fixture(scope="module")
def small_disk_host(tmp_path_factory: pytest.TempPathFactory,
                    standin_image: Any) -> Iterator[DockerBox]:
    """A remote host whose Docker keeps its data on a 64 MB filesystem."""
    workdir = tmp_path_factory.mktemp("small-disk")
    with Sandbox(workdir, mode="netns", docker=True, docker_data_size="64m") as box:
        yield DockerBox(box)


def test_too_little_disk_for_the_image_is_one_line_before_any_pull(
    small_disk_host: DockerBox, tmp_path: Path, isolated: Isolated,
) -> None:
    """Colab's own image (its registry unreachable from here, so its documented size
    counts) on a host with 64 MB free: one line saying how much is needed, exit 6."""
    box = small_disk_host.box
    profiles = write_profiles(tmp_path / "profiles.yaml", {"colab": image_body(box, "colab", {})})
    result = cli(profiles, "up", "colab")
    line = assert_one_error_line(result, ExitCode.REMOTE_SETUP,
                                 "pulling us-docker.pkg.dev/colab-images/public/cpu-runtime "
                                 "needs about 32.0 GB free in")
    assert "which has 0.1 GB" in line, line
    assert "docker system prune" in result.stderr
    assert small_disk_host.containers() == []
    assert isolated.runtime_records == []
