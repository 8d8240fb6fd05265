"""`remote-runtime exec` end to end: notebooks run cell by cell in a kernel of a runtime on
the sandbox, through our tunnel; on a Spot GPU VM created (and deleted) for the run, and
on a plain SSH host with Ctrl-C in the middle of a cell."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from support import notebooks as nb
from support.cli import cli_argv, cli_env, error_lines, run_cli
from support.gce import (
    CURRENT_IMAGE,
    DLVM_PROJECT,
    GPU_LINE,
    PROJECT,
    ZONE,
    Dlvm,
    gce_body,
    gpu_create,
)
from support.net import PortRange
from support.remote import Teardown, profiles_for

from remote_runtime.errors import ExitCode
from remote_runtime.providers.gce.create import DEFAULT_SCOPES
from sandbox import Sandbox

PORTS = PortRange(24000, 24099)


def test_exec_on_a_new_spot_gpu_vm(dlvm: Dlvm, tmp_path: Path) -> None:
    """The CI job of the issue: a {run} profile creates a Spot L4 VM from a DLVM image
    family, exec waits for its host keys and its driver, runs a passing notebook and one
    that fails in its third cell, writes both, and deletes the VM."""
    dlvm.fake.host_keys_delay = 3.0  # a guest agent still starting when we first ask
    profiles = dlvm.profiles(tmp_path / "profiles.yaml", **{
        "ci-gpu": gce_body(dlvm.box, instance="ci-gpu-{run}", create=gpu_create())})
    passing = nb.write(tmp_path / "nb" / "pass.ipynb", "import sys\nprint(sys.version_info[0])",
                       "x = 6 * 7", "x", markdown_first=True)
    failing = nb.write(tmp_path / "nb" / "fail.ipynb", "a = 1", "print('b')", "1 / 0",
                       "print('never')")
    out = tmp_path / "out"
    result = run_cli("exec", "ci-gpu", str(passing), str(failing), "-o", str(out), "--json",
                     "--profiles", str(profiles), timeout=600)

    assert result.returncode == ExitCode.NOTEBOOK, result.stderr
    (line,) = error_lines(result.stderr)
    assert line == "error: fail.ipynb: cell 3 (In [3]) raised ZeroDivisionError: division by zero"
    assert f"hint: what ran is in {out / 'fail.ipynb'}" in result.stderr
    assert "Traceback" not in result.stderr.split("hint:")[-1]
    report = json.loads(result.stdout)
    assert report["kernel"] == "python3"  # the runtime's default, not the notebook's own
    assert re.fullmatch(r"ci-gpu-[a-z][a-z0-9]{5}", report["runtime"])
    ok, failed = report["notebooks"]
    assert (ok["status"], ok["cells"], ok["executed"]) == ("ok", 3, 3)
    assert (failed["status"], failed["cells"], failed["executed"]) == ("failed", 4, 3)
    assert failed["failed_cell"]["index"] == 3
    assert failed["failed_cell"]["ename"] == "ZeroDivisionError"

    ran = nb.read(out / "pass.ipynb")
    assert [nb.outputs(c) for c in ran.cells[1:]] == ["3\n", "", "42"]
    assert ran.metadata["remote_runtime"]["status"] == "ok"
    assert ran.metadata["language_info"]["name"] == "python"
    partial = nb.read(out / "fail.ipynb")
    assert [c.execution_count for c in partial.cells] == [1, 2, 3, None]
    assert nb.outputs(partial.cells[1]) == "b\n"
    assert nb.outputs(partial.cells[2]) == "ZeroDivisionError: division by zero"
    assert partial.cells[3].outputs == []
    assert partial.metadata["remote_runtime"]["failed_cell"] == 3

    # The VM was created as gcloud creates it, then deleted (its boot disk with it).
    (insert,) = [c for c in dlvm.fake.calls if c.method == "POST" and c.path.endswith(
        f"/zones/{ZONE}/instances")]
    body = insert.body or {}
    name = body["name"]
    assert name == report["runtime"]  # instance ci-gpu-{run}: the runtime's name
    assert body["machineType"] == f"zones/{ZONE}/machineTypes/g2-standard-8"
    (disk,) = body["disks"]
    assert disk["boot"] and disk["autoDelete"]
    assert disk["initializeParams"]["sourceImage"].endswith(
        f"projects/{DLVM_PROJECT}/global/images/{CURRENT_IMAGE}")
    assert disk["initializeParams"]["diskSizeGb"] == "100"
    assert body["guestAccelerators"] == [{
        "acceleratorType": f"zones/{ZONE}/acceleratorTypes/nvidia-l4", "acceleratorCount": 1}]
    assert body["scheduling"] == {
        "onHostMaintenance": "TERMINATE", "automaticRestart": False,
        "provisioningModel": "SPOT", "instanceTerminationAction": "DELETE",
        "maxRunDuration": {"seconds": "7200"}}
    labels = body["labels"]
    assert labels["team"] == "ml" and labels["created-by"] == "remote-runtime"
    assert labels["remote-runtime-profile"] == "ci-gpu"
    metadata = {i["key"]: i["value"] for i in body["metadata"]["items"]}
    assert metadata["install-nvidia-driver"] == "True"
    assert metadata["enable-guest-attributes"] == "TRUE"
    assert metadata["ssh-keys"].startswith(f"{dlvm.box.sshd.user}:ssh-rsa ")  # type: ignore[union-attr]
    assert body["serviceAccounts"] == [{"email": "default", "scopes": list(DEFAULT_SCOPES)}]
    assert dlvm.fake.live(PROJECT, ZONE, name) is None
    assert [c for c in dlvm.fake.calls if c.method == "DELETE" and c.action == name]

    progress = result.stderr
    assert f"instance {name} does not exist: creating it (g2-standard-8 with 1 x nvidia-l4, " \
        "Spot, deleted by GCE after 120 min)" in progress
    assert f"image family common-cu124-ubuntu-2204 is {CURRENT_IMAGE} now" in progress
    assert "waiting for the VM's SSH host keys (guest attributes)" in progress
    assert "waiting for the NVIDIA driver (nvidia-smi failed: NVIDIA-SMI has failed" in progress
    assert f"GPU 0: {GPU_LINE.split(',')[0]} (driver 550.90.07, 23034 MiB)" in progress
    assert f"deleting instance {name} and its boot disk (delete_on_exit)" in progress
    assert len(dlvm.host.gpu_calls) >= 2
    assert not dlvm.guard.isolated.runtime_records


def test_ctrl_c_during_exec_writes_what_ran(clean_remote: Sandbox, teardown: Teardown,
                                           tmp_path: Path) -> None:
    """Ctrl-C while a cell runs: the kernel is interrupted, the notebook is written with
    what ran (the interrupted cell shows KeyboardInterrupt), the runtime torn down, 130."""
    profiles = profiles_for(tmp_path, clean_remote, teardown, lab={"port": PORTS.take()})
    slow = nb.write(tmp_path / "slow.ipynb", "print('first')",
                    "import time\nprint('sleeping', flush=True)\ntime.sleep(300)",
                    "print('never')")
    proc = subprocess.Popen(cli_argv("exec", "lab", str(slow), "--profiles", str(profiles)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env(), start_new_session=True)
    try:
        assert proc.stderr is not None
        seen = []
        for text in proc.stderr:
            seen.append(text)
            if "slow.ipynb: cell 1/3 done" in text:
                break
        else:
            raise AssertionError("".join(seen))
        time.sleep(1.0)  # the second cell is running (sleeping) now
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C
        out, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    stderr = "".join(seen) + rest
    assert proc.returncode == ExitCode.INTERRUPTED, stderr
    assert "interrupted slow.ipynb" in out and "Traceback" not in stderr
    written = nb.read(tmp_path / "slow.executed.ipynb")
    assert nb.outputs(written.cells[0]) == "first\n"
    interrupted = nb.outputs(written.cells[1])  # the kernel was interrupted, not killed
    assert interrupted.startswith("sleeping\n") and "KeyboardInterrupt" in interrupted
    assert written.cells[2].execution_count is None
    assert written.metadata["remote_runtime"]["status"] == "interrupted"
    assert "stopped the remote Jupyter server" in stderr
    assert not teardown.isolated.runtime_records
