from __future__ import annotations

import re

import pytest

from asyncetl import ConfigError
from asyncetl.connectors.postgres._sql import (
    TableName,
    create_stage,
    differs_from_stored,
    merge_from_stage,
    quote_ident,
    quote_qualified,
)


def test_quote_ident_doubles_quotes() -> None:
    assert quote_ident('x"; DROP TABLE y; --') == '"x""; DROP TABLE y; --"'
    assert quote_ident("Mixed Case") == '"Mixed Case"'
    assert quote_qualified("s", "t") == '"s"."t"'
    assert quote_qualified(None, "t") == '"t"'


@pytest.mark.parametrize("bad", ["", "a\x00b"])
def test_quote_ident_refuses_what_postgres_cannot_store(bad: str) -> None:
    with pytest.raises(ConfigError, match="is not a valid PostgreSQL identifier"):
        quote_ident(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("orders", TableName(None, "orders")),
        ("sales.orders", TableName("sales", "orders")),
        ('x"; DROP TABLE y; --', TableName(None, 'x"; DROP TABLE y; --')),
        ('"my.schema"."Odd ""T"""', TableName("my.schema", 'Odd "T"')),
        ('public."a.b"', TableName("public", "a.b")),
        ("  spaced  ", TableName(None, "spaced")),
    ],
)
def test_table_name_parse(text: str, expected: TableName) -> None:
    assert TableName.parse(text) == expected


@pytest.mark.parametrize("bad", ["a.b.c", ".t", "s.", '"open', '"a"b'])
def test_table_name_parse_refuses(bad: str) -> None:
    with pytest.raises(ConfigError):
        TableName.parse(bad)


def test_merge_sql_has_guards() -> None:
    sql = merge_from_stage(
        TableName("s", "t"),
        ["id", "v", "h"],
        ["id"],
        stage='"st"',
        version_column="v",
        row_hash_column="h",
    )
    assert sql == (
        'INSERT INTO "s"."t" AS t ("id", "v", "h") OVERRIDING SYSTEM VALUE SELECT "id", "v", "h" FROM "st" '
        'ON CONFLICT ("id") DO UPDATE SET "v" = EXCLUDED."v", "h" = EXCLUDED."h" '
        'WHERE (t."v" IS NULL OR t."v" <= EXCLUDED."v") AND t."h" IS DISTINCT FROM EXCLUDED."h"'
    )
    assert merge_from_stage(TableName(None, "t"), ["id"], ["id"], stage='"st"').endswith(
        "DO NOTHING"
    )


def test_stage_is_kept_for_the_session_emptied_and_named_by_its_shape() -> None:
    stage = create_stage(TableName(None, "t"), ["a"], [("f", "boolean")])
    assert re.fullmatch(r"_asyncetl_stage_[0-9a-f]{16}", stage.name)
    assert stage.ready == (
        f'CREATE TEMPORARY TABLE IF NOT EXISTS "{stage.name}" ON COMMIT DELETE ROWS AS '
        f'SELECT "a", NULL::boolean AS "f" FROM "t" WITH NO DATA; DELETE FROM pg_temp."{stage.name}"'
    )
    assert create_stage(TableName(None, "t"), ["a"], [("f", "boolean")]) == stage
    others = [
        create_stage(TableName(None, "t"), ["b"]),
        create_stage(TableName(None, "u"), ["a"]),
        create_stage(TableName(None, "t"), ["a"], casts={"a": "interval"}),
    ]
    assert len({stage.name, *(other.name for other in others)}) == 4


def test_unchanged_rows_are_told_by_equality_binary_form_or_text_as_each_type_allows() -> None:
    types = {
        "n": "bigint",
        "s": "character varying(20)",
        "f": "double precision",
        "d": "numeric(10,2)",
        "at": "timestamp(3) with time zone",
        "j": "jsonb",
        'odd"name': "interval",
    }
    assert differs_from_stored(list(types), types) == (
        '(ROW(t."n", t."s" COLLATE pg_catalog."C", pg_catalog.float8send(t."f"), '
        'pg_catalog.numeric_send(t."d"), t."at") IS DISTINCT FROM ROW(EXCLUDED."n", '
        'EXCLUDED."s" COLLATE pg_catalog."C", pg_catalog.float8send(EXCLUDED."f"), '
        'pg_catalog.numeric_send(EXCLUDED."d"), EXCLUDED."at") '
        'OR ROW(t."j", t."odd""name")::text IS DISTINCT FROM ROW(EXCLUDED."j", EXCLUDED."odd""name")::text)'
    )
    # A column of unknown type compares as text.
    assert (
        differs_from_stored(["x"], {})
        == '(ROW(t."x")::text IS DISTINCT FROM ROW(EXCLUDED."x")::text)'
    )
