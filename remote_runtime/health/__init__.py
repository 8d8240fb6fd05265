"""Does the forwarded URL answer the way Colab needs? Reports, never prints.

  checks     the api, auth, cors and origins checks (plain HTTP), the report, the polling
             loop; which checks run follows the routes a server serves (`stacks.ROUTES`)
  extension  the jupyter_http_over_ws websocket check (both Colab origins, a look-alike
             refused), and a websocket opened as Colab does
  target     what a check talks to, and how a check fails
"""

from __future__ import annotations

from .checks import (
    CHECKS,
    QUICK_CHECKS,
    Check,
    HealthReport,
    check,
    checks_for,
    quick_check,
    wait_healthy,
)
from .extension import MIN_EXTENSION_VERSION, open_websocket

__all__ = [
    "CHECKS",
    "MIN_EXTENSION_VERSION",
    "QUICK_CHECKS",
    "Check",
    "HealthReport",
    "check",
    "checks_for",
    "open_websocket",
    "quick_check",
    "wait_healthy",
]
