"""What a Colab-compatible Jupyter is: the package set, the server flags, the URL.

Pure data and functions, no SSH: `remote` ships these to the host and
`health` checks the result. DESIGN.md facts 1-5 are the source of each value.
"""

from __future__ import annotations

import json
import sys
from typing import Any

COLAB_ORIGIN = "https://colab.research.google.com"
EXTENSION = "jupyter_http_over_ws"

# DESIGN.md fact 1: the extension loads only on the classic server, and its
# proxied requests break on tornado >= 6.5.
STACK_REQUIREMENTS = ("jupyter_http_over_ws", "notebook<7", "tornado<6.5")
# Python >= 3.12 has no distutils; notebook 6 still needs setuptools for it.
STACK_REQUIREMENTS_PY312 = ("setuptools",)
# Bumped whenever STACK_REQUIREMENTS changes so remote managed envs are rebuilt.
STACK_VERSION = 1

# Chrome 130-141 asked for this on preflight answers (DESIGN.md fact 9).
EXTRA_HEADERS = {"Access-Control-Allow-Private-Network": "true"}


def requirements(python_version: tuple[int, int]) -> list[str]:
    """The package set for an interpreter (the agent applies the same rule remotely)."""
    extra = STACK_REQUIREMENTS_PY312 if python_version >= (3, 12) else ()
    return [*STACK_REQUIREMENTS, *extra]


def server_config() -> dict[str, Any]:
    """The NotebookApp config passed with --config (a JSON file on the remote)."""
    return {
        "NotebookApp": {
            "allow_origin": COLAB_ORIGIN,
            "allow_credentials": True,
            "port_retries": 0,
            "open_browser": False,
            "tornado_settings": {"headers": dict(EXTRA_HEADERS)},
            # Load the extension even where `serverextension enable` was never run
            # (an existing stack that has the package installed).
            "nbserver_extensions": {EXTENSION: True},
            # The kernel-side "disconnect" of Colab is a page reload; keep kernels.
            "shutdown_no_activity_timeout": 0,
        }
    }


def server_config_json() -> str:
    return json.dumps(server_config(), indent=1, sort_keys=True)


# The server's access log would record "GET /?token=..." each time the extension
# fetches its auth URL; a Python config can swap in a log function that hides it.
_CONFIG_PY = """\
# Written by remote-runtime for one run of the server.
import json as _json
import re as _re

from notebook.log import log_request as _log_request

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


c.NotebookApp.tornado_settings["log_function"] = _log_without_token
"""


def server_config_py() -> str:
    """The server config as a Python file (passed with --config on the remote)."""
    return _CONFIG_PY.format(settings=json.dumps(server_config(), sort_keys=True))


def server_argv(
    jupyter: list[str],
    *,
    port: int,
    bind_host: str,
    config_file: str,
    notebook_dir: str,
    allow_root: bool,
) -> list[str]:
    """argv for the classic notebook server. The token is NOT here (fact 4):
    it travels in the JUPYTER_TOKEN environment variable."""
    argv = [
        *jupyter,
        "notebook",
        f"--config={config_file}",
        "--no-browser",
        f"--ip={bind_host}",
        f"--port={port}",
        "--NotebookApp.port_retries=0",
        f"--NotebookApp.allow_origin={COLAB_ORIGIN}",
        "--NotebookApp.allow_credentials=True",
        f"--notebook-dir={notebook_dir}",
    ]
    if allow_root:
        argv.append("--allow-root")
    return argv


def colab_url(port: int, token: str, host: str = "localhost") -> str:
    """The URL pasted into Colab's 'Connect to a local runtime' dialog.
    `localhost`, not 127.0.0.1: the extension re-issues requests to the Host
    the browser used (fact 2)."""
    return f"http://{host}:{port}/?token={token}"


def local_python_version() -> tuple[int, int]:
    return sys.version_info[:2]
