"""CdcSource: a PostgreSQL table's changes, snapshot first, then streamed from a logical slot."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import Literal, cast

import anyio
import asyncpg
import orjson
from anyio.abc import ObjectSendStream

from asyncetl.connectors.postgres._check import checking
from asyncetl.connectors.postgres._connect import map_errors
from asyncetl.connectors.postgres._sql import TableName
from asyncetl.connectors.postgres.cdc import _catalog as catalog
from asyncetl.connectors.postgres.cdc._check import cdc_problems
from asyncetl.connectors.postgres.cdc._lsn import format_lsn, parse_lsn
from asyncetl.connectors.postgres.cdc._protocol import (
    ConnectParams,
    ReplicationConnection,
    lost_slot_message,
    map_protocol_errors,
)
from asyncetl.connectors.postgres.cdc._snapshot import SnapshotReader
from asyncetl.connectors.postgres.cdc._stream import ChangeStream, StreamPosition
from asyncetl.core.batch import Chunk, JsonValue, Position
from asyncetl.core.changes import ChangeEvent
from asyncetl.core.errors import RESET_HINT, ConfigError, PermanentError, TransientError
from asyncetl.core.interfaces import Problem, Source
from asyncetl.core.logs import get_logger
from asyncetl.core.observe import Lag, Progress
from asyncetl.core.retry import RetryPolicy, retry_call

__all__ = ["CdcSource"]

_log = get_logger("asyncetl.cdc")
_CONNECT_POLICY = RetryPolicy(max_tries=8, max_time=60.0, base_delay=0.2, max_delay=5.0)
#: The most snapshot_page_bytes may be: a page is held in memory whole, and is written
#: as one COPY, whose data PostgreSQL takes in messages of at most 1 GiB.
_MAX_PAGE_BYTES = 1 << 30


class CdcSource(Source[ChangeEvent]):
    """Changes of PostgreSQL tables from a logical replication slot (pgoutput).

    With ``snapshot = "initial"`` a fresh start creates the slot with an exported
    snapshot, reads every existing row under it (``op = "r"``), then streams
    from the slot's consistent point: no gap, no lock. Records are
    :class:`~asyncetl.core.changes.ChangeEvent`. The position is the end LSN of
    the last complete transaction (plus progress inside an open transaction, or
    snapshot progress while snapshotting); :meth:`acknowledge` is what confirms
    it to the server, so the slot never moves past what the sink stored.

    One process consumes a slot at a time: the others wait on an advisory lock
    as standbys and take over within ``standby_poll`` seconds of its end.

    :param dsn: ``postgresql://`` DSN of the source database; ``sslmode`` in its query.
    :param slot: the logical replication slot (lower-case letters, digits, underscores).
    :param publication: the publication whose tables are streamed.
    :param tables: tables to publish, snapshot and keep (``schema.table``; a list, or
        one comma-separated string as ``${TABLES}`` gives); all of the
        publication's when omitted or empty.
    :param create_slot: create the slot when it does not exist.
    :param create_publication: create the publication when it does not exist
        (``FOR TABLE`` the ``tables``, or ``FOR ALL TABLES``).
    :param snapshot: ``initial`` reads existing rows first; ``never`` only streams.
    :param snapshot_format: ``events`` (each existing row a change event) or
        ``binary``: a keyed table whose columns have built-in types is read as
        pages of COPY's binary format, never decoded, which only an
        :class:`~asyncetl.connectors.postgres.ApplySink` writes (into tables of
        the same column types), several times faster (see :mod:`._pages`).
    :param snapshot_page_bytes: about how many bytes of binary COPY data one page of a
        binary snapshot holds (default 4 MiB). A page is one batch, written in one
        transaction: larger pages take fewer round trips per row, and each in flight is
        held in memory. A table's first page has the pipeline's ``max_batch_size``
        rows; each next one as many rows as fit these bytes at the width measured so far.
    :param name: the source's name (part of the checkpoint key).
    :param status_interval: seconds between standby status updates (keep well
        under the server's ``wal_sender_timeout``).
    :param heartbeat_interval: seconds between empty chunks that move the
        position of a slot whose tables are idle while the server's WAL moves on.
    :param metrics_interval: seconds between lag measurements (logged and in :attr:`metrics`).
    :param standby_poll: seconds between a standby's attempts to take over.
    :param reconnect_max_time: seconds to keep reconnecting after the connection drops.
    :raises ConfigError: for an invalid slot name, snapshot mode, page size or interval.
    """

    def __init__(
        self,
        dsn: str,
        *,
        slot: str,
        publication: str,
        tables: list[str] | str | None = None,
        create_slot: bool = True,
        create_publication: bool = True,
        snapshot: Literal["initial", "never"] = "initial",
        snapshot_format: Literal["events", "binary"] = "events",
        snapshot_page_bytes: int = 4 << 20,
        name: str = "cdc",
        status_interval: float = 10.0,
        heartbeat_interval: float = 60.0,
        metrics_interval: float = 30.0,
        standby_poll: float = 1.0,
        reconnect_max_time: float = 300.0,
    ) -> None:
        self.params = ConnectParams.from_dsn(dsn, application_name=f"asyncetl:{name}")
        self.dsn = self.params.dsn
        self.slot = catalog.check_slot_name(slot)
        if not publication:
            raise ConfigError("publication must be a non-empty name", key="publication")
        if snapshot not in ("initial", "never"):
            raise ConfigError(
                f"snapshot must be 'initial' or 'never', not {snapshot!r}", key="snapshot"
            )
        if snapshot_format not in ("events", "binary"):
            raise ConfigError(
                f"must be 'events' or 'binary', not {snapshot_format!r}", key="snapshot_format"
            )
        if (
            not isinstance(snapshot_page_bytes, int)
            or isinstance(snapshot_page_bytes, bool)
            or not 0 < snapshot_page_bytes <= _MAX_PAGE_BYTES
        ):
            raise ConfigError(
                f"must be a whole number of bytes from 1 to {_MAX_PAGE_BYTES} (1 GiB), "
                f"not {snapshot_page_bytes!r}",
                key="snapshot_page_bytes",
            )
        for key, value in (
            ("status_interval", status_interval),
            ("heartbeat_interval", heartbeat_interval),
            ("metrics_interval", metrics_interval),
            ("standby_poll", standby_poll),
            ("reconnect_max_time", reconnect_max_time),
        ):
            if not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"must be a positive number of seconds, not {value!r}", key=key)
        self.publication = publication
        names = [t.strip() for t in tables.split(",")] if isinstance(tables, str) else tables
        names = [t for t in names if t] if names is not None else None
        self.tables = [TableName.parse(t) for t in names] if names else None
        self.create_slot = create_slot
        self.create_publication = create_publication
        self.snapshot = snapshot
        self.snapshot_format = snapshot_format
        self.snapshot_page_bytes = snapshot_page_bytes
        self.name = name
        self.status_interval = float(status_interval)
        self.heartbeat_interval = float(heartbeat_interval)
        self.metrics_interval = float(metrics_interval)
        self.standby_poll = float(standby_poll)
        self.reconnect = RetryPolicy(
            max_tries=1_000_000, max_time=reconnect_max_time, base_delay=0.2, max_delay=10.0
        )
        #: Lag and slot health, refreshed every ``metrics_interval`` seconds while streaming.
        self.metrics: dict[str, object] = {}
        self._meta: asyncpg.Connection | None = None
        #: Whether the snapshot (if one was due) is acknowledged, for stop_when_idle.
        self._snapshot_committed = False
        self._snapshot_conn: asyncpg.Connection | None = None
        self._snapshot: SnapshotReader | None = None
        self._snapshot_seen: SnapshotReader | None = None  # this run's, kept once done
        self._stream: ChangeStream | None = None
        self._lsn = 0
        self._next_metrics = 0.0
        #: The latest upstream end asked for (see upstream_end), 0 before any.
        self._upstream_mark = 0

    # -- Source API --------------------------------------------------------------------------

    async def check(self) -> list[Problem]:
        """Whether the server decodes logically, the role may replicate, and the slot,
        publication and tables exist or can be created; creates and consumes nothing."""
        problems: list[Problem] = []
        async with checking(self.dsn, problems) as conn:
            if conn is not None:
                problems += await cdc_problems(
                    conn,
                    self.dsn,
                    slot=self.slot,
                    create_slot=self.create_slot,
                    publication=self.publication,
                    create_publication=self.create_publication,
                    tables=self.tables,
                )
        return problems

    async def read(self, after: Position, *, max_chunk: int) -> AsyncIterator[Chunk[ChangeEvent]]:
        """Snapshot (when due) then stream, starting strictly after ``after``.

        :raises PermanentError: for a missing or lost slot, a missing publication or table.
        :raises TransientError: when the server stayed unreachable past the reconnect policy.
        """
        await self._prepare(after)
        while True:
            yield await self._next_chunk(max_chunk)

    async def produce(
        self, after: Position, send: ObjectSendStream[Chunk[ChangeEvent]], *, max_chunk: int
    ) -> None:
        """What :meth:`read` yields, sent into ``send``, with a status-update timer beside it.

        The timer keeps standby status updates flowing while a full pipeline
        holds the reader back, so a slow sink does not make the walsender time out.

        :raises PermanentError: for a missing or lost slot, a missing publication or table.
        :raises TransientError: when the server stayed unreachable past the reconnect policy.
        """
        try:
            async with anyio.create_task_group() as tg:
                await self._prepare(after)
                tg.start_soon(self._status_timer)
                while True:
                    await send.send(await self._next_chunk(max_chunk))
        except BaseExceptionGroup as group:
            raise _only(group) from None

    async def acknowledge(self, position: Position) -> None:
        """Confirm to the server everything up to ``position``'s last complete transaction."""
        if self._stream is not None and isinstance(position, dict) and "lsn" in position:
            lsn = parse_lsn(str(position["lsn"]))
            await self._stream.acknowledge(lsn)
            if not position.get("snapshot"):  # the snapshot is committed too
                self._snapshot_committed = True

    async def upstream_end(self) -> object:
        """The server's WAL end now (``pg_current_wal_lsn()``): a run that stops when idle
        stops only once the slot confirmed that far, not merely after a quiet spell while
        the walsender still decodes WAL (of other tables or databases) towards new changes.

        That end need not be the end of a WAL record the walsender can reach: it may lie
        on a page boundary inside a record whose tail is not flushed yet, which an idle
        server may leave so for as long as nothing else commits. So it is read in a
        transaction that takes a transaction id and commits, which writes (and has the
        WAL writer flush) a commit record past it: the walsender always reads that far.
        The stream is then told to confirm it promptly (:meth:`ChangeStream.catch_up`).

        :raises TransientError: when the server cannot be asked.
        """
        what = "reading the server's WAL end"
        # Its own short connection: the catalog one belongs to the reader task.
        conn = await catalog.connect(self.dsn, what)
        try:
            with map_errors(self.dsn, what):
                async with conn.transaction():
                    end = parse_lsn(await conn.fetchval("SELECT pg_current_wal_lsn()::text"))
                    await conn.execute("SELECT pg_current_xact_id()")
        finally:
            await _close_quietly(conn)
        # Kept for a stream made later: a run may fall quiet before it has started one.
        self._upstream_mark = max(self._upstream_mark, end)
        if self._stream is not None:
            self._stream.catch_up(end)
            await self._stream.ask_position()
        return end

    def confirmed_through(self, mark: object) -> bool:
        """Whether the stream has acknowledged everything up to LSN ``mark``."""
        if not isinstance(mark, int):
            return mark is None
        stream = self._stream
        return self._snapshot_committed and stream is not None and stream.acked >= mark

    def progress(self) -> Sequence[Progress]:
        """The snapshot's rows read per table of their estimates; nothing without a snapshot."""
        seen = self._snapshot_seen
        return seen.progress() if seen is not None else ()

    def upstream_lag(self) -> Sequence[Lag]:
        """The slot's bytes (and seconds) behind, as last measured while streaming."""
        lag: list[Lag] = []
        for key, unit in (("lag_bytes", "bytes"), ("lag_seconds", "seconds")):
            value = self.metrics.get(key)
            if isinstance(value, int | float):
                lag.append(Lag(float(value), unit, self.slot))  # type: ignore[arg-type]
        return lag

    def check_position(self, position: Position) -> None:
        """Refuse a position that is no CDC position, or was written for another slot.

        Positions name the ``database`` (host, port and name), ``slot`` and
        ``publication`` they were read from: an LSN of one slot means nothing to
        another, so resuming from it could skip or repeat changes. A position
        without them, as written before, is taken as before.

        :raises ConfigError: naming what it was written for, what this source
            reads, and how to reset the checkpoint.
        """
        _parse_position(position, where=self._where)
        if position is None:
            return
        assert isinstance(position, dict)
        for key, reading in self._identity.items():
            written_for = position.get(key, reading)
            if written_for != reading:
                raise ConfigError(
                    f"cannot resume from the committed position {_json(position)}: it was "
                    f"written for {key} {_json(written_for)}, not for {key} {_json(reading)}; "
                    f"point {key} back there, or to read {_json(reading)} from the start, "
                    f"{RESET_HINT}",
                    where=self._where,
                    key="position",
                )

    @property
    def _identity(self) -> dict[str, JsonValue]:
        """What this source reads, as its positions name it."""
        return {"database": self.dsn.where, "slot": self.slot, "publication": self.publication}

    @property
    def _where(self) -> str:
        return f"CdcSource {self.name!r}"

    async def _next_chunk(self, max_chunk: int) -> Chunk[ChangeEvent]:
        if self._snapshot is not None:
            chunk = await self._snapshot_chunk(max_chunk)
        else:
            assert self._stream is not None
            chunk = await self._stream.next_chunk(max_chunk)
        assert isinstance(chunk.position, dict)
        position = {**chunk.position, **self._identity}
        return Chunk(chunk.records, position, chunk.rejects, chunk.ends_batch)

    async def _status_timer(self) -> None:
        while True:
            await anyio.sleep(self.status_interval / 2)
            if self._stream is not None:
                await self._stream.keep_alive()

    def decode(self, raw: JsonValue) -> ChangeEvent:
        """A dead-lettered change event back as a :class:`ChangeEvent`.

        Its ``lsn`` is a number; ``X/Y`` text (what :meth:`ChangeEvent.to_json`
        wrote while LSN text lived in core) is read too.
        """
        lsn = raw.get("lsn") if isinstance(raw, dict) else None
        if isinstance(raw, dict) and isinstance(lsn, str) and "/" in lsn:
            raw = {**raw, "lsn": parse_lsn(lsn)}
        return ChangeEvent.from_json(raw)

    async def aclose(self) -> None:
        """Close the replication and catalog connections (which releases the consumer lock)."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            stream, self._stream = self._stream, None
            if stream is not None:
                await stream.aclose()
            await self._end_snapshot()
            meta, self._meta = self._meta, None
            if meta is not None:
                await _close_quietly(meta)

    # -- start -------------------------------------------------------------------------------

    async def _prepare(self, after: Position) -> None:
        self.check_position(after)
        start = _parse_position(after, where=self._where)
        self._meta = await retry_call(
            self._connect_meta, policy=_CONNECT_POLICY, what=f"connect to {self.dsn}"
        )
        await self._take_over()
        with map_errors(self.dsn, f"preparing slot {self.slot!r}"):
            slot = await catalog.slot_info(self._meta, self.slot)
            # Refuse a lost slot before creating anything: a run that fails here must
            # leave the server as it found it.
            if slot is None and start is not None:
                raise PermanentError(
                    f"replication slot {self.slot!r} no longer exists but the checkpoint is at "
                    f"{after!r}; changes since then are lost: reset the checkpoint "
                    "(python -m asyncetl checkpoint reset SPEC) and run again to re-create "
                    "the slot and re-snapshot"
                )
            tables = (
                await catalog.resolve_tables(self._meta, [str(t) for t in self.tables])
                if self.tables is not None
                else None
            )
            published = await catalog.ensure_publication(
                self._meta, self.publication, tables, create=self.create_publication
            )
        keep = tables if tables is not None else published
        conn: ReplicationConnection | None = None
        exported: str | None = None
        if slot is None:
            conn, lsn, exported = await self._create_slot()
            start = {"lsn": format_lsn(lsn), "snapshot": None}
            if self.snapshot == "initial":
                start["snapshot"] = {"table": None, "after": None}
        else:
            self._check_slot(slot)
            if start is None:
                start = {"lsn": format_lsn(slot.confirmed_flush or 0), "snapshot": None}
                if self.snapshot == "initial":
                    start["snapshot"] = {"table": None, "after": None}
        self._lsn = parse_lsn(str(start["lsn"]))
        # Where this run starts is confirmed downstream already, unless a snapshot is due.
        self._snapshot_committed = not isinstance(start.get("snapshot"), dict)
        # The stream owns the replication connection from here on (aclose() closes it),
        # though it only starts streaming once the snapshot is read.
        self._stream = ChangeStream(
            self.params,
            slot=self.slot,
            publication=self.publication,
            start=StreamPosition.parse(start),
            conn=conn,
            tables={(t.schema or "public", t.name) for t in keep}
            if self.tables is not None
            else None,
            status_interval=self.status_interval,
            heartbeat_interval=self.heartbeat_interval,
            reconnect=self.reconnect,
            on_status=self._refresh_metrics,
        )
        self._stream.catch_up(self._upstream_mark)
        if isinstance(start.get("snapshot"), dict):
            await self._begin_snapshot(keep, start["snapshot"], exported)  # type: ignore[arg-type]

    async def _connect_meta(self) -> asyncpg.Connection:
        return await catalog.connect(self.dsn, f"connecting for slot {self.slot!r}")

    async def _take_over(self) -> None:
        """Become the slot's one consumer, waiting as a standby while another process is."""
        assert self._meta is not None
        waiting = False
        while True:
            with map_errors(self.dsn, f"locking slot {self.slot!r}"):
                if await catalog.try_lock(self._meta, self.slot):
                    break
            if not waiting:
                _log.info("standby: another process consumes the slot; waiting", slot=self.slot)
                waiting = True
            await anyio.sleep(self.standby_poll)
        if waiting:
            _log.info("taking over the slot", slot=self.slot)

    async def _create_slot(self) -> tuple[ReplicationConnection, int, str | None]:
        if not self.create_slot:
            raise PermanentError(
                f"replication slot {self.slot!r} does not exist on {self.dsn.where}; "
                "create it or set create_slot = true"
            )
        export = "EXPORT_SNAPSHOT" if self.snapshot == "initial" else "NOEXPORT_SNAPSHOT"
        with map_protocol_errors(self.dsn, f"creating replication slot {self.slot!r}"):
            conn = await ReplicationConnection.connect(self.params)
            try:
                rows = await conn.command(
                    f"CREATE_REPLICATION_SLOT {self.slot} LOGICAL pgoutput {export}"
                )
            except BaseException:
                await conn.aclose()
                raise
        lsn = parse_lsn(str(rows[0][1]))
        _log.info("created replication slot", slot=self.slot, consistent_point=rows[0][1])
        return conn, lsn, rows[0][2]

    def _check_slot(self, slot: catalog.SlotInfo) -> None:
        if slot.wal_status == "lost":
            raise PermanentError(
                lost_slot_message(self.dsn, f"slot {self.slot!r} has wal_status = lost")
            )
        if slot.plugin != "pgoutput" or slot.database != self.dsn.database:
            raise PermanentError(
                f"replication slot {self.slot!r} belongs to database {slot.database!r} with plugin "
                f"{slot.plugin!r}; asyncetl needs a pgoutput slot of database "
                f"{self.dsn.database!r}: use another slot name"
            )

    # -- snapshot ----------------------------------------------------------------------------

    async def _begin_snapshot(
        self, tables: list[TableName], progress: dict[str, object], exported: str | None
    ) -> None:
        assert self._meta is not None
        with map_errors(self.dsn, "reading the tables to snapshot"):
            infos = [await catalog.table_info(self._meta, t) for t in tables]
        infos.sort(key=lambda t: (t.schema, t.name))
        where = progress.get("table")
        start = None
        if isinstance(where, list) and len(where) == 2:
            after = progress.get("after")
            start = (
                (str(where[0]), str(where[1])),
                [str(a) for a in after] if isinstance(after, list) else None,
            )
        self._snapshot_conn = await retry_call(
            self._connect_meta, policy=_CONNECT_POLICY, what=f"connect to {self.dsn}"
        )
        self._snapshot = SnapshotReader(
            self._snapshot_conn,
            infos,
            start=start,
            exported=exported,
            binary=self.snapshot_format == "binary",
            page_bytes=self.snapshot_page_bytes,
        )
        self._snapshot_seen = self._snapshot
        with map_errors(self.dsn, "estimating the rows of the tables to snapshot"):
            self._snapshot.estimates = await catalog.row_estimates(self._meta, infos)
        _log.info(
            "snapshot",
            slot=self.slot,
            tables=[t.qualified for t in infos],
            exported_snapshot=exported is not None,
            resume_at=start,
        )

    async def _snapshot_chunk(self, max_chunk: int) -> Chunk[ChangeEvent]:
        assert self._snapshot is not None
        with map_errors(self.dsn, "reading the snapshot"):
            # Binary pages stand in for the events of their rows (snapshot_format).
            events = cast("list[ChangeEvent]", await self._snapshot.next_rows(max_chunk))
        progress = self._snapshot.position
        if progress is None:
            _log.info("snapshot done", slot=self.slot, rows=self._snapshot.rows_read)
            await self._end_snapshot()
            # Committed at once: the stream after it may stay quiet for longer than
            # max_batch_age, and the snapshot is not done in the target until then.
            return Chunk(events, {"lsn": format_lsn(self._lsn)}, ends_batch=True)
        return Chunk(events, {"lsn": format_lsn(self._lsn), "snapshot": progress})

    async def _end_snapshot(self) -> None:
        reader, self._snapshot = self._snapshot, None
        conn, self._snapshot_conn = self._snapshot_conn, None
        if conn is not None:
            if reader is not None:
                with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                    await reader.finish()
            await _close_quietly(conn)

    # -- metrics -----------------------------------------------------------------------------

    async def _refresh_metrics(self) -> None:
        if self._meta is None or time.monotonic() < self._next_metrics:
            return
        self._next_metrics = time.monotonic() + self.metrics_interval
        try:
            with map_errors(self.dsn, f"measuring the lag of slot {self.slot!r}"):
                slot = await catalog.slot_info(self._meta, self.slot)
        except TransientError as exc:
            _log.warning("cannot measure replication lag", slot=self.slot, error=str(exc))
            return
        if slot is None:
            raise PermanentError(
                f"replication slot {self.slot!r} was dropped while streaming; "
                "re-create it and re-snapshot"
            )
        self._check_slot(slot)
        stream = self._stream
        lag_bytes, lag_s = slot.lag_bytes, None
        if stream is not None:
            # From this database's unacknowledged changes: other databases' WAL, which
            # the slot's own figure counts until a heartbeat moves it, is no lag here.
            lag_bytes, seconds = stream.behind(slot.current_lsn)
            lag_s = round(seconds, 3)
        self.metrics = {
            "slot": self.slot,
            "lag_bytes": lag_bytes,
            "restart_lag_bytes": slot.restart_lag_bytes,
            "wal_status": slot.wal_status,
            "confirmed_flush_lsn": _fmt(slot.confirmed_flush),
            "lag_seconds": lag_s,
        }
        _log.info("cdc lag", **self.metrics)


def _only(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error a task group failed with (the timer never fails), or the group itself."""
    leaves = [exc for exc in _leaves(group) if not isinstance(exc, anyio.get_cancelled_exc_class())]
    return leaves[0] if len(leaves) == 1 else group


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _parse_position(after: Position, *, where: str) -> dict[str, object] | None:
    if after is None:
        return None
    if isinstance(after, dict) and isinstance(after.get("lsn"), str):
        parse_lsn(after["lsn"])  # type: ignore[arg-type]
        return dict(after)
    raise ConfigError(
        f"{after!r} is not a CDC position; expected an object with an 'lsn'",
        where=where,
        key="position",
    )


def _json(value: JsonValue) -> str:
    return orjson.dumps(value).decode()


def _fmt(lsn: int | None) -> str | None:
    return format_lsn(lsn) if lsn is not None else None


async def _close_quietly(conn: asyncpg.Connection) -> None:
    try:
        await conn.close(timeout=5)
    except Exception:
        conn.terminate()
