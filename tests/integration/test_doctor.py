"""`remote-runtime doctor` against the sandbox host: each broken link made for real, and
checked for its line and exit code; a healthy runtime all ok; nothing left running.

The remote is the sandbox (a real sshd in a network namespace, the shared managed env);
the browser stage reads browser settings written into the test's private HOME (the
places Chrome and Firefox keep them), so its verdict does not depend on this machine.

Ports: 25500-25999 (this file's range).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.browsers import ALLOW, chrome_profile, colab_patterns
from support.cli import UpProcess, cli_env, describe, run_cli, wait_until
from support.env import Isolated, require_netns_sandbox, unavailable
from support.gce import PROJECT, ZONE, existing_vm, gce_body
from support.jupyter_venv import stack_venv, venv_bin
from support.net import PortRange, has_ipv6_loopback, port_closed
from support.openssh import real_ssh
from support.procs import alive, cmdline, wait_gone
from support.pythons import without_venv
from support.remote import Teardown, remote_servers, sandbox_profile, write_profiles
from support.remote_user import python_env

from remote_runtime.errors import ExitCode
from sandbox import Sandbox

PORTS = PortRange(25500, 25999)
DOCTOR_TIMEOUT = 240.0
Lines = list[tuple[str, str, str]]  # (status, stage, "name: detail")


def doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "remote_runtime.cli", "doctor", *args],
                          capture_output=True, text=True, env=env or cli_env(),
                          stdin=subprocess.DEVNULL, timeout=DOCTOR_TIMEOUT, check=False)


def lines(result: subprocess.CompletedProcess[str]) -> Lines:
    """The check lines of the text output: (status, stage, the rest)."""
    found = []
    for line in result.stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0] in ("ok", "warning", "FAILED", "skipped"):
            found.append((parts[0], parts[1], parts[2]))
    return found


def line(result: subprocess.CompletedProcess[str], stage: str, name: str) -> tuple[str, str]:
    """(status, detail) of the one check `name` of `stage` (name "skipped": its skip line)."""
    matches = [(status, rest.removeprefix(f"{name}: ")) for status, s, rest in lines(result)
               if s == stage and (rest.startswith(f"{name}:") or
                                  (name == "skipped" and status == "skipped"))]
    assert len(matches) == 1, f"{stage} {name}: {matches}\n{describe(result)}"
    return matches[0]


def fix_after(result: subprocess.CompletedProcess[str], stage: str, name: str) -> str:
    text = result.stdout.splitlines()
    for index, entry in enumerate(text):
        parts = entry.split(None, 2)
        if len(parts) == 3 and parts[1] == stage and parts[2].startswith(f"{name}:"):
            following = text[index + 1].strip() if index + 1 < len(text) else ""
            assert following.startswith("fix:"), describe(result)
            return following
    raise AssertionError(describe(result))


def chrome_allows_colab(isolated: Isolated) -> None:
    """This machine's "browser": a Chrome profile that allows both Colab origins."""
    chrome_profile(isolated.config / "google-chrome", colab_patterns(ALLOW))


def assert_nothing_left(box: Sandbox, guard: Teardown, isolated: Isolated, *ports: int) -> None:
    left = wait_gone(box.remote_pids())
    assert not left, f"remote processes left behind: {[cmdline(pid)[:300] for pid in left]}"
    assert not [pid for pid in guard.ours() if alive(pid)], "local processes left behind"
    assert isolated.runtime_records == []
    for port in ports:
        assert port_closed(port)


def healthy_profile(box: Sandbox, guard: Teardown, isolated: Isolated,
                    tmp_path: Path) -> tuple[int, Path]:
    """A sandbox profile 'sb' on a port of this file's range, and a browser that allows
    Colab: (port, profiles file)."""
    port = PORTS.take()
    profiles = guard.add(write_profiles(tmp_path / "profiles.yaml",
                                        {"sb": sandbox_profile(box, "sb", port)}))
    chrome_allows_colab(isolated)
    return port, profiles


# --- a healthy runtime --------------------------------------------------------------------------


