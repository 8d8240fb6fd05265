"""`exec`: run notebooks on a runtime, cell by cell, and keep what they produced.

  params  -p key=value, typed and injected as papermill does
  jobs    the notebooks read, checked, cleared and parameterized; where results go
  kernel  a kernel of the remote server for nbclient (REST + its websocket)
  run     each notebook in a fresh kernel through the tunnel; results as data

nbformat reads and writes the notebooks, nbclient runs the cells; both are
imported only here, when `exec` runs.
"""

from __future__ import annotations

from .. import state
from ..errors import PreemptedError, StateError
from ..options import Progress
from ..profiles import Profile
from ..runtime import Runtime
from ..server_api import ServerApi
from .jobs import Job, plan
from .params import parse as parse_parameters
from .run import ExecReport, NotebookResult, Observer, execute

__all__ = ["ExecReport", "Job", "NotebookResult", "Observer", "execute", "on_runtime",
           "parse_parameters", "plan", "running"]


def running(profile: Profile) -> state.Record | None:
    """The runtime of this profile that is up now: `exec` uses it and leaves it up."""
    if profile.run_template:
        return None
    try:
        record = state.get(profile.name)
    except StateError:
        return None
    if record is not None and record.alive and record.phase == "up":
        return record
    return None


def on_runtime(jobs: list[Job], *, runtime: Runtime | None, record: state.Record | None,
               kernel: str | None, cell_timeout: float | None, observer: Observer,
               progress: Progress) -> ExecReport:
    """Bring `runtime` up (the caller closes it), or use the one `record` says is up, and
    run the notebooks there. A Spot VM taken back meanwhile raises PreemptedError."""
    if runtime is not None:
        info = runtime.start()
        port, token, name = info.port, info.token, info.name
    else:
        assert record is not None
        port, token, name = record.port, record.token, record.name
        progress(f"using runtime '{name}', up on port {port}")
    report = execute(jobs, ServerApi(port, token), runtime=name, kernel=kernel,
                     cell_timeout=cell_timeout, observer=observer)
    provider = runtime.provider if runtime is not None else None
    if not report.ok and not report.interrupted and provider is not None:
        when = provider.preempted()
        if when:
            raise PreemptedError(f"runtime '{name}': its Spot VM was preempted by Compute "
                                 f"Engine at {when}", hint="what ran is written; run again")
    return report
