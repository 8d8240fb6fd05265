#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite: unit tests, the real sshd in a
# network namespace, the real Jupyter with the Colab extension, the fake Compute API.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec python3 -m pytest -q --durations=15 "$@"
