"""The import direction of DESIGN.md: core knows no connector; a connector knows only core."""

from __future__ import annotations

import ast
from pathlib import Path

import asyncetl.connectors
import asyncetl.core

CORE = Path(asyncetl.core.__file__).parent
CONNECTORS = Path(asyncetl.connectors.__file__).parent
ABOVE_CORE = ("asyncetl.backfill", "asyncetl.flow", "asyncetl.spec", "asyncetl.cli")


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports made absolute.

    ``from a import b`` counts as importing ``a`` and ``a.b`` (``b`` may be a module).
    """
    package = path.parent.relative_to(CORE.parents[1]).parts
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join((*base, node.module) if node.module else base)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def test_core_imports_no_connector_and_nothing_above_it() -> None:
    offenders = {
        f"{path.name}: {module}"
        for path in CORE.rglob("*.py")
        for module in imported_modules(path)
        if module.startswith("asyncetl") and not module.startswith("asyncetl.core")
    }
    assert offenders == set()


def test_the_engine_modules_do_not_import_the_pipeline_that_runs_them() -> None:
    # Pipeline configures the engine; the engine knows only its settings and pieces.
    offenders = {
        f"{path.name}: {module}"
        for path in CORE.glob("_[!_]*.py")  # the private engine modules
        for module in imported_modules(path)
        if module.startswith("asyncetl.core.pipeline")
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


def connector_imports() -> set[tuple[str, str, str]]:
    """(connector package, file, imported asyncetl module) for every connector module."""
    return {
        (path.relative_to(CONNECTORS).parts[0], str(path.relative_to(CONNECTORS)), module)
        for path in CONNECTORS.glob("*/**/*.py")
        for module in imported_modules(path)
        if module.split(".")[0] == "asyncetl"
    }


def test_connectors_are_checked() -> None:
    packages = {package for package, _, _ in connector_imports()}
    assert {"files", "http", "postgres", "sqlite"} <= packages


def test_connectors_import_nothing_above_core() -> None:
    offenders = {
        f"{file}: {module}"
        for _, file, module in connector_imports()
        if module.startswith(ABOVE_CORE)
    }
    assert offenders == set()


def test_connectors_import_no_other_connector() -> None:
    offenders = {
        f"{file}: {module}"
        for package, file, module in connector_imports()
        if module.startswith("asyncetl.connectors")
        and module.split(".")[:3] != ["asyncetl", "connectors", package]
    }
    assert offenders == set()


def test_connectors_import_only_core_and_themselves() -> None:
    offenders = {
        f"{file}: {module}"
        for package, file, module in connector_imports()
        if not module.startswith("asyncetl.core")
        and module.split(".")[:3] != ["asyncetl", "connectors", package]
    }
    assert offenders == set()
