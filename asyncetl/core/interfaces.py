"""The interfaces every connector implements: sources, sinks, transforms, stores.

Each is a small abstract base class with no-op lifecycle defaults, in the manner
of httpx's transports: a connector overrides what it needs. Each is a
:class:`Resource`: the engine calls ``open()`` before first use and ``aclose()``
on every exit path, and ``async with resource:`` does the same.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Sequence,
)
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Generic, Literal, Protocol, Self, TypeAlias, TypeVar, cast

from anyio.abc import ObjectSendStream

from asyncetl.core.batch import Batch, Chunk, JsonValue, Position, Reject
from asyncetl.core.errors import AsyncetlError
from asyncetl.core.observe import Lag, Progress

__all__ = [
    "Checkpoint",
    "CheckpointStore",
    "DeadLetter",
    "DeadLetterStore",
    "FailurePolicy",
    "LetterFilter",
    "Problem",
    "Reject",
    "Resource",
    "RunOutcome",
    "Settle",
    "Sink",
    "Source",
    "TransactionalWriter",
]

T_co = TypeVar("T_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)

#: What happens to a record that a stage cannot handle.
FailurePolicy: TypeAlias = Literal["fail", "dead_letter"]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A committed source position, keyed by pipeline and source."""

    pipeline: str
    source: str
    position: Position


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How the last run of a pipeline ended, as ``status`` shows it.

    :param state: ``finished`` (the source ran out), ``stopped`` (a signal or
        :meth:`~asyncetl.Pipeline.stop`) or ``failed``.
    :param time: when the run ended (UTC).
    :param error: the one-line error of a failed run, else ``None``.
    """

    state: Literal["finished", "stopped", "failed"]
    time: datetime
    error: str | None = None

    def to_json(self) -> dict[str, JsonValue]:
        """The outcome as a JSON object (``time`` in ISO 8601)."""
        return {"state": self.state, "time": self.time.isoformat(), "error": self.error}

    @classmethod
    def from_json(cls, value: JsonValue) -> RunOutcome | None:
        """The outcome :meth:`to_json` made, or ``None`` for anything else."""
        if not isinstance(value, dict):
            return None
        state, time, error = value.get("state"), value.get("time"), value.get("error")
        if state not in ("finished", "stopped", "failed") or not isinstance(time, str):
            return None
        known = cast('Literal["finished", "stopped", "failed"]', state)
        return cls(known, datetime.fromisoformat(time), error if isinstance(error, str) else None)


#: The source name under which :meth:`CheckpointStore.save_outcome` keeps a run's
#: outcome; the tilde and space keep it apart from any real source's name.
OUTCOME_SOURCE = "~run outcome"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record set aside by the dead-letter failure policy.

    :param record: the raw record, made JSON-safe (unknown types become strings).
    :param position: the source position of the batch the record travelled in.
    :param id: assigned by the store; ``None`` before it is stored.
    :param key: identifies the letter for idempotent stores: the same record,
        refused by the same stage at the same source position (and its ordinal
        among identical records there), always has the same key, so a batch
        written again after a crash or a checkpoint reset stores it once.
        ``None`` for letters stored by versions that had no keys.
    """

    pipeline: str
    stage: str
    error: str
    error_type: str
    record: JsonValue
    position: Position
    time: datetime
    id: str | None = field(default=None)
    key: str | None = field(default=None)


@dataclass(frozen=True, slots=True)
class Problem:
    """Something a resource needs that its system lacks, found by :meth:`Resource.check`.

    :param setting: the resource's own setting the problem concerns (``"table"``;
        ``"dsn"`` or ``"url"`` for a server that does not answer), or ``None`` when
        no one setting is to blame.
    :param message: one sentence naming what is missing and where.
    """

    setting: str | None
    message: str


