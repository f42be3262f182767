"""A source pointed at another table refuses the old position, at run time and in ``reset --to``."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import anyio.to_thread
import pytest

from tests.cli.helpers import cli
from tests.conftest import throwaway_database
from tests.connectors.http.api import Api, serve
from tests.connectors.postgres.cdc.support import fresh_database, server_and_database
from tests.connectors.postgres.helpers import execute, rows

pytestmark = pytest.mark.anyio

#: Every spec here keeps its checkpoints in one JSON file beside it.
JSON_CHECKPOINTS = """
[checkpoints]
type = "json"
path = "checkpoints.json"
"""

SPEC = (
    """
[pipeline]
name = "copy"

[source]
type = "postgres"
name = "rows"
dsn = "{dsn}"
table = "{table}"

[sink]
type = "jsonl"
path = "out.jsonl"
"""
    + JSON_CHECKPOINTS
)

AT_A = '{"table":"a","order":["id"],"after":["2"]}'
REFUSED = (
    "error: TableSource 'rows': position: cannot resume from the committed position "
    f'{AT_A}: it was written for table "a", not for table "b"; point table back there, '
    'or to read "b" from the start, reset the checkpoint (python -m asyncetl checkpoint '
    "reset b.toml)"
)


def positions(project: Path) -> object:
    """The committed positions, without the refused run's recorded outcome or save times."""
    document = json.loads((project / "checkpoints.json").read_text())
    for sources in document["checkpoints"].values():
        sources.pop("~run outcome", None)
    return document["checkpoints"]


async def run(project: Path, *args: str) -> tuple[int, str, str]:
    result = await anyio.to_thread.run_sync(partial(cli, project, *args))
    return result.returncode, result.stdout, result.stderr


async def refusal(project: Path, spec: str) -> str:
    """Run ``spec``, which must stop as a bad spec does (exit 2, nothing out); its error line."""
    code, out, err = await run(project, "run", spec)
    assert (code, out) == (2, "")
    return err.splitlines()[-1]


async def test_a_table_source_pointed_at_another_table_refuses_the_old_position(
    tmp_path: Path, pg_database: str
) -> None:
    await execute(
        pg_database,
        "CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY);"
        "INSERT INTO a VALUES (1), (2); INSERT INTO b VALUES (1), (2), (3)",
    )
    (tmp_path / "a.toml").write_text(SPEC.format(dsn=pg_database, table="a"))
    (tmp_path / "b.toml").write_text(SPEC.format(dsn=pg_database, table="b"))
    assert (await run(tmp_path, "run", "a.toml"))[0] == 0
    assert (await run(tmp_path, "checkpoint", "show", "a.toml"))[1] == (
        f"pipeline copy (source rows): {AT_A}\n"
    )

    assert await refusal(tmp_path, "b.toml") == REFUSED
    assert (tmp_path / "out.jsonl").read_text() == '{"id":1}\n{"id":2}\n'

    before = positions(tmp_path)
    assert await run(tmp_path, "checkpoint", "reset", "b.toml", "--to", AT_A, "--yes") == (
        2,
        "",
        f"{REFUSED}\n",
    )
    assert positions(tmp_path) == before

    at_b = '{"table":"b","order":["id"],"after":["2"]}'
    moved = await run(tmp_path, "checkpoint", "reset", "b.toml", "--to", at_b, "--yes")
    assert moved == (0, f"pipeline copy (source rows): {AT_A} -> {at_b}\n", "")
    assert (await run(tmp_path, "run", "b.toml"))[0] == 0
    assert (tmp_path / "out.jsonl").read_text() == '{"id":1}\n{"id":2}\n{"id":3}\n'


TABLES_SPEC = (
    """
[pipeline]
name = "tables"

[source]
type = "postgres_tables"
dsn = "{source}"
tables = "{tables}"
snapshot = false

[sink]
type = "postgres_tables"
dsn = "{target}"
source_dsn = "{source}"
tables = "{tables}"
"""
    + JSON_CHECKPOINTS
)


