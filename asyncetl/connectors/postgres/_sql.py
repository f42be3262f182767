"""PostgreSQL identifiers and the SQL this connector sends.

Every identifier that reaches SQL goes through :func:`quote_ident` (or
:func:`quote_qualified` / :attr:`TableName.sql`); every value is a bound
parameter. The builders below return constant SQL text with quoted identifiers
spliced in, in the manner of psycopg's ``sql`` module, and nothing else.

A batch is COPYed into a temporary staging table (see :func:`create_stage`) before
it is merged into its target (see :mod:`asyncetl.connectors.postgres._load`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from asyncetl.core.errors import ConfigError
from asyncetl.core.store_sql import SqlDialect

__all__ = [
    "DIALECT",
    "STAGE",
    "Stage",
    "TableName",
    "add_column",
    "changed_column",
    "create_like",
    "create_schema",
    "create_stage",
    "delete_matching",
    "differing_rows",
    "differs_from_stored",
    "drop_table",
    "insert_from_stage",
    "insert_rehashed",
    "merge_from_stage",
    "quote_ident",
    "quote_qualified",
    "rename_table",
    "row_text",
    "row_texts",
    "soft_delete_from_stage",
    "staged_rows",
    "unmodified",
    "unnest_rows",
]

#: The prefix of the session's staging tables (``ON COMMIT DELETE ROWS``), one per
#: shape of staged rows, that batches are COPYed into.
STAGE = "_asyncetl_stage"


def quote_ident(name: str) -> str:
    """``name`` as a quoted PostgreSQL identifier: ``a"b`` becomes ``"a""b"``.

    :raises ConfigError: for an empty name or one containing a NUL character,
        which PostgreSQL cannot store.
    """
    if not name or "\x00" in name:
        raise ConfigError(f"{name!r} is not a valid PostgreSQL identifier")
    return '"' + name.replace('"', '""') + '"'


def quote_qualified(schema: str | None, name: str) -> str:
    """``schema.name`` with both parts quoted; just ``name`` when ``schema`` is ``None``."""
    if schema is None:
        return quote_ident(name)
    return f"{quote_ident(schema)}.{quote_ident(name)}"


#: How PostgreSQL spells the stores' statements: ``$n`` parameters, typed where a
#: filter is tested for NULL (the server must know each parameter's type), JSON
#: columns read as text (kept as written) and counted deletes.
DIALECT = SqlDialect(
    quote=quote_ident,
    mark="${}".format,
    id_in="id = ANY({ids})",
    casts={
        "stage": "::text",
        "since": "::timestamptz",
        "before": "::timestamptz",
        "ids": "::bigint[]",
    },
    json_out="{column}::text AS {column}",
    json_in="{mark}::json",
    counted_delete="WITH gone AS ({delete} RETURNING 1) SELECT count(*) FROM gone",
)


def _columns(names: Sequence[str], prefix: str = "") -> str:
    return ", ".join(prefix + quote_ident(name) for name in names)


@dataclass(frozen=True, slots=True)
class TableName:
    """A possibly schema-qualified table name, kept unquoted until it reaches SQL."""

    schema: str | None
    name: str

    @classmethod
    def parse(cls, text: str) -> TableName:
        """Parse ``table``, ``schema.table`` or double-quoted parts (``"my.schema"."T"``).

        Unquoted parts are taken literally (no case folding), so a table named
        ``x"; DROP TABLE y; --`` is simply a table with that name.

        :raises ConfigError: for an empty part or more than two parts.
        """
        parts = _split_qualified(text.strip())
        if len(parts) > 2 or not all(parts):
            raise ConfigError(
                f"{text!r} is not a table name; write table, schema.table or "
                '"quoted.schema"."quoted table"'
            )
        if len(parts) == 2:
            return cls(parts[0], parts[1])
        return cls(None, parts[0])

    @property
    def sql(self) -> str:
        """The quoted, qualified name for SQL text."""
        return quote_qualified(self.schema, self.name)

    def __str__(self) -> str:
        return self.name if self.schema is None else f"{self.schema}.{self.name}"

    def sibling(self, suffix: str) -> TableName:
        """A table in the same schema whose name is this one's plus ``suffix``."""
        return TableName(self.schema, self.name + suffix)


