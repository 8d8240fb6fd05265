"""Keep a runtime's lease renewed and notice a dead connection early.

Every `interval` seconds: one line to the remote agent (which renews the
server's lease) and one keepalive that needs an answer. A missed answer marks
the connection lost, so a dropped network is seen in seconds rather than when
TCP gives up, minutes later.
"""

from __future__ import annotations

import threading

from .errors import SSHError
from .ssh import RemoteProcess, Session


class Heartbeat:
    def __init__(
        self,
        session: Session,
        process: RemoteProcess,
        *,
        interval: float,
        answer_timeout: float = 15.0,
    ):
        self.session = session
        self.process = process
        self.interval = interval
        self.answer_timeout = answer_timeout
        self.lost = threading.Event()
        self.reason = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.process.write_line("")  # any line renews the lease
            except SSHError as exc:
                self._mark(exc.message)
                return
            if not self.session.ping(self.answer_timeout) and not self._stop.is_set():
                self._mark(f"no answer to a keepalive within {self.answer_timeout:.0f}s")
                return

    def _mark(self, reason: str) -> None:
        self.reason = reason
        self.lost.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.answer_timeout + 1)
