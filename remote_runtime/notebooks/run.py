"""Run each notebook cell by cell in a kernel of the runtime, through the tunnel.

nbclient runs the cells (outputs, timing, `raises-exception` and `skip-execution`
tags) with the remote kernel of `kernel`, in a worker thread with its own event loop,
so Ctrl-C in the main thread can interrupt the kernel (as the notebook's stop button
does), let the worker record what ran, and delete the kernel. Every notebook gets a
fresh kernel of the runtime's default kernelspec (the user's Python), unless one is
named. The executed notebook is written after each cell and at the end.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from ..errors import NotebookError, RemoteRuntimeError, RemoteSetupError, UsageError
from ..server_api import ServerApi, ServerApiError
from .jobs import Job, plain
from .kernel import RemoteKernelManager

STARTUP_TIMEOUT = 180.0  # a kernel of a big conda env can take a while to import
WRITE_EVERY = 1.0  # seconds between writes of a notebook while it runs
INTERRUPT_GRACE = 10.0  # for the kernel to stop the running cell before we cut it off


@dataclass
class CellFailure:
    index: int  # 0-based position in the notebook
    ename: str
    evalue: str
    traceback: str = ""
    kind: str = "error"  # "error", "timeout" or "died"
    execution_count: int | None = None  # its "In [N]"

    def describe(self) -> str:
        where = f"cell {self.index + 1}" + (
            f" (In [{self.execution_count}])" if self.execution_count else "")
        if self.kind == "timeout":
            return f"{where} timed out ({self.evalue})"
        if self.kind == "died":
            return f"{where}: {self.evalue}"
        return f"{where} raised {self.ename}: {self.evalue}" if self.evalue else \
            f"{where} raised {self.ename}"


@dataclass
class NotebookResult:
    job: Job
    status: str  # "ok", "failed", "interrupted", "error" (no kernel) or "not run"
    total: int  # the code cells to run
    executed: int = 0
    seconds: float = 0.0
    failure: CellFailure | None = None
    error: str = ""

    def describe(self) -> str:
        """One line: the notebook, the cell and the error."""
        if self.failure is not None:
            return f"{self.job.name}: {self.failure.describe()}"
        if self.status == "interrupted":
            return f"{self.job.name}: interrupted after {self.executed} of {self.total} cells"
        return f"{self.job.name}: {self.error or self.status}"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "notebook": str(self.job.source), "output": str(self.job.output),
            "status": self.status, "cells": self.total, "executed": self.executed,
            "seconds": round(self.seconds, 3), "notes": self.job.notes,
        }
        if self.failure is not None:
            data["failed_cell"] = {"index": self.failure.index + 1, "kind": self.failure.kind,
                                   "ename": self.failure.ename, "evalue": self.failure.evalue,
                                   "traceback": self.failure.traceback}
        if self.error:
            data["error"] = self.error
        return data


@dataclass
class ExecReport:
    runtime: str
    kernel: str
    results: list[NotebookResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.status == "ok" for r in self.results)

    @property
    def interrupted(self) -> bool:
        return any(r.status == "interrupted" for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "kernel": self.kernel, "ok": self.ok,
                "notebooks": [r.to_dict() for r in self.results]}

    def error(self) -> RemoteRuntimeError | None:
        """The error `exec` ends with: the first failure named, the others below."""
        bad = [r for r in self.results if r.status in ("failed", "error")]
        if not bad:
            return None
        first = bad[0]
        more = f" (and {len(bad) - 1} more notebook(s) failed)" if len(bad) > 1 else ""
        lines = [f"- {r.describe()}" for r in bad[1:]]
        if first.failure is not None and first.failure.traceback:
            lines.insert(0, first.failure.traceback.strip()[-1500:])
        details = "\n".join(lines) or None
        hint = f"what ran is in {first.job.output}"
        kind = RemoteSetupError if first.status == "error" else NotebookError
        return kind(first.describe() + more, details=details, hint=hint)


class Observer(Protocol):
    """What `execute` reports while it runs (the CLI draws progress bars from it); called
    from worker threads."""

    def started(self, job: Job, total: int) -> None:
        """A notebook's kernel is up; `total` code cells will run."""

    def cell_done(self, job: Job, executed: int, total: int) -> None:
        """One more cell ran."""

    def finished(self, result: NotebookResult) -> None:
        """A notebook is done (whatever its status)."""


class Quiet:
    """An Observer that says nothing."""

    def started(self, job: Job, total: int) -> None:
        pass

    def cell_done(self, job: Job, executed: int, total: int) -> None:
        pass

    def finished(self, result: NotebookResult) -> None:
        pass


def kernel_for(api: ServerApi, wanted: str | None, *, needs_python: bool) -> str:
    """The kernelspec to run: `wanted`, or the server's default (the user's Python)."""
    try:
        specs = api.request("GET", "/api/kernelspecs")
    except ServerApiError as exc:
        raise RemoteSetupError(f"cannot list the runtime's kernels: {exc.message}") from None
    available = dict(specs.get("kernelspecs") or {})
    name = wanted or str(specs.get("default") or "")
    if name not in available:
        listed = ", ".join(sorted(available)) or "none"
        raise UsageError(f"the runtime has no kernel '{name}' (kernels: {listed})",
                         hint="pick one with --kernel")
    language = str((available[name].get("spec") or {}).get("language", "")).lower()
    if needs_python and language != "python":
        raise UsageError(f"parameters are injected as Python, but kernel '{name}' runs "
                         f"{language or 'an unknown language'}")
    return name


