"""The position to resume after, from the marks each table's latest snapshot holds."""

from __future__ import annotations

from datetime import UTC, datetime

from asyncetl.connectors.iceberg._ledger import Mark, resume_point, resume_time, unfinished


def mark(
    table: str, commit: int, tables: tuple[str, ...] = ("a.x", "a.y"), second: int = 0
) -> Mark:
    time = datetime(2024, 1, 1, 0, 0, second, tzinfo=UTC)
    return Mark(table, commit, {"lsn": commit * 10}, {"lsn": (commit - 1) * 10}, tables, time)


def test_nothing_committed_resumes_from_the_start() -> None:
    assert resume_point([]) == (None, 0)


def test_a_commit_every_table_of_it_holds_is_where_to_resume() -> None:
    assert resume_point([mark("a.x", 3), mark("a.y", 3)]) == ({"lsn": 30}, 3)


def test_a_commit_a_crash_cut_short_resumes_from_where_it_started() -> None:
    # a.x holds commit 4; a.y, committed after it, still holds 3.
    assert resume_point([mark("a.x", 4), mark("a.y", 3)]) == ({"lsn": 30}, 4)


def test_tables_a_commit_did_not_touch_keep_older_marks_without_holding_it_back() -> None:
    marks = [mark("a.x", 7, ("a.x",)), mark("a.y", 2), mark("a.z", 5, ("a.x", "a.z"))]
    assert resume_point(marks) == ({"lsn": 70}, 7)


def test_the_tables_holding_a_commit_cut_short_are_the_ones_to_roll_back() -> None:
    assert unfinished([mark("a.x", 4), mark("a.y", 3)]) == ["a.x"]
    assert unfinished([mark("a.x", 4), mark("a.y", 4)]) == []
    assert unfinished([mark("a.x", 7, ("a.x",)), mark("a.y", 2)]) == []
    assert unfinished([]) == []


def test_the_time_of_a_position_is_when_the_last_table_of_its_commit_was_committed() -> None:
    assert resume_time([]) is None
    complete = [mark("a.x", 3, second=5), mark("a.y", 3, second=7)]
    assert resume_time(complete) == datetime(2024, 1, 1, 0, 0, 7, tzinfo=UTC)
    # Commit 4 reached a.x only: the position is commit 3's, which a.y still holds.
    cut_short = [mark("a.x", 4, second=9), mark("a.y", 3, second=7)]
    assert resume_time(cut_short) == datetime(2024, 1, 1, 0, 0, 7, tzinfo=UTC)
    # Commit 3 is hidden behind commit 4 in every table that holds it: its time is unknown.
    assert resume_time([mark("a.x", 4, ("a.x", "a.y"), 9), mark("a.y", 2, second=1)]) is None