def test_healthy_runtime_all_ok_and_nothing_left_running(
        clean_remote: Sandbox, teardown: Teardown, isolated: Isolated,
        tmp_path: Path) -> None:
    box = clean_remote
    port, profiles = healthy_profile(box, teardown, isolated, tmp_path)
    result = doctor("sb", "--profiles", str(profiles))
    assert result.returncode == 0, describe(result)
    found = lines(result)
    # IPv6 loopback is a warning where the machine has none (not here, normally).
    tolerated = {("local", "loopback ipv6")} if not has_ipv6_loopback() else set()
    assert [entry for entry in found if entry[0] != "ok"
            and (entry[1], entry[2].split(":")[0]) not in tolerated] == [], describe(result)
    stages = [stage for _, stage, _ in found]
    assert sorted(set(stages), key=stages.index) == [
        "profile", "reach", "ssh", "remote", "local", "routes", "browser"]
    assert line(result, "remote", "kernel")[1] == (
        f"{sys.executable} (Python {sys.version.split()[0]}; kernel.python) has ipykernel")
    assert "accepted" in line(result, "ssh", "login")[1]
    for route in ("websocket route", "direct route"):
        for host in ("colab.research.google.com", "colab.google.com"):
            _status, detail = line(result, "routes", f"{route} from {host}")
            assert "a kernel ran print(6 * 7) -> 42" in detail, describe(result)
    assert "started a short runtime" in line(result, "routes", "runtime")[1]
    assert "stopped the remote Jupyter server" in line(result, "routes", "teardown")[1]
    assert line(result, "browser", "chrome")[1].endswith(
        "local network access is allowed for colab.google.com, colab.research.google.com")
    assert "no broken link found" in result.stdout
    assert "Traceback" not in result.stderr
    assert_nothing_left(box, teardown, isolated, port)
    assert not remote_servers(box, port)


def test_through_the_runtime_that_is_up(
        clean_remote: Sandbox, teardown: Teardown, isolated: Isolated,
        tmp_path: Path) -> None:
    box = clean_remote
    port, profiles = healthy_profile(box, teardown, isolated, tmp_path)
    up = run_cli("up", "sb", "--detach", "--profiles", str(profiles), timeout=240)
    assert up.returncode == 0, describe(up)
    server = remote_servers(box, port)
    result = doctor("sb", "--profiles", str(profiles))
    assert result.returncode == 0, describe(result)
    status, detail = line(result, "local", "port")
    assert status == "ok" and "held by runtime 'sb' of remote-runtime" in detail
    assert "runtime 'sb' is up" in line(result, "routes", "runtime")[1]
    assert not [entry for entry in lines(result) if entry[2].startswith("teardown:")]
    # The runtime doctor used is untouched: the same server, still healthy.
    assert remote_servers(box, port) == server
    assert run_cli("status", "sb", "--profiles", str(profiles)).returncode == 0
    down = run_cli("down", "sb", "--profiles", str(profiles), timeout=120)
    assert down.returncode == 0, describe(down)
    assert_nothing_left(box, teardown, isolated, port)


# --- each broken link ---------------------------------------------------------------------------


def test_unreachable_host_json(
        clean_remote: Sandbox, teardown: Teardown, isolated: Isolated,
        tmp_path: Path) -> None:
    box = clean_remote
    closed = PORTS.take()  # nothing listens there
    body = sandbox_profile(box, "gone", PORTS.take(), ssh={"host": "127.0.0.1", "port": closed})
    body["ssh"].pop("proxy_command", None)
    profiles = teardown.add(write_profiles(tmp_path / "profiles.yaml", {"gone": body}))
    result = doctor("gone", "--profiles", str(profiles), "--json")
    assert result.returncode == ExitCode.UNREACHABLE == 13, describe(result)
    report = json.loads(result.stdout)
    assert report["exit_code"] == 13 and report["failed_stage"] == "reach"
    assert report["ok"] is False and report["name"] == "gone"
    stages = {stage["name"]: stage for stage in report["stages"]}
    assert list(stages) == ["profile", "reach", "ssh", "remote", "local", "routes", "browser"]
    for stage in report["stages"]:
        assert set(stage) == {"name", "title", "exit_code", "status", "checks"}
        for check in stage["checks"]:
            assert set(check) == {"name", "status", "detail", "fix"}
            assert check["status"] in ("ok", "warning", "failed", "skipped")
    tcp = next(c for c in stages["reach"]["checks"] if c["name"] == "tcp")
    assert tcp["status"] == "failed"
    assert f"cannot connect to 127.0.0.1 port {closed}" in tcp["detail"]
    assert "refused" in tcp["detail"].lower()
    assert "sshd runs on 127.0.0.1" in tcp["fix"]
    for name in ("ssh", "remote", "routes"):
        assert stages[name]["status"] == "skipped"
    assert stages["local"]["status"] in ("ok", "warning")  # checked anyway
    assert stages["reach"]["exit_code"] == 13 and stages["ssh"]["exit_code"] == 4
    assert isolated.runtime_records == []


