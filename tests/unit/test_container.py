"""container: the laptop side of the colab-image stack. Which image, with or without the
GPU; the one line (and its fix) for each way Docker can be unusable; the disk check
before a pull; the findings `doctor` reports. The agent's answers are given as data
here; tests/integration/test_colab_image.py runs them against a real Docker engine."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from remote_runtime import container
from remote_runtime.errors import ExitCode, RemoteSetupError
from remote_runtime.profiles import JupyterSettings

GPU_IMAGE = "us-docker.pkg.dev/colab-images/public/runtime"
CPU_IMAGE = "us-docker.pkg.dev/colab-images/public/cpu-runtime"
GB = 10**9


def docker_host(**changes: Any) -> container.DockerHost:
    host = container.DockerHost(
        argv=["docker"], via_sudo=False, version="26.1.5", user="alice", uid=1000,
        root_dir="/var/lib/docker", arch="x86_64", free_bytes=100 * GB, gpu=False,
        toolkit=False, images={})
    return replace(host, **changes)


def settings(**values: Any) -> JupyterSettings:
    return JupyterSettings(stack="colab-image", **values)


def test_no_gpu_runs_the_cpu_image() -> None:
    plan = container.plan(settings(), docker_host())
    assert (plan.image, plan.gpus, plan.notes) == (CPU_IMAGE, False, [])
    assert container.gpu_text(plan) == "without a GPU"


def test_a_gpu_docker_can_use_runs_the_gpu_image_with_all_gpus() -> None:
    plan = container.plan(settings(), docker_host(gpu=True, toolkit=True))
    assert (plan.image, plan.gpus) == (GPU_IMAGE, True)
    assert container.gpu_text(plan) == "with the GPU (--gpus=all)"


def test_a_gpu_without_the_container_toolkit_says_what_to_install() -> None:
    plan = container.plan(settings(), docker_host(gpu=True, toolkit=False))
    assert (plan.image, plan.gpus) == (CPU_IMAGE, False)
    [note] = plan.notes
    assert "NVIDIA Container Toolkit" in note


def test_a_chosen_image_and_mirror() -> None:
    plan = container.plan(settings(image_mirror="europe"), docker_host())
    assert plan.image == "europe-docker.pkg.dev/colab-images/public/cpu-runtime"
    pinned = GPU_IMAGE + ":release-colab_20250601"
    plan = container.plan(settings(image=pinned), docker_host(gpu=True, toolkit=True))
    assert (plan.image, plan.gpus) == (pinned, True)
    # Colab's CPU image has no CUDA: the GPU is not handed to it.
    plan = container.plan(settings(image=CPU_IMAGE), docker_host(gpu=True, toolkit=True))
    assert (plan.image, plan.gpus) == (CPU_IMAGE, False)
    assert container.candidates(settings(image=pinned)) == [pinned]
    assert container.candidates(settings()) == [GPU_IMAGE, CPU_IMAGE]


def test_docker_through_sudo_and_leftovers_are_said() -> None:
    plan = container.plan(settings(), docker_host(via_sudo=True, argv=["sudo", "-n", "docker"],
                                                  removed=["rr-old-1"]))
    assert plan.docker == ["sudo", "-n", "docker"]
    assert any("through sudo" in note for note in plan.notes)
    assert any("rr-old-1" in note for note in plan.notes)


def test_another_architecture_is_refused() -> None:
    with pytest.raises(RemoteSetupError) as info:
        container.plan(settings(), docker_host(arch="aarch64"))
    assert "linux/amd64 only" in info.value.message and "aarch64" in info.value.message


@pytest.mark.parametrize(("answer", "message", "fix"), [
    ({"ok": False, "reason": "missing"}, "Docker is not installed on the remote host",
     "sudo usermod -aG docker alice"),
    ({"ok": False, "reason": "permission", "detail": "permission denied"},
     "alice may not use Docker on the remote host", "through sudo without a password"),
    ({"ok": False, "reason": "daemon"}, "the Docker daemon is not running",
     "sudo systemctl start docker"),
    ({"ok": False, "reason": "other", "detail": "weird", "sudo": "a password is required"},
     "Docker does not answer on the remote host", "docker version"),
])
def test_unusable_docker_is_one_line_with_its_fix(answer: dict[str, Any], message: str,
                                                   fix: str) -> None:
    error = container.unusable(answer, "alice")
    assert error.exit_code == ExitCode.REMOTE_SETUP
    assert message in error.message and "\n" not in error.message
    assert error.hint is not None and fix in error.hint
    if answer["reason"] == "other":
        assert error.details == "weird\nsudo -n: a password is required"
    else:
        assert error.details is None


class FakeHost:
    """A RemoteHost whose agent answers from a dict (container._agent is patched)."""

    def __init__(self, answers: dict[str, dict[str, Any]]) -> None:
        self.answers = answers
        self.settings = settings()
        self.asked: list[tuple[str, ...]] = []


@pytest.fixture
def agent(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(host: FakeHost, *args: str, **_kwargs: Any) -> dict[str, Any]:
        host.asked.append(args)
        return host.answers[args[0]]
    monkeypatch.setattr(container, "_agent", fake)


@pytest.mark.usefixtures("agent")
def test_too_little_disk_is_refused_before_any_pull() -> None:
    host = FakeHost({"image-size": {"download_bytes": 10 * GB, "layers": {}}})
    docker = docker_host(free_bytes=20 * GB)
    plan = container.plan(host.settings, docker)
    with pytest.raises(RemoteSetupError) as info:
        container.ensure_image(host, docker, plan, lambda _: None)  # type: ignore[arg-type]
    message = info.value.message
    assert message == (f"pulling {CPU_IMAGE} needs about 32.0 GB free in /var/lib/docker on "
                       "the remote host, which has 20.0 GB (its layers are 10.0 GB to "
                       "download)")
    assert info.value.hint is not None and "docker system prune" in info.value.hint
    assert host.asked == [("image-size", CPU_IMAGE, "linux/amd64")]  # no docker-pull


@pytest.mark.usefixtures("agent")
def test_an_unknown_size_counts_the_documented_one() -> None:
    host = FakeHost({"image-size": {"error": "no route to host"}})
    docker = docker_host(free_bytes=31 * GB)
    with pytest.raises(RemoteSetupError) as info:
        container.ensure_image(host, docker, container.plan(host.settings, docker),  # type: ignore[arg-type]
                               lambda _: None)
    assert "needs about 32.0 GB" in info.value.message
    assert "Colab's image is about 30.0 GB" in info.value.message


@pytest.mark.usefixtures("agent")
def test_an_image_already_there_is_not_pulled() -> None:
    host = FakeHost({})
    docker = docker_host(free_bytes=1, images={CPU_IMAGE: {"present": True}})
    said: list[str] = []
    container.ensure_image(host, docker, container.plan(host.settings, docker),  # type: ignore[arg-type]
                           said.append)
    assert said == [f"using {CPU_IMAGE}, already on the remote host"]
    assert host.asked == []


def test_redact_tokens_hides_the_printed_token() -> None:
    log = "serving\nInitial backend URL: http://127.0.0.1:9000/?token=s3cr3t0\nok"
    assert container.redact_tokens(log) == \
        "serving\nInitial backend URL: http://127.0.0.1:9000/?token=<hidden>\nok"


def test_doctor_findings(monkeypatch: pytest.MonkeyPatch) -> None:
    host = FakeHost({})

    def probe(found: container.DockerHost | RemoteSetupError) -> list[container.Finding]:
        def fake(_host: Any, _images: list[str]) -> container.DockerHost:
            if isinstance(found, RemoteSetupError):
                raise found
            return found
        monkeypatch.setattr(container, "probe_docker", fake)
        return container.check(host)  # type: ignore[arg-type]

    [failed] = probe(container.unusable({"ok": False, "reason": "daemon"}, "alice"))
    assert failed.level == "failed" and "systemctl start docker" in failed.fix
    ok, pulled = probe(docker_host(images={CPU_IMAGE: {"present": True}}))
    assert ok == container.Finding("ok", "Docker 26.1.5 usable by alice")
    assert pulled == container.Finding("ok", f"{CPU_IMAGE} is on the remote host")
    _ok, warning, short = probe(docker_host(gpu=True, free_bytes=5 * GB))
    assert warning.level == "warning" and "Container Toolkit" in warning.text
    assert short.level == "failed" and "5.0 GB free (about 32.0 GB needed)" in short.text
    _ok, later = probe(docker_host())
    assert later.level == "warning" and "the first `up` downloads it" in later.text
