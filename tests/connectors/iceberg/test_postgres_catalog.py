"""A PostgreSQL catalog, for teams sharing one warehouse: the same commits, positions and reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncetl import ListSource, Pipeline
from asyncetl.connectors.iceberg import IcebergCheckpointStore, IcebergSink
from tests.connectors.iceberg.helpers import rows

pytestmark = pytest.mark.anyio


async def test_a_postgres_catalog_holds_the_tables_and_their_positions(
    pg_database: str, tmp_path: Path
) -> None:
    records = [{"id": i % 7, "v": i} for i in range(30)]  # keys repeat: the last value wins

    def pipeline(count: int) -> Pipeline:
        return Pipeline(
            "teams",
            ListSource(records[:count], chunk_size=10),
            IcebergSink(str(tmp_path), table="shared.counts", key=["id"], catalog_uri=pg_database),
            checkpoints=IcebergCheckpointStore(str(tmp_path), catalog_uri=pg_database),
            max_batch_size=10,
        )

    await pipeline(20).run()
    again = await pipeline(30).run()
    assert again.records_in == 10
    reader_uri = pg_database.replace("postgresql://", "postgresql+psycopg2://")
    assert rows(tmp_path, "shared.counts", uri=reader_uri) == [
        {"id": k, "v": max(i for i in range(30) if i % 7 == k)} for k in range(7)
    ]
    assert not (tmp_path / "catalog.db").exists()  # nothing went to the SQLite default
    async with IcebergCheckpointStore(str(tmp_path), catalog_uri=pg_database) as store:
        assert await store.load("teams", "list_source") == 30


async def test_check_names_a_catalog_database_that_does_not_answer(tmp_path: Path) -> None:
    sink = IcebergSink(
        str(tmp_path / "wh"), table="a.b", catalog_uri="postgresql://postgres@127.0.0.1:1/nowhere"
    )
    problems = await sink.check()
    assert [p.setting for p in problems] == ["catalog_uri"]
    assert problems[0].message.startswith(
        "the catalog database does not answer: OperationalError: "
    )
    assert not (tmp_path / "wh").exists()  # a question only: nothing was created


def test_a_catalog_password_never_shows_in_a_repr(tmp_path: Path) -> None:
    sink = IcebergSink(str(tmp_path), table="a.b", catalog_uri="postgresql://etl:s3cret@db/cat")
    assert "s3cret" not in repr(sink.catalog)
    assert repr(sink.catalog) == (
        f"CatalogSettings(warehouse={str(tmp_path)!r}, uri='postgresql://etl:***@db/cat', "
        "name='asyncetl')"
    )