@pytest.mark.parametrize("kind", ["changed", "unknown"])
def test_wrong_or_unknown_host_key(kind: str, clean_remote: Sandbox, teardown: Teardown,
                                   tmp_path: Path) -> None:
    box = clean_remote
    known = tmp_path / "known_hosts"
    if kind == "changed":
        other = tmp_path / "otherhost"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                       check=True, capture_output=True)
        key_type, blob = other.with_suffix(".pub").read_text().split()[:2]
        known.write_text(f"sb {key_type} {blob}\n")
    else:
        known.write_text("")
    before = known.read_text()
    profiles = teardown.add(write_profiles(tmp_path / "profiles.yaml", {
        "sb": sandbox_profile(box, "sb", PORTS.take(), ssh={"known_hosts": str(known)})}))
    result = doctor("sb", "--profiles", str(profiles))
    assert result.returncode == ExitCode.SSH == 4, describe(result)
    status, detail = line(result, "ssh", "host key")
    assert status == "FAILED"
    if kind == "changed":
        assert detail.startswith("HOST KEY CHANGED for sb") and f"{known} line 1" in detail
        assert "ssh-keygen -R" in fix_after(result, "ssh", "host key")
    else:
        assert detail.startswith("unknown host key for sb: ssh-ed25519 SHA256:")
        assert "--accept-new-host-key" in fix_after(result, "ssh", "host key")
    assert known.read_text() == before  # the doctor records nothing
    assert line(result, "remote", "skipped")[0] == "skipped"
    assert not (Path.home() / ".ssh" / "known_hosts").exists()


def test_refused_key(
        clean_remote: Sandbox, teardown: Teardown, isolated: Isolated,
        tmp_path: Path) -> None:
    box = clean_remote
    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                   check=True, capture_output=True)
    profiles = teardown.add(write_profiles(tmp_path / "profiles.yaml", {
        "sb": sandbox_profile(box, "sb", PORTS.take(), ssh={"identity_file": str(key)})}))
    result = doctor("sb", "--profiles", str(profiles))
    assert result.returncode == ExitCode.SSH, describe(result)
    assert line(result, "ssh", "host key")[0] == "ok"
    assert line(result, "ssh", "auth methods") == ("ok", "the server offers publickey")
    status, detail = line(result, "ssh", "login")
    assert status == "FAILED" and f"refused every key ({key})" in detail
    assert f"ssh-copy-id -i {key}" in fix_after(result, "ssh", "login")


