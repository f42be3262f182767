"""CDC drain: asyncetl CdcSource → ApplySink against a psycopg2 replication loop, in pairs.

    python benchmarks/pg_cdc_drain.py [--changes 240000] [--pairs 3] [--server postgresql://...]

A source database is made with ``pgbench -i`` and copied (``CREATE DATABASE …
TEMPLATE``) into one target per consumer and pair. Then, for each pair, two
slots are created (one ``test_decoding`` for the loop, one ``pgoutput`` for
asyncetl, with a publication of the pgbench tables), and ``pgbench``'s TPC-B
transactions (3 updates and 1 insert each) make --changes changes. Each side
drains its slot into its own target, in turn (each side first in every other pair):

- the peer: a hand-written psycopg2 loop — ``LogicalReplicationConnection``
  with ``test_decoding``, each change parsed from its text line, applied with
  ``execute_batch`` (``INSERT … ON CONFLICT DO UPDATE`` by key, plain inserts
  into ``pgbench_history``), committed every 5,000 changes and at the end, the
  slot confirmed after each commit;
- asyncetl: ``CdcSource(snapshot="never")`` → ``ApplySink`` with checkpoints in
  the target, batches of 5,000 changes (``examples/pg_cdc.toml``'s), run with
  ``asyncetl.tune_gc()`` as the CLI runs it, stopped once the sink applied the
  workload's last change.

Before each side is timed the server settles: the tables just written (the
source's after the workload, the first side's target after its run) are
vacuumed and analyzed, and a CHECKPOINT is taken, so that neither side runs
beside the server's clean-up of the other's work.

Each runs in a child process (peak RSS its own), timed until its target holds
the last change; both targets are then checked identical to the source. CPU
seconds are each side's own: its process, its walsender and its backends on the
target (read from ``/proc`` every 50 ms while it runs, so the server must run on
this machine for those). The load average is printed beside each pair: on a
shared machine the ratio follows it.
Bench-only package: psycopg2-binary. Needs wal_level = logical.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
from pg_cdc_snapshot import backend_cpu  # a sibling script: benchmarks/ is on the path

TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history")
KEYS = {"pgbench_accounts": "aid", "pgbench_branches": "bid", "pgbench_tellers": "tid"}
DIGEST = (
    "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {} t"
)


def dsn(base: str, database: str) -> str:
    return f"{base.rstrip('/')}/{database}"


async def sql(database: str, *statements: str) -> list[Any]:
    conn = await asyncpg.connect(database)
    try:
        rows: list[Any] = []
        for statement in statements:
            rows = await conn.fetch(statement)
        return rows
    finally:
        await conn.close()


def digest(database: str) -> list[tuple[int, str]]:
    return [tuple(asyncio.run(sql(database, DIGEST.format(t)))[0]) for t in TABLES]


# -- the peer: a psycopg2 test_decoding loop ---------------------------------------------------

_LINE = re.compile(r"^table ([^.]+)\.([^:]+): (INSERT|UPDATE|DELETE): (.*)$")
_FIELD = re.compile(r"(\w+)\[[^\]]+\]:('(?:[^']|'')*'|\S+)")


def _values(text: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name, raw in _FIELD.findall(text):
        if raw == "null":
            out[name] = None
        elif raw.startswith("'"):
            out[name] = raw[1:-1].replace("''", "'")
        else:
            out[name] = raw
    return out


def peer_child(source: str, target: str, slot: str, expected: int) -> None:
    import psycopg2
    import psycopg2.extras

    db = psycopg2.connect(target)
    cur = db.cursor()
    repl = psycopg2.connect(source, connection_factory=psycopg2.extras.LogicalReplicationConnection)
    rcur = repl.cursor()
    rcur.start_replication(slot_name=slot, decode=True, options={"skip-empty-xacts": "1"})
    pending: dict[str, list[dict[str, str | None]]] = {}
    count, seen, last = 0, 0, 0

    def apply() -> None:
        for table, rows in pending.items():
            names = list(rows[0])
            columns = ", ".join(names)
            marks = ", ".join(f"%({n})s" for n in names)
            key = KEYS.get(table)
            statement = f"INSERT INTO {table} ({columns}) VALUES ({marks})"
            if key:
                sets = ", ".join(f"{n} = EXCLUDED.{n}" for n in names if n != key)
                statement += f" ON CONFLICT ({key}) DO UPDATE SET {sets}"
            psycopg2.extras.execute_batch(cur, statement, rows, page_size=1000)
        db.commit()
        pending.clear()
        rcur.send_feedback(flush_lsn=last)

    while True:
        message = rcur.read_message()
        if message is None:
            time.sleep(0.001)
            continue
        matched = _LINE.match(message.payload)
        if matched:
            _, table, op, rest = matched.groups()
            if op == "DELETE":
                raise RuntimeError("the TPC-B workload deletes nothing")
            pending.setdefault(table, []).append(_values(rest))
            count += 1
            seen += 1
        elif message.payload.startswith("COMMIT"):
            last = message.data_start
            if count >= 5000 or seen >= expected:
                apply()
                count = 0
                if seen >= expected:
                    break
    repl.close()
    db.close()


# -- asyncetl ------------------------------------------------------------------------------


def asyncetl_child(source: str, target: str, slot: str, expected: int) -> None:
    import logging

    import anyio
    import structlog

    import asyncetl
    from asyncetl import Pipeline
    from asyncetl.connectors.postgres import ApplySink, CdcSource, PostgresCheckpointStore

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncetl.tune_gc()
    cdc = CdcSource(source, slot=slot, publication=slot, snapshot="never", create_slot=False)

    class CountingApply(ApplySink):
        applied_changes = 0
        done: anyio.Event

        async def _apply(self, records: Any, *rest: Any) -> None:
            await super()._apply(records, *rest)
            self.applied_changes += len(records)
            if self.applied_changes >= expected:
                self.done.set()

    sink = CountingApply(target, create=True)
    pipeline = Pipeline(
        "drain",
        cdc,
        sink,
        checkpoints=PostgresCheckpointStore(target),
        max_batch_size=5000,
        max_batch_age=0.5,
    )

    async def main() -> None:
        sink.done = anyio.Event()

        async def watch() -> None:
            await sink.done.wait()
            pipeline.stop()

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await pipeline.run()

    anyio.run(main)


#: The walsenders on the source and the client backends on the target, but the sampler's own.
BACKENDS = (
    "SELECT pid, backend_type = 'walsender' FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
    "AND (backend_type = 'walsender' AND datname = %s OR backend_type = 'client backend' "
    "AND datname = %s)"
)


@dataclass
class Figures:
    """One side's run: seconds, peak RSS in MiB, and CPU seconds of its process, its
    walsender and its backends on the target."""

    seconds: float
    mib: float
    cpu: float
    sender: float
    target: float


def run_child(side: str, source: str, target: str, *args: str) -> Figures:
    import psycopg2

    sampler = psycopg2.connect(dsn(source.rsplit("/", 1)[0], "postgres"))
    sampler.autocommit = True
    cursor = sampler.cursor()
    databases = (source.rsplit("/", 1)[1], target.rsplit("/", 1)[1])
    seen: dict[int, tuple[bool, float]] = {}
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, __file__, "--child", side, source, target, *args])
    try:
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            cursor.execute(BACKENDS, databases)
            for backend, sender in cursor.fetchall():
                seconds = backend_cpu(backend)
                if seconds is not None:
                    seen[backend] = (sender, seconds)
            time.sleep(0.05)
    finally:
        sampler.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"the {side} child failed")
    return Figures(
        time.perf_counter() - start,
        usage.ru_maxrss / 1024,
        usage.ru_utime + usage.ru_stime,
        sum(cpu for sender, cpu in seen.values() if sender),
        sum(cpu for sender, cpu in seen.values() if not sender),
    )


def settle(base: str, database: str) -> None:
    """Vacuum and analyze ``database``'s pgbench tables and checkpoint: the server's own
    clean-up after the workload (or after the side that ran first) is done before a
    side is timed, not beside it."""
    asyncio.run(sql(dsn(base, database), f"VACUUM (ANALYZE) {', '.join(TABLES)}", "CHECKPOINT"))


def one_pair(base: str, src: str, tag: str, n: int, changes: int) -> list[Figures]:
    targets = {side: f"asyncetl_drain_{side}_{tag}_{n}" for side in ("peer", "asyncetl")}
    admin = dsn(base, "postgres")
    slots = {"peer": f"drain_peer_{tag}_{n}", "asyncetl": f"drain_ours_{tag}_{n}"}
    try:  # whatever was made is removed, even when making the rest failed
        for target in targets.values():
            asyncio.run(sql(admin, f'CREATE DATABASE "{target}" TEMPLATE "{src}"'))
        asyncio.run(
            sql(
                dsn(base, src),
                f"SELECT pg_create_logical_replication_slot('{slots['peer']}', 'test_decoding')",
                f"SELECT pg_create_logical_replication_slot('{slots['asyncetl']}', 'pgoutput')",
                f"CREATE PUBLICATION {slots['asyncetl']} FOR TABLE {', '.join(TABLES)}",
            )
        )
        transactions = changes // 4  # TPC-B: 3 updates and 1 insert each
        subprocess.run(
            ["pgbench", "-n", "-c", "2", "-j", "2", "-t", str(transactions // 2), dsn(base, src)],
            check=True,
            capture_output=True,
            # The workload only makes WAL to drain: no need to wait for the disk per commit.
            env={**os.environ, "PGOPTIONS": "-c synchronous_commit=off"},
        )
        settle(base, src)
        figures: dict[str, Figures] = {}
        # Each side goes first in every other pair, and each is timed on a settled server:
        # without, the first of a pair shared the machine with the server's clean-up
        # after pgbench's workload (asyncetl measured about a quarter slower going first
        # than second), the second with the clean-up after the first.
        order = ("peer", "asyncetl") if n % 2 == 0 else ("asyncetl", "peer")
        for side in order:
            target = dsn(base, targets[side])
            expected = str(transactions // 2 * 2 * 4)
            figures[side] = run_child(side, dsn(base, src), target, slots[side], expected)
            settle(base, targets[side])
        source = digest(dsn(base, src))
        for side, target in targets.items():
            if digest(dsn(base, target)) != source:
                raise RuntimeError(f"{side}'s target is not identical to the source")
        return [figures["peer"], figures["asyncetl"]]
    finally:
        asyncio.run(
            sql(
                dsn(base, src),
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                f"WHERE slot_name IN ('{slots['peer']}', '{slots['asyncetl']}')",
                f"DROP PUBLICATION IF EXISTS {slots['asyncetl']}",
            )
        )
        for target in targets.values():
            asyncio.run(sql(admin, f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)'))


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        side, source, target, slot, expected = sys.argv[2:]
        child = peer_child if side == "peer" else asyncetl_child
        child(source, target, slot, int(expected))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=240_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    tag = secrets.token_hex(3)
    src = f"asyncetl_drain_src_{tag}"
    admin = dsn(args.server, "postgres")
    asyncio.run(sql(admin, f'CREATE DATABASE "{src}"'))
    results: list[tuple[Figures, Figures, float]] = []
    try:
        subprocess.run(
            ["pgbench", "-q", "-i", "-s", "1", dsn(args.server, src)],
            check=True,
            capture_output=True,
        )
        print(
            f"{'pair':>4} {'loop s':>7} {'chg/s':>8} {'MiB':>5} {'cpu':>17}  {'asyncetl s':>10} "
            f"{'chg/s':>8} {'MiB':>5} {'cpu':>17} {'ratio':>6}  load",
            flush=True,
        )
        for n in range(args.pairs):
            theirs, ours = one_pair(args.server, src, tag, n, args.changes)
            load = os.getloadavg()[0]
            results.append((theirs, ours, load))
            c = args.changes
            print(
                f"{n + 1:>4} {theirs.seconds:>7.2f} {c / theirs.seconds:>8,.0f} {theirs.mib:>5.0f} "
                f"{cpu(theirs):>17}  {ours.seconds:>10.2f} {c / ours.seconds:>8,.0f} "
                f"{ours.mib:>5.0f} {cpu(ours):>17} {theirs.seconds / ours.seconds:>5.2f}×  "
                f"{load:.2f}",
                flush=True,
            )
    finally:
        asyncio.run(sql(admin, f'DROP DATABASE IF EXISTS "{src}" WITH (FORCE)'))
    loops, ours_all = [r[0] for r in results], [r[1] for r in results]
    print(
        f"\nmedian of {len(results)} pairs, {args.changes:,} pgbench changes drained into a "
        "copy (both checked identical to the source); CPU seconds as process + walsender + "
        "target backends:\n"
        f"  psycopg2 test_decoding + execute_batch loop: {summary(loops, args.changes)}\n"
        f"  asyncetl CdcSource → ApplySink: {summary(ours_all, args.changes)}\n"
        f"  asyncetl / loop (median of per-pair ratios): "
        f"{statistics.median(r[0].seconds / r[1].seconds for r in results):.2f}×, "
        f"load average {statistics.median(r[2] for r in results):.2f}"
    )


def cpu(figures: Figures) -> str:
    return f"{figures.cpu:.2f}+{figures.sender:.2f}+{figures.target:.2f}"


def summary(runs: list[Figures], changes: int) -> str:
    seconds = statistics.median(r.seconds for r in runs)
    return (
        f"{seconds:.2f} s, {changes / seconds:,.0f} changes/s, peak "
        f"{statistics.median(r.mib for r in runs):.0f} MiB, CPU "
        f"{statistics.median(r.cpu for r in runs):.2f} + "
        f"{statistics.median(r.sender for r in runs):.2f} + "
        f"{statistics.median(r.target for r in runs):.2f} s"
    )


if __name__ == "__main__":
    main()
