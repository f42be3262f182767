"""The import direction of DESIGN.md: core knows no connector."""

from __future__ import annotations

import ast
from pathlib import Path

import asyncetl.core

CORE = Path(asyncetl.core.__file__).parent


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_imports_no_connector_and_nothing_above_it() -> None:
    offenders = {
        f"{path.name}: {module}"
        for path in CORE.rglob("*.py")
        for module in imported_modules(path)
        if module.startswith("asyncetl") and not module.startswith("asyncetl.core")
    }
    assert offenders == set()


def test_core_imports_no_client_library() -> None:
    clients = ("asyncpg", "aiohttp", "redis", "nats", "sqlite3", "psycopg")
    offenders = {
        f"{path.name}: {module}"
        for path in CORE.rglob("*.py")
        for module in imported_modules(path)
        if module.split(".")[0] in clients
    }
    assert offenders == set()
