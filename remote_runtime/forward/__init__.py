"""Our own `ssh -L`: loopback listeners, one direct-tcpip channel per connection.

  forwarder   the `Forwarder`: listeners and the one loop that serves every connection
  listen      binding loopback addresses only, all on one port
  connection  one forwarded connection: client socket, channel, who sends what
  server_side what paramiko's transport thread does for a connection (never waits)
  poller      epoll where there is one, selectors elsewhere
  hooks       where we hook into paramiko's transport (channels that cannot end the session)
"""

from __future__ import annotations

from .forwarder import Forwarder

__all__ = ["Forwarder"]
