"""The SQL that every table-backed checkpoint and dead-letter store sends.

The stores of SQLite, DuckDB and PostgreSQL keep the same rows and ask the same
questions of them; only the spelling differs. A connector describes its
spelling once, as a :class:`SqlDialect` (placeholders, its one identifier-quoting
helper, how JSON and the current time are written), and takes the statements
and their bound parameters from here. Nothing here knows a database: table
creation, whose column types differ, stays with each connector.

Every identifier goes through the dialect's quoting helper; every value is a
bound parameter, numbered so one statement can use a parameter twice.
:class:`FilteredLetterStore` holds the part of the dead-letter contract that
does not depend on where letters are kept (the filter arguments, ``list`` as an
unfiltered ``find``), so a store states only how it finds, counts and purges.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from asyncetl.core.batch import Position
from asyncetl.core.errors import CheckpointError, PermanentError
from asyncetl.core.interfaces import DeadLetter, DeadLetterStore, LetterFilter

__all__ = [
    "LETTER_COLUMNS",
    "CheckpointQueries",
    "FilteredLetterStore",
    "LetterQueries",
    "SqlDialect",
    "letter_from_row",
    "letter_json",
    "letter_params",
    "limit_param",
    "position_from_text",
    "row_ids",
]

#: The columns of a dead letter, in the order the queries select them (after ``id``).
LETTER_COLUMNS = ("pipeline", "stage", "error", "error_type", "record", "position", "time")
_JSON_COLUMNS = frozenset({"record", "position"})


def _unchanged(value: object) -> object:
    return value


@dataclass(frozen=True, slots=True)
class SqlDialect:
    """How one database spells what the stores' statements need.

    :param quote: the connector's identifier-quoting helper.
    :param mark: the placeholder of the n-th bound parameter (from 1), e.g. ``$1``.
    :param id_in: the test that column ``id`` is in the id list bound at ``{ids}``.
    :param casts: a type cast to add where a filter parameter is tested for NULL,
        by filter name (``stage``, ``since``, ``before``, ``ids``), for a
        database that must know a parameter's type.
    :param json_out: how a JSON ``{column}`` is selected as text.
    :param json_in: how JSON text bound at ``{mark}`` is written to a JSON column.
    :param now: the current time in SQL, or ``None`` to bind it (checkpoints'
        ``updated_at`` is then the fourth parameter).
    :param counted_delete: turns ``{delete}`` into a statement answering how many
        rows it removed, or leave it to the cursor's row count.
    :param no_limit: the ``LIMIT`` value meaning all rows.
    :param time_value: a filter's time (aware) as bound.
    :param ids_value: a filter's list of row ids as bound.
    """

    quote: Callable[[str], str]
    mark: Callable[[int], str]
    id_in: str
    casts: Mapping[str, str] = field(default_factory=dict)
    json_out: str = "{column}"
    json_in: str = "{mark}"
    now: str | None = "now()"
    counted_delete: str = "{delete}"
    no_limit: int | None = None
    time_value: Callable[[datetime], object] = _unchanged
    ids_value: Callable[[list[int]], object] = _unchanged

    def table(self, name: str, schema: str | None = None) -> str:
        """``name`` (in ``schema``) quoted for SQL."""
        return ".".join(self.quote(part) for part in (schema, name) if part is not None)

    def upsert(self, key: Sequence[str], updated: Sequence[str]) -> str:
        """The clause that makes an ``INSERT`` replace ``updated`` of a row with this ``key``."""
        conflict = ", ".join(map(self.quote, key))
        if not updated:
            return f"ON CONFLICT ({conflict}) DO NOTHING"
        sets = ", ".join(f"{c} = excluded.{c}" for c in map(self.quote, updated))
        return f"ON CONFLICT ({conflict}) DO UPDATE SET {sets}"


@dataclass(frozen=True, slots=True)
class CheckpointQueries:
    """Creating, reading and saving positions in a table ``(pipeline, source, position,
    updated_at)``, keyed by pipeline and source.

    :attr:`load` and :attr:`saved_at` bind pipeline and source; :attr:`save`
    binds pipeline, source and the position as JSON text (and the time, when
    the dialect binds it).
    """

    create: str
    load: str
    saved_at: str
    save: str

    @classmethod
    def of(
        cls, dialect: SqlDialect, table: str, schema: str | None = None, *, columns: str
    ) -> CheckpointQueries:
        """:param columns: the table's column definitions, in the database's own types."""
        t, m = dialect.table(table, schema), dialect.mark
        where = f"WHERE pipeline = {m(1)} AND source = {m(2)}"
        now = m(4) if dialect.now is None else dialect.now
        position = dialect.json_in.format(mark=m(3))
        return cls(
            create=f"CREATE TABLE IF NOT EXISTS {t} ({columns})",
            load=f"SELECT {dialect.json_out.format(column='position')} FROM {t} {where}",  # noqa: S608
            saved_at=f"SELECT updated_at FROM {t} {where}",  # noqa: S608
            save=(
                f"INSERT INTO {t} (pipeline, source, position, updated_at) "  # noqa: S608
                f"VALUES ({m(1)}, {m(2)}, {position}, {now}) "
                + dialect.upsert(("pipeline", "source"), ("position", "updated_at"))
            ),
        )


@dataclass(frozen=True, slots=True)
class LetterQueries:
    """Storing, finding, counting and purging the rows of a dead-letter table.

    :attr:`put` binds the letter's columns and key (``key`` is unique, so a
    stored key is skipped); the others bind :func:`letter_params`, and
    :attr:`find` then :func:`limit_param`. They select ``id`` then
    :data:`LETTER_COLUMNS`, oldest first.
    """

    put: str
    find: str
    count: str
    purge: str

    @classmethod
    def of(cls, dialect: SqlDialect, table: str, schema: str | None = None) -> LetterQueries:
        t, m = dialect.table(table, schema), dialect.mark
        values = [m(n) for n in range(1, len(LETTER_COLUMNS) + 2)]
        values[4:6] = [dialect.json_in.format(mark=mark) for mark in values[4:6]]
        selected = ", ".join(
            dialect.json_out.format(column=c) if c in _JSON_COLUMNS else c for c in LETTER_COLUMNS
        )
        filters = _filters(dialect)
        delete = f"DELETE FROM {t} WHERE {filters}"  # noqa: S608
        return cls(
            put=(
                f"INSERT INTO {t} ({', '.join(LETTER_COLUMNS)}, key) "  # noqa: S608
                f"VALUES ({', '.join(values)}) " + dialect.upsert(("key",), ())
            ),
            find=(
                f"SELECT id, {selected} FROM {t} WHERE {filters} "  # noqa: S608
                f"ORDER BY id LIMIT {m(6)}"
            ),
            count=f"SELECT count(*) FROM {t} WHERE {filters}",  # noqa: S608
            purge=dialect.counted_delete.format(delete=delete),
        )


def _filters(dialect: SqlDialect) -> str:
    """The WHERE of a filtered query; a filter is off when its parameter is NULL."""
    m, cast = dialect.mark, dialect.casts.get
    stage, since, before, ids = m(2), m(3), m(4), m(5)
    return (
        f"pipeline = {m(1)} AND ({stage}{cast('stage', '')} IS NULL OR stage = {stage}) "
        f"AND ({since}{cast('since', '')} IS NULL OR time >= {since}) "
        f"AND ({before}{cast('before', '')} IS NULL OR time < {before}) "
        f"AND ({ids}{cast('ids', '')} IS NULL OR {dialect.id_in.format(ids=ids)})"
    )


def letter_params(dialect: SqlDialect, pipeline: str, wanted: LetterFilter) -> list[object]:
    """The parameters of a filtered query: ``pipeline`` and ``wanted``'s filters.

    Naive times mean UTC, as the contract says; an id that cannot be a row id
    matches no letter.
    """
    ids = None if wanted.ids is None else dialect.ids_value(row_ids(wanted.ids))
    return [
        pipeline,
        wanted.stage,
        _time(dialect, wanted.since),
        _time(dialect, wanted.before),
        ids,
    ]


def limit_param(dialect: SqlDialect, limit: int | None) -> int | None:
    """The bound ``LIMIT`` of :attr:`LetterQueries.find`; a negative limit is none at all."""
    return dialect.no_limit if limit is None else max(0, limit)


def _time(dialect: SqlDialect, moment: datetime | None) -> object:
    if moment is None:
        return None
    return dialect.time_value(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def row_ids(ids: Iterable[str]) -> builtins.list[int]:
    """The ids that can be row ids (64-bit integers); any other id matches no row."""
    numbers = (int(i) for i in ids if str(i).isascii() and str(i).isdigit())
    return [number for number in numbers if number < 2**63]


def letter_json(letter: DeadLetter) -> tuple[str, str]:
    """The record and position of ``letter`` as JSON text; what JSON lacks becomes a string."""
    return (
        orjson.dumps(letter.record, default=str).decode(),
        orjson.dumps(letter.position, default=str).decode(),
    )


def letter_from_row(
    row: Sequence[object], read_time: Callable[[object], datetime], where: str
) -> DeadLetter:
    """The letter in a row selected by :class:`LetterQueries` (``id``, then :data:`LETTER_COLUMNS`).

    :param read_time: the stored time as an aware datetime.
    :param where: the table, for the message of an unreadable row.
    :raises PermanentError: when the row's JSON or time cannot be read.
    """
    letter_id, pipeline, stage, error, error_type, record, position, time = row
    try:
        return DeadLetter(
            pipeline=str(pipeline),
            stage=str(stage),
            error=str(error),
            error_type=str(error_type),
            record=orjson.loads(str(record)),
            position=orjson.loads(str(position)),
            time=read_time(time),
            id=str(letter_id),
        )
    except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
        raise PermanentError(
            f"dead letter {letter_id} in {where} is unreadable ({exc}); fix or delete that row"
        ) from exc


def position_from_text(text: str | bytes, pipeline: str, source: str, where: str) -> Position:
    """The position stored as JSON ``text`` for ``pipeline`` and ``source``.

    :param where: the table, for the message of an unreadable row.
    :raises CheckpointError: when ``text`` is not valid JSON.
    """
    try:
        position: Position = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CheckpointError(
            f"the checkpoint of pipeline {pipeline!r} (source {source!r}) in {where} is not "
            f"valid JSON ({exc}); fix or delete that row to start over from the beginning"
        ) from exc
    return position


class FilteredLetterStore(DeadLetterStore):
    """A dead-letter store that applies the filters of :meth:`find` where letters are kept.

    A store implements the three questions on one :class:`LetterFilter`;
    this class turns the contract's keyword arguments into one.
    """

    @abc.abstractmethod
    async def _find(
        self, pipeline: str, wanted: LetterFilter, limit: int | None
    ) -> builtins.list[DeadLetter]:
        """The matching letters of ``pipeline``, oldest first, at most ``limit``."""

    @abc.abstractmethod
    async def _count(self, pipeline: str, wanted: LetterFilter) -> int:
        """How many letters of ``pipeline`` match."""

    @abc.abstractmethod
    async def _purge(self, pipeline: str, wanted: LetterFilter) -> int:
        """Delete the matching letters of ``pipeline``; how many went."""

    async def list(self, pipeline: str, *, limit: int | None = None) -> builtins.list[DeadLetter]:
        """The letters of ``pipeline``, oldest first."""
        return await self._find(pipeline, LetterFilter(), limit)

    async def find(
        self,
        pipeline: str,
        *,
        stage: str | None = None,
        since: datetime | None = None,
        before: datetime | None = None,
        ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> builtins.list[DeadLetter]:
        """The letters of ``pipeline`` matching every filter given, oldest first."""
        return await self._find(pipeline, LetterFilter(stage, since, before, _ids(ids)), limit)

    async def count(
        self,
        pipeline: str,
        *,
        stage: str | None = None,
        since: datetime | None = None,
        before: datetime | None = None,
        ids: Sequence[str] | None = None,
    ) -> int:
        """How many letters :meth:`find` would return without a limit."""
        return await self._count(pipeline, LetterFilter(stage, since, before, _ids(ids)))

    async def purge(
        self,
        pipeline: str,
        *,
        stage: str | None = None,
        before: datetime | None = None,
        ids: Sequence[str] | None = None,
    ) -> int:
        """Delete the matching letters of ``pipeline``; how many went."""
        return await self._purge(pipeline, LetterFilter(stage, None, before, _ids(ids)))


def _ids(ids: Sequence[str] | None) -> frozenset[str] | None:
    return None if ids is None else frozenset(ids)