def test_python_without_venv(isolated: Isolated, tmp_path: Path) -> None:
    """A first-contact remote (an empty cache: the managed env must be built) whose
    jupyter.python lacks ensurepip, as Debian's python3 without python3-venv."""
    require_netns_sandbox()
    python = without_venv(tmp_path / "debian-python")
    with Sandbox(tmp_path / "box", mode="netns",
                 remote_cache_dir=tmp_path / "remote-cache") as box:
        try:
            port = PORTS.take()
            profiles = write_profiles(tmp_path / "profiles.yaml", {
                "sb": sandbox_profile(box, "sb", port, jupyter={"python": str(python)})})
            result = doctor("sb", "--profiles", str(profiles))
            assert result.returncode == ExitCode.REMOTE_SETUP == 6, describe(result)
            assert str(python) in line(result, "remote", "python")[1]
            assert "is not built yet" in line(result, "remote", "stack")[1]
            status, detail = line(result, "remote", "venv")
            assert status == "FAILED" and "no ensurepip module" in detail
            minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
            assert f"apt install python{minor}-venv" in fix_after(result, "remote", "venv")
            assert line(result, "routes", "skipped")[0] == "skipped"
            # What doctor predicted is what `up` meets.
            up = run_cli("up", "sb", "--profiles", str(profiles), timeout=240)
            assert up.returncode == ExitCode.REMOTE_SETUP, describe(up)
            assert "ensurepip" in up.stderr
            assert not wait_gone(box.remote_pids())
        finally:
            for pid in box.remote_pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def test_kernel_python_without_ipykernel(
        clean_remote: Sandbox, teardown: Teardown, isolated: Isolated,
        tmp_path: Path) -> None:
    """kernel.python is a venv without ipykernel (nor pip): with install_ipykernel no, the
    remote stage fails (exit 6); with ask, a warning and no short runtime (the doctor
    installs nothing). Realistic remote (this machine's pip configuration kept)."""
    box = clean_remote
    python = python_env(tmp_path / "bare", ipykernel=False)
    bodies = {f"k-{policy}": sandbox_profile(box, f"k-{policy}", PORTS.take(), kernel={
        "python": str(python), "install_ipykernel": policy}) for policy in ("no", "ask")}
    profiles = teardown.add(write_profiles(tmp_path / "profiles.yaml", bodies))
    command = f"{python} -m pip install ipykernel"
    result = doctor("k-no", "--profiles", str(profiles))
    assert result.returncode == ExitCode.REMOTE_SETUP == 6, describe(result)
    status, detail = line(result, "remote", "kernel")
    assert status == "FAILED"
    assert detail.startswith(f"{python} (Python {sys.version.split()[0]}")
    assert "kernel.python) has no ipykernel: Colab cannot start a kernel" in detail
    assert command in fix_after(result, "remote", "kernel")
    assert "python " + str(python) in line(result, "profile", "kernel settings")[1]
    assert line(result, "routes", "skipped")[1] == (
        "a runtime cannot start: the kernel's Python has no ipykernel")
    up = run_cli("up", "k-no", "--profiles", str(profiles), timeout=240)  # as predicted
    assert up.returncode == ExitCode.REMOTE_SETUP and command in up.stderr, describe(up)
    result = doctor("k-ask", "--profiles", str(profiles))
    assert result.returncode == 0, describe(result)
    status, detail = line(result, "remote", "kernel")
    assert status == "warning" and "`up` asks to install it" in detail
    assert command in fix_after(result, "remote", "kernel")
    assert "the doctor installs nothing" in line(result, "routes", "skipped")[1]
    assert not list((tmp_path / "bare").rglob("ipykernel"))  # nothing was installed
    assert_nothing_left(box, teardown, isolated)


def test_stack_without_the_extension(
        clean_remote: Sandbox, teardown: Teardown, isolated: Isolated,
        tmp_path: Path) -> None:
    """An existing Jupyter Server 2 (no jupyter_http_over_ws), with the classic stack asked
    for: `up` could not serve the websocket route; a warning when the stack is auto."""
    box = clean_remote
    jupyter = venv_bin(stack_venv(stack="modern"), "jupyter")
    bodies = {name: sandbox_profile(box, name, PORTS.take(), jupyter={
        "env": "existing", "command": str(jupyter), "stack": stack})
        for name, stack in (("classic", "classic"), ("auto", "auto"))}
    profiles = teardown.add(write_profiles(tmp_path / "profiles.yaml", bodies))
    result = doctor("classic", "--profiles", str(profiles))
    assert result.returncode == ExitCode.REMOTE_SETUP, describe(result)
    status, detail = line(result, "remote", "stack")
    assert status == "FAILED"
    assert "can load jupyter_http_over_ws" in detail and "serves the modern stack only" in detail
    assert "env: managed" in fix_after(result, "remote", "stack")
    result = doctor("auto", "--profiles", str(profiles), "--no-start")
    assert result.returncode == 0, describe(result)
    assert line(result, "remote", "routes")[0] == "warning"
    assert "direct (CORS) route only" in line(result, "remote", "routes")[1]


def test_local_port_held_by_another_process(
        clean_remote: Sandbox, teardown: Teardown, isolated: Isolated,
        tmp_path: Path) -> None:
    box = clean_remote
    port = PORTS.take()
    holder = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                               "127.0.0.1"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: not port_closed(port), 30, "the holder listening")
        profiles = teardown.add(write_profiles(tmp_path / "profiles.yaml", {
            "sb": sandbox_profile(box, "sb", port)}))
        result = doctor("sb", "--profiles", str(profiles), "--no-start")
        assert result.returncode == ExitCode.PORT_IN_USE == 5, describe(result)
        status, detail = line(result, "local", "port")
        assert status == "FAILED"
        assert f"port {port} is held by process {holder.pid}" in detail
        assert f"http.server {port}" in detail
        assert "--port" in fix_after(result, "local", "port")
        assert line(result, "remote", "port")[0] == "ok"  # free there: only this side
        assert holder.poll() is None  # doctor did not touch it
    finally:
        holder.terminate()
        holder.wait(timeout=10)


