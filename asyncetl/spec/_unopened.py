"""Stand-ins for the parts of a spec that a command does not open.

A command such as ``dlq list`` opens the dead-letter store only; it should not
fail because ``${TARGET_DSN}``, which only the sink reads, is unset. When a part
it will not open has an unset variable, the spec is built with a stand-in for
that part: one that holds the part's stage name (a checkpoint is keyed by the
source's name) and raises the unset variable's error, naming file and key, as
soon as anything opens or uses it.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, NoReturn

from asyncetl.core.batch import Batch, Chunk, Position
from asyncetl.core.errors import ConfigError
from asyncetl.core.interfaces import (
    Checkpoint,
    CheckpointStore,
    DeadLetter,
    DeadLetterStore,
    Reject,
    Resource,
    Sink,
    Source,
)

__all__ = ["check_opened", "stands_for", "unopened"]


class _Unopened(Resource):
    """Raises ``error`` when opened or checked.

    :ivar stands_for: the class the part would have been.
    """

    def __init__(self, error: ConfigError, stands_for: Callable[..., object]) -> None:
        self.error = error
        self.stands_for = stands_for

    async def open(self) -> None:
        raise self.error

    async def check(self) -> NoReturn:
        raise self.error

    def fail(self) -> NoReturn:
        raise self.error


class UnopenedSource(_Unopened, Source[Any]):
    def __init__(self, error: ConfigError, stands_for: Callable[..., object], name: str) -> None:
        super().__init__(error, stands_for)
        self.name = name

    async def read(self, after: Position, *, max_chunk: int) -> AsyncIterator[Chunk[Any]]:
        self.fail()
        yield  # pragma: no cover -- makes this an async generator, as read() is

    def decode(self, raw: object) -> NoReturn:
        self.fail()


class UnopenedSink(_Unopened, Sink[Any]):
    def __init__(self, error: ConfigError, stands_for: Callable[..., object], name: str) -> None:
        super().__init__(error, stands_for)
        self.name = name

    async def write(self, batch: Batch[Any]) -> Sequence[Reject]:
        self.fail()


class UnopenedCheckpoints(_Unopened, CheckpointStore):
    async def load(self, pipeline: str, source: str) -> Position:
        self.fail()

    async def save(self, checkpoint: Checkpoint) -> None:
        self.fail()


class UnopenedDeadLetters(_Unopened, DeadLetterStore):
    async def put(self, letters: Sequence[DeadLetter]) -> None:
        self.fail()

    async def list(self, pipeline: str, *, limit: int | None = None) -> builtins.list[DeadLetter]:
        self.fail()

    async def remove(self, pipeline: str, ids: Sequence[str]) -> None:
        self.fail()


def unopened(
    kind: str, error: ConfigError, stands_for: Callable[..., object], name: str | None
) -> Resource:
    """A stand-in for the part ``kind`` whose settings raised ``error``.

    :param stands_for: the class the part would have been.
    :param name: the stage name the part would have had (sources and sinks only).
    :raises ConfigError: ``error``, for a source or sink whose name is not known.
    """
    if kind == "source" and name is not None:
        return UnopenedSource(error, stands_for, name)
    if kind == "sink" and name is not None:
        return UnopenedSink(error, stands_for, name)
    if kind == "checkpoints":
        return UnopenedCheckpoints(error, stands_for)
    if kind == "dead_letters":
        return UnopenedDeadLetters(error, stands_for)
    raise error  # a stage whose name is unknown: the pipeline cannot be told apart


def stands_for(part: object, kind: type) -> bool:
    """Whether ``part`` is a stand-in for a ``kind``."""
    replaced = part.stands_for if isinstance(part, _Unopened) else None
    return isinstance(replaced, type) and issubclass(replaced, kind)


def check_opened(part: object, kind: type) -> None:
    """Raise the unset variable's error if ``part`` stands in for a ``kind``.

    For a caller that would open ``part`` only if it is a ``kind``.
    """
    if isinstance(part, _Unopened) and stands_for(part, kind):
        raise part.error
