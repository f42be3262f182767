"""The HTTP source against json-server, a server nobody here wrote.

``examples/http_to_pg.toml`` says its defaults suit json-server (``_page`` and
``_limit``, ``Link`` headers, ``X-Total-Count``, ``_start``): here they meet the
real thing, json-server 0.17.4 from npm, in each pagination style it serves.
What lands in PostgreSQL must be exactly what the server serves, a rerun must
read nothing, records added through the server's own API must arrive on the
next run, and ``since`` reads must pick up records the server changed.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import orjson
import pytest

from asyncetl import JsonFileCheckpointStore, ListSink, Pipeline, spec
from asyncetl.connectors.http import HttpSource
from tests.connectors.http.json_server import json_server, send

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "http_to_pg.toml"
ORDERS = 1_000


def order(number: int) -> dict[str, Any]:
    """An order with what real APIs hold: nesting, arrays, floats, nulls, any script."""
    return {
        "id": number,
        "customer": ["Zoë", "Ålesund AS", "東京商事", 'O\'Brien & "Sons"', "👩‍💻 dev"][number % 5],
        "amount": round(number * 1.37, 2),
        "paid": number % 3 == 0,
        "note": None if number % 4 else "ring twice\nthen wait",
        "lines": [{"sku": f"S{number % 17}", "qty": number % 5 + 1}],
        "address": {"city": "Zürich", "zip": f"{8000 + number % 100}"},
        "updated_at": f"2026-01-{number % 28 + 1:02d}T10:00:00Z",
    }


def served(base: str, resource: str = "orders") -> list[dict[str, Any]]:
    """What json-server serves now, in id order."""
    with urllib.request.urlopen(f"{base}/{resource}?_sort=id", timeout=10) as response:
        records = orjson.loads(response.read())
    assert isinstance(records, list)
    return records


async def loaded(dsn: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT id, doc::text AS doc FROM orders ORDER BY id")
    finally:
        await conn.close()
    documents = [orjson.loads(row["doc"]) for row in rows]
    assert [row["id"] for row in rows] == [document["id"] for document in documents]
    return documents


@pytest.mark.parametrize("pagination", ["link", "page", "offset"])
async def test_the_example_copies_json_server_exactly_and_follows_new_records(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_database: str, pagination: str
) -> None:
    monkeypatch.chdir(ROOT)  # the example's transform is imported from examples/
    with json_server(tmp_path, {"orders": [order(n) for n in range(1, ORDERS + 1)]}) as base:
        for name, value in {
            "API_URL": f"{base}/orders",
            "PAGINATION": pagination,
            "PAGE_SIZE": "75",
            "TARGET_DSN": pg_database,
            "TARGET_TABLE": "orders",
        }.items():
            monkeypatch.setenv(name, value)
        first = await spec.build_pipeline(EXAMPLE).run()
        again = await spec.build_pipeline(EXAMPLE).run()
        assert (first.records_out, first.dead_lettered, again.records_in) == (ORDERS, 0, 0)
        assert await loaded(pg_database) == served(base)

        # Orders placed through the server's own API: the next run reads those alone,
        # resuming inside the last, short page.
        for number in range(ORDERS + 1, ORDERS + 8):
            send("POST", f"{base}/orders", order(number))
        later = await spec.build_pipeline(EXAMPLE).run()
        assert (later.records_in, later.records_out) == (7, 7)
        assert await loaded(pg_database) == served(base)
        assert len(served(base)) == ORDERS + 7


async def test_since_reads_pick_up_the_records_json_server_changed(tmp_path: Path) -> None:
    def source(base: str) -> HttpSource:
        return HttpSource(
            f"{base}/orders?_sort=updated_at,id",
            name="orders",
            pagination="page",
            page_param="_page",
            size_param="_limit",
            page_size=40,
            since_param="updated_at_gte",
            since_field="updated_at",
        )

    checkpoints = tmp_path / "checkpoints.json"
    with json_server(tmp_path, {"orders": [order(n) for n in range(1, 201)]}) as base:
        first: ListSink[dict[str, Any]] = ListSink()
        await Pipeline(
            "since", source(base), first, checkpoints=JsonFileCheckpointStore(checkpoints)
        ).run()
        assert sorted(first.records, key=lambda r: r["id"]) == served(base)

        changed = [
            send(
                "PATCH", f"{base}/orders/{n}", {"amount": 0.5, "updated_at": "2026-02-01T08:00:00Z"}
            )
            for n in (3, 150)
        ]
        second: ListSink[dict[str, Any]] = ListSink()
        await Pipeline(
            "since", source(base), second, checkpoints=JsonFileCheckpointStore(checkpoints)
        ).run()
    # The bound is the greatest updated_at seen, inclusive: the records stamped with
    # it last time come again (an upsert makes that harmless), then the two changed.
    last_time = max(record["updated_at"] for record in first.records)
    again = [r for r in first.records if r["updated_at"] == last_time]
    assert second.records == sorted(again, key=lambda r: r["id"]) + changed


async def test_a_resource_json_server_does_not_have_stops_the_run_naming_url_and_status(
    tmp_path: Path, pg_database: str
) -> None:
    with json_server(tmp_path, {"orders": [order(1)]}) as base:
        environment = {**os.environ, "API_URL": f"{base}/ordres", "TARGET_DSN": pg_database}
        result = await anyio.run_process(
            [sys.executable, "-m", "asyncetl", "run", str(EXAMPLE)],
            cwd=ROOT,
            env=environment,
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr.decode().splitlines()[-1] == (
        f"error: stage 'http' failed reading from the start: HttpStatusError: GET "
        f"{base}/ordres?_limit=100&_page=1 answered 404 Not Found: '{{}}'; check the URL, "
        "the query parameters and the request"
    )
