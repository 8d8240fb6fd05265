"""The stacks and their shipped locks, and the choice of a stack for a remote Python."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from remote_runtime import jupyter, stacks
from remote_runtime.agent import build as agent_build
from remote_runtime.agent import stack as agent_stack

LOCKS = Path(stacks.__file__).with_name("locks")
SUPPORTED = [(3, minor) for minor in range(8, 14)]  # what scripts/lock_stacks.py was run on
PIN = re.compile(r"^([a-z0-9][a-z0-9-]*)==(\S+) \\$")
HASH = re.compile(r"^    --hash=sha256:[0-9a-f]{64}( \\)?$")


def all_locks() -> list[stacks.Lock]:
    found = []
    for path in sorted(LOCKS.glob("*.txt")):
        match = re.fullmatch(r"(classic|modern)-py3(\d+)\.txt", path.name)
        assert match, f"unexpected file {path.name} in {LOCKS}"
        found.append(stacks.Lock(match.group(1), (3, int(match.group(2))), path.read_text()))
    return found


@pytest.mark.parametrize("stack", stacks.STACKS)
@pytest.mark.parametrize("python", SUPPORTED, ids=lambda v: f"py{v[0]}.{v[1]}")
def test_every_supported_python_has_a_lock_of_each_stack(
    stack: str, python: tuple[int, int]
) -> None:
    lock = stacks.lock_for(stack, python)
    assert lock is not None
    assert python in stacks.locked_pythons(stack)


@pytest.mark.parametrize("lock", all_locks(), ids=lambda lock: f"{lock.stack}-py3{lock.python[1]}")
def test_a_lock_pins_every_package_with_hashes(lock: stacks.Lock) -> None:
    """Complete: every entry `name==version` with at least one sha256; pip first (it is
    installed on its own); names unique; what the stack is made of is in it."""
    lines = [line for line in lock.text.splitlines() if line and not line.startswith("#")]
    entries: list[list[str]] = []
    for line in lines:
        if line.startswith(" "):
            assert HASH.match(line), line
            entries[-1].append(line)
        else:
            assert PIN.match(line), line
            entries.append([line])
    assert all(len(entry) >= 2 for entry in entries)  # a pin and its hashes
    assert all(not entry[-1].endswith("\\") for entry in entries)
    pins = dict(lock.pins)
    assert len(pins) == len(lock.pins) == len(entries)
    assert lock.pins[0][0] == "pip"
    if lock.stack == "classic":
        assert pins["notebook"].startswith("6.") and "jupyter-http-over-ws" in pins
        major, minor = (int(x) for x in pins["tornado"].split(".")[:2])
        assert (major, minor) < (6, 5)  # DESIGN.md fact 1
        assert ("setuptools" in pins) == (lock.python >= (3, 12))  # distutils
    else:
        assert int(pins["jupyter-server"].split(".")[0]) == 2 and "ipykernel" in pins
        assert "notebook" not in pins and "jupyter-http-over-ws" not in pins


def test_split_puts_pip_alone_and_agrees_with_the_agent() -> None:
    lock = stacks.lock_for("classic", (3, 11))
    assert lock is not None
    pip, rest = lock.split()
    assert pip.startswith("pip==") and pip.count("==") == 1
    assert "pip==" not in rest and rest.count("==") == len(lock.pins) - 1
    # The agent splits the same text into the same entries (it parses on its own).
    assert agent_build.blocks(lock.text) == stacks._blocks(lock.text)


def test_choose_classic_where_it_is_locked_and_modern_where_asked() -> None:
    auto = stacks.choose("auto", (3, 11))
    assert auto.stack == "classic" and auto.lock is not None
    assert auto.routes == ("websocket", "cors")
    modern = stacks.choose("modern", (3, 11))
    assert modern.stack == "modern" and modern.routes == ("cors",)
    assert modern.lock is not None and "asked for by the profile" in modern.reason
    assert auto.env_name != modern.env_name
    for choice in (auto, modern):  # the agent accepts the name (and nothing with a slash)
        assert agent_build.managed_dir(choice.env_name).endswith("/" + choice.env_name)
        assert choice.env_name.startswith(f"{choice.stack}-py311-")


def test_a_python_without_a_classic_set_gets_the_modern_stack_unpinned() -> None:
    newer = (3, 99)  # newer than any lock (3.14 here: no interpreter to lock it on)
    choice = stacks.choose("auto", newer)
    assert choice.stack == "modern" and choice.lock is None
    assert "no tested version set for Python 3.99" in choice.reason
    assert "-unpinned-" in choice.env_name
    with pytest.raises(stacks.NoStack, match=r"classic stack .* no tested version set"):
        stacks.choose("classic", newer)


@pytest.mark.parametrize("python", [(3, 6), (3, 7)])
def test_a_python_older_than_38_cannot_host_the_server(python: tuple[int, int]) -> None:
    for wanted in stacks.STACK_CHOICES:
        with pytest.raises(stacks.NoStack, match="too old"):
            stacks.choose(wanted, python)


def test_env_identity_changes_with_the_format_and_the_lock() -> None:
    lock = stacks.lock_for("classic", (3, 11))
    assert lock is not None
    other = stacks.Lock("classic", (3, 11), lock.text + "# changed\n")
    assert lock.digest != other.digest
    old_names = re.compile(r"^colab-py\d+-[0-9a-f]{12}$")  # ENV_FORMAT 1: never reused
    assert not old_names.match(stacks.choose("auto", (3, 11)).env_name)


# --- what an existing Jupyter can serve (the agent's check) -------------------------------


@pytest.mark.parametrize(("found", "served"), [
    ({"notebook": "6.5.7", "classic_handlers": True, "jupyter_http_over_ws": "0.0.7",
      "tornado": "6.4.2", "jupyter_server": "2.14.0"}, ["classic", "modern"]),
    ({"notebook": "6.5.7", "classic_handlers": True, "jupyter_http_over_ws": "0.0.7",
      "tornado": "6.5.1", "jupyter_server": None}, []),  # tornado too new
    ({"notebook": "7.2.0", "classic_handlers": False, "jupyter_http_over_ws": None,
      "tornado": "6.5.1", "jupyter_server": "2.14.0"}, ["modern"]),  # a DLVM's JupyterLab
    ({"notebook": None, "classic_handlers": False, "jupyter_http_over_ws": None,
      "tornado": "6.1", "jupyter_server": "1.24.0"}, []),  # Jupyter Server 1
])
def test_stacks_an_existing_jupyter_can_serve(found: dict[str, object],
                                              served: list[str]) -> None:
    stacks_found, reasons = agent_stack.stacks_served(found)
    assert stacks_found == served
    if not served:  # the reasons say why not (shown when nothing can serve Colab)
        assert reasons


def test_the_agent_and_the_package_agree_on_the_oldest_python() -> None:
    assert agent_stack.MIN_PYTHON == agent_build.MIN_PYTHON == stacks.MIN_PYTHON


# --- the origins (DESIGN.md fact 11) --------------------------------------------------------


@pytest.mark.parametrize("origin", [*jupyter.COLAB_ORIGINS])
def test_the_pattern_admits_both_colab_origins(origin: str) -> None:
    assert jupyter.origin_allowed(origin)


@pytest.mark.parametrize("origin", [
    "https://colab.google.com.evil.example", "https://colab.research.google.com.evil.example",
    "https://evilcolab.google.com", "https://colab.googlecom", "http://colab.google.com",
    "https://colab.research.google.com:8443", "https://colab.google.com\n",
    "https://colab.research.google.co", "https://xcolab.research.google.com", "null", "",
])
def test_the_pattern_refuses_everything_else(origin: str) -> None:
    assert not jupyter.origin_allowed(origin)


@pytest.mark.parametrize("stack", stacks.STACKS)
def test_server_config_clears_allow_origin_and_compiles(stack: str) -> None:
    config = jupyter.server_config(stack)
    (section,) = config
    values = config[section]
    assert values["allow_origin"] == "" and values["allow_credentials"] is True
    assert values["allow_origin_pat"] == jupyter.ALLOW_ORIGIN_PAT
    assert values["tornado_settings"]["headers"] == {"Access-Control-Allow-Private-Network":
                                                     "true"}
    assert ("nbserver_extensions" in values) == (stack == "classic")
    source = jupyter.server_config_py(stack)
    compile(source, "config.py", "exec")
    assert f"c.{section}.tornado_settings" in source and "_options_for_allowed_origins_only" \
        in source


def test_the_build_counts_a_step_per_locked_package_pip_collects(
    capsys: pytest.CaptureFixture[str],
) -> None:
    steps = agent_build.Steps("installing", 5)
    for line in ("Collecting anyio==4.5.2 (from -r /e/.downloads/part-0.txt (line 1))",
                 "  Downloading anyio-4.5.2-py3-none-any.whl (89 kB)",
                 "Collecting tornado>=6.2 (from jupyter_server<3,>=2)",  # unpinned: no step
                 "Saved /e/.downloads/anyio-4.5.2-py3-none-any.whl"):
        agent_build.pip_progress(line, steps)
    sent = [json.loads(line)["step"] for line in capsys.readouterr().out.splitlines()]
    assert [(s["done"], s["detail"]) for s in sent] == [(1, "anyio 4.5.2"), (1, "tornado>=6.2")]
