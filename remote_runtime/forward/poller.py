"""The forwarder loop's readiness poller: epoll where there is one, `selectors` elsewhere.

`selectors` wraps every event in a key object and a list; on a kept-alive request that
was an eighth of the forwarder's Python time. Here epoll's own (fd, events) pairs are
used as they come, with the data registered for each descriptor.
"""

from __future__ import annotations

import select
import selectors
from typing import Any

READ = 1
WRITE = 2


class _Epoll:
    _IN = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR if hasattr(select, "epoll") else 0
    _OUT = select.EPOLLOUT | select.EPOLLHUP | select.EPOLLERR if hasattr(select, "epoll") else 0

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._data: dict[int, Any] = {}

    @staticmethod
    def _events(mask: int) -> int:
        return (select.EPOLLIN if mask & READ else 0) | (select.EPOLLOUT if mask & WRITE else 0)

    def register(self, fd: int, mask: int, data: Any) -> None:
        self._epoll.register(fd, self._events(mask))
        self._data[fd] = data

    def modify(self, fd: int, mask: int, data: Any) -> None:
        self._epoll.modify(fd, self._events(mask))
        self._data[fd] = data

    def unregister(self, fd: int) -> None:
        self._data.pop(fd, None)
        self._epoll.unregister(fd)

    def poll(self, timeout: float) -> list[tuple[Any, int]]:
        data = self._data
        ready = []
        for fd, events in self._epoll.poll(timeout):
            item = data.get(fd)
            if item is not None:
                ready.append((item, (READ if events & self._IN else 0)
                              | (WRITE if events & self._OUT else 0)))
        return ready

    def close(self) -> None:
        self._epoll.close()
        self._data.clear()


class _Selectors:
    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()

    def register(self, fd: int, mask: int, data: Any) -> None:
        self._selector.register(fd, mask, data)

    def modify(self, fd: int, mask: int, data: Any) -> None:
        self._selector.modify(fd, mask, data)

    def unregister(self, fd: int) -> None:
        self._selector.unregister(fd)

    def poll(self, timeout: float) -> list[tuple[Any, int]]:
        return [(key.data, events) for key, events in self._selector.select(timeout)]

    def close(self) -> None:
        self._selector.close()


def make_poller() -> _Epoll | _Selectors:
    """A poller with register/modify/unregister(fd), poll(timeout) -> [(data, READ|WRITE)]."""
    return _Epoll() if hasattr(select, "epoll") else _Selectors()
