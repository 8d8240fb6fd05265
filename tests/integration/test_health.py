"""health.py against a real classic Jupyter with jupyter_http_over_ws (and a modern
Jupyter Server 2 where a test says so).

The server runs from the cached stack venv (jupyter_venv.py) with the flags and
config file the tool uses on a remote; "broken" servers differ only in the one
setting a test is about.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websocket
from support.colab_client import ColabClient, ColabError, DirectClient
from support.jupyter_venv import stack_venv, venv_bin

from remote_runtime import health, jupyter

START_DEADLINE = 60.0
TOKEN = "t0k3n-" + "a1b2c3d4e5f6" * 4

ConfigEdit = Callable[[dict[str, Any]], None]


@dataclass
class Server:
    port: int
    token: str
    proc: subprocess.Popen[bytes]
    log: Path
    children: list[tuple[int, str]] = field(default_factory=list)
    stack: str = "classic"


def _free_port() -> int:
    # Jupyter binds by itself, so this is pick-then-bind: a race we answer
    # with port_retries=0 and a retry on "address already in use".
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    try:
        conn.request("GET", "/api")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _proc_start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, start time) of the direct children of pid: the server's kernels."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append((int(entry.name), fields[19]))
    return found


class JupyterFactory:
    """Starts real servers and stops exactly the processes it started."""

    def __init__(self, root: Path, venv: Path | None = None, stack: str = "classic") -> None:
        self.root = root
        self.stack = stack
        self.venv = venv or stack_venv(stack=stack)
        self.servers: list[Server] = []
        self._count = 0
        self._lock = threading.Lock()

    def start(
        self,
        *,
        token: str = TOKEN,
        port: int | None = None,
        edit_config: ConfigEdit | None = None,
        drop_flags: tuple[str, ...] = (),
    ) -> Server:
        for _attempt in range(5):
            server = self._spawn(token, port or _free_port(), edit_config, drop_flags)
            if self._wait_answering(server):
                return server
            log = server.log.read_text(errors="replace")
            self.stop(server)
            if port is None and "already in use" in log:
                continue
            raise RuntimeError(f"jupyter did not start on {server.port}:\n{log[-3000:]}")
        raise RuntimeError("no free port for jupyter after 5 attempts")

    def _spawn(
        self, token: str, port: int, edit_config: ConfigEdit | None, drop_flags: tuple[str, ...]
    ) -> Server:
        with self._lock:
            self._count += 1
            home = self.root / f"server-{self._count}"
        home.mkdir(parents=True)
        config = jupyter.server_config(self.stack)
        if edit_config is not None:
            edit_config(config)
        config_file = home / "config.py"  # as on a remote: the Python config
        config_file.write_text(jupyter.server_config_py(self.stack, config))
        argv = jupyter.server_argv(
            [str(venv_bin(self.venv, "jupyter"))],
            port=port,
            bind_host="127.0.0.1",
            config_file=str(config_file),
            notebook_dir=str(home),
            allow_root=os.geteuid() == 0,
            stack=self.stack,
        )
        argv = [a for a in argv if not a.startswith(drop_flags)] if drop_flags else argv
        env = {
            **os.environ,
            "JUPYTER_TOKEN": token,
            # Keep the user's own Jupyter config and runtime files out of it.
            "JUPYTER_CONFIG_DIR": str(home / "config"),
            "JUPYTER_DATA_DIR": str(home / "data"),
            "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
            "IPYTHONDIR": str(home / "ipython"),
        }
        log = home / "server.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        server = Server(port, token, proc, log, stack=self.stack)
        with self._lock:
            self.servers.append(server)
        return server

    @staticmethod
    def _wait_answering(server: Server) -> bool:
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                return False
            if _answers(server.port):
                return True
            time.sleep(0.1)
        return False

    def stop(self, server: Server) -> None:
        proc = server.proc
        if proc.poll() is None:
            server.children = _children(proc.pid)
            proc.send_signal(signal.SIGTERM)  # notebook shuts its kernels down on SIGTERM
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        # Kernels run in their own sessions; kill any the server left behind,
        # only if the pid still names the same process.
        for pid, started in server.children:
            if _proc_start_time(pid) == started:
                os.kill(pid, signal.SIGKILL)

    def stop_all(self) -> None:
        with self._lock:
            servers = list(self.servers)
        for server in servers:
            self.stop(server)


@pytest.fixture(scope="module")
def module_jupyter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterFactory]:
    factory = JupyterFactory(tmp_path_factory.mktemp("jupyter"))
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture
def jupyter_factory(tmp_path: Path) -> Iterator[JupyterFactory]:
    factory = JupyterFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture(scope="module")
def healthy(module_jupyter: JupyterFactory) -> Server:
    return module_jupyter.start()


def assert_token_hidden(report: health.HealthReport, *tokens: str) -> None:
    dumped = json.dumps(report.to_dict())
    for token in (TOKEN, *tokens):
        assert token not in dumped
        assert all(token not in c.detail for c in report.checks)
    assert all("\n" not in c.detail for c in report.checks)


def test_healthy_server_passes_every_check(healthy: Server) -> None:
    report = health.check(healthy.port, healthy.token)
    assert report.ok, report.to_dict()
    assert report.first_failure is None
    assert [c.name for c in report.checks] == ["api", "auth", "extension", "cors", "origins"]
    assert "0.0.7" in report.checks[2].detail and "both Colab origins" in report.checks[2].detail
    assert "colab.research.google.com and colab.google.com" in report.checks[3].detail
    assert report.routes == ("websocket", "cors")
    assert report.url == f"http://localhost:{healthy.port}/?token=<hidden>"
    assert report.to_dict()["ok"] is True
    assert_token_hidden(report)


def test_quick_check_runs_api_and_auth_only(healthy: Server) -> None:
    report = health.quick_check(healthy.port, healthy.token)
    assert report.ok
    assert [c.name for c in report.checks] == ["api", "auth"]
    assert_token_hidden(report)


def test_colab_client_runs_code_through_the_extension(healthy: Server) -> None:
    with ColabClient(healthy.port, healthy.token) as colab:
        diag = colab.diagnose()
        assert diag["extension_version"] == "0.0.7"
        assert diag["is_outdated_extension"] is False
        kernel = colab.start_kernel()
        try:
            assert colab.execute(kernel, "print(6*7)").strip() == "42"
            assert colab.execute(kernel, "x = 5\nx * 2").strip() == "10"
        finally:
            colab.shutdown_kernel(kernel)
        status, _, body = colab.request("GET", "/api/kernels")
        assert status == 200
        assert kernel not in body.decode()


def test_wrong_token_fails_auth_and_stops_later_checks(healthy: Server) -> None:
    wrong = "wrong-" + "f" * 40
    report = health.check(healthy.port, wrong)
    assert not report.ok
    failure = report.first_failure
    assert failure is not None and failure.name == "auth"
    assert "token was refused" in failure.detail
    assert [c.detail for c in report.checks[2:]] == ["not reached (auth failed)"] * 3
    assert_token_hidden(report, wrong)


def test_wrong_token_is_refused_through_the_extension_too(healthy: Server) -> None:
    # The diagnose socket answers without any token (it checks only the Origin);
    # a proxied request with a bad auth URL is what Colab sees refused.
    with ColabClient(healthy.port, "wrong-" + "e" * 40) as colab:
        assert colab.diagnose()["extension_version"] == "0.0.7"
        status, _, _ = colab.request("GET", "/api/status")
        assert status == 403


def test_without_allow_credentials_cors_fails(jupyter_factory: JupyterFactory) -> None:
    def no_credentials(config: dict[str, Any]) -> None:
        config["NotebookApp"]["allow_credentials"] = False

    server = jupyter_factory.start(
        edit_config=no_credentials, drop_flags=("--NotebookApp.allow_credentials",)
    )
    report = health.check(server.port, server.token)
    failure = report.first_failure
    assert failure is not None and failure.name == "cors", report.to_dict()
    assert "Access-Control-Allow-Credentials" in failure.detail
    assert "allow_credentials" in failure.detail
    assert "Private-Network" not in failure.detail
    assert_token_hidden(report)


def test_without_private_network_header_cors_fails(jupyter_factory: JupyterFactory) -> None:
    def no_pna(config: dict[str, Any]) -> None:
        config["NotebookApp"]["tornado_settings"] = {}

    server = jupyter_factory.start(edit_config=no_pna)
    report = health.check(server.port, server.token)
    failure = report.first_failure
    assert failure is not None and failure.name == "cors", report.to_dict()
    assert "Access-Control-Allow-Private-Network" in failure.detail
    assert "Chrome" in failure.detail
    assert "Credentials" not in failure.detail
    assert_token_hidden(report)


def test_without_the_extension_the_extension_check_fails(jupyter_factory: JupyterFactory) -> None:
    def no_extension(config: dict[str, Any]) -> None:
        config["NotebookApp"]["nbserver_extensions"] = {jupyter.EXTENSION: False}

    server = jupyter_factory.start(edit_config=no_extension)
    report = health.check(server.port, server.token)
    failure = report.first_failure
    assert failure is not None and failure.name == "extension", report.to_dict()
    assert "404" in failure.detail and "not loaded" in failure.detail
    assert_token_hidden(report)


def test_tornado_65_breaks_the_extension_check(tmp_path: Path) -> None:
    # DESIGN.md fact 1, the reason for the proxied request in the extension
    # check: with tornado >= 6.5, diagnose still answers but proxying fails.
    broken = stack_venv(["jupyter_http_over_ws", "notebook<7", "tornado>=6.5"])
    factory = JupyterFactory(tmp_path, venv=broken)
    try:
        server = factory.start()
        with ColabClient(server.port, server.token) as colab:
            assert colab.diagnose()["extension_version"] == "0.0.7"
        report = health.check(server.port, server.token)
    finally:
        factory.stop_all()
    failure = report.first_failure
    assert failure is not None and failure.name == "extension", report.to_dict()
    assert "tornado" in failure.detail
    assert_token_hidden(report)


def test_nothing_listening_fails_fast_with_connection_refused() -> None:
    port = _free_port()
    started = time.monotonic()
    report = health.check(port, TOKEN)
    assert time.monotonic() - started < 1.0
    failure = report.first_failure
    assert failure is not None and failure.name == "api"
    assert "connection refused" in failure.detail
    assert [c.ok for c in report.checks] == [False] * 5
    assert_token_hidden(report)


def test_silent_listener_times_out_within_the_deadline() -> None:
    # A socket that accepts (kernel backlog) but never answers, like a wedged server.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        port = sock.getsockname()[1]
        started = time.monotonic()
        report = health.wait_healthy(port, TOKEN, deadline=started + 1.0, interval=0.1)
        elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 2.0
    failure = report.first_failure
    assert failure is not None and failure.name == "api"
    assert "no answer" in failure.detail or "deadline" in failure.detail
    assert_token_hidden(report)


def test_wait_healthy_deadline_is_respected() -> None:
    port = _free_port()
    started = time.monotonic()
    report = health.wait_healthy(port, TOKEN, deadline=started + 1.5, interval=0.2)
    elapsed = time.monotonic() - started
    assert 1.4 < elapsed < 2.0
    assert not report.ok
    failure = report.first_failure
    assert failure is not None and "connection refused" in failure.detail
    assert_token_hidden(report)


def test_wait_healthy_stops_when_asked() -> None:
    port = _free_port()
    calls = 0

    def stop() -> bool:
        nonlocal calls
        calls += 1
        return calls > 2

    started = time.monotonic()
    report = health.wait_healthy(port, TOKEN, deadline=started + 30, should_stop=stop)
    assert time.monotonic() - started < 1.0
    assert not report.ok


def test_wait_healthy_succeeds_when_the_server_comes_up_late(
    jupyter_factory: JupyterFactory,
) -> None:
    port = _free_port()
    errors: list[BaseException] = []

    def late_start() -> None:
        try:
            jupyter_factory.start(port=port)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    starter = threading.Timer(1.0, late_start)
    starter.start()
    try:
        report = health.wait_healthy(
            port, TOKEN, deadline=time.monotonic() + START_DEADLINE, interval=0.2
        )
    finally:
        starter.join(timeout=START_DEADLINE)
    assert not errors, errors
    assert report.ok, report.to_dict()
    assert_token_hidden(report)


# --- Colab's two origins, and nothing else (DESIGN.md fact 11) --------------------------------

# Pages that are not Colab: another site, look-alikes of Colab's hosts, plain http.
FOREIGN_ORIGINS = (
    "https://colab.google.com.evil.example",
    "https://colab.research.google.com.evil.example",
    "https://evilcolab.google.com",
    "https://colab.googlecom",
    "http://colab.research.google.com",
    "https://evil.example",
    "null",
)


@pytest.fixture(scope="module")
def modern(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A Jupyter Server 2 (the modern stack) with the tool's flags and config."""
    factory = JupyterFactory(tmp_path_factory.mktemp("modern"), stack="modern")
    try:
        yield factory.start()
    finally:
        factory.stop_all()


