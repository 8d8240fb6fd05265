"""What a Colab-compatible Jupyter server is: its flags, its config, the URL.

Pure data and functions, no SSH: `remote` ships these to the host and `health`
checks the result. DESIGN.md facts 1-5, 9 and 11 are the source of each value;
the package sets of each stack are in `stacks`.
"""

from __future__ import annotations

import json
import re
from typing import Any

# The Colab frontend is served from both (DESIGN.md fact 11).
COLAB_ORIGINS = ("https://colab.research.google.com", "https://colab.google.com")
COLAB_ORIGIN = COLAB_ORIGINS[0]
# Admits exactly the two origins above: anchored at both ends (the servers apply it
# with re.match, which anchors only the start; \Z, unlike $, admits no trailing newline).
ALLOW_ORIGIN_PAT = r"^https://colab\.(?:research\.)?google\.com\Z"
EXTENSION = "jupyter_http_over_ws"

# Chrome 130-141 asked for this on preflight answers (DESIGN.md fact 9).
EXTRA_HEADERS = {"Access-Control-Allow-Private-Network": "true"}

# The server application of each stack (see `stacks`): its config section, its
# `jupyter` subcommand, and its package (whose log_request and APIHandler the config
# file adjusts).
_APPS = {
    "classic": ("NotebookApp", "notebook", "notebook"),
    "modern": ("ServerApp", "server", "jupyter_server"),
}


def origin_allowed(origin: str) -> bool:
    """Does the pattern the server gets admit `origin`? (As the servers apply it.)"""
    return re.match(ALLOW_ORIGIN_PAT, origin.lower()) is not None


def server_config(stack: str = "classic") -> dict[str, Any]:
    """The server's config (NotebookApp or ServerApp), passed with --config."""
    section = _APPS[stack][0]
    values: dict[str, Any] = {
        # allow_origin wins over allow_origin_pat: clear it, whatever the user's own
        # jupyter config says (allow_origin='*' there would admit every site).
        "allow_origin": "",
        "allow_origin_pat": ALLOW_ORIGIN_PAT,
        "allow_credentials": True,
        "port_retries": 0,
        "open_browser": False,
        "tornado_settings": {"headers": dict(EXTRA_HEADERS)},
        # The kernel-side "disconnect" of Colab is a page reload; keep kernels.
        "shutdown_no_activity_timeout": 0,
    }
    if stack == "classic":
        # Load the extension even where `serverextension enable` was never run
        # (an existing stack that has the package installed).
        values["nbserver_extensions"] = {EXTENSION: True}
    return {section: values}


def server_config_json(stack: str = "classic") -> str:
    return json.dumps(server_config(stack), indent=1, sort_keys=True)


# The server's access log would record "GET /?token=..." each time the extension
# fetches its auth URL; a Python config can swap in a log function that hides it.
# And both servers (notebook 6.5, jupyter_server 2.x) echo ANY Origin on a preflight
# that asks for the Authorization header as soon as allow_origin_pat is set (their
# APIHandler.options): the config narrows that grant to what the pattern admits.
_CONFIG_PY = """\
# Written by remote-runtime for one run of the server.
import json as _json
import re as _re

from {package}.base.handlers import APIHandler as _APIHandler
from {package}.log import log_request as _log_request

for _section, _values in _json.loads({settings!r}).items():
    for _key, _value in _values.items():
        setattr(getattr(c, _section), _key, _value)

_TOKEN = _re.compile(r"(token=)[^&\\s]+")


def _log_without_token(handler):
    request = handler.request
    uri = request.uri
    request.uri = _TOKEN.sub(r"\\1<hidden>", uri)
    try:
        _log_request(handler)
    finally:
        request.uri = uri


c.{section}.tornado_settings["log_function"] = _log_without_token

_options = _APIHandler.options


def _options_for_allowed_origins_only(self, *args, **kwargs):
    result = _options(self, *args, **kwargs)
    origin = self.get_origin()
    pattern = self.allow_origin_pat
    if not (origin and pattern and pattern.match(origin)):
        self.clear_header("Access-Control-Allow-Origin")
    return result


_APIHandler.options = _options_for_allowed_origins_only
"""


def server_config_py(stack: str = "classic", settings: dict[str, Any] | None = None) -> str:
    """The server config as a Python file (passed with --config on the remote);
    `settings` replaces server_config(stack) (tests change one value)."""
    section, _, package = _APPS[stack]
    values = server_config(stack) if settings is None else settings
    return _CONFIG_PY.format(settings=json.dumps(values, sort_keys=True),
                             section=section, package=package)


def server_argv(
    jupyter: list[str],
    *,
    port: int,
    bind_host: str,
    config_file: str,
    notebook_dir: str,
    allow_root: bool,
    stack: str = "classic",
) -> list[str]:
    """argv for the stack's server. The token is NOT here (fact 4): it travels in
    the JUPYTER_TOKEN environment variable."""
    section, command, _ = _APPS[stack]
    argv = [
        *jupyter,
        command,
        f"--config={config_file}",
        "--no-browser",
        f"--ip={bind_host}",
        f"--port={port}",
        f"--{section}.port_retries=0",
        f"--{section}.allow_origin=",
        f"--{section}.allow_origin_pat={ALLOW_ORIGIN_PAT}",
        f"--{section}.allow_credentials=True",
        f"--{section}.root_dir={notebook_dir}" if stack == "modern"
        else f"--notebook-dir={notebook_dir}",
    ]
    if allow_root:
        argv.append("--allow-root")
    return argv


def colab_url(port: int, token: str, host: str = "localhost") -> str:
    """The URL pasted into Colab's 'Connect to a local runtime' dialog.
    `localhost`, not 127.0.0.1: the extension re-issues requests to the Host
    the browser used (fact 2)."""
    return f"http://{host}:{port}/?token={token}"
