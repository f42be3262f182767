"""A source pointed at another table refuses the old position, at run time and in ``reset --to``."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import anyio.to_thread
import pytest

from tests.cli.helpers import cli
from tests.connectors.postgres.helpers import execute

pytestmark = pytest.mark.anyio

SPEC = """
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

[checkpoints]
type = "json"
path = "checkpoints.json"
"""

AT_A = '{"table":"a","order":["id"],"after":["2"]}'
REFUSED = (
    "error: TableSource 'rows': position: cannot resume from the committed position "
    f'{AT_A}: it was written for table "a", not for table "b"; point table back there, '
    'or to read "b" from the start, reset the checkpoint (python -m asyncetl checkpoint '
    "reset b.toml)"
)


async def run(project: Path, *args: str) -> tuple[int, str, str]:
    result = await anyio.to_thread.run_sync(partial(cli, project, *args))
    return result.returncode, result.stdout, result.stderr


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

    code, out, err = await run(tmp_path, "run", "b.toml")
    assert (code, out) == (2, "")
    assert err.splitlines()[-1] == REFUSED
    assert (tmp_path / "out.jsonl").read_text() == '{"id":1}\n{"id":2}\n'

    before = (tmp_path / "checkpoints.json").read_bytes()
    assert await run(tmp_path, "checkpoint", "reset", "b.toml", "--to", AT_A, "--yes") == (
        2,
        "",
        f"{REFUSED}\n",
    )
    assert (tmp_path / "checkpoints.json").read_bytes() == before

    at_b = '{"table":"b","order":["id"],"after":["2"]}'
    moved = await run(tmp_path, "checkpoint", "reset", "b.toml", "--to", at_b, "--yes")
    assert moved == (0, f"pipeline copy (source rows): {AT_A} -> {at_b}\n", "")
    assert (await run(tmp_path, "run", "b.toml"))[0] == 0
    assert (tmp_path / "out.jsonl").read_text() == '{"id":1}\n{"id":2}\n{"id":3}\n'
