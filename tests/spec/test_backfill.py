"""Backfill spec files: the function route, the pipeline route, and their mistakes."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from asyncetl.backfill import Backfill, date_partitions
from asyncetl.connectors.sqlite.backfill_store import SqliteBackfillStore
from asyncetl.core.errors import ConfigError
from asyncetl.spec.backfill import DEFAULT_STORE, PipelineJob, backfill_store_at, load_backfill_spec


def write(tmp_path: Path, text: str, name: str = "daily.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_and_runner_options(tmp_path: Path) -> None:
    spec = load_backfill_spec(
        write(
            tmp_path,
            """
[backfill]
function = "tests.backfill.jobs:noop"
parallel = 3
lease = 5
""",
        )
    )
    assert (spec.name, spec.every, spec.order, spec.store, spec.start, spec.size) == (
        "daily",
        "day",
        "oldest",
        DEFAULT_STORE,
        None,
        None,
    )
    assert spec.runner_options() == {"parallel": 3, "lease": 5}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            'function = "tests.backfill.jobs:write_marker"\n[backfill.params]\ncolour = "red"',
            "backfill.params: write_marker does not accept these params: missing a required "
            "argument: 'marker'",
        ),
        (
            'function = "tests.backfill.jobs:noop"\npipeline = "p.toml"',
            "backfill.function: set exactly one of function (module:async_function) or pipeline "
            "(a pipeline spec file)",
        ),
        (
            'function = "tests.backfill.jobs:RUNS_DDL"',
            "backfill.function: tests.backfill.jobs:RUNS_DDL is not an async function",
        ),
        (
            'function = "tests.backfill.jobs:nothing"',
            "backfill.function: module 'tests.backfill.jobs' has no attribute 'nothing'",
        ),
        (
            'function = "tests.backfill.jobs:noop"\nevery = "week"',
            "backfill.every: expected one of hour, day, month, int, got 'week'",
        ),
        (
            'function = "tests.backfill.jobs:noop"\nparallel = "4"',
            "backfill.parallel: expected int, got '4'",
        ),
        (
            'function = "tests.backfill.jobs:noop"\nstore = "${NO_SUCH_VARIABLE_HERE}"',
            "backfill.store: environment variable NO_SUCH_VARIABLE_HERE is not set; set it or "
            "write ${NO_SUCH_VARIABLE_HERE:-default}",
        ),
    ],
)
def test_mistakes_name_file_and_key(tmp_path: Path, body: str, message: str) -> None:
    path = write(tmp_path, "[backfill]\n" + body + "\n")
    with pytest.raises(ConfigError) as caught:
        load_backfill_spec(path)
    assert str(caught.value) == f"{path}: {message}"


def test_a_spec_without_a_backfill_table_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "[pipeline]\nname = 'x'\n")
    with pytest.raises(
        ConfigError,
        match=r": pipeline: unknown key 'pipeline'; expected one of "
        r"backfill, logging$",
    ):
        load_backfill_spec(path)


PIPELINE = """
[pipeline]
name = "copy_${PARTITION_KEY}"

[source]
type = "jsonl"
path = "${DATA}/in/${PARTITION_KEY}.jsonl"

[sink]
type = "jsonl"
path = "${DATA}/out/${PARTITION_KEY}.jsonl"
"""


@pytest.mark.anyio
async def test_the_pipeline_route_runs_the_spec_once_per_partition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATA", str(tmp_path))
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    days = date_partitions("2024-01-01", "2024-01-03", "day")
    for n, day in enumerate(days):
        rows = [{"day": day.key, "n": i} for i in range(n + 1)]
        (tmp_path / "in" / f"{day.key}.jsonl").write_bytes(
            b"".join(orjson.dumps(row) + b"\n" for row in rows)
        )
    write(tmp_path, PIPELINE, "copy.toml")
    spec = load_backfill_spec(write(tmp_path, f'[backfill]\npipeline = "{tmp_path}/copy.toml"\n'))
    assert isinstance(spec.job, PipelineJob)
    result = await Backfill(
        "copy", days, spec.job, SqliteBackfillStore(tmp_path / "bf.db"), parallel=2
    ).run()
    assert result.ok
    for day in days:
        assert (tmp_path / "out" / f"{day.key}.jsonl").read_bytes() == (
            tmp_path / "in" / f"{day.key}.jsonl"
        ).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".copy.")) == []


def test_reading_statuses_needs_neither_the_function_nor_its_variables(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[backfill]
function = "not_installed_anywhere:job"
store = "statuses.db"
[backfill.params]
dsn = "${UNSET_FOR_THIS_TEST}"
""",
    )
    spec = load_backfill_spec(path, resolve=False)
    assert (spec.name, spec.store) == ("daily", "statuses.db")


@pytest.mark.parametrize(
    ("location", "message"),
    [
        (
            "postgresql:/etl:s3cret@db/app",
            "'postgresql:/etl:***@db/app' is not a PostgreSQL DSN; "
            "write postgresql://user@host:port/database (user:password@ with a password)",
        ),
        (
            "postgresql://etl:s3c#ret@db/app",
            "cannot read 'postgresql://etl:***@db/app': a password or database name must write "
            "'@', '/', '?' and '#' as %40, %2F, %3F and %23",
        ),
    ],
)
def test_a_mistyped_postgres_store_is_refused_not_taken_for_a_file(
    location: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        backfill_store_at(location)
    assert str(caught.value) == message
