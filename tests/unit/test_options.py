"""`options` and `redact`: the one value `up` takes through the layers, and token hiding."""

from __future__ import annotations

from remote_runtime import redact
from remote_runtime.options import DEFAULT_TIMEOUT, UpOptions


def test_up_options_survive_the_trip_to_a_supervisor() -> None:
    for options in (UpOptions(), UpOptions(port=9000, timeout=12.5, accept_new_host_key=True)):
        assert UpOptions.from_json(options.to_json()) == options


def test_up_options_defaults() -> None:
    assert UpOptions.from_json("{}") == UpOptions(None, DEFAULT_TIMEOUT, False)


def test_redact_hides_every_secret_and_ignores_empty_ones() -> None:
    assert redact.text("GET /?token=abc&x=abc", "abc") == "GET /?token=<hidden>&x=<hidden>"
    assert redact.text("nothing here", "") == "nothing here"
    assert redact.text("a b", "a", "b") == "<hidden> <hidden>"


def test_redact_url() -> None:
    assert redact.url("http://localhost:8888/?token=abc") == "http://localhost:8888/?token=<hidden>"
    assert redact.url("http://localhost:8888/") == "http://localhost:8888/"
