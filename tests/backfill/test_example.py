"""examples/backfill_daily.toml end to end: make events, backfill daily totals, do it again."""

from __future__ import annotations

import importlib.util
import os
import sys
from datetime import date
from pathlib import Path
from types import ModuleType

import anyio
import asyncpg
import pytest

from tests.conftest import throwaway_database

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]
EXPECTED = """
SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, count(*) AS events, sum(amount) AS amount
FROM events GROUP BY 1 ORDER BY 1
"""


def make_events() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_events", REPO / "examples/make_events.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def backfill(tmp_path: Path, source: str, target: str, *extra: str) -> int:
    command = [
        sys.executable,
        "-m",
        "asyncetl",
        "backfill",
        "examples/backfill_daily.toml",
        "--start",
        "2024-02-27",
        "--end",
        "2024-03-02",
        "--log-level",
        "warning",
        *extra,
    ]
    env = {
        **os.environ,
        "SOURCE_DSN": source,
        "TARGET_DSN": target,
        "BACKFILL_STORE": str(tmp_path / "bf.db"),
    }
    with (tmp_path / "output").open("ab") as output:
        process = await anyio.open_process(command, cwd=REPO, env=env, stdout=output, stderr=output)
        with anyio.fail_after(60):
            return await process.wait()


async def test_daily_totals_match_the_events_and_a_forced_rerun_changes_nothing(
    tmp_path: Path,
) -> None:
    async with throwaway_database() as source, throwaway_database() as target:
        written = await make_events().fill(source, date(2024, 2, 27), date(2024, 3, 1), per_day=300)
        assert written == 1200
        assert await backfill(tmp_path, source, target) == 0, (tmp_path / "output").read_text()
        src, dst = await asyncpg.connect(source), await asyncpg.connect(target)
        try:
            expected = [tuple(r) for r in await src.fetch(EXPECTED)]
            first = [tuple(r) for r in await dst.fetch("SELECT * FROM daily_totals ORDER BY day")]
            await dst.execute("UPDATE daily_totals SET events = -1")  # damage, then repair
            assert await backfill(tmp_path, source, target, "--force") == 0
            second = [tuple(r) for r in await dst.fetch("SELECT * FROM daily_totals ORDER BY day")]
        finally:
            await src.close()
            await dst.close()
    assert [day for day, _, _ in expected] == [date(2024, 2, d) for d in (27, 28, 29)] + [
        date(2024, 3, 1)
    ]
    # The range runs one day past the data: that day's row says zero events.
    assert first == [*expected, (date(2024, 3, 2), 0, 0)]
    assert second == first
