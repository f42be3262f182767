"""``validate --connect``: every missing table, file, right or server, one line each, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import anyio.to_thread
import pytest

from asyncetl.cli import main

pytestmark = pytest.mark.anyio

FILES = """
[pipeline]
name = "orders"

[source]
type = "jsonl"
path = "in.jsonl"

[sink]
type = "sqlite"
path = "out/orders.db"
table = "orders"

[checkpoints]
type = "json"
path = "state/checkpoints.json"

[dead_letters]
type = "jsonl"
path = "letters/dead.jsonl"
"""

POSTGRES = """
[pipeline]
name = "orders"

[source]
type = "jsonl"
path = "in.jsonl"

[sink]
type = "postgres"
dsn = "{dsn}"
table = "public.orders"

[checkpoints]
type = "postgres"
dsn = "{dsn}"
"""


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_problem_is_one_line_naming_the_spec_key(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (here / "pipeline.toml").write_text(FILES)
    (here / "out").mkdir()
    code = main(["validate", "pipeline.toml", "--connect"])
    assert (code, capsys.readouterr()) == (
        2,
        (
            "",
            "error: pipeline.toml: source.path: file in.jsonl does not exist\n"
            "error: pipeline.toml: sink.table: table 'orders' does not exist in out/orders.db "
            "and create = false\n"
            "error: pipeline.toml: checkpoints.path: directory state of state/checkpoints.json "
            "does not exist\n"
            "error: pipeline.toml: dead_letters.path: directory letters of letters/dead.jsonl "
            "does not exist\n",
        ),
    )
    assert sorted(p.name for p in here.iterdir()) == ["out", "pipeline.toml"]  # nothing created


def test_a_ready_pipeline_prints_what_was_checked(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (here / "pipeline.toml").write_text(
        FILES.replace('table = "orders"', 'table = "orders"\ncreate = true')
    )
    (here / "out").mkdir()
    (here / "letters").mkdir()
    (here / "state").mkdir()
    (here / "in.jsonl").write_text('{"id": 1}\n')
    code = main(["validate", "pipeline.toml", "--connect"])
    assert (code, capsys.readouterr()) == (
        0,
        (
            "ok: orders: connected and checked source (JsonlSource), sink (SqliteSink), "
            "checkpoints (JsonFileCheckpointStore), dead_letters (JsonlDeadLetterStore)\n",
            "",
        ),
    )


def test_without_connect_nothing_is_checked(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (here / "pipeline.toml").write_text(FILES)
    assert (main(["validate", "pipeline.toml"]), capsys.readouterr()) == (0, ("ok: orders\n", ""))


async def test_a_missing_postgres_table_is_named_by_its_key(
    here: Path, pg_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (here / "in.jsonl").write_text("")
    (here / "pipeline.toml").write_text(POSTGRES.format(dsn=pg_database))
    code = await _main_in_thread(["validate", "pipeline.toml", "--connect"])
    where = pg_database.split("@")[1]
    assert (code, capsys.readouterr()) == (
        2,
        (
            "",
            f"error: pipeline.toml: sink.table: table public.orders does not exist in {where} "
            "and create = false\n",
        ),
    )


def test_an_unreachable_server_is_tried_once_and_named_without_its_password(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (here / "in.jsonl").write_text("")
    dsn = "postgresql://etl:s3cret-pw@127.0.0.1:1/db"
    (here / "pipeline.toml").write_text(POSTGRES.format(dsn=dsn))
    code = main(["validate", "pipeline.toml", "--connect"])
    unreachable = (
        "cannot reach PostgreSQL at 127.0.0.1:1 while connecting as 'etl': Connect call failed "
        "('127.0.0.1', 1); check that the server is running and that the DSN's host and port "
        "are right"
    )
    assert (code, capsys.readouterr()) == (
        2,
        (
            "",
            f"error: pipeline.toml: sink.dsn: {unreachable}\n"
            f"error: pipeline.toml: checkpoints.dsn: {unreachable}\n",
        ),
    )


async def _main_in_thread(argv: list[str]) -> int:
    # main() runs its own event loop, which cannot nest in this test's.
    return await anyio.to_thread.run_sync(main, argv)


def test_json_lists_every_problem_by_key_with_the_same_exit_code(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (here / "pipeline.toml").write_text(FILES)
    (here / "out").mkdir()
    code = main(["validate", "pipeline.toml", "--connect", "--json"])
    out, err = capsys.readouterr()
    assert (code, err) == (2, "")
    assert json.loads(out) == {
        "pipeline": "orders",
        "ok": False,
        "checked": [
            {"key": "source", "type": "JsonlSource"},
            {"key": "sink", "type": "SqliteSink"},
            {"key": "checkpoints", "type": "JsonFileCheckpointStore"},
            {"key": "dead_letters", "type": "JsonlDeadLetterStore"},
        ],
        "problems": [
            {"key": "source.path", "message": "file in.jsonl does not exist"},
            {
                "key": "sink.table",
                "message": "table 'orders' does not exist in out/orders.db and create = false",
            },
            {
                "key": "checkpoints.path",
                "message": "directory state of state/checkpoints.json does not exist",
            },
            {
                "key": "dead_letters.path",
                "message": "directory letters of letters/dead.jsonl does not exist",
            },
        ],
    }
    assert out.count("\n") == 1  # one document on one line


def test_json_of_a_ready_pipeline_has_no_problems(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (here / "pipeline.toml").write_text(
        FILES.replace('table = "orders"', 'table = "orders"\ncreate = true')
    )
    for directory in ("out", "letters", "state"):
        (here / directory).mkdir()
    (here / "in.jsonl").write_text('{"id": 1}\n')
    code = main(["validate", "pipeline.toml", "--connect", "--json"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "pipeline": "orders",
        "ok": True,
        "checked": [
            {"key": "source", "type": "JsonlSource"},
            {"key": "sink", "type": "SqliteSink"},
            {"key": "checkpoints", "type": "JsonFileCheckpointStore"},
            {"key": "dead_letters", "type": "JsonlDeadLetterStore"},
        ],
        "problems": [],
    }


def test_json_names_an_unreachable_server_without_its_password(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (here / "in.jsonl").write_text("")
    (here / "pipeline.toml").write_text(
        POSTGRES.format(dsn="postgresql://etl:s3cret-pw@127.0.0.1:1/db")
    )
    code = main(["validate", "pipeline.toml", "--connect", "--json"])
    out, err = capsys.readouterr()
    assert (code, err) == (2, "")
    assert "s3cret" not in out
    assert [problem["key"] for problem in json.loads(out)["problems"]] == [
        "sink.dsn",
        "checkpoints.dsn",
    ]
