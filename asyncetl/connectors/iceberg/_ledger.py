"""Source positions kept in Iceberg snapshot summaries, and the position to resume after.

Every commit of an :class:`~asyncetl.connectors.iceberg.IcebergSink` writes,
in the summary of each snapshot it adds, the pipeline and source it belongs
to, the source position its data reaches, the position it started after, a
commit number, and the tables that one commit touched. A commit touching
several tables commits them one after another, so a crash may leave some of
them at commit *n* and the rest at *n − 1*; the position to resume after is
then the one commit *n* started after, which every table has. Before the
resumed run commits, the tables holding that cut-short commit are rolled back
to the snapshot before it (:func:`undo_unfinished`), so the replay, which
brings commit *n*'s rows again, adds them once to every table: exactly-once
for append-only tables too, whatever batches the replay is read in.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import orjson
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from asyncetl.core.batch import Position
from asyncetl.core.errors import CheckpointError

__all__ = [
    "Mark",
    "PIPELINE",
    "POSITION",
    "marks_in",
    "belongs_to",
    "resume_point",
    "resume_time",
    "summary",
    "tables_in",
    "undo_unfinished",
]

PIPELINE: Final = "asyncetl.pipeline"
SOURCE: Final = "asyncetl.source"
POSITION: Final = "asyncetl.position"
PREVIOUS: Final = "asyncetl.previous-position"
COMMIT: Final = "asyncetl.commit"
TABLES: Final = "asyncetl.tables"


@dataclass(frozen=True, slots=True)
class Mark:
    """What one table's latest snapshot of a pipeline's source says about its commit."""

    table: str
    commit: int
    position: Position
    previous: Position
    tables: tuple[str, ...]
    time: datetime | None = None  # when the snapshot was committed


def summary(
    pipeline: str,
    source: str,
    commit: int,
    position: Position,
    previous: Position,
    tables: Iterable[str],
) -> dict[str, str]:
    """The snapshot properties of one commit."""
    return {
        PIPELINE: pipeline,
        SOURCE: source,
        COMMIT: str(commit),
        POSITION: orjson.dumps(position).decode(),
        PREVIOUS: orjson.dumps(previous).decode(),
        TABLES: orjson.dumps(sorted(tables)).decode(),
    }


def marks_in(catalog: Catalog, pipeline: str, source: str) -> list[Mark]:
    """The latest mark of ``pipeline``'s ``source`` in every table of ``catalog`` that has one.

    Blocks: call it in a worker thread.

    :raises CheckpointError: when a mark's position is not valid JSON.
    """
    found: list[Mark] = []
    for name, table in tables_in(catalog):
        mark = latest_mark(table, name, pipeline, source)
        if mark is not None:
            found.append(mark)
    return found


def latest_mark(table: Table, name: str, pipeline: str, source: str) -> Mark | None:
    """The newest mark of ``pipeline``'s ``source`` in the history of ``table``'s current snapshot.

    Snapshots by other writers (compaction, another pipeline) are passed over.
    """
    for snapshot in _ancestry(table):
        props = snapshot.summary.additional_properties if snapshot.summary else {}
        if props.get(PIPELINE) == pipeline and props.get(SOURCE) == source:
            return Mark(
                name,
                int(props[COMMIT]),
                _json(props[POSITION], name, pipeline),
                _json(props[PREVIOUS], name, pipeline),
                tuple(_json(props[TABLES], name, pipeline) or ()),  # type: ignore[arg-type]
                datetime.fromtimestamp(snapshot.timestamp_ms / 1000, UTC),
            )
    return None


def belongs_to(table: Table, pipeline: str) -> bool:
    """Whether a snapshot in the history of ``table``'s current one is ``pipeline``'s."""
    for snapshot in _ancestry(table):
        props = snapshot.summary.additional_properties if snapshot.summary else {}
        if props.get(PIPELINE) == pipeline:
            return True
    return False


def tables_in(catalog: Catalog) -> Iterator[tuple[str, Table]]:
    """Every table of ``catalog`` with its dotted name. Blocks: call it in a worker thread."""
    for namespace in _namespaces(catalog, ()):
        for identifier in catalog.list_tables(namespace):
            yield ".".join(identifier), catalog.load_table(identifier)


def resume_point(marks: list[Mark]) -> tuple[Position, int]:
    """The position to resume after, and the last commit number used (0 for none)."""
    if not marks:
        return None, 0
    newest = max(marks, key=lambda mark: mark.commit)
    reached = {mark.table: mark.commit for mark in marks}
    complete = all(reached.get(table, 0) >= newest.commit for table in newest.tables)
    return (newest.position if complete else newest.previous), newest.commit


def resume_time(marks: list[Mark]) -> datetime | None:
    """When the position :func:`resume_point` gives was committed; ``None`` when unknown.

    That is the time the last table of its commit was committed. For a commit
    a crash cut short it is the commit before, when a table still holds it.
    """
    if not marks:
        return None
    newest = max(marks, key=lambda mark: mark.commit)
    reached = {mark.table: mark.commit for mark in marks}
    complete = all(reached.get(table, 0) >= newest.commit for table in newest.tables)
    commit = newest.commit if complete else newest.commit - 1
    times = [mark.time for mark in marks if mark.commit == commit and mark.time is not None]
    return max(times, default=None)


def unfinished(marks: list[Mark]) -> list[str]:
    """The tables holding the newest commit when a crash kept it from some of its tables."""
    if not marks:
        return []
    newest = max(marks, key=lambda mark: mark.commit)
    reached = {mark.table: mark.commit for mark in marks}
    if all(reached.get(table, 0) >= newest.commit for table in newest.tables):
        return []
    return sorted(mark.table for mark in marks if mark.commit == newest.commit)


def undo_unfinished(catalog: Catalog, pipeline: str, source: str, marks: list[Mark]) -> list[str]:
    """Roll each table holding a cut-short commit back to the snapshot before it.

    Blocks: call it in a worker thread. A table that commit created is left
    with no current snapshot (empty), as before it.

    :returns: the tables rolled back.
    :raises CheckpointError: when another writer committed to such a table after it.
    """
    tables = unfinished(marks)
    commit = max(mark.commit for mark in marks) if marks else 0
    for name in tables:
        table = catalog.load_table(name)
        before = _before_commit(table, name, pipeline, source, commit)
        with table.manage_snapshots() as snapshots:
            if before is None:
                snapshots.remove_branch("main")
            else:
                snapshots.rollback_to_snapshot(before)
    return tables


def _before_commit(table: Table, name: str, pipeline: str, source: str, commit: int) -> int | None:
    """The snapshot just before ``commit``'s snapshots at the head of ``table``; ``None``: none."""
    for head, snapshot in enumerate(_ancestry(table)):
        props = snapshot.summary.additional_properties if snapshot.summary else {}
        ours = (props.get(PIPELINE), props.get(SOURCE), props.get(COMMIT))
        if ours != (pipeline, source, str(commit)):
            if not head:
                raise CheckpointError(
                    f"Iceberg table {name!r} holds commit {commit} of pipeline {pipeline!r}, "
                    "which a crash kept from its other tables, and another writer committed "
                    f"after it (snapshot {snapshot.snapshot_id}); roll the table back to before "
                    "that commit, then run again"
                )
            return snapshot.snapshot_id
    return None


def _ancestry(table: Table) -> Iterator[Snapshot]:
    snapshot = table.current_snapshot()
    while snapshot is not None:
        yield snapshot
        parent = snapshot.parent_snapshot_id
        snapshot = table.snapshot_by_id(parent) if parent is not None else None


def _namespaces(catalog: Catalog, parent: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    for namespace in catalog.list_namespaces(parent):
        yield namespace
        if len(namespace) > len(parent):
            yield from (n for n in _namespaces(catalog, namespace) if n != namespace)


def _json(text: str, table: str, pipeline: str) -> Position:
    try:
        position: Position = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CheckpointError(
            f"the snapshot summary of Iceberg table {table!r} holds a position of pipeline "
            f"{pipeline!r} that is not valid JSON ({exc}); commit a snapshot without asyncetl "
            "properties after it, or drop the table, to start over"
        ) from exc
    return position
