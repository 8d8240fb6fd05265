"""Colab's runtime image as a stack (`jupyter.stack: colab-image`): Docker on the remote.

In order: Docker must be usable by the SSH user (directly, or through `sudo -n`), else
one line says how to fix it; the image is Colab's GPU image where Docker can hand the
GPU to a container, else its CPU image (or the profile's `jupyter.image`); a missing
image is pulled with its progress shown, after checking the free space in Docker's data
root; the container runs under the agent's monitor (its lease stops it, as for Jupyter),
bound to the remote's loopback; its token is read from its log. Everything the image
itself decides (ports, URL, mount point, size) is `colab_image`'s; the remote half is
`agent/container.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import colab_image
from .bootstrap import run_agent, start_agent
from .errors import RemoteSetupError, SSHError
from .options import Progress
from .profiles import JupyterSettings
from .remote import RemoteHost, ServerHandle, agent_answer, follow_steps

PULL_SILENCE = 900.0  # seconds without a word from `docker pull` before giving up
SIZE_TIMEOUT = 60.0

_FIX = {
    "missing": ("Docker is not installed on the remote host",
                "install Docker Engine there (https://docs.docker.com/engine/install/), "
                "then add {user} to the docker group: sudo usermod -aG docker {user}"),
    "permission": ("{user} may not use Docker on the remote host (permission denied on "
                   "its socket)",
                   "add {user} to the docker group (sudo usermod -aG docker {user}) and "
                   "reconnect, or allow {user} to run docker through sudo without a "
                   "password"),
    "daemon": ("the Docker daemon is not running on the remote host",
               "start it there (sudo systemctl start docker)"),
    "other": ("Docker does not answer on the remote host",
              "check `docker version` there"),
}


@dataclass(frozen=True)
class DockerHost:
    """What the agent's `docker-probe` found on the remote."""

    argv: list[str]  # `docker`, or `sudo -n docker`
    via_sudo: bool
    version: str
    user: str
    uid: int
    root_dir: str
    arch: str
    free_bytes: int | None
    gpu: bool  # an NVIDIA GPU answers nvidia-smi
    toolkit: bool  # Docker can hand it to a container (--gpus=all)
    images: dict[str, dict[str, Any]]
    removed: list[str] = field(default_factory=list)  # leftover containers removed

    def present(self, image: str) -> bool:
        return bool(self.images.get(image, {}).get("present"))


@dataclass(frozen=True)
class Plan:
    """The container a runtime will run."""

    docker: list[str]
    image: str
    gpus: bool
    uid: int
    notes: list[str] = field(default_factory=list)


def unusable(answer: dict[str, Any], user: str) -> RemoteSetupError:
    """The one line (and its fix) for a Docker the SSH user cannot use."""
    reason = str(answer.get("reason") or "other")
    message, fix = _FIX.get(reason, _FIX["other"])
    details = None
    if reason not in _FIX or reason == "other":  # the known reasons say it all
        detail = str(answer.get("detail") or "").strip()
        sudo = str(answer.get("sudo") or "").strip()
        details = "\n".join(p for p in (detail, f"sudo -n: {sudo}" if sudo else "") if p)
    return RemoteSetupError(message.format(user=user), hint=fix.format(user=user),
                            details=details or None)


def _agent(host: RemoteHost, *args: str, stdin: dict[str, Any] | None = None,
           timeout: float = 90.0) -> dict[str, Any]:
    result = run_agent(host.session, host.settings.python, *args,
                       stdin=json.dumps(stdin or {}) + "\n", timeout=timeout)
    return agent_answer(result.stdout, args[0])


def probe_docker(host: RemoteHost, images: list[str]) -> DockerHost:
    """Is Docker usable there, and how; raises RemoteSetupError with the fix if not."""
    answer = _agent(host, "docker-probe", stdin={"images": images})
    found = answer.get("docker") or {}
    user = str(answer.get("user") or "the SSH user")
    if not found.get("ok"):
        raise unusable(found, user)
    info = answer.get("info") or {}
    gpu = answer.get("gpu") or {}
    free = answer.get("free_bytes")
    return DockerHost(
        argv=[str(a) for a in found["argv"]], via_sudo=bool(found.get("via_sudo")),
        version=str(info.get("version") or found.get("version") or ""),
        user=user, uid=int(answer.get("uid", -1)), root_dir=str(info.get("root_dir") or ""),
        arch=str(info.get("arch") or ""), free_bytes=None if free is None else int(free),
        gpu=bool(gpu.get("gpu")), toolkit=bool(gpu.get("toolkit")),
        images=dict(answer.get("images") or {}), removed=list(answer.get("removed") or []))


