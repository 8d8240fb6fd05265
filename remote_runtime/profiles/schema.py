"""The profiles schema: settings as typed values, and the checker of every key.

Each section is a mapping of key -> (checker, required); a checker returns the
converted value or raises ValueError with the reason shown to the user.
`loader` applies them and says where each problem is.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ProfileError
from ..stacks import COLAB_IMAGE, STACK_CHOICES
from .checkers import (
    Checker,
    _ask_yes_no,
    _bool,
    _choice,
    _image,
    _lease,
    _loopback,
    _path,
    _port,
    _shell_lines,
    _str,
    _url,
)
from .gce import (
    CREATE_SECTION,
    IDLE_MINUTES,
    RUN_PLACEHOLDER,
    RUN_SUFFIX_RE,
    CreateSettings,
    new_run_suffix,
)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
ENV_MODES = ("auto", "existing", "managed")
IMAGE_MIRRORS = ("us", "europe", "asia")  # Colab's registries (colab_image.REGISTRIES)
GCE_ADDRESS_MODES = ("auto", "external", "internal", "iap")
DEFAULT_JUPYTER_PORT = 8888
DEFAULT_LEASE_SECONDS = 300


@dataclass(frozen=True)
class SSHSettings:
    host: str
    port: int | None = None
    user: str | None = None
    identity_file: Path | None = None
    known_hosts: Path | None = None
    proxy_jump: str | None = None
    proxy_command: str | None = None


@dataclass(frozen=True)
class GCESettings:
    zone: str
    instance: str
    project: str | None = None
    user: str | None = None
    identity_file: Path | None = None
    address: str = "auto"
    start_if_stopped: bool = True
    stop_on_exit: bool = False
    ssh_port: int = 22
    proxy_command: str | None = None
    api_endpoint: str | None = None
    known_hosts: Path | None = None
    # Google account (email) whose OS Login profile gets the key; default: the
    # account of the credentials.
    account: str | None = None
    create: CreateSettings | None = None  # create the VM when it does not exist
    delete_on_exit: bool = False  # delete the VM (and its boot disk) on teardown
    idle_stop_minutes: float | None = None  # the VM's agent powers it off when idle


@dataclass(frozen=True)
class JupyterSettings:
    port: int = DEFAULT_JUPYTER_PORT
    # True when the port was written in the profile: then a taken port is an
    # error instead of a reason to pick the next free one.
    port_explicit: bool = False
    command: str | None = None
    env: str = "auto"
    stack: str = "auto"  # auto | classic | modern | colab-image (remote_runtime.stacks)
    python: str = "python3"
    workdir: str = "~"
    bind_host: str = "127.0.0.1"
    lease_seconds: int = DEFAULT_LEASE_SECONDS
    image: str = "auto"  # colab-image: auto (Colab's GPU or CPU image) or a reference
    image_mirror: str = "us"  # colab-image: which of Colab's registries `auto` pulls from


@dataclass(frozen=True)
class KernelSettings:
    """The kernel Colab starts: which remote Python, prepared how."""

    python: str = "auto"  # auto, or a remote path (~ is the remote home)
    setup: tuple[str, ...] = ()  # shell lines run by a POSIX sh before the kernel starts
    install_ipykernel: str = "ask"  # ask | yes | no, when that Python lacks ipykernel


@dataclass(frozen=True)
class Profile:
    name: str  # the runtime's name: the profile's, or PROFILE-SUFFIX for a {run} template
    source: Path
    jupyter: JupyterSettings
    ssh: SSHSettings | None = None
    gce: GCESettings | None = None
    base: str = ""  # the template profile this runtime was made from ({run}), else ""
    kernel: KernelSettings = field(default_factory=KernelSettings)

    @property
    def kind(self) -> str:
        return "gce" if self.gce is not None else "ssh"

    @property
    def profile_name(self) -> str:
        """The name in the profiles file (a {run} runtime's template)."""
        return self.base or self.name

    @property
    def idle_stop_seconds(self) -> float | None:
        """After how long with nothing running the VM's agent powers it off (None: never)."""
        minutes = self.gce.idle_stop_minutes if self.gce is not None else None
        return None if minutes is None else minutes * 60

    @property
    def run_template(self) -> bool:
        """Each runtime of this profile gets its own VM, named with a fresh suffix."""
        return self.gce is not None and RUN_PLACEHOLDER in self.gce.instance

    def for_run(self, suffix: str) -> Profile:
        """The runtime PROFILE-SUFFIX of a {run} template: its own instance name, and
        the port only a starting point (parallel runtimes each take their own)."""
        assert self.gce is not None and self.run_template
        return dataclasses.replace(
            self, name=f"{self.name}-{suffix}", base=self.name,
            gce=dataclasses.replace(self.gce, delete_on_exit=True,
                                    instance=self.gce.instance.replace(RUN_PLACEHOLDER, suffix)),
            jupyter=dataclasses.replace(self.jupyter, port_explicit=False))

    @property
    def target(self) -> str:
        """user@host:port, or project/zone/instance for GCE."""
        if self.ssh is not None:
            user = f"{self.ssh.user}@" if self.ssh.user else ""
            port = f":{self.ssh.port}" if self.ssh.port else ""
            return f"{user}{self.ssh.host}{port}"
        assert self.gce is not None
        project = self.gce.project or "(default project)"
        return f"{project}/{self.gce.zone}/{self.gce.instance}"


@dataclass
class ProfileSet:
    path: Path
    profiles: dict[str, Profile] = field(default_factory=dict)

    def get(self, name: str) -> Profile:
        """A profile by name, or the runtime PROFILE-SUFFIX of a {run} template."""
        if name in self.profiles:
            return self.profiles[name]
        base, _, suffix = name.rpartition("-")
        template = self.profiles.get(base)
        if template is not None and template.run_template and RUN_SUFFIX_RE.match(suffix):
            return template.for_run(suffix)
        close = difflib.get_close_matches(name, list(self.profiles), n=1)
        hint = f"did you mean '{close[0]}'?" if close else None
        known = ", ".join(sorted(self.profiles)) or "none"
        raise ProfileError(
            f"{self.path}: no profile named '{name}' (profiles: {known})", hint=hint
        )

    def to_start(self, name: str) -> Profile:
        """What `up NAME` starts: the profile, or a new runtime of a {run} template."""
        profile = self.get(name)
        return profile.for_run(new_run_suffix()) if profile.run_template else profile


# key -> (checker, required)
SSH_SCHEMA: dict[str, tuple[Checker, bool]] = {
    "host": (_str, True),
    "port": (_port, False),
    "user": (_str, False),
    "identity_file": (_path, False),
    "known_hosts": (_path, False),
    "proxy_jump": (_str, False),
    "proxy_command": (_str, False),
}
GCE_SCHEMA: dict[str, tuple[Checker, bool]] = {
    "project": (_str, False),
    "zone": (_str, True),
    "instance": (_str, True),
    "user": (_str, False),
    "identity_file": (_path, False),
    "address": (_choice(*GCE_ADDRESS_MODES), False),
    "start_if_stopped": (_bool, False),
    "stop_on_exit": (_bool, False),
    "ssh_port": (_port, False),
    "proxy_command": (_str, False),
    "api_endpoint": (_url, False),
    "known_hosts": (_path, False),
    "account": (_str, False),
    "create": (CREATE_SECTION, False),
    "delete_on_exit": (_bool, False),
    "idle_stop_minutes": (IDLE_MINUTES, False),
}
JUPYTER_SCHEMA: dict[str, tuple[Checker, bool]] = {
    "port": (_port, False),
    "command": (_str, False),
    "env": (_choice(*ENV_MODES), False),
    "stack": (_choice(*STACK_CHOICES), False),
    "python": (_str, False),
    "workdir": (_str, False),
    "bind_host": (_loopback, False),
    "lease_seconds": (_lease, False),
    "image": (_image, False),
    "image_mirror": (_choice(*IMAGE_MIRRORS), False),
}
IMAGE_KEYS = ("image", "image_mirror")


def jupyter_cross_check(values: dict[str, object]) -> list[tuple[str, str]]:
    """(key, reason) for jupyter values that contradict each other."""
    problems = []
    image_stack = values.get("stack") == COLAB_IMAGE
    for key in IMAGE_KEYS:
        if key in values and not image_stack:
            problems.append((key, f"is only used with stack: {COLAB_IMAGE}"))
    if image_stack:
        for key in ("command", "env"):  # env: auto is what happens anyway
            if key in values and not (key == "env" and values[key] == "auto"):
                problems.append((key, f"does not apply to stack: {COLAB_IMAGE} (the image "
                                 "brings its own server)"))
        if values.get("image", "auto") != "auto" and "image_mirror" in values:
            problems.append(("image_mirror", "only applies to image: auto (the mirror is "
                             "part of an image reference)"))
        workdir = str(values.get("workdir", "~"))
        if ":" in workdir or "," in workdir:
            problems.append(("workdir", f"cannot be mounted into the container at /content "
                             f"(':' or ',' in {workdir!r})"))
    return problems


def kernel_cross_check(jupyter: dict[str, object], kernel: dict[str, object]
                       ) -> list[tuple[str, str]]:
    """(key, reason) for kernel values the jupyter section's stack cannot honour: Colab's
    image runs its kernels on its own Python, with hosted Colab's packages, so a kernel
    section asks for something that would silently not happen."""
    if jupyter.get("stack") != COLAB_IMAGE:
        return []
    return [(key, f"does not apply to stack: {COLAB_IMAGE} (the image's own Python runs "
             "the kernels): remove the kernel section, or use another stack for your own "
             "Python") for key in kernel]


KERNEL_SCHEMA: dict[str, tuple[Checker, bool]] = {
    "python": (_str, False),
    "setup": (_shell_lines, False),
    "install_ipykernel": (_ask_yes_no, False),
}
PROFILE_KEYS = ("ssh", "gce", "jupyter", "kernel", "description")
