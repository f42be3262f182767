"""Batches: the unit that flows between stages and the unit that is acknowledged."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar

__all__ = ["Batch", "Chunk", "JsonValue", "Position", "Reject"]

JsonValue: TypeAlias = "None | bool | int | float | str | list[JsonValue] | dict[str, JsonValue]"
#: Where a source stands after a record: opaque to the engine, JSON-serialisable.
Position: TypeAlias = JsonValue

T_co = TypeVar("T_co", covariant=True)
U = TypeVar("U")


@dataclass(frozen=True, slots=True)
class Reject:
    """A record a stage could not handle, with the reason."""

    record: object
    error: BaseException


@dataclass(frozen=True, slots=True)
class Chunk(Generic[T_co]):
    """Records a source read together, and its position after the last of them.

    Sources yield chunks; the engine merges consecutive chunks into batches. A
    chunk with no records only moves the position (an idle heartbeat).

    :param rejects: raw records the source could not decode; they go to the
        source's failure policy, never silently away.
    :param ends_batch: close the batch with this chunk, full or not, instead of
        waiting up to ``max_batch_age`` for more: the source reached a point worth
        committing at once, such as the end of a snapshot or a stream caught up with
        its server, after which it may have nothing to send for a while.

    Once sent, the chunk's ``records`` list belongs to the engine (it may become
    the batch's list without a copy): a source must not change it afterwards.
    """

    records: Sequence[T_co]
    position: Position
    rejects: Sequence[Reject] = ()
    ends_batch: bool = False


@dataclass(frozen=True, slots=True)
class Batch(Generic[T_co]):
    """Records travelling together through the stages.

    :param seq: 0, 1, 2… in source order within one run.
    :param position: the source position after the batch's last record.
    """

    seq: int
    records: Sequence[T_co]
    position: Position

    def replace(self, records: Sequence[U]) -> Batch[U]:
        """The same batch (sequence number and position) with other records."""
        return Batch(self.seq, records, self.position)

    def __len__(self) -> int:
        return len(self.records)
