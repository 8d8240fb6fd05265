"""The fake Compute Engine (and OS Login) REST server: HTTP plumbing, routing, projects,
the power actions and metadata of instances, operations, OS Login.

VM creation, deletion, images, filters and preemption are in `vms` (a mixin).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .model import BASE, ApiError, Call, Fault, Instance, Json, Metadata, Operation
from .vms import VmLifecycle


class FakeCompute(VmLifecycle):
    """In-memory Compute Engine + OS Login REST API; see the module docstring."""

    def __init__(self, *, operation_seconds: float = 0.2, boot_seconds: float = 0.3,
                 metadata_seconds: float = 0.05, max_wait_seconds: float = 1.0) -> None:
        self.operation_seconds = operation_seconds  # until a start/stop operation is DONE
        self.metadata_seconds = metadata_seconds  # until a metadata write is applied
        self.boot_seconds = boot_seconds  # from start until the instance is RUNNING
        self.max_wait_seconds = max_wait_seconds  # operations.wait returns by then
        self.projects: dict[str, Metadata] = {}
        self.instances: dict[tuple[str, str, str], Instance] = {}
        self.operations: dict[str, Operation] = {}
        # OS Login: email -> imported public keys, and the posix name it maps to.
        self.oslogin_keys: dict[str, list[str]] = {}
        self.oslogin_username: Callable[[str], str] = (
            lambda email: re.sub(r"[^a-z0-9_]", "_", email.lower().replace("@", "_")))
        self.calls: list[Call] = []
        self.faults: list[Fault] = []
        # Called with the instance just before a setMetadata is checked, to simulate a
        # concurrent writer (e.g. change the metadata so the caller's fingerprint is stale).
        self.before_set_metadata: Callable[[Metadata], None] | None = None
        self.lock = threading.RLock()
        self._ids = itertools.count(1_000_000_000_000_000_001)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._init_vms()

    # --- lifecycle -------------------------------------------------------------

    def start(self) -> FakeCompute:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                fake._serve(self, "GET")

            def do_POST(self) -> None:
                fake._serve(self, "POST")

            def do_DELETE(self) -> None:
                fake._serve(self, "DELETE")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True, name="fake-compute")
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeCompute:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # --- test set-up and inspection -------------------------------------------

    def add_project(self, project: str, items: dict[str, str] | None = None) -> Metadata:
        with self.lock:
            meta = self.projects.setdefault(project, Metadata())
            meta.items.update(items or {})
            return meta

    def add_instance(self, project: str, zone: str, name: str, *,
                     metadata: dict[str, str] | None = None, **kwargs: Any) -> Instance:
        with self.lock:
            self.add_project(project)
            instance = Instance(project, zone, name, id=next(self._ids),
                                metadata=Metadata(dict(metadata or {})), **kwargs)
            self.instances[(project, zone, name)] = instance
            return instance

    def inject(self, status: int, *, method: str = "", path: str = "", message: str = "",
               reason: str = "", permission: str | None = None, times: int | None = 1) -> None:
        """Fail requests whose path matches the regex `path` (and `method`) with `status`."""
        default_reason = {403: "forbidden", 404: "notFound", 412: "conditionNotMet",
                          429: "rateLimitExceeded"}.get(status, "backendError")
        self.faults.append(Fault(status, method.upper(), re.compile(path), message
                                 or f"injected error {status}", reason or default_reason,
                                 permission, times))

    def calls_to(self, action: str, method: str | None = None) -> list[Call]:
        with self.lock:
            return [c for c in self.calls
                    if c.action == action and (method is None or c.method == method)]

    # --- HTTP plumbing -----------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw.strip() else None
        call = Call(method, parts.path, query, body)
        with self.lock:
            self.calls.append(call)
        try:
            self._check_faults(call)
            status, payload = 200, self._route(call)
        except ApiError as exc:
            status, payload = exc.status, exc.body()
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=UTF-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _check_faults(self, call: Call) -> None:
        with self.lock:
            for fault in self.faults:
                if fault.times == 0:
                    continue
                if fault.method and fault.method != call.method:
                    continue
                if not fault.pattern.search(call.path):
                    continue
                if fault.times is not None:
                    fault.times -= 1
                raise ApiError(fault.status, fault.message, fault.reason, fault.permission)

    def _route(self, call: Call) -> Json:
        path = call.path
        if path.startswith("/v1/users/"):
            return self._oslogin(call)
        if not path.startswith(BASE):
            raise ApiError(404, f"no such API path {path}", "notFound")
        segments = path[len(BASE):].split("/")
        project, rest = segments[0], segments[1:]
        with self.lock:
            if project not in self.projects:
                raise ApiError(404, f"The resource 'projects/{project}' was not found",
                               "notFound")
            if not rest:
                return self._project(project, call)
            if rest[0] == "setCommonInstanceMetadata":
                return self._set_common_metadata(project, call)
            if rest[:2] == ["global", "operations"] and len(rest) >= 3:
                return self._operation(rest[2], wait=rest[3:] == ["wait"])
            if rest[:2] == ["global", "images"] and call.method == "GET":
                return self._images(project, rest[2:])
            if rest[0] == "zones" and len(rest) >= 3:
                zone, kind, tail = rest[1], rest[2], rest[3:]
                if kind == "operations" and tail:
                    return self._operation(tail[0], wait=tail[1:] == ["wait"])
                if kind == "operations" and call.method == "GET":
                    return self._zone_operations(project, zone, call.query)
                if kind == "instances":
                    return self._instances(project, zone, tail, call)
        raise ApiError(404, f"no such API path {path}", "notFound")

    # --- projects ------------------------------------------------------------------

    def _project(self, project: str, call: Call) -> Json:
        meta = self.projects[project]
        return {"kind": "compute#project", "name": project, "id": "4242",
                "commonInstanceMetadata": meta.to_json()}

    def _set_common_metadata(self, project: str, call: Call) -> Json:
        meta = self.projects[project]
        self._check_fingerprint(meta, call.body or {})
        body = call.body or {}
        return self._new_operation(project, None, "setCommonInstanceMetadata",
                                   f"{BASE}{project}", self.metadata_seconds,
                                   lambda: meta.replace(body))

    # --- instances ------------------------------------------------------------------

    def _instances(self, project: str, zone: str, tail: list[str], call: Call) -> Json:
        if not tail and call.method == "POST":
            return self._insert(project, zone, call.body or {}, call.path)
        if not tail:
            return self._list_instances(project, zone, call.query)
        name = tail[0]
        instance = self.live(project, zone, name)
        if instance is None:
            raise ApiError(404, f"The resource 'projects/{project}/zones/{zone}/instances/"
                           f"{name}' was not found", "notFound")
        action = tail[1] if len(tail) > 1 else ""
        if action == "" and call.method == "GET":
            return instance.to_json()
        if action == "" and call.method == "DELETE":
            return self._delete(instance)
        if action == "getGuestAttributes":
            return self._guest_attributes(instance, call.query.get("queryPath", ""))
        if call.method != "POST":
            raise ApiError(405, f"{call.method} not allowed here", "badRequest")
        if action == "setMetadata":
            self._check_fingerprint(instance.metadata, call.body or {})
            body = call.body or {}
            return self._new_operation(project, zone, "setMetadata", call.path,
                                       self.metadata_seconds,
                                       lambda: instance.metadata.replace(body))
        if action in ("start", "resume", "stop"):
            return self._power(instance, action, call.path)
        raise ApiError(400, f"unsupported instance action {action!r}", "badRequest")

    def _power(self, instance: Instance, action: str, link: str) -> Json:
        status = instance.current_status()
        now = time.monotonic()
        if action in ("start", "resume"):
            wanted = "SUSPENDED" if action == "resume" else "TERMINATED"
            if status != wanted and not (action == "start" and status == "STOPPED"):
                raise ApiError(400, f"The instance is {status}; cannot {action} it",
                               "resourceNotReady")
            instance.status = "STAGING"
            instance.pending = ("RUNNING", now + self.boot_seconds)
        else:
            instance.status = "STOPPING"
            instance.pending = ("TERMINATED", now + self.operation_seconds)
        return self._new_operation(instance.project, instance.zone, action, link,
                                   self.operation_seconds, None)

    def _guest_attributes(self, instance: Instance, query_path: str) -> Json:
        published = instance.host_keys is not None and time.monotonic() >= instance.host_keys_at
        if not published or query_path != "hostkeys/":
            raise ApiError(404, f"The resource '{query_path}' of type 'Guest Attribute' "
                           "was not found.", "notFound")
        items = [{"namespace": "hostkeys", "key": k, "value": v}
                 for k, v in (instance.host_keys or {}).items()]
        return {"kind": "compute#guestAttributes", "queryPath": query_path,
                "queryValue": {"items": items}}

    def _check_fingerprint(self, meta: Metadata, body: Json) -> None:
        if self.before_set_metadata is not None:
            hook, self.before_set_metadata = self.before_set_metadata, None
            hook(meta)
        if body.get("fingerprint") != meta.fingerprint:
            raise ApiError(412, "Supplied fingerprint does not match current metadata "
                           "fingerprint.", "conditionNotMet")

    # --- operations ------------------------------------------------------------------

    def _new_operation(self, project: str, zone: str | None, kind: str, target: str,
                       delay: float, on_done: Callable[[], None] | None) -> Json:
        name = f"operation-{next(self._ids)}-{kind}"
        op = Operation(project, zone, name, kind, target, time.monotonic() + delay, on_done)
        self.operations[name] = op
        return op.to_json()

    def fail_next_operation(self, code: str, message: str) -> None:
        """Make the next operation created finish with this error (e.g. a zone stockout)."""
        original = self._new_operation

        def failing(project: str, zone: str | None, kind: str, target: str, delay: float,
                    on_done: Callable[[], None] | None) -> Json:
            self._new_operation = original  # type: ignore[method-assign]
            body = original(project, zone, kind, target, delay, on_done)
            self.operations[body["name"]].error = [{"code": code, "message": message}]
            return self.operations[body["name"]].to_json()

        self._new_operation = failing  # type: ignore[method-assign]

    def _operation(self, name: str, *, wait: bool) -> Json:
        op = self.operations.get(name)
        if op is None:
            raise ApiError(404, f"The resource 'operations/{name}' was not found", "notFound")
        if wait:
            deadline = time.monotonic() + self.max_wait_seconds
            self.lock.release()  # let other requests through while this one waits
            try:
                while time.monotonic() < min(deadline, op.done_at):
                    time.sleep(0.01)
            finally:
                self.lock.acquire()
        return op.to_json()

    # --- OS Login ------------------------------------------------------------------

    def _oslogin(self, call: Call) -> Json:
        profile = re.fullmatch(r"/v1/users/([^/:]+)/loginProfile", call.path)
        if profile is not None and call.method == "GET":  # read only (doctor)
            email = unquote(profile.group(1))
            with self.lock:
                keys = list(self.oslogin_keys.get(email, []))
            return self._login_profile(email, keys, call.query.get("projectId", ""))
        match = re.fullmatch(r"/v1/users/([^/:]+):importSshPublicKey", call.path)
        if match is None or call.method != "POST":
            raise ApiError(404, f"no such OS Login path {call.path}", "notFound")
        email = unquote(match.group(1))
        key = (call.body or {}).get("key", "")
        with self.lock:
            keys = self.oslogin_keys.setdefault(email, [])
            if key not in keys:
                keys.append(key)
        return {"loginProfile": self._login_profile(email, keys,
                                                    call.query.get("projectId", ""))}

    def _login_profile(self, email: str, keys: list[str], project: str) -> Json:
        username = self.oslogin_username(email)
        return {
            "name": email,
            "posixAccounts": [{"primary": True, "username": username, "uid": "1001",
                               "gid": "1001", "homeDirectory": f"/home/{username}",
                               "accountId": project, "operatingSystemType": "LINUX"}],
            "sshPublicKeys": {str(i): {"key": k} for i, k in enumerate(keys)},
        }
