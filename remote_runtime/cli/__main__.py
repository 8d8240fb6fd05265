"""`python -m remote_runtime.cli` (how a supervisor is started): the CLI's entry point."""

import sys

from .exits import main

sys.exit(main())
