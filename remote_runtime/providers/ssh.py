"""A plain SSH host: the profile's `ssh` section is the endpoint."""

from __future__ import annotations

from ..options import Progress
from ..profiles import Profile
from ..ssh.endpoint import Endpoint
from . import BaseProvider


class SSHProvider(BaseProvider):
    def __init__(self, profile: Profile):
        assert profile.ssh is not None
        self.profile = profile

    def prepare(self, progress: Progress) -> Endpoint:
        ssh = self.profile.ssh
        assert ssh is not None
        return Endpoint(
            host=ssh.host,
            port=ssh.port,
            user=ssh.user,
            identity_file=ssh.identity_file,
            known_hosts=ssh.known_hosts,
            proxy_jump=ssh.proxy_jump,
            proxy_command=ssh.proxy_command,
            description=self.profile.target,
        )

    def close(self, progress: Progress) -> None:
        """Nothing to undo for a host we did not start."""
