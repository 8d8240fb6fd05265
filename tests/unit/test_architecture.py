"""The import rules of the package, read from the source (AST), so a broken rule fails here.

- Layers: a module imports only from its own layer or the layers below it.
- Libraries: only `ssh` and `forward` import paramiko; only `cli` imports typer, rich or
  click; only `providers.gce.api` imports Google's libraries.
- The remote agent imports nothing but the standard library and itself (it runs on the
  remote's own Python), and no module of the package imports it (it is sent as source).
- The sandbox (a test and demo fixture) is never imported by the package.
- No import cycles between the package's modules.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.env import REPO_ROOT

PACKAGE = REPO_ROOT / "remote_runtime"

# Bottom to top. Each name is a top-level module or subpackage of remote_runtime.
LAYERS: list[set[str]] = [
    # foundations ("" is the package's own __init__: its version)
    {"", "errors", "options", "paths", "redact", "procs", "lifecycle"},
    {"jupyter", "stacks", "colab_image", "profiles"},  # what a runtime is, as data
    {"ssh"},  # one connection
    {"forward", "health", "providers", "server_api", "activity", "bootstrap"},  # over/to one
    {"ports", "remote", "container", "provision", "kernel", "heartbeat", "state",
     "stops"},  # a runtime's parts
    {"runtime"},  # the orchestration
    # runtimes in use, across processes; the doctor of the whole path
    {"command", "supervisor", "detach", "control", "teardown", "notebooks", "doctor"},
    {"api"},  # the Python API
    {"cli"},  # the command line
]
LIBRARY_OWNERS = {
    "paramiko": ("ssh", "forward"),
    "typer": ("cli",),
    "rich": ("cli",),
    "click": ("cli",),
    "google": ("providers.gce.api",),
}
AGENT = "agent"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """Absolute names of everything `path` imports (at any depth), with line numbers."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, node.lineno
            # `from . import x` imports the submodule x
            for alias in node.names:
                yield f"{target}.{alias.name}", node.lineno


def unit(name: str) -> str:
    """The layer unit of a module: remote_runtime.ssh.session -> ssh."""
    return name.split(".")[1] if name.count(".") >= 1 else ""


def layer_of(name: str) -> int:
    for index, layer in enumerate(LAYERS):
        if unit(name) in layer:
            return index
    raise AssertionError(f"{name} is in no layer: add it to LAYERS in {__file__}")


def internal_imports() -> Iterator[tuple[str, str, int]]:
    """(importer, imported module, line) for imports between the package's own modules."""
    modules = package_modules()
    for name, path in modules.items():
        for target, line in imports_of(name, path):
            if target in modules and target != name:
                yield name, target, line


def test_every_module_has_a_layer() -> None:
    for name in package_modules():
        if unit(name) != AGENT:
            layer_of(name)


def test_imports_never_go_up_a_layer() -> None:
    wrong = [
        f"{importer} (line {line}) imports {target}"
        for importer, target, line in internal_imports()
        if AGENT not in (unit(importer), unit(target))
        and layer_of(target) > layer_of(importer)
    ]
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


@pytest.mark.parametrize("library", sorted(LIBRARY_OWNERS))
def test_library_is_imported_only_by_its_owners(library: str) -> None:
    owners = tuple(f"remote_runtime.{owner}" for owner in LIBRARY_OWNERS[library])
    wrong = [
        f"{name} (line {line})"
        for name, path in package_modules().items()
        for target, line in imports_of(name, path)
        if (target == library or target.startswith(library + "."))
        and not any(name == owner or name.startswith(owner + ".") for owner in owners)
    ]
    assert not wrong, f"{library} imported outside {', '.join(owners)}: {wrong}"


def test_the_agent_is_stdlib_only_and_not_imported() -> None:
    modules = package_modules()
    for name, path in modules.items():
        for target, line in imports_of(name, path):
            top = target.split(".")[0]
            if unit(name) == AGENT:
                ok = top in sys.stdlib_module_names or target.startswith("remote_runtime.agent")
                assert ok, f"{name} line {line}: the agent may only import the stdlib ({target})"
            else:
                assert not target.startswith("remote_runtime.agent"), (
                    f"{name} line {line} imports the agent; it is sent to the remote as source")


def test_the_package_never_imports_the_sandbox() -> None:
    wrong = [
        f"{name} (line {line})"
        for name, path in package_modules().items()
        for target, line in imports_of(name, path)
        if target == "sandbox" or target.startswith("sandbox.")
    ]
    assert not wrong, f"the package imports the test sandbox: {wrong}"


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for importer, target, _line in internal_imports():
        graph.setdefault(importer, set()).add(target)
    # A package's __init__ re-exporting its submodules is not a cycle of concepts.
    for name in list(graph):
        graph[name] = {t for t in graph[name] if not t.startswith(name + ".")}
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for target in sorted(graph.get(name, ())):
            if state.get(target) == 1:
                cycle = [*stack[stack.index(target):], target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_the_rules_see_real_imports() -> None:
    """Guard: the reader finds the imports these rules are about."""
    found = {target for _, target, _ in internal_imports()}
    assert "remote_runtime.ssh.session" in found
    libraries = {t for name, path in package_modules().items() for t, _ in imports_of(name, path)}
    assert {"paramiko", "typer", "psutil"} <= libraries
