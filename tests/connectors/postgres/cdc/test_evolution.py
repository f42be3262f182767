"""Which source type changes widen a target column (pure)."""

from __future__ import annotations

import pytest

from asyncetl.connectors.postgres.cdc._evolution import widens


@pytest.mark.parametrize(
    ("old", "new", "wider"),
    [
        ("integer", "bigint", True),
        ("smallint", "integer", True),
        ("integer", "numeric", True),
        ("real", "double precision", True),
        ("character varying(5)", "character varying(10)", True),
        ("character varying(5)", "character varying", True),
        ("character varying(5)", "text", True),
        ("numeric(10,2)", "numeric(12,2)", True),
        ("numeric(10,2)", "numeric(12,3)", True),
        ("numeric(10,2)", "numeric", True),
        ("bigint", "integer", False),
        ("integer", "integer", False),
        ("character varying(10)", "character varying(5)", False),
        ("numeric(10,2)", "numeric(10,3)", False),
        ("integer", "numeric(5,0)", False),
        ("text", "integer", False),
        ("mood", "text", False),
        ("integer[]", "bigint[]", False),
    ],
)
def test_widens(old: str, new: str, wider: bool) -> None:
    assert widens(old, new) is wider
