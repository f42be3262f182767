"""RunStats: each counter moves through its one record_* method."""

from __future__ import annotations

from asyncetl import RunStats


def test_a_heartbeat_is_not_a_read() -> None:
    stats = RunStats()
    stats.record_read(0)
    assert (stats.records_in, stats.read_at) == (0, None)
    stats.record_read(3)
    assert stats.records_in == 3
    assert stats.read_at is not None and stats.read_at >= stats.started_at


def test_counters_add_up_and_a_commit_moves_the_position() -> None:
    stats = RunStats()
    stats.record_resume(10)
    assert (stats.position, stats.batches_committed, stats.committed_at) == (10, 0, None)
    stats.record_written(4)
    stats.record_written(5, unchanged=3)
    stats.record_dead_lettered(1)
    stats.record_commit(16)
    stats.record_commit(17)
    assert stats.as_dict() | {"elapsed_s": 0} == {
        "records_in": 0,
        "records_out": 6,
        "unchanged": 3,
        "dead_lettered": 1,
        "batches_committed": 2,
        "elapsed_s": 0,
    }
    assert stats.position == 17
    assert stats.committed_at is not None


def test_finishing_fixes_the_elapsed_time() -> None:
    stats = RunStats()
    assert not stats.stopped_early
    stats.record_stopped_early()
    stats.record_finish()
    assert stats.stopped_early
    assert stats.finished_at is not None
    assert stats.elapsed == stats.finished_at - stats.started_at
