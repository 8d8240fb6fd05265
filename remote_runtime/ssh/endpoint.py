"""Where to connect: what a provider hands to `ssh.connect`.

`host` is what the user named (an alias from ~/.ssh/config is resolved by
`ssh.config`); `None` fields fall back to ~/.ssh/config, then to defaults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Endpoint:
    """Everything `ssh.connect` needs to reach one host."""

    host: str
    port: int | None = None
    user: str | None = None
    identity_file: Path | None = None
    known_hosts: Path | None = None
    proxy_jump: str | None = None
    proxy_command: str | None = None
    # Name host keys are checked and recorded under (OpenSSH's HostKeyAlias),
    # e.g. "compute.1234567890" for a GCE instance, as gcloud does.
    host_key_alias: str | None = None
    # Host keys the provider knows out of band (GCE guest attributes), as
    # (key type, base64) pairs; when set, the server key must be one of them.
    trusted_host_keys: tuple[tuple[str, str], ...] = ()
    # How long to keep retrying authentication (a key just pushed to a VM can
    # take up to a minute to be accepted); 0 means fail on the first refusal.
    auth_retry_seconds: float = 0.0
    # Extra text for `list` and messages, e.g. "gce my-project/us-central1-a/vm".
    description: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, kept in a runtime's state record so `down` and
        `logs` reach the host without preparing it again (no VM start)."""
        data = asdict(self)
        for key in ("identity_file", "known_hosts"):
            data[key] = str(data[key]) if data[key] is not None else None
        data["trusted_host_keys"] = [list(pair) for pair in self.trusted_host_keys]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Endpoint:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("identity_file", "known_hosts"):
            if values.get(key):
                values[key] = Path(values[key])
        values["trusted_host_keys"] = tuple(
            (str(t), str(b)) for t, b in values.get("trusted_host_keys", ()))
        return cls(**values)
