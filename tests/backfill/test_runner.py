"""The runner: bounded concurrency, order, retries, resumes, stops and leases."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from asyncetl.backfill import (
    Backfill,
    LogProgress,
    MemoryBackfillStore,
    Partition,
    PartitionState,
    Scope,
    date_partitions,
)
from asyncetl.connectors.sqlite.backfill_store import SqliteBackfillStore
from asyncetl.core.errors import CheckpointError, ConfigError, PermanentError

pytestmark = pytest.mark.anyio

DAYS = date_partitions("2024-01-01", "2024-01-12", "day")


def statuses(states: list[PartitionState]) -> dict[str, str]:
    return {state.key: state.status for state in states}


class Recorder:
    """A job that tracks how many partitions run at once and in what order they start."""

    def __init__(self, *, sleep: float = 0.02, fail: dict[str, int] | None = None) -> None:
        self.sleep = sleep
        self.fail = dict(fail or {})  # key → how many tries fail first
        self.running = 0
        self.most = 0
        self.started: list[str] = []
        self.finished: list[str] = []

    async def __call__(self, partition: Partition) -> None:
        self.running += 1
        self.most = max(self.most, self.running)
        self.started.append(partition.key)
        try:
            await anyio.sleep(self.sleep)
            if self.fail.get(partition.key, 0) > 0:
                self.fail[partition.key] -= 1
                raise ValueError(f"boom {partition.key}")
            self.finished.append(partition.key)
        finally:
            self.running -= 1


async def test_no_more_than_parallel_partitions_ever_run_at_once() -> None:
    job = Recorder(sleep=0.03)
    result = await Backfill("bf", DAYS, job, MemoryBackfillStore(), parallel=3).run()
    assert job.most == 3
    assert sorted(job.finished) == [p.key for p in DAYS]
    assert result.ok
    assert result.ran_here == 12
    assert statuses(result.states) == {p.key: "succeeded" for p in DAYS}


@pytest.mark.parametrize(("order", "reverse"), [("oldest", False), ("newest", True)])
async def test_partitions_start_in_the_requested_order(order: str, reverse: bool) -> None:
    job = Recorder(sleep=0)
    await Backfill("bf", DAYS, job, MemoryBackfillStore(), parallel=1, order=order).run()  # type: ignore[arg-type]
    assert job.started == sorted((p.key for p in DAYS), reverse=reverse)


async def test_one_failing_partition_is_retried_then_recorded_and_the_rest_go_on() -> None:
    job = Recorder(fail={"2024-01-03": 99, "2024-01-05": 2})
    result = await Backfill(
        "bf", DAYS, job, MemoryBackfillStore(), parallel=4, max_tries=3, retry_base_delay=0.01
    ).run()
    failed = result.with_status("failed")
    assert [(s.key, s.attempts, s.error) for s in failed] == [
        ("2024-01-03", 3, "ValueError: boom 2024-01-03"),
    ]
    assert {s.key: s.attempts for s in result.with_status("succeeded")}["2024-01-05"] == 3
    assert len(result.with_status("succeeded")) == 11
    assert not result.ok


async def test_permanent_errors_are_not_retried() -> None:
    async def job(partition: Partition) -> None:
        raise PermanentError(f"table for {partition.key} is missing")

    result = await Backfill("bf", DAYS[:1], job, MemoryBackfillStore(), max_tries=5).run()
    assert [(s.attempts, s.error) for s in result.states] == [
        (1, "PermanentError: table for 2024-01-01 is missing"),
    ]


async def test_a_try_that_outlasts_its_timeout_is_cancelled_and_retried() -> None:
    job = Recorder(sleep=5)
    result = await Backfill(
        "bf", DAYS[:1], job, MemoryBackfillStore(), max_tries=2, retry_base_delay=0.01, timeout=0.05
    ).run()
    assert [(s.status, s.attempts, s.error) for s in result.states] == [
        ("failed", 2, "TimeoutError: the partition took longer than its timeout"),
    ]


async def test_a_rerun_does_only_what_is_left_and_resets_on_request(tmp_path: Path) -> None:
    path = tmp_path / "bf.db"
    first = Recorder(fail={"2024-01-02": 99})
    await Backfill("bf", DAYS[:4], first, SqliteBackfillStore(path), max_tries=1).run()
    assert sorted(first.started) == ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]

    wider = Recorder()
    result = await Backfill("bf", DAYS[:6], wider, SqliteBackfillStore(path)).run()
    assert sorted(wider.started) == ["2024-01-05", "2024-01-06"]
    assert statuses(result.states)["2024-01-02"] == "failed"

    failed_again = Recorder()
    result = await Backfill(
        "bf", DAYS[:6], failed_again, SqliteBackfillStore(path), reset="failed"
    ).run()
    assert failed_again.started == ["2024-01-02"]
    assert result.ok
    assert [s.attempts for s in result.states] == [1, 2, 1, 1, 1, 1]

    forced = Recorder()
    await Backfill("bf", DAYS[:6], forced, SqliteBackfillStore(path), reset="all").run()
    assert sorted(forced.started) == [p.key for p in DAYS[:6]]


async def test_stop_lets_running_partitions_finish_and_leaves_the_rest_pending() -> None:
    job = Recorder(sleep=0.3)
    store = MemoryBackfillStore()
    backfill = Backfill("bf", DAYS, job, store, parallel=2, grace_period=5)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_stop_when, backfill, job, 2)
        result = await backfill.run()
    assert result.stopped
    assert sorted(job.finished) == ["2024-01-01", "2024-01-02"]
    assert statuses(result.states) == {
        p.key: "succeeded" if p.key in job.finished else "pending" for p in DAYS
    }


async def test_after_the_grace_period_running_partitions_are_handed_back() -> None:
    job = Recorder(sleep=60)
    backfill = Backfill("bf", DAYS, job, MemoryBackfillStore(), parallel=3, grace_period=0.1)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_stop_when, backfill, job, 3)
            result = await backfill.run()
    assert job.finished == []
    assert {s.status for s in result.states} == {"pending"}
    # The three interrupted tries count as attempts.
    assert sorted(s.attempts for s in result.states) == [0] * 9 + [1] * 3


async def test_a_second_stop_hands_running_partitions_back_at_once() -> None:
    job = Recorder(sleep=60)
    backfill = Backfill("bf", DAYS, job, MemoryBackfillStore(), parallel=2, grace_period=60)

    async def stop_twice() -> None:
        await _stop_when(backfill, job, 2)
        backfill.stop()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_twice)
            result = await backfill.run()
    assert {s.status for s in result.states} == {"pending"}


async def test_cancelling_the_caller_hands_running_partitions_back(tmp_path: Path) -> None:
    job = Recorder(sleep=60)
    path = tmp_path / "bf.db"
    with anyio.move_on_after(0.3):
        await Backfill("bf", DAYS, job, SqliteBackfillStore(path), parallel=2).run()
    assert len(job.started) == 2
    store = SqliteBackfillStore(path)
    await store.open()
    try:
        assert {s.status for s in await store.states("bf")} == {"pending"}
    finally:
        await store.aclose()


async def test_a_partition_of_a_dead_worker_is_taken_over_when_its_lease_expires() -> None:
    store = MemoryBackfillStore()
    await store.register("bf", DAYS[:3], "none")
    dead = await store.claim("bf", Scope.of(DAYS[:3]), worker="dead", lease=0.5, newest_first=False)
    job = Recorder()
    with anyio.fail_after(5):
        result = await Backfill("bf", DAYS[:3], job, store, lease=0.4).run()
    assert dead == "2024-01-01"
    assert job.started[-1] == "2024-01-01"  # after its lease expired
    assert result.ok


async def test_a_lost_lease_cancels_the_partition_and_its_outcome_is_not_written() -> None:
    store = MemoryBackfillStore()
    job = Recorder(sleep=60)
    backfill = Backfill("bf", DAYS[:1], job, store, lease=0.3, worker="me")

    async def steal() -> None:
        while not job.started:
            await anyio.sleep(0.01)
        row = store.rows["bf", "2024-01-01"]
        until = datetime.now(UTC) + timedelta(seconds=30)
        store.rows["bf", "2024-01-01"] = replace(row, worker="thief", lease_until=until)
        await anyio.sleep(0.5)
        await store.finish("bf", "2024-01-01", worker="thief", outcome="succeeded", tries=1)

    with capture_logs() as logs, anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(steal)
            result = await backfill.run()
    events = [entry["event"] for entry in logs]
    assert "lease lost; cancelling the partition" in events
    assert "lost the lease before finishing; another worker took the partition over" in events
    assert job.finished == []
    assert [(s.status, s.attempts) for s in result.states] == [("succeeded", 1)]


async def test_log_progress_reports_each_partition_and_the_counts() -> None:
    job = Recorder(fail={"2024-01-02": 9})
    with capture_logs() as logs:
        await Backfill(
            "bf",
            DAYS[:3],
            job,
            MemoryBackfillStore(),
            max_tries=1,
            progress=LogProgress(interval=0),
        ).run()
    finished = [
        (e["log_level"], e["outcome"], e["partition"])
        for e in logs
        if e["event"] == "partition finished"
    ]
    assert sorted(finished) == [
        ("info", "succeeded", "2024-01-01"),
        ("info", "succeeded", "2024-01-03"),
        ("warning", "failed", "2024-01-02"),
    ]
    progress = [e["status"] for e in logs if e["event"] == "progress"]
    assert progress[-1].startswith("bf: 2/3 done · 1 failed · 0 running · 0 pending · ")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"parallel": 0}, "backfill bf: parallel: must be a positive integer, not 0"),
        ({"lease": -1}, "backfill bf: lease: must be a positive number of seconds, not -1"),
        ({"order": "random"}, "backfill bf: order: must be oldest or newest, not 'random'"),
    ],
)
def test_bad_options_are_rejected_before_running(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Backfill("bf", DAYS, Recorder(), MemoryBackfillStore(), **options)  # type: ignore[arg-type]
    assert str(caught.value) == message


async def _stop_when(backfill: Backfill, job: Recorder, running: int) -> None:
    while job.running < running:
        await anyio.sleep(0.01)
    backfill.stop()


class BrokenStore(MemoryBackfillStore):
    """Fails every claim after the first ``good`` ones, like a store whose disk filled up."""

    def __init__(self, good: int) -> None:
        super().__init__()
        self.good = good

    async def claim(
        self, backfill: str, scope: Scope, *, worker: str, lease: float, newest_first: bool
    ) -> str | None:
        if self.good == 0:
            raise CheckpointError("cannot use backfill store x.db: disk I/O error")
        self.good -= 1
        return await super().claim(
            backfill, scope, worker=worker, lease=lease, newest_first=newest_first
        )


async def test_a_failing_store_stops_the_run_with_its_one_error() -> None:
    store = BrokenStore(good=2)
    job = Recorder(sleep=0.05)
    with pytest.raises(CheckpointError, match=r"^cannot use backfill store x.db: disk I/O error$"):
        await Backfill("bf", DAYS, job, store, parallel=4).run()
    # The partitions already running were handed back, not left running.
    assert {s.status for s in await store.states("bf")} == {"pending"}
