"""Our own `ssh -L`: loopback listeners, one direct-tcpip channel per connection.

  forwarder   the `Forwarder`: listeners, the accept loop, clean shutdown
  listen      binding loopback addresses only, all on one port
  connection  one forwarded connection and the two pumps between socket and channel
  buffer      a faster receive buffer for a channel (a list of chunks)
"""

from __future__ import annotations

from .forwarder import Forwarder

__all__ = ["Forwarder"]
