"""Reading Iceberg tables back with pyiceberg, as any reader would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import Table


def catalog(warehouse: Path, uri: str | None = None) -> SqlCatalog:
    return SqlCatalog(
        "asyncetl",
        uri=uri or f"sqlite:///{warehouse / 'catalog.db'}",
        warehouse=warehouse.as_uri(),
    )


def table(warehouse: Path, name: str, uri: str | None = None) -> Table:
    return catalog(warehouse, uri).load_table(name)


def rows(
    warehouse: Path, name: str, *, order: str = "id", uri: str | None = None
) -> list[dict[str, object]]:
    found: list[dict[str, Any]] = table(warehouse, name, uri).scan().to_arrow().to_pylist()
    return sorted(found, key=lambda row: row[order])


def summaries(warehouse: Path, name: str) -> list[dict[str, str]]:
    """Each snapshot's asyncetl properties, oldest first."""
    return [
        {k: v for k, v in s.summary.additional_properties.items() if k.startswith("asyncetl.")}
        for s in table(warehouse, name).snapshots()
        if s.summary is not None
    ]
