"""SSH as OpenSSH users expect it, on paramiko. Only this package and `forward` import paramiko.

  endpoint   where to connect (what a provider produces)
  config     an endpoint merged with ~/.ssh/config into a connectable Target
  streams    the byte streams under a transport: ProxyCommand, read-ahead socket
  hostkeys   strict host-key checking against known_hosts files
  auth       the user's keys: agent, key files, passphrases
  connect    handshake, host key, auth, retries: `connect(endpoint) -> Session`
  session    run and start remote commands; `quote` for every value in them
"""

from __future__ import annotations

import logging

from .auth import PassphrasePrompt
from .connect import connect
from .endpoint import Endpoint
from .session import CommandResult, RemoteProcess, Session, quote

# paramiko logs refused channels (a health poll before Jupyter listens) at
# ERROR; without a handler Python prints them on stderr. The terminal gets only
# our own messages.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False

__all__ = [
    "CommandResult",
    "Endpoint",
    "PassphrasePrompt",
    "RemoteProcess",
    "Session",
    "connect",
    "quote",
]