async def test_a_tables_source_given_another_table_list_refuses_the_old_position(
    tmp_path: Path, pg_database: str
) -> None:
    await execute(
        pg_database,
        "CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY);"
        "INSERT INTO a VALUES (1), (2); INSERT INTO b VALUES (1)",
    )
    async with throwaway_database() as target:
        for name, tables in (("ab", "a,b"), ("a", "a")):
            spec = TABLES_SPEC.format(source=pg_database, target=target, tables=tables)
            (tmp_path / f"{name}.toml").write_text(spec)
        assert (await run(tmp_path, "run", "ab.toml"))[0] == 0
        before = positions(tmp_path)

        assert await refusal(tmp_path, "a.toml") == (
            "error: TablesSource 'tables': position: cannot resume from the committed position "
            '{"a":{"table":"a","order":["id"],"after":["2"]},'
            '"b":{"table":"b","order":["id"],"after":["1"]}}: it was written for tables '
            '["a","b"], not for tables ["a"]; restore tables, or to read these from the '
            "start, reset the checkpoint (python -m asyncetl checkpoint reset a.toml)"
        )
        assert positions(tmp_path) == before


HTTP_SPEC = (
    """
[pipeline]
name = "api"

[source]
type = "http"
url = "{url}"

[sink]
type = "jsonl"
path = "out.jsonl"
"""
    + JSON_CHECKPOINTS
)


async def test_an_http_source_pointed_at_another_url_refuses_the_old_position(
    tmp_path: Path,
) -> None:
    async with serve(Api(count=3).handle) as base:
        for name in ("a", "b"):
            (tmp_path / f"{name}.toml").write_text(HTTP_SPEC.format(url=f"{base}/{name}"))
        assert (await run(tmp_path, "run", "a.toml"))[0] == 0
        refused = await refusal(tmp_path, "b.toml")
    a, b = f"{base}/a?limit=100", f"{base}/b?limit=100"
    assert refused == (
        f"error: HttpSource 'http': position: cannot resume from the committed position "
        f"{{'url': '{a}&page=1', 'skip': 3, 'endpoint': '{a}'}}: it was written for '{a}', "
        f"not for url {b}; point url back there, or to read {b} from the start, reset "
        "the checkpoint (python -m asyncetl checkpoint reset b.toml)"
    )
    assert (tmp_path / "out.jsonl").read_text().count("\n") == 3


CDC_SPEC = (
    """
[pipeline]
name = "cdc"
max_batch_age = 0.2

[source]
type = "postgres_cdc"
dsn = "{source}"
slot = "{slot}"
publication = "{publication}"
tables = ["items"]

[sink]
type = "postgres_apply"
dsn = "{target}"
create = true
"""
    + JSON_CHECKPOINTS
)


async def test_a_cdc_source_given_another_slot_or_publication_refuses_the_old_position(
    tmp_path: Path, logical_pg: str
) -> None:
    slot = "asyncetl_identity"  # the fresh database's slots are dropped with it
    async with fresh_database(logical_pg) as source, throwaway_database() as target:
        await execute(
            source, "CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items VALUES (1)"
        )
        specs = {"first": (slot, slot), "slot": (slot + "_b", slot), "pub": (slot, slot + "_b")}
        for name, (slot_name, publication) in specs.items():
            spec = CDC_SPEC.format(
                source=source, target=target, slot=slot_name, publication=publication
            )
            (tmp_path / f"{name}.toml").write_text(spec)
        first = await run(tmp_path, "run", "first.toml", "--stop-when-idle", "0.5")
        assert first[0] == 0, first
        saved = json.loads((tmp_path / "checkpoints.json").read_text())
        position = saved["checkpoints"]["cdc"]["cdc"]
        assert (position["database"], position["slot"], position["publication"]) == (
            server_and_database(source),
            slot,
            slot,
        )
        for name, key in (("slot", "slot"), ("pub", "publication")):
            assert await refusal(tmp_path, f"{name}.toml") == (
                "error: CdcSource 'cdc': position: cannot resume from the committed position "
                f"{json.dumps(position, separators=(',', ':'))}: it was written for {key} "
                f'"{slot}", not for {key} "{slot}_b"; point {key} back there, or to read '
                f'"{slot}_b" from the start, reset the checkpoint '
                f"(python -m asyncetl checkpoint reset {name}.toml)"
            )
        # Refused before anything was made for the other identity.
        assert await rows(
            source, "SELECT slot_name FROM pg_replication_slots WHERE database = current_database()"
        ) == [(slot,)]
        assert await rows(source, "SELECT pubname FROM pg_publication") == [(slot,)]
