"""The agent's Docker half (container, registry, pull), run here on this machine's
Python: image references as Docker reads them, the registry's answer for an image's size
(against the test registry, in-process, with its bearer-token challenge), `docker pull`'s
terminal output
as progress, and what a failed `docker version` means."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from support import registry

from remote_runtime.agent import container, pull
from remote_runtime.agent import registry as agent_registry


@pytest.mark.parametrize(("reference", "expected"), [
    ("us-docker.pkg.dev/colab-images/public/runtime",
     ("us-docker.pkg.dev", "colab-images/public/runtime", "latest")),
    ("us-docker.pkg.dev/colab-images/public/runtime:release-1",
     ("us-docker.pkg.dev", "colab-images/public/runtime", "release-1")),
    ("127.0.0.1:25000/a/b@sha256:" + "0" * 64,
     ("127.0.0.1:25000", "a/b", "sha256:" + "0" * 64)),
    ("localhost/x:1", ("localhost", "x", "1")),
    ("ubuntu", ("registry-1.docker.io", "library/ubuntu", "latest")),
    ("jupyter/base-notebook:2024", ("registry-1.docker.io", "jupyter/base-notebook", "2024")),
    ("docker.io/library/debian:13", ("registry-1.docker.io", "library/debian", "13")),
])
def test_parse_reference(reference: str, expected: tuple[str, str, str]) -> None:
    assert agent_registry.parse_reference(reference) == expected


def test_only_a_loopback_registry_is_spoken_to_in_plain_http() -> None:
    assert agent_registry.loopback("127.0.0.1:25000") and agent_registry.loopback("localhost")
    assert agent_registry.loopback("[::1]:5000")
    assert not agent_registry.loopback("us-docker.pkg.dev")
    assert agent_registry.Registry("us-docker.pkg.dev", "p").base == "https://us-docker.pkg.dev"


@pytest.fixture
def test_registry(tmp_path: Path) -> Iterator[tuple[int, registry.Content]]:
    """The tests' registry (support/registry.py) serving a small image, on 127.0.0.1."""
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "amd64"}))
    with gzip.open(tmp_path / "layer.tar.gz", "wb") as layer:
        layer.write(b"\0" * 100_000)
    content = registry.Content(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), registry.handler(content, 0, 0))
    port = int(server.server_address[1])
    server.RequestHandlerClass = registry.handler(content, 0, port)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port, content
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_image_size_follows_the_token_challenge_and_picks_amd64(
    test_registry: tuple[int, registry.Content],
) -> None:
    port, content = test_registry
    size = agent_registry.image_size(f"127.0.0.1:{port}/colab-images/public/runtime:any")
    assert size["download_bytes"] == content.download_bytes
    [(short, layer_bytes)] = size["layers"].items()
    assert len(short) == 12 and layer_bytes == content.layer.stat().st_size
    missing = agent_registry.image_size(f"127.0.0.1:{port}/x:y", platform=("linux", "riscv64"))
    assert missing == {"error": "the image has no linux/riscv64 variant"}


def test_a_token_realm_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="non-HTTP URL"):
        agent_registry.Registry("127.0.0.1:1", "p").open("file:///etc/passwd", {})


def test_pull_progress_from_dockers_terminal_lines() -> None:
    progress = pull.PullProgress({"aaaaaaaaaaaa": 50 * 10**6})
    lines = [
        "release: Pulling from colab-images/public/runtime",
        "aaaaaaaaaaaa: Pulling fs layer",
        "bbbbbbbbbbbb: Pulling fs layer",
        "\x1b[2Kaaaaaaaaaaaa: Downloading [=====>      ]  25MB/50MB",
        "bbbbbbbbbbbb: Downloading [==>   ]  1.5MB/10MB",
    ]
    assert [progress.feed(line) for line in lines] == [False, True, True, True, True]
    assert progress.total == 60 * 10**6
    assert progress.done == (25 + 1.5) * 10**6 / 2
    progress.feed("aaaaaaaaaaaa: Extracting [====>   ]  10MB/50MB")
    progress.feed("bbbbbbbbbbbb: Pull complete")
    assert progress.done == (50 + 10 + 10 + 10) * 10**6 / 2
    assert progress.step("pulling runtime (MB)") == {
        "task": "pulling runtime (MB)", "done": 40, "total": 60, "detail": "MB, 1 of 2 layers"}
    progress.feed("aaaaaaaaaaaa: Pull complete")
    assert progress.step("t")["done"] == 60


def test_parse_size() -> None:
    assert pull.parse_size("1.5GB") == 1.5 * 10**9
    assert pull.parse_size("512B") == 512
    assert pull.parse_size("12 kB") == 12_000
    assert pull.parse_size("lots") is None


@pytest.mark.parametrize(("stderr", "reason"), [
    ("permission denied while trying to connect to the Docker daemon socket at "
     "unix:///var/run/docker.sock", "permission"),
    ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker "
     "daemon running?", "daemon"),
    ("error during connect: dial unix /x/docker.sock: connect: no such file or directory",
     "daemon"),
    ("something else", "other"),
])
def test_why_docker_failed(stderr: str, reason: str) -> None:
    assert container.why(stderr) == reason


def test_free_bytes_climbs_to_a_parent_it_may_read(tmp_path: Path) -> None:
    assert container.free_bytes(str(tmp_path / "not" / "there")) is not None


FAKE_DOCKER = """#!/bin/sh
# `docker version` as a user outside the docker group sees it, and as root through sudo.
if [ "$FAKE_SUDO" = 1 ]; then echo 26.1.5; exit 0; fi
echo "permission denied while trying to connect to the Docker daemon socket" >&2
exit 1
"""
FAKE_SUDO = """#!/bin/sh
[ "$1" = -n ] || exit 2
shift
[ -e "$(dirname "$0")/password-needed" ] && { echo "sudo: a password is required" >&2; exit 1; }
FAKE_SUDO=1 exec "$@"
"""


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH with a docker the user may not use, and a sudo that lets it (no password)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name, text in (("docker", FAKE_DOCKER), ("sudo", FAKE_SUDO)):
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:/usr/bin:/bin")
    return folder


def test_docker_through_sudo_without_a_password(fake_bin: Path) -> None:
    docker = str(fake_bin / "docker")
    assert container.usable_docker(docker, euid=1000) == {
        "ok": True, "argv": ["sudo", "-n", docker], "via_sudo": True, "version": "26.1.5"}


def test_sudo_asking_for_a_password_is_the_permission_problem(fake_bin: Path) -> None:
    (fake_bin / "password-needed").touch()
    answer = container.usable_docker(str(fake_bin / "docker"), euid=1000)
    assert answer["ok"] is False and answer["reason"] == "permission"
    assert answer["sudo"] == "sudo: a password is required"
    # root is never sent through sudo
    assert "sudo" not in container.usable_docker(str(fake_bin / "docker"), euid=0)
