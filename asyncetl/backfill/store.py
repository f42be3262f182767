"""Where partition statuses live: the interface, and an in-memory store.

The interface and its types (:class:`BackfillStore`, :class:`PartitionState`,
:class:`Scope`, ...) are defined in :mod:`asyncetl.core.backfill_store`, so that the
connectors implementing it need not import this package; they are re-exported
here. Implementations: :class:`MemoryBackfillStore` (tests, embedding),
``asyncetl.connectors.sqlite.backfill_store`` (the default) and
``asyncetl.connectors.postgres.backfill_store`` (many workers on many machines).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from asyncetl.core.backfill_store import (
    STATUSES,
    BackfillStore,
    Outcome,
    Partition,
    PartitionState,
    Reset,
    Scope,
    Status,
)

__all__ = [
    "STATUSES",
    "BackfillStore",
    "MemoryBackfillStore",
    "Outcome",
    "PartitionState",
    "Reset",
    "Scope",
    "Status",
]


class MemoryBackfillStore(BackfillStore):
    """Partition states in a dict: one process only."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], PartitionState] = {}

    async def register(self, backfill: str, partitions: Sequence[Partition], reset: Reset) -> None:
        now = datetime.now(UTC)
        for p in partitions:
            row = self.rows.setdefault(
                (backfill, p.key), PartitionState(p.key, p.kind, p.ordinal, "pending")
            )
            if row.resettable(reset, now):
                self.rows[backfill, p.key] = replace(
                    row, status="pending", error=None, worker=None, lease_until=None
                )

    async def claim(
        self, backfill: str, scope: Scope, *, worker: str, lease: float, newest_first: bool
    ) -> str | None:
        now = datetime.now(UTC)
        ready = [
            row
            for (name, _), row in self.rows.items()
            if name == backfill and _in(row, scope) and (row.status == "pending" or row.stale(now))
        ]
        if not ready:
            return None
        row = sorted(ready, key=lambda r: r.ordinal, reverse=newest_first)[0]
        self.rows[backfill, row.key] = replace(
            row,
            status="running",
            worker=worker,
            lease_until=_after(lease),
            started_at=now,
            finished_at=None,
            error=None,
        )
        return row.key

    async def renew(
        self, backfill: str, keys: Sequence[str], *, worker: str, lease: float
    ) -> set[str]:
        held = set()
        for key in keys:
            row = self.rows.get((backfill, key))
            if row is not None and row.status == "running" and row.worker == worker:
                self.rows[backfill, key] = replace(row, lease_until=_after(lease))
                held.add(key)
        return held

    async def finish(
        self,
        backfill: str,
        key: str,
        *,
        worker: str,
        outcome: Outcome,
        tries: int,
        error: str | None = None,
    ) -> bool:
        row = self.rows.get((backfill, key))
        if row is None or row.status != "running" or row.worker != worker:
            return False
        self.rows[backfill, key] = replace(
            row,
            status=outcome,
            attempts=row.attempts + tries,
            error=error,
            worker=None,
            lease_until=None,
            finished_at=None if outcome == "pending" else datetime.now(UTC),
        )
        return True

    async def states(self, backfill: str, scope: Scope | None = None) -> list[PartitionState]:
        mine = [
            row
            for (name, _), row in self.rows.items()
            if name == backfill and (scope is None or _in(row, scope))
        ]
        return sorted(mine, key=lambda r: (r.kind, r.ordinal))


def _in(row: PartitionState, scope: Scope) -> bool:
    return row.kind == scope.kind and scope.first <= row.ordinal <= scope.last


def _after(seconds: float) -> datetime:
    return datetime.fromtimestamp(time.time() + seconds, UTC)
