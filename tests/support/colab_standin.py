"""A stand-in for Colab's runtime image, built here (Google's image cannot be pulled here).

It follows the image's documented contract (remote_runtime/colab_image.py): it listens
on 8080 in the container and prints `http://127.0.0.1:9000/?token=T` in its log once it
serves Colab's routes. Inside: a minimal Debian (debootstrap, trixie: its Python 3.13
installs the shipped classic lock), the classic stack (notebook 6 with
jupyter_http_over_ws) from `remote_runtime/locks/classic-py313.txt`, the server config
remote-runtime writes, and `standin/run.py` as its entrypoint (a front on 8080, the
server on 9000 inside, as hosted Colab runs).

Built once and cached in the test cache, keyed by a hash of its recipe (this file, the
entrypoint, the lock, the server config): `image_tarball()` returns a `docker save`
tarball (one layer) that `docker load` reads, and the layer gzip'd for a registry.
A cold build takes about 2 minutes (debootstrap ~70 s, the lock ~15 s, packing).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from remote_runtime import jupyter, stacks
from support.env import REAL_HOME, TEST_CACHE

SUITE = "trixie"  # Debian 13: Python 3.13, which has a classic lock
PYTHON = (3, 13)
MIRROR = "http://deb.debian.org/debian"
NAME = "colab-standin"
HERE = Path(__file__).resolve().parent
ENTRYPOINT = HERE / "standin" / "run.py"
# What the image does not need at run time (keeps `docker load` and vfs copies small).
PRUNE = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/locale",
         "usr/share/man", "usr/share/info")


@dataclass(frozen=True)
class StandinImage:
    """The built image: its tag, the `docker save` tarball, the gzip'd layer and config."""

    tag: str
    tarball: Path
    layer_gz: Path
    config: Path
    diff_id: str

    @property
    def repository(self) -> str:
        return self.tag.rsplit(":", 1)[0]


def _recipe() -> tuple[str, str]:
    lock = stacks.lock_for("classic", PYTHON)
    assert lock is not None, f"no classic lock for Python {PYTHON}"
    config = jupyter.server_config_py("classic")
    parts = [Path(__file__).read_text(), ENTRYPOINT.read_text(), lock.text, config, SUITE]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12], config


def image() -> StandinImage:
    """The stand-in image, built on first use (root: debootstrap and chroot)."""
    key, config = _recipe()
    root = TEST_CACHE / f"{NAME}-{key}"
    tag = f"{NAME}:{key}"
    done = root / "done"
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock", timeout=1200):
        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            _build(root, tag, config)
            done.write_text(tag + "\n")
    meta = json.loads((root / "meta.json").read_text())
    return StandinImage(tag, root / "image.tar", root / "layer.tar.gz", root / "config.json",
                        meta["diff_id"])


def _run(argv: list[str], **kwargs: object) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({result.returncode}):\n"
                           f"{(result.stderr or result.stdout)[-3000:]}")


def _build(root: Path, tag: str, config: str) -> None:
    with tempfile.TemporaryDirectory(prefix="rr-standin-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _run(["debootstrap", "--variant=minbase", "--include=python3", SUITE, str(rootfs),
              MIRROR], timeout=900)
        for path in PRUNE:
            shutil.rmtree(rootfs / path, ignore_errors=True)
        _install_stack(rootfs, Path(tmp))
        standin = rootfs / "standin"
        standin.mkdir()
        shutil.copy(ENTRYPOINT, standin / "run.py")
        (standin / "jupyter_notebook_config.py").write_text(config)
        (rootfs / "content").mkdir(exist_ok=True)
        layer = root / "layer.tar"
        # Devices and mount points stay out: the runtime provides them.
        _run(["tar", "-C", str(rootfs), "--numeric-owner", "--exclude=./dev/*",
              "--exclude=./proc/*", "--exclude=./sys/*", "-cf", str(layer), "."], timeout=600)
    diff_id = "sha256:" + _sha256(layer)
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": ["python3", "/standin/run.py"],
            "ExposedPorts": {"8080/tcp": {}},
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "WorkingDir": "/content",
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "tests/support/colab_standin.py"}],
    }
    config_bytes = json.dumps(image_config, sort_keys=True).encode()
    (root / "config.json").write_bytes(config_bytes)
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_dir = diff_id.split(":", 1)[1]
    manifest = [{"Config": config_name, "RepoTags": [tag], "Layers": [f"{layer_dir}/layer.tar"]}]
    with tarfile.open(root / "image.tar", "w") as out:
        _add_bytes(out, "manifest.json", json.dumps(manifest).encode())
        _add_bytes(out, config_name, config_bytes)
        out.add(layer, arcname=f"{layer_dir}/layer.tar")
    with layer.open("rb") as source, gzip.open(root / "layer.tar.gz", "wb", compresslevel=1) as gz:
        shutil.copyfileobj(source, gz, 1 << 20)
    layer.unlink()
    (root / "meta.json").write_text(json.dumps({"tag": tag, "diff_id": diff_id}))


def _install_stack(rootfs: Path, tmp: Path) -> None:
    """The classic lock into the image's system site (Debian's python3 reads
    /usr/local/lib/python3.X/dist-packages), installed by a host Python of the same
    minor version (the image has no pip)."""
    lock = stacks.lock_for("classic", PYTHON)
    assert lock is not None
    _bootstrap, rest = lock.split()
    requirements = tmp / "lock.txt"
    requirements.write_text(rest)
    python = _host_python(PYTHON)
    site = rootfs / f"usr/local/lib/python{PYTHON[0]}.{PYTHON[1]}/dist-packages"
    _run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
          "--no-deps", "--require-hashes", "--no-compile", "--root-user-action=ignore",
          "--target", str(site), "-r", str(requirements)], timeout=900)
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts with this host's paths


def _host_python(version: tuple[int, int]) -> str:
    """A Python of that minor version on this machine: pyenv's, else one on PATH (not a
    pyenv shim, which may point elsewhere)."""
    wanted = f"{version[0]}.{version[1]}"
    versions = REAL_HOME / ".pyenv" / "versions"
    for candidate in sorted(versions.glob(f"{wanted}.*"), reverse=True):
        if (candidate / "bin" / "python3").exists():
            return str(candidate / "bin" / "python3")
    found = shutil.which(f"python{wanted}")
    if found and "/shims/" not in found:
        return found
    raise RuntimeError(f"building the Colab image stand-in needs a Python {wanted} here")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    archive.addfile(info, fileobj=io.BytesIO(data))
