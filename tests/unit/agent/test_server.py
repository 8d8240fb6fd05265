"""The remote agent's lease (remote_runtime/agent/server.py), with real files and clocks.

The lease is renewed by touching a file; how long ago is measured on the monotonic
clock, so a wall-clock step on the remote (NTP, a resumed VM) cannot expire a live
runtime's lease. A step is played by giving the file a time an hour off.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from remote_runtime.agent import server


def touch(path: Path, *, shifted: float = 0.0) -> None:
    """Renew the lease as the agent does, with the wall clock `shifted` seconds off."""
    path.touch()
    when = time.time() + shifted
    os.utime(path, (when, when))


def test_a_renewal_after_the_clock_jumped_forward_keeps_the_lease(tmp_path: Path) -> None:
    lease_file = tmp_path / "lease"
    touch(lease_file)
    lease = server.Lease(str(lease_file), seconds=5)
    # The clock jumped an hour ahead right after the last renewal: by wall time the file
    # is an hour old, yet it was renewed a moment ago.
    touch(lease_file, shifted=-3600)
    assert not lease.expired()
    assert lease.idle() < 1


def test_a_renewal_stamped_in_the_future_still_expires_on_time(tmp_path: Path) -> None:
    lease_file = tmp_path / "lease"
    touch(lease_file)
    lease = server.Lease(str(lease_file), seconds=0.3)
    touch(lease_file, shifted=3600)  # the clock was an hour ahead, then stepped back
    assert not lease.expired()
    time.sleep(0.5)  # and then nobody renewed it
    assert lease.expired()


def test_every_renewal_counts_and_silence_expires(tmp_path: Path) -> None:
    lease_file = tmp_path / "lease"
    touch(lease_file)
    lease = server.Lease(str(lease_file), seconds=0.4)
    for _ in range(4):
        time.sleep(0.2)
        touch(lease_file)
        assert not lease.expired()
    time.sleep(0.6)
    assert lease.expired()


def test_a_missing_lease_file_has_expired(tmp_path: Path) -> None:
    lease_file = tmp_path / "lease"
    touch(lease_file)
    lease = server.Lease(str(lease_file), seconds=300)
    lease_file.unlink()
    assert lease.expired()
