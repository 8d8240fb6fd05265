"""Every message is printed as text, never parsed as rich markup (remote_runtime/cli/render.py,
exits.py)."""

from __future__ import annotations

import importlib
import io
from pathlib import Path

import pytest
from rich.console import Console

from remote_runtime import profiles
from remote_runtime.cli import exits, render
from remote_runtime.control import RuntimeStatus
from remote_runtime.errors import CloudError, SSHError
from remote_runtime.providers.gce import api as gce_api

TRICKY = ("[gce]", "[::1]:2222", "[bold]not bold[/bold]", "[red]x", ":thumbs_up:",
          r"C:\Users\[me]\.ssh", "[link=https://example.com]y[/link]")


def captured() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    console = render.console()
    console.file = buffer
    return console, buffer


@pytest.mark.parametrize("text", TRICKY)
def test_an_error_line_and_its_hint_print_as_written(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    console, buffer = captured()
    monkeypatch.setattr(exits, "err", console)
    exits.report(SSHError(f"host key for {text} changed", hint=f"see {text}",
                          details=f"details {text}"))
    assert buffer.getvalue() == (f"error: host key for {text} changed\n"
                                 f"details {text}\nhint: see {text}\n")


def test_the_missing_gce_library_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    console, buffer = captured()
    monkeypatch.setattr(exits, "err", console)
    exits.report(CloudError("Google Compute Engine support is not installed",
                            hint=gce_api.INSTALL_HINT))
    assert "pip install --force-reinstall 'remote-runtime[gce]'" in buffer.getvalue()


def test_progress_warnings_and_up(monkeypatch: pytest.MonkeyPatch) -> None:
    console, buffer = captured()
    app = importlib.import_module("remote_runtime.cli.app")  # the module, not the Typer
    monkeypatch.setattr(app, "err", console)
    app.progress("known_hosts entry [lab.example.com]:2222 added")
    render.up(console, {"name": "[x]", "target": "alice@[::1]:2222", "port": 8888,
                        "url": "http://localhost:8888/?token=[t]", "notes": ["[note]"],
                        "pid": 1, "log": "/l/[x].log"}, detached=True)
    text = buffer.getvalue()
    for needle in ("- known_hosts entry [lab.example.com]:2222 added", "Runtime '[x]' is up",
                   "alice@[::1]:2222", "?token=[t]", "note: [note]", "log /l/[x].log"):
        assert needle in text, text


def test_a_table_cell_is_text(tmp_path: Path) -> None:
    source = tmp_path / "profiles.yaml"
    source.write_text("profiles:\n  box:\n    ssh:\n      host: '::1'\n      port: 2222\n"
                      "      user: '[me]'\n")
    profile = profiles.load(source).get("box")
    console, buffer = captured()
    console.width = 200
    render.runtimes(console, source, [RuntimeStatus(profile, None, "down")])
    assert "[me]@::1:2222" in buffer.getvalue(), buffer.getvalue()


def test_styles_still_apply_on_a_terminal() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, markup=False, emoji=False,
                      highlight=False, color_system="standard")
    console.print(render.text(("error:", "red"), " [gce]"))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b[31merror:\x1b[0m [gce]" in out
