"""colab_image: the facts about Colab's runtime image, and what is derived from them."""

from __future__ import annotations

import pytest

from remote_runtime import colab_image


def test_default_image_is_the_gpu_or_cpu_variant_on_any_mirror() -> None:
    assert colab_image.default_image(gpu=True) == "us-docker.pkg.dev/colab-images/public/runtime"
    assert colab_image.default_image(gpu=False) == \
        "us-docker.pkg.dev/colab-images/public/cpu-runtime"
    assert colab_image.default_image(gpu=False, mirror="asia") == \
        "asia-docker.pkg.dev/colab-images/public/cpu-runtime"


@pytest.mark.parametrize(("reference", "expected"), [
    ("us-docker.pkg.dev/colab-images/public/runtime", True),
    ("europe-docker.pkg.dev/colab-images/public/cpu-runtime:release-colab_20250601-060000_RC00",
     True),
    ("asia-docker.pkg.dev/colab-images/public/runtime@sha256:" + "ab" * 32, True),
    ("us-docker.pkg.dev/colab-images/public/runtime-extra", False),
    ("127.0.0.1:25000/colab-images/public/runtime", False),
    ("ubuntu:24.04", False),
])
def test_is_colab_image(reference: str, expected: bool) -> None:
    assert colab_image.is_colab_image(reference) is expected


def test_the_printed_url_is_found_in_a_log_line() -> None:
    line = ("2026-01-01 12:00:00 Initial backend URL for authentication: "
            "http://127.0.0.1:9000/?token=0123abcdef")
    match = colab_image.URL_PATTERN.search(line)
    assert match is not None
    assert (match.group(1), match.group(2)) == ("9000", "0123abcdef")
    assert colab_image.URL_PATTERN.search("http://127.0.0.1:9000/tree") is None


def test_needed_bytes_from_the_registry_or_the_documented_size() -> None:
    gb = 10**9
    assert colab_image.needed_bytes(None) == 32 * gb  # 30 GB documented + 2 GB margin
    # downloaded, unpacked (twice the download), and the margin
    assert colab_image.needed_bytes(10 * gb) == 32 * gb
    assert colab_image.needed_bytes(0) == 2 * gb


def test_run_argv_publishes_on_loopback_only_and_mounts_the_workdir() -> None:
    argv = colab_image.run_argv(["sudo", "-n", "docker"], image="img:tag", run_id="colab-1",
                                owner=1000, bind_host="127.0.0.1", port=9001, gpus=False)
    assert argv[:4] == ["sudo", "-n", "docker", "run"]
    assert argv[argv.index("-p") + 1] == "127.0.0.1:9001:8080"
    assert argv[argv.index("-v") + 1] == "{notebook_dir}:/content"
    assert argv[argv.index("--name") + 1] == "rr-colab-1"
    assert "--gpus=all" not in argv and "-d" not in argv
    assert argv[-1] == "img:tag"
    assert "remote-runtime.owner=1000" in argv and "remote-runtime.run=colab-1" in argv


def test_run_argv_with_the_gpu_and_an_ipv6_loopback() -> None:
    argv = colab_image.run_argv(["docker"], image="img", run_id="r", owner=0,
                                bind_host="::1", port=9000, gpus=True)
    assert argv[argv.index("-p") + 1] == "[::1]:9000:8080"
    assert argv[-2:] == ["--gpus=all", "img"]


def test_stop_and_remove_leave_the_image() -> None:
    assert colab_image.stop_argv(["docker"], "r") == ["docker", "stop", "--time", "10", "rr-r"]
    assert colab_image.remove_argv(["docker"], "r") == ["docker", "rm", "--force", "rr-r"]


def test_routes_keep_the_websocket_only_on_the_printed_port() -> None:
    assert colab_image.routes(9000) == ("websocket", "cors")
    assert colab_image.routes(9001) == ("cors",)
    assert colab_image.routes_note(9000, 9000) is None
    note = colab_image.routes_note(9001, 9000)
    assert note is not None and "only the direct route" in note and "free port 9000" in note
