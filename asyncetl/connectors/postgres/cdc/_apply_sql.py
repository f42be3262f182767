"""The statements the apply sink runs against a staged table (see :mod:`._apply_stage`):
upserts, upserts of rows that moved to a new key, and deletes by key."""

from __future__ import annotations

from collections.abc import Sequence

from asyncetl.connectors.postgres._sql import quote_ident
from asyncetl.connectors.postgres.cdc._apply_stage import Stage, column_list
from asyncetl.connectors.postgres.schema import TableSchema

__all__ = ["delete_sql", "moved_sql", "upsert_sql"]


def upsert_sql(
    schema: TableSchema, stage: Stage, columns: Sequence[str], soft_delete: str | None
) -> str:
    key = schema.primary_key
    sets = [f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}" for c in columns if c not in key]
    if soft_delete is not None and soft_delete not in columns:
        sets.append(f"{quote_ident(soft_delete)} = NULL")
    action = "UPDATE SET " + ", ".join(sets) if sets else "NOTHING"
    return (
        f"INSERT INTO {schema.table.sql} AS t ({column_list(columns)}) "  # noqa: S608
        f"SELECT {stage.values(columns)} FROM {stage.name} AS s "
        f"ON CONFLICT ({column_list(key)}) DO {action}"
    )


def moved_sql(
    schema: TableSchema,
    stage: Stage,
    columns: Sequence[str],
    unchanged: Sequence[str],
    old_names: Sequence[str],
    soft_delete: str | None,
) -> str:
    """Upsert rows at their new key, taking the ``unchanged`` columns from the row at the old
    key (staged under ``old_names``)."""
    key = schema.primary_key
    match = " AND ".join(
        f"o.{quote_ident(k)} = {stage.reads[old]}" for k, old in zip(key, old_names, strict=True)
    )
    values = [stage.reads[c] for c in columns] + [f"o.{quote_ident(c)}" for c in unchanged]
    names = [*columns, *unchanged]
    sets = [f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}" for c in names if c not in key]
    if soft_delete is not None and soft_delete not in names:
        sets.append(f"{quote_ident(soft_delete)} = NULL")
    action = "UPDATE SET " + ", ".join(sets) if sets else "NOTHING"
    return (
        f"INSERT INTO {schema.table.sql} AS t ({column_list(names)}) "  # noqa: S608
        f"SELECT {', '.join(values)} FROM {stage.name} AS s LEFT JOIN {schema.table.sql} AS o "
        f"ON {match} ON CONFLICT ({column_list(key)}) DO {action}"
    )


def delete_sql(schema: TableSchema, stage: Stage, soft_delete: str | None) -> str:
    key = schema.primary_key
    match = " AND ".join(f"t.{quote_ident(k)} = {stage.reads[k]}" for k in key)
    if soft_delete is not None:
        column = quote_ident(soft_delete)
        return (
            f"UPDATE {schema.table.sql} AS t SET {column} = now() FROM {stage.name} AS s "  # noqa: S608
            f"WHERE {match} AND t.{column} IS NULL"
        )
    return f"DELETE FROM {schema.table.sql} AS t USING {stage.name} AS s WHERE {match}"  # noqa: S608
