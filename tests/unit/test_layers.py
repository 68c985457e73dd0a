"""The package layout is the architecture: each layer imports only the layers below it.

Read bottom to top (docs/developer.md, "The module map"):

    cli        the `dripd` command, its tables, init, the demo
    daemon     the running service: planner, senders, watchers, supervision
    pipeline   a contact's life on the store: import, compose, replies, the digest
    mailbox    the network edge: SMTP, IMAP, OAuth2 tokens, Sent copies
    store      the database: schema, migrations, queries
    files      the files people write: config, campaigns, CSV (pure)
    plan       contacts, timing, windows, durations, commands (pure)
    mail       reading and building email (pure)
    (base)     dripd/errors.py, clock.py, logs.py

Every import counts, including those under TYPE_CHECKING and inside functions:
a cycle hidden from the interpreter is still one for the reader.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "dripd"
LAYERS = ["", "mail", "plan", "files", "store", "mailbox", "pipeline", "daemon", "cli"]
PURE = {"mail", "plan", "files"}
# What a pure module may not import: the database, the network, the event loop.
IMPURE = {"sqlalchemy", "alembic", "aiosmtplib", "aioimaplib", "psycopg", "socket", "asyncio"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> Iterator[str]:
    """Every module `path` imports (absolute names), wherever the import is."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            for alias in node.names:  # `from dripd.mail import bounces` imports a module
                if f"{node.module}.{alias.name}" in MODULES:
                    yield f"{node.module}.{alias.name}"


def _dripd_imports(name: str) -> set[str]:
    return {m for m in _imports(MODULES[name]) if m in MODULES and m != name}


def _layer(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else ""


def test_every_module_is_in_a_layer() -> None:
    assert {_layer(name) for name in MODULES} <= set(LAYERS)
    top = sorted(name for name in MODULES if _layer(name) == "" and name != "dripd")
    assert top == ["dripd.clock", "dripd.errors", "dripd.logs"]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_a_module_imports_only_its_layer_and_those_below(name: str) -> None:
    rank = LAYERS.index(_layer(name))
    above = sorted(m for m in _dripd_imports(name) if LAYERS.index(_layer(m)) > rank)
    assert above == [], f"{name} ({_layer(name) or 'base'}) imports from a layer above it"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _layer(n) in PURE))
def test_pure_modules_touch_no_database_network_or_event_loop(name: str) -> None:
    used = sorted({m.split(".")[0] for m in _imports(MODULES[name])} & IMPURE)
    assert used == [], f"{name} is pure and imports {used}"


def test_no_import_cycles() -> None:
    graph = {name: _dripd_imports(name) for name in MODULES}
    cycles = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            # A package's __init__ is imported with its modules; it holds only a docstring.
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*path[path.index(dep) :], dep]))
            elif dep not in state:
                visit(dep, [*path, dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_the_checks_see_a_violation() -> None:
    """The layer rule is not vacuous: the real import graph has cross-layer edges upward-free."""
    edges = sum(len(_dripd_imports(name)) for name in MODULES)
    assert edges > 200
    assert _layer("dripd.cli.main") == "cli" and _layer("dripd.errors") == ""
    assert "dripd.mail.bounces" in _dripd_imports("dripd.mail.classify")
