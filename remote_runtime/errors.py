"""One base error with an exit status, one subclass per thing a user can fix.

Exit codes are part of the interface (CI scripts branch on them) and are
documented in the README; never renumber them.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    ERROR = 1  # unexpected failure (a bug): details go to the log file
    USAGE = 2
    PROFILE = 3
    SSH = 4
    PORT_IN_USE = 5
    REMOTE_SETUP = 6
    HEALTH = 7
    CLOUD = 8
    NOT_RUNNING = 9
    STATE = 10
    NOTEBOOK = 11  # `exec`: a notebook cell failed or timed out
    PREEMPTED = 12  # the runtime's Spot VM was taken back by Compute Engine
    UNREACHABLE = 13  # `doctor`: the host cannot be reached (DNS, TCP, ProxyCommand, IAP)
    BROWSER = 14  # `doctor`: a browser on this machine would block Colab's connection
    COMMAND_NOT_FOUND = 127  # `run`: the local command could not be started
    INTERRUPTED = 130


class RemoteRuntimeError(Exception):
    """Base error: a one-line reason, an optional hint, and an exit status."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, *, hint: str | None = None, details: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        # Multi-line context (e.g. the tail of a remote log) shown below the reason.
        self.details = details


class UsageError(RemoteRuntimeError):
    exit_code = ExitCode.USAGE


class ProfileError(RemoteRuntimeError):
    """The profiles file is missing, malformed or invalid."""

    exit_code = ExitCode.PROFILE


class SSHError(RemoteRuntimeError):
    """Could not connect, authenticate, or run a command over SSH."""

    exit_code = ExitCode.SSH


class HostKeyError(SSHError):
    """The server's host key is unknown or differs from the recorded one."""


class AuthenticationError(SSHError):
    pass


class PortInUseError(RemoteRuntimeError):
    exit_code = ExitCode.PORT_IN_USE


class RemoteSetupError(RemoteRuntimeError):
    """The remote cannot run a Colab-compatible Jupyter (install or start failed)."""

    exit_code = ExitCode.REMOTE_SETUP


class HealthCheckError(RemoteRuntimeError):
    exit_code = ExitCode.HEALTH


class CloudError(RemoteRuntimeError):
    """The cloud provider's API refused or failed (not found, permission, quota)."""

    exit_code = ExitCode.CLOUD


class NotRunningError(RemoteRuntimeError):
    """The named runtime is not up."""

    exit_code = ExitCode.NOT_RUNNING


class CommandNotRunnable(RemoteRuntimeError):
    """`run`: the local command could not be started."""

    exit_code = ExitCode.COMMAND_NOT_FOUND


class NotebookError(RemoteRuntimeError):
    """`exec`: a cell raised or timed out (what ran is written)."""

    exit_code = ExitCode.NOTEBOOK


class PreemptedError(RemoteRuntimeError):
    """The runtime's Spot VM was preempted by Compute Engine."""

    exit_code = ExitCode.PREEMPTED


class StateError(RemoteRuntimeError):
    """A state record is unreadable or inconsistent."""

    exit_code = ExitCode.STATE
