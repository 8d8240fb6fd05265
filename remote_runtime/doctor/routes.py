"""Stage `routes`: Colab's routes through the tunnel, as Colab sends them, from both Colab
origins. Through the runtime of the profile that is up, a runtime given by its URL
(`--url`: one started by hand), or a short runtime started for the check and torn down
right after: `GET /api`, the token enforced, each route the server serves to a kernel
round trip from each origin, a look-alike origin refused, and the IPv6 loopback."""

from __future__ import annotations

import dataclasses
import time
import urllib.parse
from dataclasses import dataclass

from .. import health, jupyter, redact, stacks, state
from ..errors import RemoteRuntimeError, StateError
from ..forward.listen import answers
from ..health.colab import kernel_round_trips, serves_websocket
from ..options import UpOptions
from ..runtime import Runtime
from .walk import Walk

STAGE = "routes"


@dataclass
class Through:
    """What the checks talk to."""

    port: int
    token: str
    routes: tuple[str, ...]
    what: str
    ipv6: bool  # the tunnel listens on ::1 too


def run(walk: Walk) -> None:
    runtime: Runtime | None = None
    if walk.options.url is not None:
        through = _from_url(walk)
    elif walk.profile is None:
        walk.skip(STAGE, "name a profile (or give --url) to check Colab's routes")
        return
    else:
        through = _from_record(walk)
        if through is None and _may_start(walk):
            through, runtime = _start(walk)
    try:
        if through is not None:
            _check(walk, through)
    finally:
        if runtime is not None:
            _teardown(walk, runtime)


def _from_url(walk: Walk) -> Through | None:
    url = walk.options.url or ""
    port = walk.url_port
    if port is None:
        walk.fail(STAGE, "runtime", f"{redact.url(url)!r} is not a runtime URL on this "
                  "machine (http://localhost:PORT/?token=...)",
                  "give the URL Colab would be given")
        return None
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    token = (query.get("token") or [""])[0] or (walk.options.token or "")
    if not token:
        walk.fail(STAGE, "runtime", "the URL has no token, and $JUPYTER_TOKEN is not set",
                  "set JUPYTER_TOKEN to the server's token (kept off the command line)")
        return None
    routes = stacks.ROUTES["classic"] if serves_websocket(port, token) \
        else stacks.ROUTES["modern"]
    served = " and ".join("websocket" if r == stacks.WEBSOCKET else "direct" for r in routes)
    walk.ok(STAGE, "runtime", f"the runtime at http://localhost:{port}/ (token "
            f"hidden): {served} route{'s' if len(routes) > 1 else ''} to check")
    return Through(port, token, routes, "the URL", answers("::1", port))


def _from_record(walk: Walk) -> Through | None:
    """The profile's runtime when it is up (None otherwise, said when it matters)."""
    profile = walk.profile
    assert profile is not None
    try:
        record = state.get(profile.name)
    except StateError as exc:
        walk.fail(STAGE, "runtime", exc.message, exc.hint or "")
        return None
    if record is not None and record.alive and record.phase == "up":
        walk.ok(STAGE, "runtime", f"runtime '{record.name}' is up (pid {record.pid}, "
                f"port {record.port}): checking through it")
        return Through(record.port, record.token, tuple(record.routes),
                       f"runtime '{record.name}'", answers("::1", record.port))
    if record is not None and not record.alive:
        walk.warn(STAGE, "runtime", f"runtime '{record.name}' is recorded, but its owner "
                  f"process {record.pid} is gone", f"clean it up: remote-runtime down "
                  f"{record.name}; then run doctor again")
        return None
    if record is not None:
        walk.skip(STAGE, f"runtime '{record.name}' is {record.phase}: run doctor again "
                  "once it is up")
        walk.stop(f"runtime '{record.name}' is {record.phase}")
    return None


def _may_start(walk: Walk) -> bool:
    profile = walk.profile
    assert profile is not None
    if any(c.stage == STAGE for c in walk.report.checks):
        return False  # the record said why not
    if not walk.options.start_runtime:
        walk.skip(STAGE, f"no runtime of '{profile.name}' is up, and --no-start was given")
        return False
    if walk.stopped is not None:
        walk.skip(STAGE, f"a runtime cannot start: {walk.stopped}")
        return False
    return True