def candidates(settings: JupyterSettings) -> list[str]:
    """The images `plan` may choose from (probed for presence in one round trip)."""
    if settings.image != "auto":
        return [settings.image]
    return [colab_image.default_image(gpu=gpu, mirror=settings.image_mirror)
            for gpu in (True, False)]


def plan(settings: JupyterSettings, docker: DockerHost) -> Plan:
    """Which image, with or without the GPU, and what to tell the user about it."""
    notes = [f"removed {len(docker.removed)} container(s) left by ended runs: "
             + ", ".join(docker.removed)] if docker.removed else []
    if docker.arch and docker.arch not in colab_image.ARCHITECTURES:
        raise RemoteSetupError(
            f"Colab's runtime image is built for {colab_image.PLATFORM} only; the remote "
            f"host's Docker runs on {docker.arch}",
            hint="use an x86-64 host, or jupyter.stack: auto there")
    gpus = docker.gpu and docker.toolkit
    if docker.gpu and not docker.toolkit:
        notes.append("the remote host has an NVIDIA GPU, but Docker cannot hand it to a "
                     "container: install the NVIDIA Container Toolkit there to use it "
                     "(https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/)")
    if settings.image == "auto":
        image = colab_image.default_image(gpu=gpus, mirror=settings.image_mirror)
    else:
        image = settings.image
        if gpus and colab_image.is_colab_image(image) and \
                f"/{colab_image.CPU_IMAGE}" in image.split("@")[0]:
            gpus = False  # the CPU image has no CUDA: the GPU is of no use to it
    if docker.via_sudo:
        notes.append(f"{docker.user} runs docker through sudo (not in the docker group)")
    return Plan(docker=docker.argv, image=image, gpus=gpus, uid=docker.uid, notes=notes)


def _gb(count: float) -> str:
    return f"{count / 10**9:.1f} GB"


def ensure_image(host: RemoteHost, docker: DockerHost, chosen: Plan,
                 progress: Progress) -> None:
    """The image is there, or pulled: free space checked first, progress shown."""
    image = chosen.image
    if docker.present(image):
        progress(f"using {image}, already on the remote host")
        return
    size = _agent(host, "image-size", image, colab_image.PLATFORM, timeout=SIZE_TIMEOUT)
    download = size.get("download_bytes")
    layers = size.get("layers") if isinstance(size.get("layers"), dict) else None
    needed = colab_image.needed_bytes(None if download is None else int(download))
    if docker.free_bytes is not None and docker.free_bytes < needed:
        where = docker.root_dir or "Docker's data root"
        how = (f"its layers are {_gb(int(download))} to download" if download is not None
               else "Colab's image is about "
               f"{_gb(colab_image.IMAGE_BYTES_ESTIMATE)}")
        raise RemoteSetupError(
            f"pulling {image} needs about {_gb(needed)} free in {where} on the remote "
            f"host, which has {_gb(docker.free_bytes)} ({how})",
            hint="free some space there (docker system prune removes unused images), or "
            "give Docker a bigger disk")
    what = f"{_gb(int(download))} to download" if download is not None else \
        "its size unknown" + (f" ({size['error']})" if size.get("error") else "")
    progress(f"pulling {image} on the remote host ({what})")
    _pull(host, chosen, layers, progress)


def _pull(host: RemoteHost, chosen: Plan, layers: dict[str, int] | None,
          progress: Progress) -> None:
    task = f"pulling {chosen.image.rsplit('/', 1)[-1]} (MB)"
    process = start_agent(host.session, host.settings.python, "docker-pull")
    stopped = f"pulling {chosen.image} stopped unexpectedly"
    try:
        process.write_line(json.dumps({"docker": chosen.docker, "image": chosen.image,
                                       "task": task, "layers": layers}))
        for message in follow_steps(process, progress, silence=PULL_SILENCE,
                                    stopped=stopped):
            if "error" in message:
                raise RemoteSetupError(
                    f"pulling {chosen.image} failed: {message['error']}",
                    hint="check that the remote host can reach the registry (docker pull "
                    "honours the daemon's proxy settings); jupyter.image_mirror picks "
                    "another of Colab's registries",
                    details=str(message.get("log", ""))[-1500:] or None)
            if message.get("ok"):
                return
        raise RemoteSetupError(stopped)  # follow_steps ends only by raising
    finally:
        process.close()


