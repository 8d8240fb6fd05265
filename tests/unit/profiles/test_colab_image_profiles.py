"""Profiles of the colab-image stack: `jupyter.image` and `jupyter.image_mirror`, and
what does not apply to it, each a problem that names the file, line, profile and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from remote_runtime import profiles


def check(tmp_path: Path, jupyter: str) -> tuple[Path, list[str], profiles.ProfileSet | None]:
    path = tmp_path / "profiles.yaml"
    path.write_text("profiles:\n  box:\n    ssh: {host: h}\n    jupyter:\n"
                    + textwrap.indent(textwrap.dedent(jupyter).lstrip("\n"), "      "))
    loaded, problems = profiles.validate(path)
    return path, problems, loaded


@pytest.mark.parametrize("image", [
    "auto",
    "us-docker.pkg.dev/colab-images/public/runtime",
    "europe-docker.pkg.dev/colab-images/public/cpu-runtime:release-colab_20250601-060000_RC00",
    "asia-docker.pkg.dev/colab-images/public/runtime@sha256:" + "0a" * 32,
    "localhost:5000/my/colab-fork:v1",
    "ubuntu",
])
def test_image_references_docker_accepts(tmp_path: Path, image: str) -> None:
    _path, problems, loaded = check(tmp_path, f"stack: colab-image\nimage: '{image}'\n")
    assert problems == []
    assert loaded is not None
    settings = loaded.get("box").jupyter
    assert (settings.stack, settings.image, settings.image_mirror) == ("colab-image", image, "us")


def test_defaults_and_mirror(tmp_path: Path) -> None:
    _path, problems, loaded = check(tmp_path, "stack: colab-image\nimage_mirror: asia\n")
    assert problems == [] and loaded is not None
    settings = loaded.get("box").jupyter
    assert (settings.image, settings.image_mirror, settings.workdir) == ("auto", "asia", "~")


@pytest.mark.parametrize(("jupyter", "line", "key", "reason"), [
    ("stack: colab-image\nimage: 'Colab Image'\n", 6, "image",
     "must be auto or a Docker image reference"),
    ("stack: colab-image\nimage: 'US-docker.pkg.dev/Colab'\n", 6, "image",
     "must be auto or a Docker image reference"),
    ("stack: colab-image\nimage_mirror: mars\n", 6, "image_mirror",
     "must be one of us, europe, asia"),
    ("stack: classic\nimage: ubuntu\n", 6, "image", "is only used with stack: colab-image"),
    ("image_mirror: europe\n", 5, "image_mirror", "is only used with stack: colab-image"),
    ("stack: colab-image\nimage: ubuntu\nimage_mirror: europe\n", 7, "image_mirror",
     "only applies to image: auto"),
    ("stack: colab-image\nenv: managed\n", 6, "env",
     "does not apply to stack: colab-image (the image brings its own server)"),
    ("stack: colab-image\ncommand: /opt/conda/bin/jupyter\n", 6, "command",
     "does not apply to stack: colab-image"),
    ("stack: colab-image\nworkdir: '/data:ro'\n", 6, "workdir",
     "cannot be mounted into the container at /content"),
])
def test_problems_name_the_key(tmp_path: Path, jupyter: str, line: int, key: str,
                               reason: str) -> None:
    path, problems, _loaded = check(tmp_path, jupyter)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path} line {line}: profile 'box' key 'jupyter.{key}': "), \
        problems[0]
    assert reason in problems[0]


def test_env_auto_is_harmless(tmp_path: Path) -> None:
    _path, problems, _loaded = check(tmp_path, "stack: colab-image\nenv: auto\n")
    assert problems == []


def test_a_kernel_section_is_refused_with_the_image(tmp_path: Path) -> None:
    """Colab's image runs its kernels on its own Python: a kernel section asking for
    another would silently not happen, so each of its keys is a problem."""
    path = tmp_path / "profiles.yaml"
    path.write_text("profiles:\n  box:\n    ssh: {host: h}\n    jupyter: {stack: colab-image}\n"
                    "    kernel:\n      python: /opt/conda/bin/python\n"
                    "      install_ipykernel: yes\n")
    _loaded, problems = profiles.validate(path)
    assert [p.split(": ", 1)[0] for p in problems] == [f"{path} line 6", f"{path} line 7"]
    assert problems[0].endswith(
        "profile 'box' key 'kernel.python': does not apply to stack: colab-image (the image's "
        "own Python runs the kernels): remove the kernel section, or use another stack for "
        "your own Python")
    assert "key 'kernel.install_ipykernel'" in problems[1]
    path.write_text("profiles:\n  box:\n    ssh: {host: h}\n    jupyter: {stack: classic}\n"
                    "    kernel: {python: /opt/conda/bin/python}\n")
    assert profiles.validate(path)[1] == []
