"""``python -m asyncetl cdc status|drop`` against a real slot made by a real run."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import throwaway_database

pytestmark = pytest.mark.anyio

SPEC = """
[pipeline]
name = "cdc_cli"
max_batch_age = 0.2

[source]
type = "postgres_cdc"
dsn = "{source}"
slot = "{slot}"
publication = "{slot}"
tables = ["items"]

[sink]
type = "postgres_apply"
dsn = "{target}"
create = true

[checkpoints]
type = "postgres"
dsn = "{target}"
"""


def asyncetl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncetl", *args, "--log-level", "warning"],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


async def drop_slot(admin_dsn: str, slot: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = $1",
            slot,
        )
    finally:
        await admin.close()


async def test_status_then_drop_of_the_slot_a_run_made(tmp_path: Path, logical_pg: str) -> None:
    slot = f"asyncetl_cli_{secrets.token_hex(4)}"
    async with throwaway_database(logical_pg) as source, throwaway_database() as target:
        conn = await asyncpg.connect(source)
        await conn.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
        await conn.execute("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 20) g")
        await conn.close()
        spec = tmp_path / "cdc.toml"
        spec.write_text(SPEC.format(source=source, target=target, slot=slot))
        try:
            run = asyncetl("run", str(spec), "--stop-when-idle", "1")
            assert run.returncode == 0, run.stderr
            assert "records_in     20" in run.stdout

            status = asyncetl("cdc", "status", str(spec), "--json")
            assert status.returncode == 0, status.stderr
            report = json.loads(status.stdout)
            assert (report["slot"], report["exists"], report["snapshot"]) == (slot, True, None)
            assert report["publication"] == {
                "name": slot,
                "exists": True,
                "tables": ["public.items"],
            }
            assert report["confirmed_flush_lsn"] == report["checkpoint"]["lsn"]
            text = asyncetl("cdc", "status", str(spec)).stdout.splitlines()
            shown_publication = [
                line.split(None, 1) for line in text if line.startswith("publication")
            ]
            assert shown_publication == [["publication", f"{slot}: public.items"]]

            refused = asyncetl("cdc", "drop", str(spec))
            assert refused.returncode == 2
            assert refused.stderr.strip().splitlines()[-1] == (
                "error: cdc drop needs --yes when there is no terminal to confirm on"
            )

            dropped = asyncetl("cdc", "drop", str(spec), "--yes")
            assert dropped.returncode == 0, dropped.stderr
            assert dropped.stdout.splitlines() == [
                "slot_dropped: dropped",
                "publication_dropped: dropped",
                "checkpoint: reset",
            ]
            gone = json.loads(asyncetl("cdc", "status", str(spec), "--json").stdout)
            assert (gone["exists"], gone["publication"]["exists"]) == (False, False)
            shown = asyncetl("checkpoint", "show", str(spec), "--json")
            assert json.loads(shown.stdout) == {
                "pipeline": "cdc_cli",
                "source": "cdc",
                "position": None,
            }

            # As the help promises: the next run re-creates both and re-snapshots.
            again = asyncetl("run", str(spec), "--stop-when-idle", "1")
            assert again.returncode == 0, again.stderr
            assert "records_in     20" in again.stdout
            back = json.loads(asyncetl("cdc", "status", str(spec), "--json").stdout)
            assert (back["exists"], back["publication"]["exists"]) == (True, True)
        finally:
            await drop_slot(logical_pg, slot)


async def test_status_before_the_first_run_says_what_the_run_will_make(
    tmp_path: Path, pg_database: str
) -> None:
    slot = f"asyncetl_cli_{secrets.token_hex(4)}"
    spec = tmp_path / "cdc.toml"
    spec.write_text(SPEC.format(source=pg_database, target=pg_database, slot=slot))
    result = asyncetl("cdc", "status", str(spec))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"slot {slot} does not exist yet; the next run creates it",
        f"publication {slot} does not exist yet; the next run creates it",
        "no position committed; the next run starts with a snapshot",
    ]
    as_json = json.loads(asyncetl("cdc", "status", str(spec), "--json").stdout)
    assert (as_json["exists"], as_json["checkpoint"]) == (False, None)

    conn = await asyncpg.connect(pg_database)
    try:
        await conn.execute("CREATE TABLE items (id int PRIMARY KEY)")
        await conn.execute(f'CREATE PUBLICATION "{slot}" FOR TABLE items')
    finally:
        await conn.close()
    again = asyncetl("cdc", "status", str(spec))
    assert again.stdout.splitlines()[1] == f"publication {slot}: public.items"


def test_status_of_a_spec_without_a_cdc_source(tmp_path: Path) -> None:
    spec = tmp_path / "files.toml"
    spec.write_text(
        '[pipeline]\nname = "f"\n[source]\ntype = "jsonl"\npath = "x.jsonl"\n'
        '[sink]\ntype = "null"\n'
    )
    result = asyncetl("cdc", "status", str(spec))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {spec}: source: the source is JsonlSource, not a CDC source"
    )