@pytest.fixture(params=["classic", "modern"])
def any_stack(request: pytest.FixtureRequest, healthy: Server) -> Server:
    return healthy if request.param == "classic" else request.getfixturevalue("modern")


def test_modern_server_passes_the_direct_route_checks(modern: Server) -> None:
    report = health.check(modern.port, modern.token, routes=("cors",))
    assert report.ok, report.to_dict()
    assert [c.name for c in report.checks] == ["api", "auth", "cors", "origins"]
    assert report.routes == ("cors",) and report.to_dict()["routes"] == ["cors"]
    assert report.checks[0].detail.startswith("Jupyter 2.")  # jupyter_server's version
    assert_token_hidden(report)


def test_modern_server_runs_code_over_the_direct_route_from_both_origins(modern: Server) -> None:
    for origin in jupyter.COLAB_ORIGINS:
        colab = DirectClient(modern.port, modern.token, origin=origin)
        kernel = colab.start_kernel()
        try:
            assert colab.execute(kernel, "print(6*7)").strip() == "42"
        finally:
            colab.shutdown_kernel(kernel)


@pytest.mark.parametrize("origin", jupyter.COLAB_ORIGINS)
def test_both_colab_origins_are_granted(any_stack: Server, origin: str) -> None:
    colab = DirectClient(any_stack.port, any_stack.token, origin=origin)
    for method, path in (("GET", "/api/kernels"), ("POST", "/api/kernels"),
                         ("DELETE", f"/api/kernels/{uuid.uuid4()}")):
        colab.preflight(method, path)  # raises if the browser would block it
    status, headers, _ = colab.request("GET", "/api/status")
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == origin


