"""Appending by row hash when rows that differ hash alike.

A row hash digests a canonical form of its row (:func:`~.._rows.hash_payload`:
numbers normalised, so ``numeric`` 1.0 and 1.00 hash alike), numbered by the
row's occurrence among the rows of its batch with the same payload. Rows of one
batch are so numbered apart; but rows of two batches both take number 0, and the
second batch's insert would meet the first one's row and skip it as copied already.

So when an insert by row hash skips rows (only then: a copy into an empty table
pays nothing more), and the hashed columns have a type whose values can hash
alike yet differ (see :func:`hashed_exactly`), the rows skipped are compared with
the rows stored under their hashes, as their exact text (:func:`~.._sql.row_text`). Where one
differs, the batch's rows of its payload are numbered anew: the batch holds each
of their texts some number of times; the rows stored under the payload's
numbers count towards that, and the copies they lack are inserted under the
lowest free numbers, in batch order. A replay finds each text of the batch
stored as often as the batch holds it, and writes nothing.

A keyless table is read with identical rows in one group (see ``_keyless``), so a
text is stored as often as its batch holds it, or not at all; if the source
changed between runs, copies are added, never removed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from itertools import count
from typing import Any

import asyncpg

from asyncetl.connectors.postgres import _load, _sql
from asyncetl.connectors.postgres._rows import hash_payload, salted_hash
from asyncetl.connectors.postgres._sql import TableName
from asyncetl.connectors.postgres._writers.row_hash import RowHash
from asyncetl.connectors.postgres.schema import unmodified
from asyncetl.core.errors import TransientError

__all__ = ["append_by_hash", "hashed_exactly"]

Row = Sequence[Any]
#: A row of the batch among those of its payload: its hash, and whether the row stored
#: under that hash differs from it.
Member = tuple[str, bool]
#: Rounds of numbering after which rows still finding their numbers taken (by another
#: writer appending at the same time) fail the batch's transaction, to be retried.
_ROUNDS = 5
#: Types two values of which hash alike only when they are stored alike: the hash
#: payload holds their values exactly (as text, or JSON numbers that read back the
#: same). Not ``numeric`` without a scale (1.0 and 1.00 hash alike), nor arrays,
#: composites, domains or extension types, which are compared.
_EXACT = frozenset(
    {
        "smallint",
        "integer",
        "bigint",
        "oid",
        "boolean",
        "real",
        "double precision",
        "text",
        "character varying",
        "character",
        "bpchar",
        "json",
        "jsonb",
        "uuid",
        "bytea",
        "date",
        "time without time zone",
        "timestamp without time zone",
        "timestamp with time zone",
        "interval",
    }
)
#: ``numeric`` with a scale: its values are stored at that scale, so equal ones alike.
_SCALED = re.compile(r"numeric\(\d+(?:,\d+)?\)")


def hashed_exactly(types: Sequence[str]) -> bool:
    """Whether rows of columns of ``types`` that hash alike are stored alike, so that a row
    skipped for its hash is the row stored under it, and needs no comparing."""
    return all(_SCALED.fullmatch(t) or unmodified(t) in _EXACT for t in types)


async def append_by_hash(
    conn: asyncpg.Connection,
    target: TableName,
    columns: Sequence[str],
    rows: Sequence[Row],
    *,
    row_hash: RowHash,
    casts: _load.Casts = None,
    types: Sequence[str] | None = None,
) -> int:
    """Insert each of ``rows`` (holding their hash) that ``target`` lacks; returns how many.

    :param types: the SQL types of ``columns``: to bind rows as arrays (see
        :func:`~.._load.stage_for_merge`), and to tell whether rows skipped need comparing.
    """
    staged = await _load.stage_for_merge(conn, target, columns, rows, casts=casts, types=types)
    sql = _sql.merge_from_stage(
        target, columns, [row_hash.column], stage=staged.source, update=[], casts=staged.casts
    )
    inserted = _load.row_count(await _load.execute_merge(conn, sql, staged))
    if inserted == len(rows):
        return inserted  # nothing skipped: the usual first copy
    hashed_types = [types[i] for i in row_hash.hashed(columns)] if types is not None else None
    if hashed_types is not None and hashed_exactly(hashed_types):
        return inserted  # each row skipped is the row stored under its hash
    renumbering = _Renumbering(conn, target, columns, rows, row_hash, staged)
    return inserted + await renumbering.run()


class _Renumbering:
    """Numbers anew the rows of a staged batch whose hashes name other stored rows."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        target: TableName,
        columns: Sequence[str],
        rows: Sequence[Row],
        row_hash: RowHash,
        staged: _load.Staged,
    ) -> None:
        self.conn = conn
        self.target = target
        self.columns = columns
        self.rows = rows
        self.row_hash = row_hash
        self.staged = staged
        self.compared = [columns[i] for i in row_hash.hashed(columns)]
        self.staged_rows = _sql.staged_rows(columns, staged.casts, stage=staged.source)

    async def run(self) -> int:
        """Insert the copies the stored rows lack; returns how many."""
        h = self.row_hash.column
        sql = _sql.differing_rows(self.target, self.compared, h, rows=self.staged_rows)
        differ = {r[0] for r in await self.conn.fetch(sql, *self.staged.args)}
        if not differ:  # the rows skipped were copied already: the usual rerun
            return 0
        members = self._members(differ)
        texts = await self._texts([h for m in members.values() for h, _ in m], staged=True)
        insert = _sql.insert_rehashed(
            self.target, self.columns, h, rows=self.staged_rows, param=len(self.staged.args) + 1
        )
        inserted = 0
        for _ in range(_ROUNDS):
            stored = await self._stored({p: len(m) for p, m in members.items()})
            moves = [move for p, m in members.items() for move in _moves(p, m, texts, stored[p])]
            if not moves:
                return inserted
            was, now = (list(hashes) for hashes in zip(*moves, strict=True))
            landed = _load.row_count(
                await _load.execute_merge(self.conn, insert, self.staged, was, now)
            )
            inserted += landed
            if landed == len(moves):
                return inserted
        raise TransientError(
            f"rows of table {self.target} that hash alike found the numbers they were given "
            f"taken {_ROUNDS} times: is another writer appending to it at the same time?"
        )

    def _members(self, differ: set[str]) -> dict[bytes, list[Member]]:
        """The batch's rows of each payload some row of which differs from the row
        stored under its hash, in batch order."""
        index = self.row_hash.hashed(self.columns)
        at = self.columns.index(self.row_hash.column)
        payloads = [hash_payload(tuple(row[i] for i in index)) for row in self.rows]
        affected = {p for p, row in zip(payloads, self.rows, strict=True) if row[at] in differ}
        members: dict[bytes, list[Member]] = {}
        for payload, row in zip(payloads, self.rows, strict=True):
            if payload in affected:
                members.setdefault(payload, []).append((row[at], row[at] in differ))
        return members

    async def _texts(self, hashes: list[str], *, staged: bool) -> dict[str, str]:
        """The exact text of the rows under ``hashes``: staged, or stored in the target."""
        if staged:
            rows, args = self.staged_rows, list(self.staged.args)
        else:
            rows, args = f"{self.target.sql} AS s", []
        sql = _sql.row_texts(self.compared, self.row_hash.column, rows=rows, param=len(args) + 1)
        return {r[0]: r[1] for r in await self.conn.fetch(sql, *args, hashes)}

    async def _stored(self, wanted: dict[bytes, int]) -> dict[bytes, dict[int, str]]:
        """The text of the rows stored under each payload's numbers, by number.

        :param wanted: how many rows of each payload the batch holds.
        """
        found: dict[bytes, dict[int, str]] = {p: {} for p in wanted}
        windows = {p: range(2 * n + 8) for p, n in wanted.items()}
        while windows:
            numbers = {salted_hash(p, n): (p, n) for p, w in windows.items() for n in w}
            for h, text in (await self._texts(list(numbers), staged=False)).items():
                payload, number = numbers[h]
                found[payload][number] = text
            # Numbers are taken from 0 up (save rows deleted from the target): while the
            # upper half of the numbers looked at holds rows, more may follow.
            windows = {
                p: range(w.stop, 2 * w.stop)
                for p, w in windows.items()
                if max(found[p], default=-1) >= w.stop // 2
            }
        return found


def _moves(
    payload: bytes, members: list[Member], texts: dict[str, str], stored: dict[int, str]
) -> list[tuple[str, str]]:
    """``(hash, new hash)`` of each copy of a row that the stored rows of ``payload`` lack.

    The batch needs each text as often as ``members`` hold it; the stored rows count
    towards that. A copy is made of a member whose hash names a row that differs
    (one whose hash names its own text is stored, and counted), under the lowest
    number free.
    """
    have = Counter(stored.values())
    need = Counter(texts[h] for h, _ in members)
    free = (n for n in count() if n not in stored)
    moves = []
    for h, differs in members:
        text = texts[h]
        if differs and have[text] < need[text]:
            moves.append((h, salted_hash(payload, next(free))))
            have[text] += 1
    return moves
