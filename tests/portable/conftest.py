"""The portable tier: the laptop side run as on Windows (support/windows_like.py), on this
Linux machine. Every test collected here is marked `portable`; so are the tests of
tests/integration/test_windows_like.py, which need the sandbox host as well.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.portable)
