"""The orchestration of `up`: provider, ssh, remote, forwarder, health, state.

Data flows one way: profile -> endpoint -> SSH session -> remote server
(port, token) -> local forwarder on the same port -> health report -> state
record. `Runtime.start()` runs in phases; each phase that acquires something
pushes the step that undoes it, and `Runtime.close()` replays those steps in
reverse on every exit path and says what it did. A `close()` that begins while
`start()` still runs in another thread (a supervisor told to stop during a VM
start) cancels it and waits for it first, so nothing is acquired after teardown.

Modules: `core` (`Runtime`: the phases, while up, teardown), `servers` (the remote
server: its port, start, health through the tunnel, log, stop), `info` (`RuntimeInfo`:
what `up` produced).
"""

from .core import START_CANCEL_TIMEOUT, Runtime
from .info import RuntimeInfo, StartCancelled

__all__ = ["START_CANCEL_TIMEOUT", "Runtime", "RuntimeInfo", "StartCancelled"]
