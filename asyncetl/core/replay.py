"""Replaying dead letters through a pipeline's transforms and sink.

Each dead letter re-enters the pipeline at the stage that set it aside: a
source letter is decoded again with ``source.decode`` and goes through every
transform, a transform letter starts at that transform, a sink letter goes
straight to the sink. A transform's or the sink's letter holds its record as
JSON; a change event's comes back as the event (see :func:`~asyncetl.core.changes.revive`),
with the column types its message declared. Letters that now make it into the sink (or are dropped
by a transform on purpose) are removed from the store *after* the sink's
write returns, so a crash in between only replays them again. Letters that
still fail stay in the store, unchanged.

A dry run (``dry_run=True``) sends each letter through the transforms only:
it tells which letters would now reach the sink and which fail again, and
writes nothing, opens no sink and removes nothing. Whether the sink would
accept a record cannot be known without writing it, so a sink letter (and
every letter that passes the transforms) counts as "would reach the sink".

Replay does not touch checkpoints, and it does not open the source. A
replayed record lands after anything newer the pipeline has loaded since, so
with an upsert sink an old record can overwrite a newer version of its key.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import anyio

from asyncetl.core.batch import Batch, Reject
from asyncetl.core.changes import revive
from asyncetl.core.deadletter import is_unencodable
from asyncetl.core.errors import ConfigError, StageError
from asyncetl.core.interfaces import DeadLetter, DeadLetterStore, Resource
from asyncetl.core.logs import get_logger
from asyncetl.core.pipeline import Pipeline

__all__ = ["ReplayFailure", "ReplayResult", "replay_dead_letters"]

_log = get_logger("asyncetl.replay")


@dataclass(frozen=True, slots=True)
class ReplayFailure:
    """A dead letter that failed again; it stays in the store.

    :param stage: the stage it failed at this time.
    :param error: ``ErrorType: message`` of this time's failure.
    """

    letter: DeadLetter
    stage: str
    error: str


@dataclass(slots=True)
class ReplayResult:
    """What one replay did.

    :param removed: ids of the letters that succeeded and were removed.
    :param records_written: records the sink accepted.
    :param failed: letters that failed again and were kept.
    :param would_reach_sink: in a dry run, the letters that now pass every
        transform (nothing was written or removed); empty otherwise.
    """

    removed: list[str] = field(default_factory=list)
    records_written: int = 0
    failed: list[ReplayFailure] = field(default_factory=list)
    would_reach_sink: list[DeadLetter] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return len(self.removed) + len(self.failed) + len(self.would_reach_sink)


class _FailedAgain(Exception):
    def __init__(self, stage: str, error: BaseException | str) -> None:
        super().__init__(stage)
        self.stage = stage
        self.error = error if isinstance(error, str) else _describe(error)


async def replay_dead_letters(
    pipeline: Pipeline,
    *,
    limit: int | None = None,
    ids: Sequence[str] | None = None,
    stage: str | None = None,
    dry_run: bool = False,
) -> ReplayResult:
    """Send ``pipeline``'s dead letters through its transforms and sink again.

    :param limit: replay at most this many letters, oldest first.
    :param ids: replay only the letters with these ids.
    :param stage: replay only the letters set aside by this stage.
    :param dry_run: only send them through the transforms, to see which would
        now reach the sink; write, open and remove nothing else.
    :raises ConfigError: the pipeline has no dead-letter store.
    :raises StageError: the sink failed as a whole (not record by record); the
        letters of the failing write stay in the store.
    """
    store = pipeline.dead_letters
    if store is None:
        raise ConfigError(
            "the pipeline has no dead-letter store to replay from",
            where=f"pipeline {pipeline.name}",
            key="dead_letters",
        )
    result = ReplayResult()
    async with AsyncExitStack() as stack:
        sink = () if dry_run else (pipeline.sink,)
        for resource in (store, *sink, *pipeline.transforms):
            await _open(stack, resource)
        letters = await store.find(pipeline.name, stage=stage, ids=ids, limit=limit)
        for start in range(0, len(letters), pipeline.max_batch_size):
            chunk = letters[start : start + pipeline.max_batch_size]
            if dry_run:
                await _check_chunk(pipeline, chunk, result)
            else:
                await _replay_chunk(pipeline, store, chunk, result)
    _log_outcome(pipeline.name, result, dry_run=dry_run)
    return result


def _log_outcome(name: str, result: ReplayResult, *, dry_run: bool) -> None:
    if dry_run:
        _log.info(
            "checked replay",
            pipeline=name,
            would_reach_sink=len(result.would_reach_sink),
            still_failing=len(result.failed),
        )
    else:
        _log.info(
            "replayed",
            pipeline=name,
            removed=len(result.removed),
            still_failing=len(result.failed),
            records_written=result.records_written,
        )


async def _open(stack: AsyncExitStack, resource: Resource) -> None:
    await resource.open()
    stack.push_async_callback(_close, resource)


async def _close(resource: Resource) -> None:
    with anyio.move_on_after(10, shield=True):
        await resource.aclose()


async def _replay_chunk(
    pipeline: Pipeline,
    store: DeadLetterStore,
    letters: Sequence[DeadLetter],
    result: ReplayResult,
) -> None:
    ready: list[tuple[DeadLetter, list[Any]]] = []
    for letter in letters:
        try:
            ready.append((letter, await _transformed(pipeline, letter)))
        except _FailedAgain as failure:
            result.failed.append(ReplayFailure(letter, failure.stage, failure.error))
    succeeded = await _write(pipeline, ready, result)
    if succeeded:
        await store.remove(pipeline.name, succeeded)
        result.removed.extend(succeeded)


async def _check_chunk(
    pipeline: Pipeline, letters: Sequence[DeadLetter], result: ReplayResult
) -> None:
    for letter in letters:
        try:
            await _transformed(pipeline, letter)
        except _FailedAgain as failure:
            result.failed.append(ReplayFailure(letter, failure.stage, failure.error))
        else:
            result.would_reach_sink.append(letter)


async def _transformed(pipeline: Pipeline, letter: DeadLetter) -> list[Any]:
    """The records ``letter`` becomes on its way to the sink from the stage it failed at."""
    names = [transform.name for transform in pipeline.transforms]
    if is_unencodable(letter.record):
        raise _FailedAgain(
            letter.stage,
            "the record was stored as its Python repr (JSON cannot hold it); "
            "it cannot be replayed, only read",
        )
    if letter.stage == pipeline.sink.name:
        return [_revived(letter)]
    if letter.stage == pipeline.source.name:
        try:
            records: list[Any] = [pipeline.source.decode(letter.record)]
        except Exception as exc:
            raise _FailedAgain(letter.stage, exc) from exc
        start = 0
    elif letter.stage in names:
        records, start = [_revived(letter)], names.index(letter.stage)
    else:
        raise _FailedAgain(letter.stage, "the pipeline has no stage of this name any more")
    for transform in pipeline.transforms[start:]:
        try:
            outcome = await transform.apply(records)
        except Exception as exc:
            raise _FailedAgain(transform.name, exc) from exc
        if outcome.rejects:
            raise _FailedAgain(transform.name, outcome.rejects[0].error)
        records = outcome.records
    return records


def _revived(letter: DeadLetter) -> Any:
    """The record of a transform's or the sink's letter, as the stage had it: a change
    event comes back as one (its letter is JSON), any other record as its JSON."""
    try:
        return revive(letter.record)
    except ValueError as exc:  # ConfigError, or a value its column cannot hold
        raise _FailedAgain(letter.stage, exc) from exc


async def _write(
    pipeline: Pipeline, ready: Sequence[tuple[DeadLetter, list[Any]]], result: ReplayResult
) -> list[str]:
    """Write the records of ``ready`` in one batch; the ids of the letters now loaded."""
    sink = pipeline.sink
    records = [record for _, outputs in ready for record in outputs]
    rejects: Sequence[Reject] = ()
    if records:
        try:
            rejects = await sink.write(Batch(0, records, None))
        except Exception as exc:
            raise StageError(sink.name, None, exc) from exc
        result.records_written += len(records) - len(rejects)
    refused = _attribute(ready, rejects)
    succeeded: list[str] = []
    for letter, _ in ready:
        error = refused.get(id(letter))
        if error is not None:
            result.failed.append(ReplayFailure(letter, sink.name, error))
        elif letter.id is not None:
            succeeded.append(letter.id)
    return succeeded


def _attribute(
    ready: Sequence[tuple[DeadLetter, list[Any]]], rejects: Sequence[Reject]
) -> dict[int, str]:
    """Which letters the sink refused (by ``id()`` of the letter), with the reason.

    A refused record is matched by identity, then by equality; when one cannot
    be matched at all, every letter of the batch counts as refused, so none is
    removed without proof that it was loaded.
    """
    refused: dict[int, str] = {}
    for reject in rejects:
        owner = _owner(ready, reject.record)
        if owner is None:
            return {id(letter): _describe(reject.error) for letter, _ in ready}
        refused.setdefault(id(owner), _describe(reject.error))
    return refused


def _owner(ready: Sequence[tuple[DeadLetter, list[Any]]], record: object) -> DeadLetter | None:
    for letter, outputs in ready:
        if any(output is record for output in outputs):
            return letter
    for letter, outputs in ready:
        if any(output == record for output in outputs):
            return letter
    return None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
