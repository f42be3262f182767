"""The change stream of one slot: pgoutput over a replication connection, as chunks.

Positions are transaction-safe. Between transactions the position is the end
LSN of the last commit read (``{"lsn": "X/Y"}``); inside a transaction it stays
there and also counts the changes of the open transaction already emitted
(``{"lsn": …, "tx": commit LSN, "n": count}``), so a resume starts at the last
complete commit and skips exactly those changes. Only the ``lsn`` part is ever
confirmed to the server, and only once acknowledged (:meth:`ChangeStream.acknowledge`).

The stream reads the socket only when asked for the next chunk, so a full
pipeline queue stops the reading and TCP pushes back on the walsender: memory
stays flat however large a transaction is.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Awaitable, Callable, Collection

import anyio
import anyio.lowlevel

from asyncetl.connectors.postgres._sql import quote_ident
from asyncetl.connectors.postgres.cdc._lsn import format_lsn, parse_lsn
from asyncetl.connectors.postgres.cdc._pgoutput import (
    Begin,
    Commit,
    PgOutputDecoder,
)
from asyncetl.connectors.postgres.cdc._protocol import (
    ConnectParams,
    ReplicationConnection,
    map_protocol_errors,
    parse_error,
    parse_keepalive,
)
from asyncetl.core.batch import Chunk, Position
from asyncetl.core.changes import ChangeEvent
from asyncetl.core.errors import TransientError
from asyncetl.core.logs import get_logger
from asyncetl.core.retry import RetryPolicy, retry_call

__all__ = ["ChangeStream", "StreamPosition"]

_log = get_logger("asyncetl.cdc")
_XLOGDATA = 119  # w
_KEEPALIVE = 107  # k
_COPY_DATA = 100  # d
_COPY_DONE = 99  # c
_ERROR = 69  # E
_I32 = struct.Struct("!i").unpack_from
# Changes decoded between two turns of the event loop: a whole chunk takes milliseconds
# of CPU, and other tasks of the pipeline (a sink waiting for its database) wait that long.
_SLICE = 500
#: Seconds between the walsender's reports (asked for) while a catch-up is awaited.
_CATCH_UP_POLL = 0.25
#: Seconds a caught-up stream stays quiet before it ends the open batch: longer than the
#: gaps between the walsender's last messages of a burst (5-20 ms measured), far shorter
#: than a batch's age; changes that trickle in faster still fill batches by size or age.
_QUIET = 0.05


class StreamPosition:
    """Where the stream stands: the last complete commit, and progress in an open transaction."""

    __slots__ = ("lsn", "n", "tx")

    def __init__(self, lsn: int, tx: int | None = None, n: int = 0) -> None:
        self.lsn = lsn
        self.tx = tx
        self.n = n

    @classmethod
    def parse(cls, position: dict[str, object]) -> StreamPosition:
        tx = position.get("tx")
        return cls(
            parse_lsn(str(position["lsn"])),
            parse_lsn(str(tx)) if tx is not None else None,
            int(position.get("n", 0)),  # type: ignore[call-overload]
        )

    def dump(self) -> dict[str, Position]:
        if self.tx is None:
            return {"lsn": format_lsn(self.lsn)}
        return {"lsn": format_lsn(self.lsn), "tx": format_lsn(self.tx), "n": self.n}


class ChangeStream:
    """Streams one slot from a position; reconnects with backoff when the connection drops.

    :param conn: an open replication connection to start on (the one that created
        the slot), or ``None`` to connect.
    :param tables: ``(schema, table)`` pairs to keep; ``None`` keeps every published table.
    :param on_status: called after each status update is sent, for metrics.
    """

    def __init__(
        self,
        params: ConnectParams,
        *,
        slot: str,
        publication: str,
        start: StreamPosition,
        conn: ReplicationConnection | None,
        tables: Collection[tuple[str, str]] | None,
        status_interval: float,
        heartbeat_interval: float,
        reconnect: RetryPolicy,
        on_status: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._params = params
        self._slot = slot
        self._publication = publication
        self._conn = conn
        self._tables = set(tables) if tables is not None else None
        self._status_interval = status_interval
        self._heartbeat_interval = heartbeat_interval
        self._reconnect = reconnect
        self._on_status = on_status
        self.position = StreamPosition(start.lsn)
        self._skip: tuple[int, int] | None = (start.tx, start.n) if start.tx is not None else None
        self._to_skip = 0
        self.acked = start.lsn
        self.received = start.lsn
        self._decoder = PgOutputDecoder()
        self._data = b""  # received bytes; messages from _offset on are not processed yet
        self._offset = 0
        self._next_status = 0.0
        self._emitted_lsn = start.lsn
        self._emitted_open = False
        self._last_emit = time.monotonic()
        self.last_commit_time: float | None = None
        # The first transaction of this database read but not yet acknowledged (its
        # commit LSN and time), None when every one read is: what the lag counts from.
        self._pending: tuple[int, float] | None = None
        self._open_time = 0.0  # commit time of the open transaction
        self._read_end = start.lsn  # end of the last transaction read
        #: The LSN a run stopping when idle waits to see confirmed (see catch_up).
        self._catch_up = 0
        #: The last message processed was a keepalive: the walsender waited for WAL
        #: having sent everything before it (see _caught_up).
        self._after_keepalive = False
        #: Whether the last chunk said the stream had caught up (see _chunk).
        self._told_caught_up = True
        self._where = f"streaming slot {slot!r}"

    # -- public -------------------------------------------------------------------------------

    async def next_chunk(self, max_chunk: int) -> Chunk[ChangeEvent]:
        """The next changes, at most ``max_chunk``; an empty chunk as an idle heartbeat.

        Returns as soon as it has anything rather than waiting to fill the chunk.

        :raises TransientError: when reconnecting failed for longer than the reconnect policy
            allows.
        :raises PermanentError: when the server refuses to stream the slot.
        """
        events: list[ChangeEvent] = []
        while True:
            limit = min(max_chunk, len(events) + _SLICE)
            try:
                with map_protocol_errors(self._params.dsn, self._where):
                    complete = self._process(events, limit)
            except TransientError as exc:  # an ErrorResponse such as a terminated walsender
                await self._lost(exc)
                complete = True
            if not complete and len(events) < max_chunk:
                # Let other tasks run; shielded, since the stream has moved past these events.
                await anyio.lowlevel.cancel_shielded_checkpoint()
                continue
            if not complete or len(events) >= max_chunk:
                return self._chunk(events)
            if events or self._closed_since_emit() or self._heartbeat_due():
                return self._chunk(events)
            if self._caught_up() and not self._told_caught_up:
                if await self._stays_quiet():
                    return self._chunk(events, caught_up=True)
                continue
            await self._fill()

    def behind(self, current_lsn: int) -> tuple[int, float]:
        """Bytes of WAL up to ``current_lsn`` and seconds this database's changes wait.

        Counted from the first transaction of this database read but not yet
        acknowledged downstream, so other databases' WAL never counts, and a stream
        that is caught up and idle reads ``(0, 0.0)``. Changes the server has not
        sent yet count from when they arrive.
        """
        if self._pending is None:
            return 0, 0.0
        first = max(self._pending[0], self.acked)
        return max(0, current_lsn - first), max(0.0, time.time() - self._pending[1])

    async def acknowledge(self, lsn: int) -> None:
        """Everything up to commit end ``lsn`` is durable downstream: report it as flushed."""
        if lsn <= self.acked:
            return
        self.acked = lsn
        if lsn >= self._read_end:
            open_tx = self.position.tx
            self._pending = None if open_tx is None else (open_tx, self._open_time)
        conn = self._conn
        if conn is not None and conn.streaming:
            try:
                with map_protocol_errors(self._params.dsn, self._where):
                    await conn.send_status(self.received, self.acked, self.acked)
            except TransientError as exc:
                # The read loop will notice too and reconnect; the next status carries this ack.
                _log.info("standby status not sent", slot=self._slot, error=str(exc))

    def catch_up(self, lsn: int) -> None:
        """Confirm everything up to ``lsn`` promptly, not a heartbeat interval later.

        Until the position passed ``lsn``, the walsender is asked every
        ``_CATCH_UP_POLL`` seconds how far it has read, and every move of the
        position it reports (past WAL with no change for this stream: other
        databases', other tables', empty transactions) goes out as an empty chunk
        at once, for the engine to acknowledge. See also :meth:`ask_position`.
        """
        self._catch_up = max(self._catch_up, lsn)
        self._next_status = min(self._next_status, time.monotonic() + _CATCH_UP_POLL)

    async def ask_position(self) -> None:
        """Ask the walsender how far it has read, now: its answer also wakes a reader
        that waits for the next frame, so a :meth:`catch_up` starts at once."""
        conn = self._conn
        if conn is None or not conn.streaming:
            return
        try:
            with map_protocol_errors(self._params.dsn, self._where):
                await conn.send_status(self.received, self.acked, self.acked, reply=True)
        except TransientError as exc:  # the reader notices too, and reconnects
            _log.info("standby status not sent", slot=self._slot, error=str(exc))

    async def keep_alive(self) -> None:
        """Send a standby status update if one is due and the reader is not sending it.

        For a timer task: while a full pipeline holds the reader back, this keeps
        the walsender from timing the connection out.
        """
        conn = self._conn
        if conn is None or not conn.streaming or time.monotonic() < self._next_status:
            return
        try:
            with map_protocol_errors(self._params.dsn, self._where):
                await conn.send_status(self.received, self.acked, self.acked)
        except TransientError as exc:  # the reader notices too, and reconnects
            _log.info("standby status not sent", slot=self._slot, error=str(exc))
            return
        self._schedule_status()

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.aclose()

    # -- reading ------------------------------------------------------------------------------

    def _chunk(self, events: list[ChangeEvent], *, caught_up: bool = False) -> Chunk[ChangeEvent]:
        """The events read as a chunk; one made when the stream ``caught_up`` ends its batch.

        Caught up and quiet, nothing more is on its way: waiting out the batch's age
        would only delay the commit of what was read. Behind the server the reader
        always has more to read, so batches still fill up to their size under load.
        """
        self._emitted_lsn = self.position.lsn
        self._emitted_open = self.position.tx is not None
        self._last_emit = time.monotonic()
        if caught_up or events:
            self._told_caught_up = caught_up
        return Chunk(events, self.position.dump(), ends_batch=caught_up)

    async def _stays_quiet(self) -> bool:
        """Whether nothing arrives for :data:`_QUIET` seconds; what does is kept to process."""
        try:
            return not await self._receive_until_status_due(within=_QUIET)
        except TransientError as exc:
            await self._lost(exc)
            return False

    def _caught_up(self) -> bool:
        """Whether everything the walsender sent is read, and it said it waits for WAL.

        A walsender that has sent all the WAL there is, and has not heard that it was
        all written, sends a keepalive before it sleeps: that keepalive last, with no
        byte after it and no transaction open, on a connection still streaming (else
        the reader reconnects first), is the stream caught up.
        """
        conn = self._conn
        return (
            self._after_keepalive
            and self._offset == len(self._data)
            and self.position.tx is None
            and conn is not None
            and conn.streaming
        )

    def _closed_since_emit(self) -> bool:
        """The last chunk ended inside a transaction that has committed since: say so now."""
        return self._emitted_open and self.position.tx is None

    def _heartbeat_due(self) -> bool:
        return (
            self.position.tx is None
            and self.position.lsn > self._emitted_lsn
            and (
                self._emitted_lsn < self._catch_up
                or time.monotonic() - self._last_emit >= self._heartbeat_interval
            )
        )

    async def _fill(self) -> None:
        """Receive the next frames, sending status updates on time; reconnect if the link drops."""
        while True:
            try:
                if self._conn is None or not self._conn.streaming:
                    await self._start()
                if await self._receive_until_status_due():
                    return
                await self._send_status(reply=True)
            except TransientError as exc:
                await self._lost(exc)

    async def _lost(self, exc: TransientError) -> None:
        _log.warning(
            "replication connection lost; reconnecting",
            slot=self._slot,
            error=str(exc),
            resume_at=self.position.dump(),
        )
        self._data, self._offset = b"", 0
        self._after_keepalive = False
        await self.aclose()

    async def _receive_until_status_due(self, *, within: float = math.inf) -> bool:
        """Receive the next bytes, waiting until a status update is due (or ``within``
        seconds, if sooner); whether any came."""
        assert self._conn is not None
        wait = min(self._next_status - time.monotonic(), within)
        data: bytes | None = None
        with map_protocol_errors(self._params.dsn, self._where):
            with anyio.move_on_after(max(wait, 0.0)):
                data = await self._conn.receive_bytes()
        if data is None:
            return False
        rest = self._data[self._offset :]
        self._data, self._offset = (rest + data if rest else data), 0
        return True

    async def _start(self) -> None:
        """(Re)connect and START_REPLICATION at the last complete commit."""
        if self.position.tx is not None:
            self._skip = (self.position.tx, self.position.n)
            self.position = StreamPosition(self.position.lsn)
        self._decoder = PgOutputDecoder()
        self._data, self._offset = b"", 0
        self._after_keepalive = False
        conn, self._conn = self._conn, None
        options = {"proto_version": "1", "publication_names": quote_ident(self._publication)}

        async def start() -> ReplicationConnection:
            nonlocal conn
            if conn is None:
                with map_protocol_errors(
                    self._params.dsn, f"connecting to stream slot {self._slot!r}"
                ):
                    conn = await ReplicationConnection.connect(self._params)
            try:
                with map_protocol_errors(
                    self._params.dsn, f"starting replication from slot {self._slot!r}"
                ):
                    await conn.start_replication(self._slot, self.position.lsn, options)
            except BaseException:
                await conn.aclose()
                conn = None
                raise
            return conn

        self._conn = await retry_call(start, policy=self._reconnect, what=self._where)
        self._schedule_status()
        _log.info("streaming", slot=self._slot, start_lsn=format_lsn(self.position.lsn))

    async def _send_status(self, *, reply: bool) -> None:
        assert self._conn is not None
        with map_protocol_errors(self._params.dsn, self._where):
            await self._conn.send_status(self.received, self.acked, self.acked, reply=reply)
        self._schedule_status()
        if self._on_status is not None:
            await self._on_status()

    def _schedule_status(self) -> None:
        """The next status update: a status interval from now, sooner while catching up."""
        interval = self._status_interval
        if self.position.lsn < self._catch_up:
            interval = min(interval, _CATCH_UP_POLL)
        self._next_status = time.monotonic() + interval

    # -- decoding -----------------------------------------------------------------------------

    def _process(self, events: list[ChangeEvent], max_chunk: int) -> bool:
        """Decode received messages into ``events`` until it holds ``max_chunk``.

        Returns whether every complete message received so far was processed.
        Messages are decoded in place in the received bytes: a CopyData frame
        (``d``) holds an XLogData header (``w``, 25 bytes) and one pgoutput message.

        :raises ServerError: for an ErrorResponse.
        """
        data, pos, end = self._data, self._offset, len(self._data)
        decoder = self._decoder
        insert, update, delete = decoder.insert, decoder.update, decoder.delete
        begin_at, commit_at = decoder.begin_at, decoder.commit_at
        position = self.position
        tables = self._tables
        append = events.append
        unpack = _I32
        start, keepalive_end = pos, -1
        while len(events) < max_chunk:
            if end - pos < 5:
                break
            stop = pos + 1 + unpack(data, pos + 1)[0]
            if stop > end:
                break
            kind, body, pos = data[pos], pos + 5, stop
            if kind != _COPY_DATA:
                self._control(kind, data[body:stop])
                continue
            tag = data[body]
            if tag == _XLOGDATA:
                message = data[body + 25]
                if message == 73:  # the hot path: Insert, Update, Delete
                    event = insert(data, body + 26)
                elif message == 85:
                    event = update(data, body + 26)
                elif message == 68:
                    event = delete(data, body + 26)
                elif message == 66:  # Begin and Commit: as many as transactions
                    self._begin(begin_at(data, body + 26), position)
                    continue
                elif message == 67:
                    self._commit(*commit_at(data, body + 26), position)
                    continue
                else:
                    self._other(decoder.decode(data[body + 25 : stop]), events, position)
                    continue
                position.n += 1
                if self._to_skip:
                    self._to_skip -= 1
                elif tables is None or (event.schema, event.table) in tables:
                    append(event)
            elif tag == _KEEPALIVE:
                self._keepalive(data[body:stop])
                keepalive_end = stop
        self._offset = pos
        if pos != start:
            self._after_keepalive = keepalive_end == pos
        return len(events) < max_chunk

    def _control(self, kind: int, payload: bytes) -> None:
        if kind == _ERROR:
            raise parse_error(payload)
        if kind == _COPY_DONE:
            raise TransientError(f"the server ended streaming of slot {self._slot!r}")

    def _other(self, message: object, events: list[ChangeEvent], position: StreamPosition) -> None:
        if isinstance(message, Begin):
            self._begin(message, position)
        elif isinstance(message, Commit):
            self._commit(message.end_lsn, message.commit_time.timestamp(), position)
        elif isinstance(message, list):
            for event in message:
                self._emit(event, events, position)

    def _commit(self, end_lsn: int, commit_time: float, position: StreamPosition) -> None:
        position.lsn, position.tx, position.n = end_lsn, None, 0
        if end_lsn > self.received:
            self.received = end_lsn
        self._read_end = end_lsn
        self.last_commit_time = commit_time

    def _emit(
        self, event: ChangeEvent, events: list[ChangeEvent], position: StreamPosition
    ) -> None:
        position.n += 1
        if self._to_skip:
            self._to_skip -= 1
        elif self._tables is None or (event.schema, event.table) in self._tables:
            events.append(event)

    def _begin(self, begin: Begin, position: StreamPosition) -> None:
        position.tx, position.n = begin.final_lsn, 0
        self._open_time = begin.timestamp or begin.commit_time.timestamp()
        if self._pending is None:
            self._pending = (begin.final_lsn, self._open_time)
        skip, self._skip = self._skip, None
        if skip is not None and skip[0] == begin.final_lsn:
            self._to_skip = skip[1]

    def _keepalive(self, payload: bytes) -> None:
        keepalive = parse_keepalive(payload)
        self.received = max(self.received, keepalive.wal_end)
        position = self.position
        if position.tx is None and keepalive.wal_end > position.lsn and self._skip is None:
            # Nothing is open: everything before the server's WAL end has been read, so
            # a restart from there loses nothing (the heartbeat that keeps idle slots moving).
            position.lsn = keepalive.wal_end
        if keepalive.reply:
            self._next_status = 0.0  # answered by the next _fill