def execute(jobs: list[Job], api: ServerApi, *, runtime: str, kernel: str | None = None,
            cell_timeout: float | None = None, observer: Observer | None = None) -> ExecReport:
    """Run every notebook (each in a fresh kernel); stops early only on Ctrl-C."""
    observer = observer or Quiet()
    name = kernel_for(api, kernel, needs_python=any(job.parameters for job in jobs))
    report = ExecReport(runtime, name)
    for job in jobs:
        if report.interrupted:
            report.results.append(NotebookResult(job, "not run", job.code_cells))
            continue
        run = NotebookRun(job, api, runtime=runtime, kernel=name, cell_timeout=cell_timeout,
                          observer=observer)
        report.results.append(run.run())
        observer.finished(report.results[-1])
    return report


class NotebookRun:
    def __init__(self, job: Job, api: ServerApi, *, runtime: str, kernel: str,
                 cell_timeout: float | None, observer: Observer) -> None:
        self.job, self.runtime, self.kernel = job, runtime, kernel
        self.cell_timeout = cell_timeout
        self.observer = observer
        self.km = RemoteKernelManager(api, kernel)
        self.result = NotebookResult(job, "ok", job.code_cells)
        self.interrupted = False
        self.current = -1
        self.started = datetime.now(UTC)
        self._last_write = 0.0
        self._write_lock = threading.Lock()

    def run(self) -> NotebookResult:
        """In a worker thread; Ctrl-C here interrupts the kernel and ends the run."""
        clock = time.monotonic()
        worker = threading.Thread(target=self._work, name=f"exec {self.job.name}", daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(0.2)
        except KeyboardInterrupt:
            self.interrupted = True
            self.km.interrupt()
            worker.join(INTERRUPT_GRACE)
            if worker.is_alive() and self.km.kernel_client is not None:
                self.km.kernel_client.close("interrupted")
                worker.join(INTERRUPT_GRACE)
            if worker.is_alive():  # stuck in a call to the server: record what we have
                self.result.status = "interrupted"
                self.km.delete()
                self._write(final=True)
        self.result.seconds = time.monotonic() - clock
        return self.result

    def _work(self) -> None:
        try:
            asyncio.run(self._cells())
        except BaseException as exc:  # noqa: BLE001 - every outcome is recorded, not raised
            self._record(exc)
        finally:
            self.km.delete()
            self._write(final=True)

    async def _cells(self) -> None:
        from nbclient import NotebookClient

        client = NotebookClient(
            self.job.notebook, km=self.km,  # type: ignore[arg-type]  # nbclient duck-types it
            kernel_name=self.kernel, timeout=self.cell_timeout,
            startup_timeout=STARTUP_TIMEOUT, allow_errors=False, record_timing=True,
            interrupt_on_timeout=False, on_cell_executed=self._cell_executed)
        async with client.async_setup_kernel(cleanup_kc=True):
            assert client.kc is not None
            self.observer.started(self.job, self.result.total)
            reply = await client.async_wait_for_reply(client.kc.kernel_info())
            if reply is not None and "language_info" in reply["content"]:
                self.job.notebook.metadata["language_info"] = reply["content"]["language_info"]
            for index, cell in enumerate(self.job.notebook.cells):
                if self.interrupted:
                    break
                self.current = index
                await client.async_execute_cell(
                    cell, index, execution_count=client.code_cells_executed + 1)
        if self.interrupted:
            self.result.status = "interrupted"

    def _cell_executed(self, cell: Any, cell_index: int, execute_reply: Any) -> None:
        self.result.executed += 1
        self.observer.cell_done(self.job, self.result.executed, self.result.total)
        self._write()

    def _record(self, exc: BaseException) -> None:
        from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

        result = self.result
        if self.interrupted:
            result.status = "interrupted"
            return
        result.status = "failed"
        cells = self.job.notebook.cells
        count = cells[self.current].get("execution_count") if 0 <= self.current < len(cells) \
            else None
        if isinstance(exc, CellTimeoutError):
            result.failure = CellFailure(self.current, "timeout",
                                         f"no result after {self.cell_timeout:g}s",
                                         kind="timeout", execution_count=count)
        elif isinstance(exc, CellExecutionError):
            result.failure = CellFailure(self.current, exc.ename, plain(exc.evalue),
                                         plain(exc.traceback), execution_count=count)
        elif isinstance(exc, DeadKernelError | RuntimeError) and self.current >= 0:
            reason = self._died() or str(exc)
            result.failure = CellFailure(self.current, "DeadKernel", reason, kind="died",
                                         execution_count=count)
        else:
            result.status = "error"
            what = str(exc.message) if isinstance(exc, ServerApiError) else str(exc)
            result.error = f"the kernel '{self.kernel}' did not start: {what or type(exc).__name__}"

    def _died(self) -> str:
        client = self.km.kernel_client
        return client.socket.died if client is not None and client.socket is not None else ""

    def _write(self, *, final: bool = False) -> None:
        if not final and time.monotonic() - self._last_write < WRITE_EVERY:
            return
        result = self.result
        with self._write_lock:
            self._last_write = time.monotonic()
            self.job.write({
                "runtime": self.runtime, "kernel": self.kernel,
                "parameters": self.job.parameters,
                "status": result.status if final else "running",
                "code_cells": result.total, "executed_cells": result.executed,
                "failed_cell": result.failure.index + 1 if result.failure else None,
                "error": result.failure.describe() if result.failure else result.error or None,
                "started": self.started.isoformat(),
                "ended": datetime.now(UTC).isoformat() if final else None,
            })