def _split_qualified(text: str) -> list[str]:
    """Split on dots outside double quotes; a quoted part may contain ``""``."""
    if '"' not in text or (not text.startswith('"') and '."' not in text):
        # No quoted part: a dot separates schema and table, anything else is literal.
        return text.split(".")
    parts: list[str] = []
    i = 0
    while i <= len(text):
        if text.startswith('"', i):
            end, value = _read_quoted(text, i)
            parts.append(value)
            i = end
        else:
            end = text.find(".", i)
            end = len(text) if end < 0 else end
            parts.append(text[i:end])
            i = end
        if i < len(text) and text[i] != ".":
            raise ConfigError(f"{text!r} is not a table name: unexpected text after a quoted part")
        i += 1
    return parts


def _read_quoted(text: str, start: int) -> tuple[int, str]:
    i, out = start + 1, []
    while i < len(text):
        if text[i] == '"':
            if text.startswith('""', i):
                out.append('"')
                i += 2
                continue
            return i + 1, "".join(out)
        out.append(text[i])
        i += 1
    raise ConfigError(f"{text!r} is not a table name: a double quote is not closed")


# -- builders for table DDL ---------------------------------------------------


def create_schema(schema: str) -> str:
    """``CREATE SCHEMA IF NOT EXISTS`` for ``schema``."""
    return f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}"


def add_column(table: TableName, name: str, sql_type: str) -> str:
    """Add column ``name`` of ``sql_type`` (a type as ``format_type`` spells it, never user
    text) to ``table`` unless it has one of that name."""
    return f"ALTER TABLE {table.sql} ADD COLUMN IF NOT EXISTS {quote_ident(name)} {sql_type}"


def create_like(table: TableName, like: TableName) -> str:
    """Create ``table`` when missing, with the columns, constraints and indexes of ``like``."""
    return f"CREATE TABLE IF NOT EXISTS {table.sql} (LIKE {like.sql} INCLUDING ALL)"


def rename_table(table: TableName, name: str) -> str:
    """Rename ``table`` to ``name``, in the same schema."""
    return f"ALTER TABLE {table.sql} RENAME TO {quote_ident(name)}"


def drop_table(table: TableName, *, if_exists: bool = False) -> str:
    """``DROP TABLE`` (``IF EXISTS``) ``table``."""
    return f"DROP TABLE {'IF EXISTS ' if if_exists else ''}{table.sql}"


# -- builders for the COPY-then-merge pattern ---------------------------------


@dataclass(frozen=True, slots=True)
class Stage:
    """A temporary staging table: its name, and the SQL that makes it ready and empty."""

    name: str
    ready: str

    @property
    def sql(self) -> str:
        """The name, quoted."""
        return quote_ident(self.name)


