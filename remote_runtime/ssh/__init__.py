"""SSH as OpenSSH users expect it, on paramiko. Only this package and `forward` import paramiko.

  endpoint   where to connect (what a provider produces)
  resolver   OpenSSH's own answer for a host (`ssh -G`), or `configfile`'s where it has none
  configfile ssh_config(5) read as OpenSSH reads it: Include, Match, Host, first value wins
  configsyntax  its words, quoting, comments and patterns; ProxyJump hops
  tokens     %-tokens, ${VAR} and ~, and OpenSSH's checks of host and user names
  config     an endpoint resolved into a connectable Target (ProxyJump hops included)
  describe   the effective connection as data (`profiles show`)
  streams    the byte streams under a transport: ProxyCommand, read-ahead socket
  hostkeys   host keys checked and recorded as OpenSSH keeps known_hosts
  identities the keys offered, in OpenSSH's order: agent (IdentityAgent), files, certificates
  prompts    the questions a login may ask a person (`Prompter`)
  auth       publickey, keyboard-interactive (2FA) and password, as the server allows
  connect    route, handshake, host key, auth, retries: `connect(endpoint) -> Session`
  session    run and start remote commands; `quote` for every value in them
"""

from __future__ import annotations

import logging

from .connect import connect
from .describe import Connection
from .describe import connection as describe_connection
from .endpoint import Endpoint
from .prompts import Prompter
from .session import CommandResult, RemoteProcess, Session, quote

# paramiko logs refused channels (a health poll before Jupyter listens) at
# ERROR; without a handler Python prints them on stderr. The terminal gets only
# our own messages.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False

__all__ = [
    "CommandResult",
    "Connection",
    "Endpoint",
    "Prompter",
    "RemoteProcess",
    "Session",
    "connect",
    "describe_connection",
    "quote",
]
