"""The command line: typer commands over a core that returns data.

  app         the commands; each translates arguments and renders a result
  exits       the entry point: every error to one line and an exit status
  render      text renderings of the core's results (`--json` prints their dicts)
  interrupts  signals for processes that hold a runtime in the foreground
"""

from __future__ import annotations

from .app import app
from .exits import main

__all__ = ["app", "main"]