def create_stage(
    target: TableName,
    columns: Sequence[str],
    extra: Sequence[tuple[str, str]] = (),
    casts: Mapping[str, str] | None = None,
    types: Sequence[str] | None = None,
) -> Stage:
    """A temporary table with ``target``'s types for ``columns``, kept for the session.

    It is created once per session and shape (its name holds a digest of its
    definition) and emptied at every commit (``ON COMMIT DELETE ROWS``): creating and
    dropping a table for each batch writes and deletes a dozen catalog rows each
    time, which costs more than the batch's COPY and bloats the catalog.

    :param extra: ``(name, sql type)`` of columns the target lacks (e.g. a delete flag).
    :param casts: columns staged as ``text`` (``text[]`` for arrays) and cast to
        their type (the value) when merged: those asyncpg has no binary codec for.
    :param types: the types ``columns`` were planned with (``format_type``'s
        spelling), part of the name: a stage made while the target had other types
        (before an ``ALTER``) is never used for rows planned with these (see
        :func:`changed_column`, asked first).
    """
    casts = casts or {}
    select = ", ".join(
        [
            *(
                f"{quote_ident(c)}::{_text_type(casts[c])} AS {quote_ident(c)}"
                if c in casts
                else quote_ident(c)
                for c in columns
            ),
            *(f"NULL::{sql_type} AS {quote_ident(name)}" for name, sql_type in extra),
        ]
    )
    definition = f"SELECT {select} FROM {target.sql} WITH NO DATA"  # noqa: S608
    planned = "\x00".join(types or ())  # NUL: in no type's name
    digest = hashlib.blake2b(f"{definition}\x00{planned}".encode(), digest_size=8).hexdigest()
    name = f"{STAGE}_{digest}"
    create = f"CREATE TEMPORARY TABLE IF NOT EXISTS {quote_ident(name)} ON COMMIT DELETE ROWS"
    # Empty already, unless this transaction staged rows of this shape before (record
    # by record under savepoints, say), or a rolled-back one left dead rows.
    empty = f"DELETE FROM pg_temp.{quote_ident(name)}"  # noqa: S608
    ready = f"{create} AS {definition}; {empty}"
    return Stage(name, ready)


def changed_column(target: TableName) -> str:
    """The first of the columns ``$1`` of ``target`` (planned with the types ``$2``) whose
    type is now another, or which is gone: its name, planned type and type now (or NULL).

    Reading ``target`` (no row of it) locks it until the transaction ends against an
    ``ALTER TABLE``, before the catalog is read: the answer holds for what the
    transaction writes next.
    """
    # The one identifier is quoted.
    return (
        "SELECT p.name, p.type, pg_catalog.format_type(a.atttypid, a.atttypmod) "  # noqa: S608
        "FROM unnest($1::text[], $2::text[]) AS p(name, type) "
        "LEFT JOIN pg_catalog.pg_attribute AS a ON a.attrelid = $3::text::regclass "
        "AND a.attname = p.name AND a.attnum > 0 AND NOT a.attisdropped "
        "WHERE pg_catalog.format_type(a.atttypid, a.atttypmod) IS DISTINCT FROM p.type "
        f"AND NOT EXISTS (SELECT FROM ONLY {target.sql} WHERE false) LIMIT 1"
    )


def unnest_rows(columns: Sequence[str], types: Sequence[str]) -> str:
    """A FROM item of rows bound as one array per column (``$1`` the first), named ``columns``.

    :param types: each column's SQL type, as the catalog spells it: no array type, and
        none with a modifier (an explicit cast to ``varchar(5)`` cuts a value short).
    """
    arrays = ", ".join(f"${n}::{sql_type}[]" for n, sql_type in enumerate(types, 1))
    return f"unnest({arrays}) AS s({_columns(columns)})"


class WholeText(str):
    """An array column's type whose values are staged as one text each (the array's literal,
    which keeps lower bounds other than 1), not as arrays of their elements' text."""

    __slots__ = ()


def _text_type(sql_type: str) -> str:
    return "text[]" if sql_type.endswith("[]") and not isinstance(sql_type, WholeText) else "text"


def staged(columns: Sequence[str], casts: Mapping[str, str] | None, *, named: bool = False) -> str:
    """The staged ``columns`` as a select list, text-staged ones cast back to their type
    (``named``: under their own names)."""
    casts = casts or {}
    return ", ".join(
        f"{quote_ident(c)}::{casts[c]}" + (f" AS {quote_ident(c)}" if named else "")
        if c in casts
        else quote_ident(c)
        for c in columns
    )


def insert_from_stage(
    target: TableName,
    columns: Sequence[str],
    casts: Mapping[str, str] | None = None,
    *,
    stage: str,
) -> str:
    """Append every row of ``stage`` (:attr:`Stage.sql`) to ``target``."""
    cols = _columns(columns)
    return (
        # Identity columns keep the values given (OVERRIDING: also GENERATED ALWAYS).
        f"INSERT INTO {target.sql} ({cols}) OVERRIDING SYSTEM VALUE "  # noqa: S608
        f"SELECT {staged(columns, casts)} FROM {stage}"
    )


