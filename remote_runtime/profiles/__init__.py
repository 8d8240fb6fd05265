"""Profiles: named targets (an SSH host or a GCE VM), how to run Jupyter there, which kernel.

  schema    the settings as typed values and the checker of every key
  loader    load and validate a profiles file; every problem says where
  yamlfile  YAML with the line number of every key
"""

from __future__ import annotations

from .loader import ENV_VAR, load, resolve_path, validate
from .schema import (
    DEFAULT_JUPYTER_PORT,
    DEFAULT_LEASE_SECONDS,
    GCESettings,
    JupyterSettings,
    KernelSettings,
    Profile,
    ProfileSet,
    SSHSettings,
)

__all__ = [
    "DEFAULT_JUPYTER_PORT",
    "DEFAULT_LEASE_SECONDS",
    "ENV_VAR",
    "GCESettings",
    "JupyterSettings",
    "KernelSettings",
    "Profile",
    "ProfileSet",
    "SSHSettings",
    "load",
    "resolve_path",
    "validate",
]