def test_hand_started_server_without_allow_credentials(
        clean_remote: Sandbox, teardown: Teardown, isolated: Isolated,
        tmp_path: Path) -> None:
    """Google's manual recipe, done by hand: a classic Jupyter on the remote with the
    extension and allow_origin_pat but not allow_credentials, forwarded by OpenSSH's
    `ssh -L`; checked with `doctor --url` (the token in JUPYTER_TOKEN)."""
    box = clean_remote
    ssh = real_ssh()
    if ssh is None or box.namespace is None or box.sshd is None:
        unavailable("needs the OpenSSH client and the namespace sandbox")
    assert box.namespace is not None and box.sshd is not None and ssh is not None
    port, token = PORTS.take(), "by-hand-" + os.urandom(8).hex()
    venv = stack_venv()
    notebook_dir = tmp_path / "notebooks"
    notebook_dir.mkdir()
    server = subprocess.Popen(
        ["ip", "netns", "exec", box.namespace.name, "env", f"JUPYTER_TOKEN={token}",
         f"HOME={tmp_path}", str(venv_bin(venv, "jupyter")), "notebook", "--no-browser",
         "--allow-root", "--ip=127.0.0.1", f"--port={port}", "--NotebookApp.port_retries=0",
         f"--notebook-dir={notebook_dir}",
         r"--NotebookApp.allow_origin_pat=^https://colab\.(?:research\.)?google\.com\Z"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    tunnel = subprocess.Popen(
        [ssh, "-F", "/dev/null", "-N", "-L", f"{port}:127.0.0.1:{port}",
         "-o", f"ProxyCommand={box.sshd.proxy_command}", "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={box.known_hosts_path}", "-o", "IdentitiesOnly=yes",
         "-o", "ExitOnForwardFailure=yes", "-i", str(box.sshd.client_key),
         f"{box.sshd.user}@sb"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        wait_until(lambda: _answers(port), 60, "the hand-started server through ssh -L")
        env = {**cli_env(), "JUPYTER_TOKEN": token}
        result = doctor("--url", f"http://localhost:{port}/", env=env)
        assert result.returncode == ExitCode.HEALTH == 7, describe(result)
        assert token not in result.stdout + result.stderr
        status, detail = line(result, "local", "port")
        assert status == "ok" and f"held by process {tunnel.pid}" in detail
        assert "-L" in detail
        assert line(result, "routes", "token")[0] == "ok"
        for host in ("colab.research.google.com", "colab.google.com"):
            assert line(result, "routes", f"websocket route from {host}")[0] == "ok"
            status, detail = line(result, "routes", f"direct route from {host}")
            assert status == "FAILED"
            assert "no Access-Control-Allow-Credentials: true" in detail
            assert "allow_credentials is not set" in detail
        assert "allow_credentials True" in fix_after(
            result, "routes", "direct route from colab.research.google.com")
        assert server.poll() is None and tunnel.poll() is None  # doctor leaves them be
    finally:
        for proc in (tunnel, server):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def _answers(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/api")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


# --- GCE ----------------------------------------------------------------------------------------


def test_gce_vm_checked_without_changing_it(dlvm: Any, gce_home: Path, isolated: Isolated,
                                            tmp_path: Path) -> None:
    """A running VM whose key is in its metadata: the whole walk, through the VM's published
    host key, with no write to the Compute API."""
    box = dlvm.box
    public = (gce_home / ".ssh" / "google_compute_engine.pub").read_text().strip()
    vm = existing_vm(dlvm.fake, box, "vm-ok")
    vm.metadata.items["ssh-keys"] = f"{box.sshd.user}:{public}"
    stopped = dlvm.fake.add_instance(PROJECT, ZONE, "vm-stopped", nat_ip=None,
                                     status="TERMINATED")
    assert stopped is not None
    profiles = dlvm.profiles(tmp_path / "profiles.yaml",
                             ok=gce_body(box, instance="vm-ok",
                                         jupyter={"port": PORTS.take()}),
                             stopped=gce_body(box, instance="vm-stopped"))
    chrome_allows_colab(isolated)
    wait_until(lambda: _key_installed(box, public), 30, "the guest agent")
    result = doctor("ok", "--profiles", str(profiles))
    assert result.returncode == 0, describe(result)
    assert line(result, "cloud", "instance")[0] == "ok"
    assert "in the instance (ssh-keys) metadata" in line(result, "cloud", "ssh key")[1]
    assert "published in guest attributes" in line(result, "cloud", "host keys")[1]
    assert "one the VM published" in line(result, "ssh", "host key")[1]
    assert line(result, "routes", "direct route from colab.google.com")[0] == "ok"
    result = doctor("stopped", "--profiles", str(profiles))
    assert result.returncode == 0, describe(result)
    status, detail = line(result, "cloud", "instance")
    assert status == "warning" and "TERMINATED: `up` will start it" in detail
    assert line(result, "ssh", "skipped")[1].startswith("the VM is TERMINATED")
    writes = [c for c in dlvm.fake.calls if c.method != "GET" and "/instances" in c.path
              and not c.path.endswith("/wait")]
    assert [c for c in writes if "vm-ok" in c.path or "vm-stopped" in c.path] == [], writes
    assert dlvm.fake.live(PROJECT, ZONE, "vm-stopped").current_status() == "TERMINATED"


def _key_installed(box: Sandbox, public: str) -> bool:
    assert box.sshd is not None
    return public.split()[1] in box.sshd.authorized_keys.read_text()


def test_gce_links_before_ssh(compute: Any, gce_home: Path, isolated: Isolated,
                              tmp_path: Path) -> None:
    """The cloud stage alone (no VM answers SSH here): an instance that does not exist, with
    and without a create section; OS Login's profile read for the key and the user; an IAP
    tunnel whose gcloud refuses."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gcloud = bin_dir / "gcloud"
    gcloud.write_text("#!/bin/sh\necho \"ERROR: (gcloud.compute.start-iap-tunnel) Error while "
                      "connecting [4033: 'not authorized'].\" >&2\nexit 1\n")
    gcloud.chmod(0o755)
    compute.add_instance(PROJECT, ZONE, "vm-oslogin", nat_ip=None, metadata={
        "enable-oslogin": "TRUE"})
    base = {"project": PROJECT, "zone": ZONE}
    profiles = write_profiles(tmp_path / "profiles.yaml", {
        "gone": {"gce": {**base, "instance": "vm-gone"}},
        "made": {"gce": {**base, "instance": "vm-made", "create": {
            "machine_type": "e2-small", "image": {"family": "debian-12",
                                                  "project": "debian-cloud"}}}},
        "oslogin": {"gce": {**base, "instance": "vm-oslogin", "account": "ada@example.com"}},
    })
    env = {**cli_env(), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    result = doctor("gone", "--profiles", str(profiles), env=env)
    assert result.returncode == ExitCode.CLOUD == 8, describe(result)
    assert line(result, "cloud", "credentials")[0] == "ok"
    assert line(result, "cloud", "project") == ("ok", f"{PROJECT} answers")
    status, detail = line(result, "cloud", "instance")
    assert status == "FAILED" and "does not exist" in detail
    result = doctor("made", "--profiles", str(profiles), env=env)
    assert result.returncode == 0, describe(result)
    assert "`up` creates it" in line(result, "cloud", "instance")[1]
    result = doctor("oslogin", "--profiles", str(profiles), env=env)
    assert result.returncode == ExitCode.UNREACHABLE, describe(result)
    status, detail = line(result, "cloud", "ssh key")
    assert status == "warning" and "OS Login" in detail and "ada@example.com" in detail
    assert "logs in as ada_example_com" in detail
    assert line(result, "reach", "address")[1].startswith("auto address: IAP")
    status, detail = line(result, "reach", "iap")
    assert status == "FAILED" and "4033: 'not authorized'" in detail
    assert "roles/iap.tunnelResourceAccessor" in fix_after(result, "reach", "iap")
    assert [c for c in compute.calls if c.method != "GET"] == []  # nothing written


def test_interrupted_while_its_runtime_runs(
        clean_remote: Sandbox, teardown: Teardown, isolated: Isolated,
        tmp_path: Path) -> None:
    """Ctrl-C while the short runtime is up: it is torn down all the same (exit 130)."""
    box = clean_remote
    port, profiles = healthy_profile(box, teardown, isolated, tmp_path)
    proc = UpProcess.start("sb", "--profiles", str(profiles), command="doctor")
    try:
        wait_until(lambda: remote_servers(box, port) or proc.proc.poll() is not None, 120,
                   "the short runtime's server")
        assert proc.proc.poll() is None, proc.describe()
        proc.interrupt()  # the terminal's Ctrl-C
        status = proc.wait(timeout=120)
    finally:
        proc.kill()
    assert status == ExitCode.INTERRUPTED, proc.describe()
    assert "Traceback" not in proc.stderr
    assert_nothing_left(box, teardown, isolated, port)