def merge_from_stage(
    target: TableName,
    columns: Sequence[str],
    key: Sequence[str],
    *,
    stage: str,
    update: Sequence[str] | None = None,
    version_column: str | None = None,
    row_hash_column: str | None = None,
    set_extra: Sequence[str] = (),
    where: str | None = None,
    revive: str | None = None,
    dedupe: bool = False,
    skip_unchanged: bool = False,
    casts: Mapping[str, str] | None = None,
    types: Mapping[str, str] | None = None,
) -> str:
    """Upsert the rows of ``stage`` into ``target`` by ``key``.

    One ``INSERT … SELECT … ON CONFLICT`` statement; ``stage`` is the FROM item the
    rows come from: a staging table (:attr:`Stage.sql`) or :func:`unnest_rows`.

    :param update: columns overwritten on conflict (default: every non-key
        column); an empty list means ``DO NOTHING``.
    :param version_column: only overwrite when the stored version is not newer.
    :param row_hash_column: only overwrite when the stored hash differs, so an
        unchanged row is not rewritten.
    :param set_extra: additional ``"col" = expr`` assignments (already quoted).
    :param where: a condition on the staged rows to merge (already quoted SQL).
    :param revive: a ``deleted_at`` column: a flagged row is rewritten even when
        its hash is unchanged, so that it comes back to life.
    :param dedupe: merge only one staged row per key: the newest version, else
        the last staged (for stages that may hold a key twice).
    :param skip_unchanged: only overwrite when the stored values of ``update``
        differ from the staged ones, compared in the server (see :func:`differs_from_stored`);
        no hash column needed.
    :param casts: text-staged columns and their types (see :func:`create_stage`).
    :param types: the SQL types of the columns, as ``format_type`` spells them: with
        ``skip_unchanged``, columns of exact types are compared by equality.
    """
    cols = _columns(columns)
    keys = _columns(key)
    if update is None:
        update = [c for c in columns if c not in key]
    rows = f"{staged(columns, casts)} FROM {stage}"
    rows += f" WHERE {where}" if where else ""
    if dedupe:
        newest = [f"{quote_ident(version_column)} DESC NULLS LAST"] if version_column else []
        # A staging table emptied before it is filled takes rows at its end, one after
        # the other: its ctid order is the order rows were staged in.
        order = ", ".join([keys, *newest, "ctid DESC"])
        rows = f"DISTINCT ON ({keys}) {rows} ORDER BY {order}"
    head = (
        f"INSERT INTO {target.sql} AS t ({cols}) OVERRIDING SYSTEM VALUE "
        f"SELECT {rows} ON CONFLICT ({keys}) DO "
    )
    assignments = [f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}" for c in update]
    assignments.extend(set_extra)
    if not assignments:
        return head + "NOTHING"
    guards = []
    if version_column is not None:
        v = quote_ident(version_column)
        guards.append(f"(t.{v} IS NULL OR t.{v} <= EXCLUDED.{v})")
    if row_hash_column is not None:
        h = quote_ident(row_hash_column)
        changed = f"t.{h} IS DISTINCT FROM EXCLUDED.{h}"
        if revive is not None:
            changed = f"({changed} OR t.{quote_ident(revive)} IS NOT NULL)"
        guards.append(changed)
    if skip_unchanged:
        guards.append(differs_from_stored(update, types or {}))
    sql = head + "UPDATE SET " + ", ".join(assignments)
    if guards:
        sql += " WHERE " + " AND ".join(guards)
    return sql


