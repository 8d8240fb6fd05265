"""Everything remote-runtime knows about Colab's runtime image, in one place.

A change of the image should be a change of this module only. Each fact says where it
comes from:

[page] Colab's "Local runtimes" page, research.google.com/colaboratory/local-runtimes.html
       (2023-2026): the image `us-docker.pkg.dev/colab-images/public/runtime`, mirrors
       on `europe-docker.pkg.dev` and `asia-docker.pkg.dev` ("the images are
       identical"), linux/amd64 only; started with
       `docker run -p 127.0.0.1:9000:8080 IMAGE`, `--gpus=all` added "with NVIDIA
       drivers and the NVIDIA container toolkit installed"; once started it "will print
       a message with the initial backend URL used for authentication, of the form
       http://127.0.0.1:9000/?token=...".
[colabtools#3724] the image's server is Colab's backend, not a Jupyter UI: the printed
       URL is for Colab's "Connect to a local runtime" dialog (a browser gets a 404).
[hosted] hosted Colab's own runtime, as `ps` shows it inside: `/datalab/run.sh` under
       `docker-init`, a node front on 8080, `jupyter-notebook --port=9000`, kernels
       rooted at `/content`, where hosted Colab keeps the user's files.
[issue 14] the CPU variant `.../public/cpu-runtime` for machines without a GPU, and the
       image's size, about 30 GB.

What could NOT be learned here, because the image cannot be pulled here (README):
whether its websocket route needs the URL's port to be the one it prints. Colab's
`jupyter_http_over_ws` re-issues each proxied request to the Host the browser used
(DESIGN.md fact 2), which inside the container means the port the image believes it is
reached at (9000, the port it prints). So the browser's port is kept at 9000 whenever
this machine has it free, whatever port the remote publishes; with another one only
Colab's direct route is promised (`routes`). The test stand-in, built to this contract
(tests/support/colab_standin.py), behaves exactly so.
"""

from __future__ import annotations

import re

from .stacks import COLAB_IMAGE, CORS, WEBSOCKET

STACK = COLAB_IMAGE  # jupyter.stack: colab-image

REGISTRIES = {  # [page]: three mirrors of identical images
    "us": "us-docker.pkg.dev",
    "europe": "europe-docker.pkg.dev",
    "asia": "asia-docker.pkg.dev",
}
REPOSITORY = "colab-images/public"
GPU_IMAGE = "runtime"  # [page]
CPU_IMAGE = "cpu-runtime"  # [issue 14]
PLATFORM = "linux/amd64"  # [page]: the only platform it is built for
ARCHITECTURES = ("x86_64", "amd64")  # what `docker info` reports for that platform

CONTAINER_PORT = 8080  # [page]: `-p 127.0.0.1:9000:8080`
PRINTED_PORT = 9000  # [page]: the port of the URL it prints (the server's own, [hosted])
DEFAULT_PORT = PRINTED_PORT  # [page]: the documented command publishes it on 9000
WORKDIR_MOUNT = "/content"  # [hosted]: where Colab keeps the user's files

# [page]: "http://127.0.0.1:9000/?token=...", found anywhere in a line of its log.
URL_PATTERN = re.compile(r"https?://(?:127\.0\.0\.1|localhost|\[::1\]|[\w.-]+):(\d+)/\?token=(\w+)")

# [issue 14]: about 30 GB. Pulling needs room for the layers as downloaded and as
# unpacked; when the registry tells the download size, unpacked is taken as twice that
# (gzip on a mix of binaries and Python: docker's own sizes of the image typically run
# 2-3x its compressed layers), plus a margin for the container's own writes.
IMAGE_BYTES_ESTIMATE = 30 * 10**9
UNPACK_FACTOR = 2.0
MARGIN_BYTES = 2 * 10**9

# How long the container may take from `docker run` to printing its URL (a first start
# of a 30 GB image reads a lot from disk).
URL_WAIT_MIN = 120.0
# `docker stop --time`: seconds between SIGTERM and SIGKILL.
STOP_SECONDS = 10


def default_image(*, gpu: bool, mirror: str = "us") -> str:
    """Colab's image for a machine with (or without) a GPU Docker can use."""
    return f"{REGISTRIES[mirror]}/{REPOSITORY}/{GPU_IMAGE if gpu else CPU_IMAGE}"


def is_colab_image(reference: str) -> bool:
    """One of Colab's own images (any mirror, tag or digest)?"""
    name = re.split(r"[@]", reference, maxsplit=1)[0]
    name = re.sub(r":[\w][\w.-]*$", "", name)
    return any(name == f"{host}/{REPOSITORY}/{image}" for host in REGISTRIES.values()
               for image in (GPU_IMAGE, CPU_IMAGE))


def needed_bytes(download_bytes: int | None) -> int:
    """Free space a pull needs in Docker's data root: from the registry's layer sizes
    when known, else the documented size of Colab's image."""
    if download_bytes is None:
        return IMAGE_BYTES_ESTIMATE + MARGIN_BYTES
    return int(download_bytes * (1 + UNPACK_FACTOR)) + MARGIN_BYTES


def container_name(run_id: str) -> str:
    return f"rr-{run_id}"


def run_argv(docker: list[str], *, image: str, run_id: str, owner: int, bind_host: str,
             port: int, gpus: bool) -> list[str]:
    """`docker run` as the page documents it, bound to the remote's loopback only, with
    the workdir at /content. `{notebook_dir}` is filled in by the agent on the remote.
    Attached (no -d): the agent's monitor owns the client, and its output is the
    container's log. `--init` ([hosted] runs it under docker-init too) lets
    `docker stop` end it at once instead of after its timeout."""
    host = f"[{bind_host}]" if ":" in bind_host else bind_host
    argv = [*docker, "run", "--name", container_name(run_id), "--init",
            "--label", f"remote-runtime.run={run_id}",
            "--label", f"remote-runtime.owner={owner}",
            "-p", f"{host}:{port}:{CONTAINER_PORT}",
            "-v", f"{{notebook_dir}}:{WORKDIR_MOUNT}"]
    if gpus:
        argv.append("--gpus=all")
    return [*argv, image]


def stop_argv(docker: list[str], run_id: str) -> list[str]:
    return [*docker, "stop", "--time", str(STOP_SECONDS), container_name(run_id)]


def remove_argv(docker: list[str], run_id: str) -> list[str]:
    """Removes the container; the image stays cached."""
    return [*docker, "rm", "--force", container_name(run_id)]


def routes(browser_port: int, printed_port: int = PRINTED_PORT) -> tuple[str, ...]:
    """The Colab routes to promise: the websocket one only when the URL's port is the
    one the image prints (see the module's note)."""
    return (WEBSOCKET, CORS) if browser_port == printed_port else (CORS,)


def routes_note(browser_port: int, printed_port: int) -> str | None:
    """What to tell the user when `routes` leaves the websocket route out."""
    if browser_port == printed_port:
        return None
    return (f"the image prints port {printed_port} and the URL here uses {browser_port}: "
            "Colab's websocket route re-issues its requests to the URL's port inside the "
            f"container, so only the direct route is served (free port {printed_port} on "
            "this machine to get both)")
