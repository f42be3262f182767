"""Three worker processes in one consumer group; one is killed mid-stream, the others finish."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.connectors.kafka.helpers import Topic

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[3]
MESSAGES = 30_000


async def _produce(topic: Topic, start: int, stop: int) -> None:
    """``{"n": i}`` keyed by ``i``, so each key stays in one partition."""
    producer = AIOKafkaProducer(bootstrap_servers=topic.bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        batch = [
            await producer.send(topic.name, orjson.dumps({"n": i}), key=str(i).encode())
            for i in range(start, stop)
        ]
        for future in batch:
            await future
    finally:
        await producer.stop()


def _worker(topic: Topic, dsn: str, worker: int, log: Path) -> subprocess.Popen[bytes]:
    """A worker process; its output goes to ``log`` (a pipe could fill and stall it)."""
    command = [sys.executable, "-m", "tests.connectors.kafka.worker", topic.bootstrap]
    command += [topic.name, topic.group, dsn, str(worker)]
    with log.open("wb") as output:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=output,
            stderr=subprocess.STDOUT,
        )


async def _count(conn: asyncpg.Connection, sql: str = "SELECT count(*) FROM events") -> int:
    count: int = await conn.fetchval(sql)
    return count


async def _until(conn: asyncpg.Connection, sql: str, at_least: int, limit: float) -> None:
    with anyio.fail_after(limit):
        while await _count(conn, sql) < at_least:
            await anyio.sleep(0.05)


async def test_a_member_killed_mid_stream_leaves_its_partitions_to_the_others_and_none_is_lost(
    six_partitions: Topic, pg_database: str, tmp_path: Path
) -> None:
    six = six_partitions
    conn = await asyncpg.connect(pg_database)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        await conn.execute("CREATE TABLE events (n int PRIMARY KEY, worker int NOT NULL)")
        await _produce(six, 0, MESSAGES // 2)
        logs = [tmp_path / f"worker{i}.log" for i in range(3)]
        workers = [_worker(six, pg_database, i, logs[i]) for i in range(3)]
        # Every worker has written: the group has split the partitions three ways.
        await _until(conn, "SELECT count(DISTINCT worker) FROM events", 3, limit=30)

        workers[0].send_signal(signal.SIGKILL)
        assert workers[0].wait(timeout=5) == -signal.SIGKILL
        await _produce(six, MESSAGES // 2, MESSAGES)
        await _until(conn, "SELECT count(*) FROM events", MESSAGES, limit=40)

        for survivor in workers[1:]:
            survivor.send_signal(signal.SIGTERM)
        exits = [survivor.wait(timeout=20) for survivor in workers[1:]]
        assert exits == [0, 0], "".join(log.read_text()[-2000:] for log in logs[1:])

        rows = await conn.fetch("SELECT n, worker FROM events ORDER BY n")
        assert [row["n"] for row in rows] == list(range(MESSAGES))  # each key once, none lost
        after_kill = {row["worker"] for row in rows if row["n"] >= MESSAGES // 2}
        assert after_kill == {1, 2}  # the survivors took over every partition
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        await conn.close()