#: Types whose equality holds only between identical values, so that a stored value equal
#: to the new one is that value: comparing them costs the server next to nothing, where
#: their text would cost an output call per value and row.
_EXACT_TYPES = frozenset(
    {
        "smallint", "integer", "bigint", "oid", "boolean", "uuid", "bytea", "date",
        "timestamp without time zone", "timestamp with time zone",
    }
)  # fmt: skip
#: Equal byte for byte under the "C" collation, whichever the column has (under a
#: nondeterministic one 'a' may equal 'A').
_TEXT_TYPES = frozenset({"text", "character varying"})
#: Compared as their binary form, which is the value bit for bit: as text, each would
#: cost an output call (shortest round-trip digits for floats); by equality, -0 would
#: equal 0, and numeric 1.0 equal 1.00.
_BINARY_SEND = {
    "double precision": "pg_catalog.float8send",
    "real": "pg_catalog.float4send",
    "numeric": "pg_catalog.numeric_send",
}


def differs_from_stored(columns: Sequence[str], types: Mapping[str, str]) -> str:
    """Whether the stored row ``t`` and the new one ``EXCLUDED`` differ in ``columns``.

    Columns of exact types (see ``_EXACT_TYPES``; ``types`` maps a column to its
    ``format_type`` spelling) compare by equality, floats and numeric by their binary
    form; the others compare as the text of a row of them (each value as its type's
    output writes it): what tells apart ``interval`` '1 day' and '24 hours', ``jsonb``
    1.0 and 1.00 or ``bpchar`` 'a' and 'a ', and compares types without equality
    (``json``, ``point``).
    A value told changed when it is not is only written again; one told unchanged
    when it changed would be lost, so no other type compares by equality.
    """
    exact: list[tuple[str, str]] = []
    others: list[str] = []
    for column in columns:
        form = _exact_form(unmodified(types.get(column, "")))
        if form is None:
            others.append(column)
            continue
        name = quote_ident(column)
        exact.append((form.format(f"t.{name}"), form.format(f"EXCLUDED.{name}")))
    tests = []
    if exact:
        stored, incoming = (", ".join(side) for side in zip(*exact, strict=True))
        tests.append(f"ROW({stored}) IS DISTINCT FROM ROW({incoming})")
    if others:
        tests.append(f"{row_text('t', others)} IS DISTINCT FROM {row_text('EXCLUDED', others)}")
    return "(" + " OR ".join(tests) + ")"


#: A type modifier: ``(20)`` of ``character varying(20)``, ``(10,2)`` of ``numeric(10,2)``.
_MODIFIER = re.compile(r"\(\d+(?:,\d+)?\)")


def unmodified(sql_type: str) -> str:
    """``sql_type`` as the catalog spells it, without its modifiers: ``numeric(10,2)`` is
    ``numeric``, ``character varying(5)[]`` is ``character varying[]``."""
    return _MODIFIER.sub("", sql_type)


def _exact_form(sql_type: str) -> str | None:
    """What of a value of ``sql_type`` (``{}``) compares exactly by equality, if anything."""
    if sql_type in _EXACT_TYPES:
        return "{}"
    if sql_type in _TEXT_TYPES:
        return '{} COLLATE pg_catalog."C"'
    send = _BINARY_SEND.get(sql_type)
    return f"{send}({{}})" if send is not None else None


def delete_matching(
    target: TableName,
    columns: Sequence[str],
    casts: Mapping[str, str] | None = None,
    *,
    stage: str,
) -> str:
    """Delete the ``target`` rows whose ``columns`` equal (NULL-safe) those of any staged row.

    Used by ``replace_partition`` with the partition columns; text-staged ones (``casts``)
    are cast back to their type first.
    """
    match = " AND ".join(
        f"t.{quote_ident(c)} IS NOT DISTINCT FROM s.{quote_ident(c)}" for c in columns
    )
    return (
        f"DELETE FROM {target.sql} AS t USING "  # noqa: S608
        f"(SELECT DISTINCT {staged(columns, casts)} FROM {stage}) AS s "
        f"WHERE {match}"
    )


