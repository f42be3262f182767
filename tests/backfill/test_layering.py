"""Backfill and flows choose no store themselves: they import no connector or client library."""

from __future__ import annotations

import ast
from pathlib import Path

import asyncetl.backfill
import asyncetl.flow

PACKAGES = [Path(asyncetl.backfill.__file__).parent, Path(asyncetl.flow.__file__).parent]
CLIENTS = ("asyncpg", "aiohttp", "redis", "nats", "sqlite3", "psycopg")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_backfill_and_flow_import_no_connector_and_no_client_library() -> None:
    offenders = {
        f"{path.parent.name}/{path.name}: {module}"
        for package in PACKAGES
        for path in package.rglob("*.py")
        for module in imported_modules(path)
        if module.startswith("asyncetl.connectors") or module.split(".")[0] in CLIENTS
    }
    assert offenders == set()