def prepare(host: RemoteHost, progress: Progress) -> Plan:
    """Docker checked, the image chosen and present: what `launch` will run."""
    progress("checking Docker on the remote host")
    docker = probe_docker(host, candidates(host.settings))
    chosen = plan(host.settings, docker)
    for note in chosen.notes:
        progress(note)
    ensure_image(host, docker, chosen, progress)
    return chosen


def launch(chosen: Plan, *, run_id: str, port: int, bind_host: str) -> dict[str, Any]:
    """What the agent's monitor runs instead of Jupyter (`RemoteHost.start_server`)."""
    return {
        "argv": colab_image.run_argv(chosen.docker, image=chosen.image, run_id=run_id,
                                     owner=chosen.uid, bind_host=bind_host, port=port,
                                     gpus=chosen.gpus),
        "stop_argv": colab_image.stop_argv(chosen.docker, run_id),
        "cleanup_argv": colab_image.remove_argv(chosen.docker, run_id),
        "url_pattern": colab_image.URL_PATTERN.pattern,
        "server_config": "",
    }


def redact_tokens(text: str) -> str:
    """The container's log with any printed token hidden."""
    return colab_image.URL_PATTERN.sub(
        lambda m: m.group(0).replace(m.group(2), "<hidden>"), text)


def read_url(host: RemoteHost, server: ServerHandle, timeout: float) -> tuple[int, str]:
    """(the port the image printed, its token), from the container's log."""
    answer = _agent(host, "container-url", server.run_id,
                    stdin={"pattern": colab_image.URL_PATTERN.pattern, "timeout": timeout},
                    timeout=timeout + 30)
    if answer.get("ok"):
        return int(answer["port"]), str(answer["token"])
    log = redact_tokens(str(answer.get("log") or "")).strip()
    details = f"container log ({server.log_path}), last lines:\n{log}" if log else None
    if answer.get("error") == "exited":
        reason = str(answer.get("reason") or "")
        raise RemoteSetupError(
            "the container stopped before printing its URL"
            + (f" ({reason})" if reason else ""), details=details)
    raise RemoteSetupError(
        f"the container printed no URL within {timeout:.0f}s",
        hint="the image's log is above; --timeout gives a slow host more time",
        details=details)


@dataclass(frozen=True)
class Finding:
    """One line for `doctor`: ok, warning or failed, and the fix when not ok."""

    level: str  # "ok" | "warning" | "failed"
    text: str
    fix: str = ""


def check(host: RemoteHost) -> list[Finding]:
    """Docker for the colab-image stack as `doctor` reports it: nothing is pulled or run."""
    try:
        docker = probe_docker(host, candidates(host.settings))
    except RemoteSetupError as exc:
        return [Finding("failed", exc.message, exc.hint or "")]
    except SSHError:
        raise
    findings = [Finding("ok", f"Docker {docker.version} usable by {docker.user}"
                        + (" through sudo" if docker.via_sudo else ""))]
    try:
        chosen = plan(host.settings, docker)
    except RemoteSetupError as exc:
        return [*findings, Finding("failed", exc.message, exc.hint or "")]
    findings += [Finding("warning", note) for note in chosen.notes if "GPU" in note]
    if docker.present(chosen.image):
        findings.append(Finding("ok", f"{chosen.image} is on the remote host"))
    else:
        needed = colab_image.needed_bytes(None)
        free = docker.free_bytes
        if free is not None and free < needed and colab_image.is_colab_image(chosen.image):
            findings.append(Finding(
                "failed", f"{chosen.image} is not pulled yet and {docker.root_dir} has "
                f"{_gb(free)} free (about {_gb(needed)} needed)", "free some space there"))
        else:
            findings.append(Finding("warning", f"{chosen.image} is not pulled yet: the "
                                    "first `up` downloads it"))
    return findings


def gpu_text(chosen: Plan) -> str:
    return "with the GPU (--gpus=all)" if chosen.gpus else "without a GPU"