def soft_delete_from_stage(
    target: TableName,
    key: Sequence[str],
    deleted_at: str,
    *,
    stage: str,
    where: str = "TRUE",
    casts: Mapping[str, str] | None = None,
) -> str:
    """Flag ``target`` rows whose key matches a staged row as deleted (``deleted_at = now()``).

    :param where: an extra condition on the staged row ``s`` (already quoted SQL).
    :param casts: text-staged columns and their types, cast back before comparing.
    """
    d = quote_ident(deleted_at)
    casts = casts or {}
    match = " AND ".join(
        f"t.{quote_ident(c)} = s.{quote_ident(c)}" + (f"::{casts[c]}" if c in casts else "")
        for c in key
    )
    return (
        f"UPDATE {target.sql} AS t SET {d} = now() FROM {stage} AS s "  # noqa: S608
        f"WHERE {match} AND t.{d} IS NULL AND ({where})"
    )


# -- rows that hash alike (see ``_writers.hash_numbers``) -------------------------


def staged_rows(columns: Sequence[str], casts: Mapping[str, str] | None, *, stage: str) -> str:
    """The rows of ``stage`` as the FROM item ``s`` of ``columns``, text-staged ones cast back."""
    return f"(SELECT {staged(columns, casts, named=True)} FROM {stage}) AS s"  # noqa: S608


def row_text(alias: str, columns: Sequence[str]) -> str:
    """``columns`` of the row ``alias`` as one exact text: what tells apart ``numeric`` 1.0
    and 1.00, and compares types without equality (``json``, ``xml``, ``point``)."""
    return f"ROW({_columns(columns, alias + '.')})::text"


def differing_rows(
    target: TableName, compared: Sequence[str], hash_column: str, *, rows: str
) -> str:
    """The hashes of those of ``rows`` (a FROM item ``s``) under which ``target`` stores a
    row whose ``compared`` columns differ from theirs, compared as :func:`row_text`."""
    h = quote_ident(hash_column)
    # One look-up in the hash's unique index per row (LIMIT keeps the planner from
    # hashing the whole target instead, which grows with every batch copied).
    stored = (
        f"SELECT {row_text('t', compared)} AS stored FROM {target.sql} AS t "  # noqa: S608
        f"WHERE t.{h} = s.{h} LIMIT 1"
    )
    return (
        f"SELECT s.{h} FROM {rows} CROSS JOIN LATERAL ({stored}) AS t "  # noqa: S608
        f"WHERE t.stored IS DISTINCT FROM {row_text('s', compared)}"
    )


def row_texts(compared: Sequence[str], hash_column: str, *, rows: str, param: int) -> str:
    """The hash and :func:`row_text` of each of ``rows`` (a FROM item ``s``) whose hash is
    one of the text array bound at ``$param``."""
    h = quote_ident(hash_column)
    return (
        f"SELECT s.{h}, {row_text('s', compared)} FROM {rows} "  # noqa: S608
        f"WHERE s.{h} = ANY(${param}::text[])"
    )


def insert_rehashed(
    target: TableName, columns: Sequence[str], hash_column: str, *, rows: str, param: int
) -> str:
    """Insert into ``target`` a copy of each of ``rows`` (a FROM item ``s``) whose hash is in
    the text array bound at ``$param``, under the hash at the same place in the one at
    ``$param + 1``; a hash already stored is skipped."""
    h = quote_ident(hash_column)
    values = ", ".join("m.now" if c == hash_column else f"s.{quote_ident(c)}" for c in columns)
    return (
        # Identity columns keep the values given (OVERRIDING: also GENERATED ALWAYS).
        f"INSERT INTO {target.sql} ({_columns(columns)}) OVERRIDING SYSTEM VALUE "  # noqa: S608
        f"SELECT {values} FROM {rows} "
        f"JOIN unnest(${param}::text[], ${param + 1}::text[]) AS m(was, now) ON s.{h} = m.was "
        f"ON CONFLICT ({h}) DO NOTHING"
    )