@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
def test_other_origins_are_refused(any_stack: Server, origin: str) -> None:
    """Neither the preflight nor the answer grants a page that is not Colab: its browser
    blocks every request. (Where the extension runs, its websocket refuses them too.)"""
    page = DirectClient(any_stack.port, any_stack.token, origin=origin)
    status, headers, _ = page.raw("OPTIONS", "/api/kernels", {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
        "Access-Control-Request-Private-Network": "true",
    })
    assert headers.get("Access-Control-Allow-Origin") is None, (status, dict(headers))
    status, headers, _ = page.raw("GET", f"/api/kernels?token={any_stack.token}", {})
    assert headers.get("Access-Control-Allow-Origin") is None, (status, dict(headers))
    with pytest.raises(ColabError, match="Access-Control-Allow-Origin is None"):
        page.request("GET", "/api/status")
    if any_stack.stack == "classic":
        with pytest.raises(websocket.WebSocketBadStatusException) as refused, \
                health.open_websocket("127.0.0.1", any_stack.port,
                                      "/http_over_websocket/diagnose?min_version=0.0.7",
                                      5.0, origin=origin):
            pass
        assert refused.value.status_code == 403


def test_a_pattern_that_admits_look_alikes_fails_the_origins_check(
    jupyter_factory: JupyterFactory,
) -> None:
    # Unanchored at the end, as a hand-written pattern often is.
    loose = r"https://colab\.(research\.)?google\.com"

    def loosen(config: dict[str, Any]) -> None:
        config["NotebookApp"]["allow_origin_pat"] = loose

    server = jupyter_factory.start(
        edit_config=loosen, drop_flags=("--NotebookApp.allow_origin_pat",))
    report = health.check(server.port, server.token)
    failure = report.first_failure
    assert failure is not None and failure.name == "origins", report.to_dict()
    assert "colab.google.com.evil.example" in failure.detail
    assert "any web site could drive this runtime" in failure.detail
    assert_token_hidden(report)


def test_allow_origin_from_a_user_config_is_overridden(jupyter_factory: JupyterFactory) -> None:
    """allow_origin beats allow_origin_pat in Jupyter: a user's jupyter config with
    allow_origin = '*' must not survive the tool's flags."""
    def star(config: dict[str, Any]) -> None:
        config["NotebookApp"]["allow_origin"] = "*"

    server = jupyter_factory.start(edit_config=star)  # the flags still clear it
    report = health.check(server.port, server.token)
    assert report.ok, report.to_dict()