def _start(walk: Walk) -> tuple[Through | None, Runtime]:
    """A short runtime, as `up` starts it, on the first port free on both ends."""
    profile = walk.profile
    assert profile is not None
    # On the first port free on both ends; never installing ipykernel (the remote stage
    # stopped the walk where the kernel's Python lacks it).
    relaxed = dataclasses.replace(
        profile, jupyter=dataclasses.replace(profile.jupyter, port_explicit=False),
        kernel=dataclasses.replace(profile.kernel, install_ipykernel="no"))
    runtime = Runtime(relaxed, UpOptions(timeout=walk.options.timeout,
                                         accept_new_host_key=walk.options.accept_new_host_key),
                      progress=walk.progress, prompter=walk.prompter)
    walk.closing(runtime.close)
    walk.progress("starting a short runtime for the route checks (torn down after them)")
    started = time.monotonic()
    try:
        info = runtime.start()
    except RemoteRuntimeError as exc:
        details = f" ({exc.details.strip().splitlines()[-1]})" if exc.details else ""
        walk.fail(STAGE, "runtime", f"a runtime could not be started: {exc.message}{details}",
                  exc.hint or "")
        return None, runtime
    took = time.monotonic() - started
    walk.ok(STAGE, "runtime", f"started a short runtime on port {info.port} "
            f"({info.stack} stack) in {took:.0f} s; it is torn down after these checks")
    ipv6 = runtime.forwarder is not None and any(
        host == "::1" for host, _ in runtime.forwarder.bound)
    return Through(info.port, info.token, info.routes, "the short runtime", ipv6), runtime


def _teardown(walk: Walk, runtime: Runtime) -> None:
    done = runtime.close()
    if any("failed" in line for line in done):
        walk.warn(STAGE, "teardown", "; ".join(done), "remote-runtime list shows what is "
                  "left; the remote server stops itself when its lease ends")
    elif done:
        walk.ok(STAGE, "teardown", "; ".join(done))


def _check(walk: Walk, through: Through) -> None:
    report = health.check(through.port, through.token, routes=through.routes)
    by_name = {c.name: c for c in report.checks}
    for name, label in (("api", "api"), ("auth", "token")):
        found = by_name[name]
        if not found.ok:
            walk.fail(STAGE, label, found.detail, _fix(name))
            return
        walk.ok(STAGE, label, found.detail)
    for check in kernel_round_trips(through.port, through.token, routes=through.routes):
        if check.ok:
            walk.ok(STAGE, check.name, check.detail)
        else:
            walk.fail(STAGE, check.name, check.detail, _fix(check.name))
    if stacks.WEBSOCKET not in through.routes:
        walk.warn(STAGE, "websocket route", f"{through.what} does not serve it "
                  "(jupyter_http_over_ws is not loaded): Colab uses the direct route")
    origins = by_name.get("origins")
    if origins is not None and origins.ok:
        walk.ok(STAGE, "other origins", origins.detail)
    elif origins is not None and "not reached" not in origins.detail:
        walk.fail(STAGE, "other origins", origins.detail,
                  "allow only Colab's origins (allow_origin_pat), never '*'")
    if through.ipv6:
        _ipv6(walk, through)


def _ipv6(walk: Walk, through: Through) -> None:
    quick = health.quick_check(through.port, through.token, host="::1")
    if quick.ok:
        walk.ok(STAGE, "ipv6", f"the runtime answers on [::1]:{through.port} too")
        return
    failure = quick.first_failure
    walk.fail(STAGE, "ipv6", f"no answer on [::1]:{through.port} "
              f"({failure.detail if failure else '?'})",
              "browsers may resolve localhost to ::1; check the IPv6 loopback")


def _fix(name: str) -> str:
    if name == "api":
        return "the port does not lead to a Jupyter server: check the tunnel and the server"
    if name == "auth":
        return "start the server with a token (remote-runtime does; by hand: JUPYTER_TOKEN)"
    if name.startswith("websocket"):
        return ("the classic stack needs notebook<7, tornado<6.5 and jupyter_http_over_ws "
                "enabled, with allow_origin_pat admitting Colab (remote-runtime up sets it)")
    hosts = " and ".join(jupyter.COLAB_ORIGINS)
    return (f"start the server with allow_origin_pat admitting {hosts}, allow_credentials "
            "True and the Access-Control-Allow-Private-Network header (remote-runtime up "
            "sets all three)")
