"""Does the forwarded URL answer the way Colab needs? Reports, never prints.

  checks     the api, auth and cors checks (plain HTTP), the report, the polling loop
  extension  the jupyter_http_over_ws websocket check, and a websocket opened as Colab does
  target     what a check talks to, and how a check fails
"""

from __future__ import annotations

from .checks import CHECKS, QUICK_CHECKS, Check, HealthReport, check, quick_check, wait_healthy
from .extension import MIN_EXTENSION_VERSION, open_websocket

__all__ = [
    "CHECKS",
    "MIN_EXTENSION_VERSION",
    "QUICK_CHECKS",
    "Check",
    "HealthReport",
    "check",
    "open_websocket",
    "quick_check",
    "wait_healthy",
]