class Resource:
    """Something the engine opens before use and closes on every exit path.

    ``async with resource:`` opens it and closes it again on the way out, in
    the manner of anyio's ``AsyncResource``.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "close" in cls.__dict__:
            # The engine would never call it: fail now rather than leak later.
            raise TypeError(
                f"{cls.__name__} defines close(); a Resource releases what it holds in aclose()"
            )

    async def open(self) -> None:
        """Acquire connections, files and sessions."""

    async def aclose(self) -> None:
        """Release what :meth:`open` acquired; must be safe to call after a failed open."""

    async def check(self) -> list[Problem]:
        """What this resource would lack if it ran now: every problem found, none when ready.

        A question only: it writes, creates and consumes nothing, and tries each
        server once (no retries), so a wrong setting shows at once. The default
        opens and closes the resource, which suits resources whose ``open()``
        changes nothing; a resource whose ``open()`` creates things overrides it.
        """
        try:
            await self.open()
        except (AsyncetlError, OSError) as exc:
            return [Problem(None, str(exc))]
        finally:
            await self.aclose()
        return []

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Source(Resource, abc.ABC, Generic[T_co]):
    """Chunks of records that can resume after a position.

    A source implements one of two methods. Most implement :meth:`read`, an
    async generator. A source that needs tasks of its own while it reads
    (concurrent page fetches, a keepalive timer) implements :meth:`produce`
    instead: it runs in the engine's reader task and may open a task group,
    which an async generator must never hold across a ``yield``.

    A subclass that implements neither cannot be instantiated.

    :ivar name: identifies the source within a pipeline; part of the checkpoint key.
    """

    name: str = "source"

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        if cls.read is Source.read and cls.produce is Source.produce:
            raise TypeError(
                f"cannot instantiate source {cls.__name__}: it implements neither "
                "read() nor produce(); a Source implements one of them"
            )
        return super().__new__(cls)

    def read(self, after: Position, *, max_chunk: int) -> AsyncIterator[Chunk[T_co]]:
        """Yield chunks of at most about ``max_chunk`` records, starting strictly after ``after``.

        ``after`` is ``None`` on a fresh start. Iteration ends when the source is
        exhausted; a continuous source never ends and is stopped by cancellation.
        """
        raise NotImplementedError(f"{type(self).__name__} implements neither read() nor produce()")

    async def produce(
        self, after: Position, send: ObjectSendStream[Chunk[T_co]], *, max_chunk: int
    ) -> None:
        """Send chunks into ``send`` (a bounded stream), starting strictly after ``after``.

        Returning means the source is exhausted; the engine closes ``send``. The
        default iterates :meth:`read` inside ``aclosing``.
        """
        chunks = self.read(after, max_chunk=max_chunk)
        if not isinstance(chunks, AsyncGenerator):
            kind = type(chunks).__name__
            raise TypeError(f"{type(self).__name__}.read must be an async generator, not {kind}")
        async with aclosing(chunks) as iterator:
            async for chunk in iterator:
                await send.send(chunk)

    def check_position(self, position: Position) -> None:
        """Whether this source could resume after ``position``; a question only, changing nothing.

        A source that names what it reads in its positions (a file's path, a
        table, an endpoint) refuses one written for something else here, and
        calls this at the start of every read, so ``checkpoint reset --to``
        and a run never disagree. It needs no connection: it may run before
        :meth:`open`. The default accepts anything.

        :raises ConfigError: naming what the position was written for, what
            this source reads, and how to reset the checkpoint.
        """

    def decode(self, raw: JsonValue) -> T_co:
        """Turn a dead-lettered raw record of this source back into a record, for replay.

        :raises Exception: whatever decoding raises when the record is still bad.
        """
        return raw  # type: ignore[return-value]

    async def acknowledge(self, position: Position) -> None:
        """Upstream acknowledgement: everything up to ``position`` is committed downstream."""

    def progress(self) -> Sequence[Progress]:
        """How far this run has read, per part, where the source can know its size.

        A question only, answered from what the source already holds (no I/O):
        the engine asks about once a second. A file says its bytes, a table its
        estimated rows, a snapshot each table's. The default: nothing known.
        """
        return ()

    def upstream_lag(self) -> Sequence[Lag]:
        """How far behind its upstream the source was when it last measured; no I/O.

        A replication slot's bytes behind, a consumer group's pending entries. The
        default: nothing known.
        """
        return ()

    async def upstream_end(self) -> object:
        """Where the upstream ends now, as a mark for :meth:`confirmed_through`.

        A pipeline that stops when idle asks this once the source has been quiet
        for the idle time, and stops only once :meth:`confirmed_through` the mark:
        a source whose upstream may still hold unread data (a replication slot
        whose server still decodes WAL) says how far that is. The default (``None``)
        means a quiet source is caught up.

        The mark holds for the quiet spell: chunks without records (heartbeats)
        that move the position keep it, and are how a source confirms an end its
        upstream reached with nothing for it. The run gives up on the mark, with a
        warning, only after 30 seconds in which nothing was committed.
        """
        return None

    def confirmed_through(self, mark: object) -> bool:
        """Whether everything up to ``mark`` (from :meth:`upstream_end`) is acknowledged."""
        return True


#: Given the records a transactional write refused, applies the sink's failure
#: policy before the transaction commits: raises to fail (the writer then rolls
#: back, checkpoint and all), and returns the batch's dead letters that the
#: writer must store in its transaction (none when the engine stored them).
Settle: TypeAlias = Callable[[Sequence[Reject]], Awaitable[Sequence[DeadLetter]]]


class TransactionalWriter(Protocol[T_contra]):
    """Writes a batch and a checkpoint in one transaction.

    What :meth:`Sink.transactional_writer` returns.
    """

    async def __call__(
        self, batch: Batch[T_contra], checkpoint: Checkpoint, settle: Settle | None = None, /
    ) -> Sequence[Reject]:
        """Write ``batch`` and save ``checkpoint`` atomically; return the records refused.

        Before committing, the writer awaits ``settle`` with the records refused
        and stores the dead letters it returns in the same transaction; when
        ``settle`` raises, nothing of the batch is committed. Without ``settle``
        the refused records are only returned.
        """
        ...


class Sink(Resource, abc.ABC, Generic[T_contra]):
    """Writes batches durably; returning from :meth:`write` is the acknowledgement.

    A sink that can save checkpoints in the transaction of its writes (for
    exactly-once results without an idempotent target) says so in
    :meth:`commits_to` and implements :meth:`transactional_writer`.
    """

    name: str = "sink"
    #: Records acknowledged since construction without being written, because the
    #: target already held them (a sink that compares, e.g. ``skip_unchanged``);
    #: a sink adds to it once their batch is durable. The engine reports it as
    #: the run's ``unchanged`` counter.
    unchanged: int = 0
    #: Whether the other stages wait while this sink writes, rather than make the
    #: next batches meanwhile. For a sink whose write is local work in a worker
    #: thread (a file appended and fsynced): the stages share the event loop's
    #: thread, and under one interpreter lock the thread cannot finish while they
    #: run, so working ahead gains little and keeps every queue full: more records
    #: in memory, colder in the CPU caches when the sink encodes and frees them.
    #: Leave it off for a sink that waits on a server, where the next batches are
    #: best made during the round trip.
    writes_alone: bool = False

    @abc.abstractmethod
    async def write(self, batch: Batch[T_contra]) -> Sequence[Reject]:
        """Write ``batch`` durably and return the records the target refused (usually none)."""

    def commits_to(self, store: CheckpointStore) -> bool:
        """Whether this sink can save checkpoints of ``store`` inside its own transactions.

        A question only: it changes nothing.
        """
        return False

    def stores_dead_letters_of(self, store: DeadLetterStore) -> bool:
        """Whether this sink can store dead letters of ``store`` inside its own transactions.

        A question only: it changes nothing. When it can, and its checkpoints
        travel in its transactions too, a batch's dead letters are written with
        the batch, by the writer :meth:`transactional_writer` returns.
        """
        return False

    def flush_deadline(self) -> float | None:
        """When the batches this sink holds must be made durable, or ``None`` when it holds none.

        A question only: it changes nothing. A sink that gathers several batches
        into one commit (small files are costly in a lake) returns from
        :meth:`write` before a batch is durable, and says so here, as an
        :func:`anyio.current_time` instant. The engine then acknowledges those
        batches only after :meth:`flush` (or a later write) made them durable,
        calling :meth:`flush` at that instant at the latest, when the input ends,
        and when a run that stops when idle falls quiet (it waits for nothing
        more). The default holds nothing: a returned write is durable.
        """
        return None

    async def flush(self) -> None:
        """Make every batch this sink holds durable; :meth:`flush_deadline` is ``None`` after."""

    def transactional_writer(
        self, store: CheckpointStore, dead_letters: DeadLetterStore | None = None
    ) -> TransactionalWriter[T_contra] | None:
        """Bind ``store`` to this sink's transactions, if :meth:`commits_to` it.

        ``dead_letters`` is bound too when :meth:`stores_dead_letters_of` it:
        the writer then stores the letters its ``settle`` returns.

        The engine calls this once, before opening the sink (which may prepare
        differently, knowing its checkpoints travel with its writes), and then
        writes every batch through the writer instead of :meth:`write`, the
        empty ones too, with the checkpoint that batch's acknowledgement commits.

        :returns: the writer, or ``None`` when this sink cannot save checkpoints
            of ``store`` (the engine then saves them itself, after each write).
        """
        return None


class CheckpointStore(Resource, abc.ABC):
    """Keeps the committed position of each (pipeline, source)."""

    @abc.abstractmethod
    async def load(self, pipeline: str, source: str) -> Position:
        """The committed position, or ``None`` when nothing was committed yet.

        :raises CheckpointError: when the stored checkpoint is unreadable.
        """

    @abc.abstractmethod
    async def save(self, checkpoint: Checkpoint) -> None:
        """Durably replace the committed position."""

    async def saved_at(self, pipeline: str, source: str) -> datetime | None:
        """When the committed position was saved (UTC), or ``None``.

        ``None`` also when the store does not record the time, or the position
        was saved by a version that did not. A store that can should override this.
        """
        return None

    async def save_outcome(self, pipeline: str, outcome: RunOutcome) -> None:
        """Durably record how the last run of ``pipeline`` ended.

        By default it is kept as the position of a reserved source name, so every
        store that saves positions keeps outcomes too.
        """
        await self.save(Checkpoint(pipeline, OUTCOME_SOURCE, outcome.to_json()))

    async def load_outcome(self, pipeline: str) -> RunOutcome | None:
        """How the last recorded run of ``pipeline`` ended, or ``None`` if none was."""
        return RunOutcome.from_json(await self.load(pipeline, OUTCOME_SOURCE))


class DeadLetterStore(Resource, abc.ABC):
    """Keeps records set aside by the dead-letter policy until replayed."""

    @abc.abstractmethod
    async def put(self, letters: Sequence[DeadLetter]) -> None:
        """Durably store ``letters``; a letter whose ``key`` is already stored is skipped."""

    @abc.abstractmethod
    async def list(self, pipeline: str, *, limit: int | None = None) -> list[DeadLetter]:
        """Stored letters of ``pipeline``, oldest first, with their ids."""

    @abc.abstractmethod
    async def remove(self, pipeline: str, ids: Sequence[str]) -> None:
        """Delete the letters with these ids."""

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
        """Stored letters of ``pipeline`` that match every filter given, oldest first.

        A question only: it changes nothing. The default filters :meth:`list` in
        memory, so that older stores keep working; the stores of asyncetl filter
        where the letters are kept.

        :param stage: only letters set aside by this stage.
        :param since: only letters stored at or after this time.
        :param before: only letters stored strictly before this time.
        :param ids: only letters with these ids.
        :param limit: at most this many.
        """
        wanted = LetterFilter(stage, since, before, ids)
        found = [letter for letter in await self.list(pipeline) if wanted.matches(letter)]
        return found if limit is None else found[: max(0, limit)]

    async def count(
        self,
        pipeline: str,
        *,
        stage: str | None = None,
        since: datetime | None = None,
        before: datetime | None = None,
        ids: Sequence[str] | None = None,
    ) -> int:
        """How many letters :meth:`find` would return without a limit; changes nothing."""
        return len(await self.find(pipeline, stage=stage, since=since, before=before, ids=ids))

    async def purge(
        self,
        pipeline: str,
        *,
        stage: str | None = None,
        before: datetime | None = None,
        ids: Sequence[str] | None = None,
    ) -> int:
        """Delete the letters of ``pipeline`` that match every filter given.

        With no filter at all, every letter of ``pipeline`` goes. The default
        finds them and calls :meth:`remove`.

        :returns: how many letters were deleted.
        """
        doomed = await self.find(pipeline, stage=stage, before=before, ids=ids)
        await self.remove(pipeline, [letter.id for letter in doomed if letter.id is not None])
        return len(doomed)


@dataclass(frozen=True, slots=True)
class LetterFilter:
    """The filters of :meth:`DeadLetterStore.find`, for stores that apply them in Python."""

    stage: str | None = None
    since: datetime | None = None
    before: datetime | None = None
    ids: Collection[str] | None = None

    def matches(self, letter: DeadLetter) -> bool:
        """Whether ``letter`` passes every filter that is set; naive times mean UTC."""
        time = _utc(letter.time)
        return (
            (self.stage is None or letter.stage == self.stage)
            and (self.since is None or time >= _utc(self.since))
            and (self.before is None or time < _utc(self.before))
            and (self.ids is None or letter.id in self.ids)
        )


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
