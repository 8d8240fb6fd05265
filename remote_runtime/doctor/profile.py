"""Stage `profile`: the profiles file as `profiles check` sees it, the profile, and the
effective SSH settings as OpenSSH resolves them (`profiles show`), nothing connected."""

from __future__ import annotations

from .. import profiles, providers, ssh
from ..errors import ProfileError, RemoteRuntimeError
from ..options import quiet
from .walk import Walk

STAGE = "profile"
CHECK_HINT = "run 'remote-runtime profiles check' to see every problem"


def run(walk: Walk) -> None:
    name = walk.options.name
    if name is None:
        walk.skip(STAGE, "no profile named: the remote side is not checked (name a "
                  "profile to check it)")
        walk.stop("no profile named", quietly=True)
        return
    source = profiles.resolve_path(walk.options.profiles_path)
    try:
        loaded, problems = profiles.validate(source)
    except ProfileError as exc:  # missing, unreadable, not YAML
        walk.fail(STAGE, "profiles file", exc.message, exc.hint or CHECK_HINT,
                  stops="the profiles file cannot be read")
        return
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        walk.fail(STAGE, "profiles file", problems[0] + more,
                  f"fix it; `up` refuses a file with any problem ({CHECK_HINT})",
                  stops="the profiles file has problems")
        return
    walk.ok(STAGE, "profiles file", f"{source}: {len(loaded.profiles)} profile(s) OK")
    try:
        profile = loaded.to_start(name)  # a {run} profile: a runtime of its own, as `up`
    except ProfileError as exc:
        walk.fail(STAGE, "profile", exc.message, exc.hint or CHECK_HINT,
                  stops=f"there is no profile '{name}'")
        return
    walk.profile = profile
    walk.ok(STAGE, "profile", f"'{name}': {profile.kind} {profile.target}")
    _jupyter(walk)
    if profile.ssh is not None:
        _ssh_settings(walk)
    else:
        _gce_settings(walk)


def _jupyter(walk: Walk) -> None:
    assert walk.profile is not None
    j = walk.profile.jupyter
    port, explicit = walk.port
    where = "from --port" if walk.options.port is not None else (
        "from the profile" if explicit else "the default; the next free one if taken")
    command = f", command {j.command}" if j.command else ""
    walk.ok(STAGE, "jupyter settings",
            f"port {port} ({where}), env {j.env}, stack {j.stack}, python {j.python}, "
            f"workdir {j.workdir}{command}")
    k = walk.profile.kernel
    setup = f", setup {len(k.setup)} line{'s' if len(k.setup) != 1 else ''}" if k.setup else ""
    walk.ok(STAGE, "kernel settings", f"python {k.python}{setup}, install_ipykernel "
            f"{k.install_ipykernel}")


def _ssh_settings(walk: Walk) -> None:
    profile = walk.profile
    assert profile is not None
    endpoint = providers.for_profile(profile).prepare(quiet)  # reads the profile only
    try:
        connection = ssh.describe_connection(profile.name, endpoint)
    except RemoteRuntimeError as exc:
        walk.fail(STAGE, "ssh settings", exc.message,
                  exc.hint or "check ssh.host and ~/.ssh/config (`ssh -G HOST` shows them)",
                  stops="the SSH settings cannot be resolved")
        return
    target = connection.target
    assert target is not None
    hops = " -> ".join(f"{hop.user}@{hop.hostname}:{hop.port}" for hop in connection.route)
    keys = [f.path + (" (profile)" if f.from_profile else "")
            for f in connection.identity_files if f.exists]
    detail = (f"{hops} ({target.via}); keys: {', '.join(keys) or 'no key file'}; "
              f"agent: {connection.agent}; host key as {target.host_key_name} in "
              f"{', '.join(target.known_hosts) or 'no known_hosts file'} "
              f"(StrictHostKeyChecking {target.strict_host_key_checking}); "
              f"resolved by {connection.source}")
    walk.ok(STAGE, "ssh settings", detail)
    walk.endpoint = endpoint
    missing = [f.path for f in connection.identity_files if f.from_profile and not f.exists]
    if missing:
        walk.fail(STAGE, "identity file", f"ssh.identity_file {missing[0]} does not exist",
                  "fix the path in the profile, or create the key (ssh-keygen -t ed25519 "
                  f"-f {missing[0]}) and install it on the host (ssh-copy-id)")
    elif not keys and connection.agent.startswith("none") and \
            "publickey" in connection.auth_methods:
        walk.warn(STAGE, "identity file",
                  "no key file exists and no agent is set: only a password or one-time "
                  "code can log in", "set ssh.identity_file, or load a key into ssh-agent")
    for note in connection.notes:
        if "FIDO" in note:
            walk.warn(STAGE, "identity file", note)


def _gce_settings(walk: Walk) -> None:
    profile = walk.profile
    assert profile is not None and profile.gce is not None
    gce = profile.gce
    user = gce.user or "your local user name (with OS Login: the one OS Login gives you)"
    walk.ok(STAGE, "ssh settings",
            f"user {user}; key {gce.identity_file or '~/.ssh/google_compute_engine'}; "
            f"known_hosts {gce.known_hosts or '~/.ssh/google_compute_known_hosts'}; address "
            f"{gce.address}{'; proxy_command ' + gce.proxy_command if gce.proxy_command else ''}"
            " (the address and host keys come from the Compute API, next)")
