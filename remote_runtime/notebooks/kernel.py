"""A kernel of the remote Jupyter server, driven from here through the tunnel: what
nbclient needs of a kernel manager and a kernel client, over the server's REST API and
its kernel websocket.

Why our own and not jupyter_server's gateway client (`GatewayKernelManager` /
`GatewayKernelClient`), which has the same shape: its websocket is opened without
credentials (a token-protected server refuses it), its channel queues wait by
spinning (`asyncio.sleep(0)` in a loop: a busy CPU core for as long as a cell runs),
and it brings a whole Jupyter server (39 packages) to the machine that only drives
one. This client builds on jupyter_client's `AsyncKernelClient` (the messages, the
session, `execute`, `wait_for_ready`) and replaces only its channels: one websocket
(websocket-client), its messages routed to one asyncio queue per channel by a reader
thread, waits that sleep.

The server restarting a kernel that died (e.g. out of memory) is seen on iopub
("restarting"/"dead" status); the client then reports the kernel dead, so nbclient
stops waiting for the cell.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import queue
import struct
import threading
from typing import Any
from urllib.parse import quote

import websocket
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.jsonutil import extract_dates, json_default

from ..server_api import ServerApi, ServerApiError

CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
PING_SECONDS = 30.0  # keeps a quiet websocket (a long cell) from looking idle to proxies
CONNECT_TIMEOUT = 60.0
_CLOSED = object()


def _decode(opcode: int, data: bytes) -> dict[str, Any] | None:
    """A websocket frame as a message: JSON text, or the server's binary layout (a count
    of offsets, the offsets, the JSON message, then its buffers)."""
    if opcode == websocket.ABNF.OPCODE_TEXT:
        return dict(json.loads(data.decode("utf-8")))
    if opcode != websocket.ABNF.OPCODE_BINARY or len(data) < 4:
        return None
    count = struct.unpack("!I", data[:4])[0]
    offsets = [*struct.unpack(f"!{count}I", data[4:4 + 4 * count]), len(data)]
    message = dict(json.loads(data[offsets[0]:offsets[1]].decode("utf-8")))
    message["buffers"] = [memoryview(data[a:b]) for a, b in itertools.pairwise(offsets[1:])]
    return message


class KernelSocket:
    """The kernel's websocket; a reader thread hands each message to its channel's queue."""

    def __init__(self, api: ServerApi, kernel_id: str, session_id: str) -> None:
        host = f"[{api.host}]" if ":" in api.host else api.host
        url = (f"ws://{host}:{api.port}/api/kernels/{quote(kernel_id)}/channels"
               f"?session_id={quote(session_id)}")
        self.loop = asyncio.get_running_loop()
        self.queues: dict[str, asyncio.Queue[Any]] = {name: asyncio.Queue() for name in CHANNELS}
        self.died = ""  # why the kernel is gone, once it is
        self.closed = False
        self.ws = websocket.create_connection(
            url, header=[f"{k}: {v}" for k, v in api.headers.items()],
            timeout=CONNECT_TIMEOUT, enable_multithread=True)
        self.ws.settimeout(PING_SECONDS)
        self._reader = threading.Thread(target=self._read, name="kernel-websocket",
                                        daemon=True)
        self._reader.start()

    @property
    def open(self) -> bool:
        return not self.closed and not self.died

    def _read(self) -> None:
        reason = "the connection to the kernel closed"
        try:
            while True:
                try:
                    opcode, data = self.ws.recv_data()
                except websocket.WebSocketTimeoutException:
                    self.ws.ping()
                    continue
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    break
                message = _decode(opcode, data)
                if message is None:
                    continue
                channel = str(message.pop("channel", "") or "iopub")
                for part in ("header", "parent_header"):
                    message[part] = extract_dates(message.get(part) or {})
                self._watch_status(channel, message)
                if channel in self.queues:
                    self.loop.call_soon_threadsafe(self.queues[channel].put_nowait, message)
        except (websocket.WebSocketException, OSError, ValueError) as exc:
            if not self.closed:
                reason = f"the connection to the kernel was lost ({exc})"
        except RuntimeError:
            return  # the event loop is closed: nobody is waiting any more
        self.died = self.died or reason
        for name in self.queues:
            try:
                self.loop.call_soon_threadsafe(self.queues[name].put_nowait, _CLOSED)
            except RuntimeError:
                return

    def _watch_status(self, channel: str, message: dict[str, Any]) -> None:
        if channel != "iopub" or message.get("header", {}).get("msg_type") != "status":
            return
        state = message.get("content", {}).get("execution_state")
        if state in ("restarting", "dead") and not self.died:
            self.died = ("the kernel died and the server restarted it (out of memory?)"
                         if state == "restarting" else "the kernel died")

    async def get(self, channel: str, timeout: float | None) -> dict[str, Any]:
        """The next message on `channel`; queue.Empty after `timeout` seconds."""
        waiting = self.queues[channel].get()
        try:
            message = await (waiting if timeout is None else asyncio.wait_for(waiting, timeout))
        except TimeoutError:
            raise queue.Empty from None
        if message is _CLOSED:
            self.queues[channel].put_nowait(_CLOSED)  # for the next reader too
            raise RuntimeError(self.died or "the kernel connection is closed")
        return dict(message)

    def send(self, channel: str, message: dict[str, Any]) -> None:
        if not self.open:
            raise RuntimeError(self.died or "the kernel connection is closed")
        body = {"header": message["header"], "parent_header": message["parent_header"],
                "metadata": message["metadata"], "content": message["content"],
                "channel": channel, "buffers": []}
        self.ws.send(json.dumps(body, default=json_default))

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(websocket.WebSocketException, OSError):
            self.ws.close(timeout=2)
        if self._reader is not threading.current_thread():
            self._reader.join(timeout=5)


class Channel:
    """One channel of a kernel over the shared websocket (jupyter_client's ChannelABC)."""

    def __init__(self, name: str, socket: KernelSocket) -> None:
        self.name = name
        self.socket = socket

    async def get_msg(self, timeout: float | None = None) -> dict[str, Any]:
        return await self.socket.get(self.name, timeout)

    def send(self, message: dict[str, Any]) -> None:
        self.socket.send(self.name, message)

    def start(self) -> None:
        """The websocket is already open."""

    def stop(self) -> None:
        """The client closes the websocket."""

    def is_alive(self) -> bool:
        return self.socket.open

    # The heartbeat channel: the websocket is the heartbeat.
    def is_beating(self) -> bool:
        return self.socket.open

    def pause(self) -> None:
        """Nothing to pause."""

    def unpause(self) -> None:
        """Nothing to resume."""


class RemoteKernelClient(AsyncKernelClient):
    """jupyter_client's async client with its channels on the kernel's websocket."""

    def __init__(self, api: ServerApi, kernel_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api = api
        self.kernel_id = kernel_id
        self.socket: KernelSocket | None = None

    def start_channels(self, shell: bool = True, iopub: bool = True, stdin: bool = True,
                       hb: bool = True, control: bool = True) -> None:
        if self.socket is None:
            self.socket = KernelSocket(self.api, self.kernel_id, self.session.session)
        self.allow_stdin = stdin

    def stop_channels(self) -> None:
        if self.socket is not None:
            self.socket.close()

    @property
    def channels_running(self) -> bool:
        return self.socket is not None and self.socket.open

    def _channel(self, name: str) -> Channel:
        if self.socket is None:
            raise RuntimeError("the kernel's channels are not started")
        return Channel(name, self.socket)

    @property
    def shell_channel(self) -> Channel:  # type: ignore[override]
        return self._channel("shell")

    @property
    def iopub_channel(self) -> Channel:  # type: ignore[override]
        return self._channel("iopub")

    @property
    def stdin_channel(self) -> Channel:  # type: ignore[override]
        return self._channel("stdin")

    @property
    def control_channel(self) -> Channel:  # type: ignore[override]
        return self._channel("control")

    @property
    def hb_channel(self) -> Channel:  # type: ignore[override]
        return self._channel("hb")

    async def _async_is_alive(self) -> bool:
        return self.socket is not None and self.socket.open

    is_alive = _async_is_alive  # type: ignore[assignment]  # the base binds its own

    def close(self, reason: str) -> None:
        """From any thread: the kernel is gone for us (nbclient stops waiting at once)."""
        if self.socket is not None:
            self.socket.died = self.socket.died or reason
            self.socket.close()


class RemoteKernelManager:
    """The kernel manager nbclient drives: start, watch, interrupt and delete one kernel of
    the remote server, over its REST API (blocking calls run in a worker thread)."""

    ipykernel = False  # no local IPython history file to point the kernel at

    def __init__(self, api: ServerApi, kernel_name: str) -> None:
        self.api = api
        self.kernel_name = kernel_name
        self.kernel_id: str | None = None
        self.kernel_client: RemoteKernelClient | None = None

    @property
    def has_kernel(self) -> bool:
        return self.kernel_id is not None

    async def start_kernel(self, **kwargs: Any) -> None:
        model = await asyncio.to_thread(self.api.request, "POST", "/api/kernels",
                                        {"name": self.kernel_name})
        self.kernel_id = str(model["id"])

    def client(self, **kwargs: Any) -> RemoteKernelClient:
        assert self.kernel_id is not None
        self.kernel_client = RemoteKernelClient(self.api, self.kernel_id)
        return self.kernel_client

    async def is_alive(self) -> bool:
        if self.kernel_id is None:
            return False
        try:
            await asyncio.to_thread(self.api.request, "GET", f"/api/kernels/{self.kernel_id}")
        except ServerApiError:
            return False
        return True

    async def interrupt_kernel(self) -> None:
        if self.kernel_id is not None:
            await asyncio.to_thread(self.interrupt)

    def interrupt(self) -> None:
        """Blocking: interrupt what the kernel runs (as the notebook's stop button)."""
        if self.kernel_id is not None:
            with contextlib.suppress(ServerApiError):
                self.api.request("POST", f"/api/kernels/{self.kernel_id}/interrupt", {},
                                 timeout=10)

    async def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
        await asyncio.to_thread(self.delete)

    def delete(self) -> bool:
        """Blocking: delete the kernel on the server; True when it was there."""
        kernel_id, self.kernel_id = self.kernel_id, None
        if kernel_id is None:
            return False
        try:
            self.api.request("DELETE", f"/api/kernels/{kernel_id}", timeout=30)
        except ServerApiError:
            return False
        return True

    async def cleanup_resources(self, restart: bool = False) -> None:
        """Nothing local to clean."""
