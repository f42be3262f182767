"""The layers of the README's Layout section, checked on every import of every module.

    core  ←  connectors/<system>, backfill, flow  ←  spec  ←  cli, status

A layer imports only itself and the layers to its left: core imports nothing of
asyncetl outside core; a connector imports core and itself, never another
connector; backfill and flow import only core; spec is the one layer that names
connectors; the command line reaches connectors only through spec, and the
status server and logging setup need only core. ``from asyncetl import X``
counts as core, since the package root re-exports core's public names only.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import asyncetl

PACKAGE = Path(asyncetl.__file__).parent
ROOT = PACKAGE.parent
UPPER = ("connectors", "backfill", "flow", "spec", "cli", "status")

#: Layer → the layers it may import (itself always included).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "backfill": {"core"},
    "flow": {"core"},
    "spec": {"core", "connectors", "backfill", "flow"},
    "status": {"core"},
    "cli": {"core", "backfill", "flow", "spec", "status"},
}
#: Libraries that talk to an external system: only connectors (and the status server's
#: own HTTP server) may import them.
CLIENTS = ("asyncpg", "aiohttp", "redis", "nats", "sqlite3", "psycopg", "aiokafka", "duckdb")


def layer_of(module: str) -> str:
    """``core``, ``connectors.<system>``, ``backfill``… for a module name under asyncetl."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] not in UPPER:
        return "core"  # asyncetl itself re-exports core; asyncetl.__main__ is checked as cli
    if parts[1] == "connectors":
        return ".".join(parts[1:3])
    return parts[1]


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports made absolute.

    ``from a import b`` counts as importing ``a`` and ``a.b`` (``b`` may be a module).
    """
    package = path.parent.relative_to(ROOT).parts
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


def modules() -> Iterator[tuple[str, str]]:
    """(module name, its layer) for every module of the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        yield name, "cli" if name == "asyncetl.__main__" else layer_of(name)


def imports_of(layer: str) -> Iterator[tuple[str, str]]:
    """(module, imported module) for every import made by a module of ``layer``."""
    for name, own in modules():
        if own == layer or (layer == "connectors" and own.startswith("connectors.")):
            path = ROOT / Path(*name.split("."))
            path = path.with_suffix(".py") if path.with_suffix(".py").exists() else path
            for imported in imported_modules(path):
                yield name, imported


def offenders(layer: str) -> set[str]:
    allowed = ALLOWED[layer] | {layer}
    found = set()
    for module, imported in imports_of(layer):
        if imported.split(".")[0] != "asyncetl":
            continue
        target = layer_of(imported)
        if target.split(".")[0] not in allowed:
            found.add(f"{module} imports {imported}")
    return found


def test_every_module_has_a_known_layer() -> None:
    layers = {layer.split(".")[0] for _, layer in modules()}
    assert layers == {"core", "connectors", "backfill", "flow", "spec", "cli", "status"}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below_it(layer: str) -> None:
    assert offenders(layer) == set()


def test_a_connector_imports_only_core_and_itself() -> None:
    found = {
        f"{module} imports {imported}"
        for module, imported in imports_of("connectors")
        if imported.split(".")[0] == "asyncetl"
        and layer_of(imported) not in ("core", layer_of(module))
    }
    assert found == set()


def test_every_connector_is_checked() -> None:
    systems = {layer for _, layer in modules() if layer.startswith("connectors.")}
    assert {
        f"connectors.{s}" for s in ("files", "http", "kafka", "nats", "postgres", "redis", "sqlite")
    } <= systems


@pytest.mark.parametrize("layer", ["core", "backfill", "flow", "spec", "cli"])
def test_only_connectors_talk_to_external_systems(layer: str) -> None:
    found = {
        f"{module} imports {imported}"
        for module, imported in imports_of(layer)
        if imported.split(".")[0] in CLIENTS
    }
    assert found == set()


def test_the_checker_sees_a_violation() -> None:
    """The rule is not vacuous: an upward import is classified as one."""
    assert layer_of("asyncetl.spec.pipeline") == "spec"
    assert "spec" not in ALLOWED["core"] | ALLOWED["backfill"]
    assert layer_of("asyncetl.connectors.postgres.cdc") == "connectors.postgres"
    assert layer_of("asyncetl.ConfigError") == "core"


def test_the_engine_modules_do_not_import_the_pipeline_that_runs_them() -> None:
    # Pipeline configures the engine; the engine knows only its settings and pieces.
    core = PACKAGE / "core"
    found = {
        f"{path.name}: {module}"
        for path in core.glob("_[!_]*.py")  # the private engine modules
        for module in imported_modules(path)
        if module.startswith("asyncetl.core.pipeline")
    }
    assert found == set()
